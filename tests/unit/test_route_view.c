/*
 * test_route_view.c — route-agent's health table (names -> down, snapshot
 * sweeps, growth) and its views: down bytes paired with their snapshot,
 * reference counting, and the holder under concurrent readers (run it under
 * `make asan`: a refcount race shows up as a use-after-free).
 */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "router.h"
#include "spoe-agents/route/route_health.h"
#include "spoe-agents/route/route_view.h"

static const char seed_a[] =
	"replicas 2\ndc east\ndc west\n"
	"hub h1 10.0.0.1:80 dc=east\nnode n1 10.0.0.11:80 dc=east\nnode n2 10.0.0.12:80 dc=east\n"
	"node n3 10.0.1.11:80 dc=west\n";
/* Same names, another order, one more node: indices change. */
static const char seed_b[] =
	"replicas 2\ndc west\ndc east\n"
	"node n3 10.0.1.11:80 dc=west\nnode n4 10.0.1.12:80 dc=west\nnode n2 10.0.0.12:80 dc=east\n"
	"node n1 10.0.0.11:80 dc=east\nhub h1 10.0.0.1:80 dc=east\n";

static struct router_dir *parse(const char *text)
{
	char err[256];
	struct router_dir *d = router_dir_parse(text, strlen(text), "t.conf", err, sizeof(err));

	if (!d)
		fail_msg("%s", err);
	return d;
}

static void test_health_set_reports_changes(void **state)
{
	struct route_health *h = route_health_new();

	(void)state;
	assert_non_null(h);
	assert_int_equal(route_health_set(h, "n1", false), 0);   /* unknown is up already */
	assert_int_equal(route_health_set(h, "n1", true), 1);
	assert_int_equal(route_health_set(h, "n1", true), 0);
	assert_int_equal(route_health_down_count(h), 1);
	assert_int_equal(route_health_set(h, "n1", false), 1);
	assert_int_equal(route_health_down_count(h), 0);
	route_health_free(&h);
	assert_null(h);
}

/* The same table maps onto each snapshot's own indices. */
static void test_health_fill_follows_names_across_snapshots(void **state)
{
	struct route_health *h = route_health_new();
	struct router_dir *a = parse(seed_a), *b = parse(seed_b);
	uint8_t down[8];

	(void)state;
	route_health_set(h, "n2", true);
	route_health_set(h, "ghost", true);       /* not in any seed: ignored */
	assert_int_equal(route_health_fill_down(h, a, down, NULL), 1);
	for (unsigned i = 0; i < router_dir_target_count(a); i++)
		assert_int_equal(down[i], strcmp(router_dir_target(a, i)->name, "n2") == 0);
	assert_int_equal(route_health_fill_down(h, b, down, NULL), 1);
	for (unsigned i = 0; i < router_dir_target_count(b); i++)
		assert_int_equal(down[i], strcmp(router_dir_target(b, i)->name, "n2") == 0);
	router_dir_release(&a);
	router_dir_release(&b);
	route_health_free(&h);
}

/* A fresh feed snapshot: what it no longer reports down is up again. */
static void test_health_snapshot_sweeps_unmentioned(void **state)
{
	struct route_health *h = route_health_new();

	(void)state;
	route_health_set(h, "n1", true);
	route_health_set(h, "n2", true);
	route_health_begin_snapshot(h);
	route_health_set(h, "n2", true);          /* still down in the new snapshot */
	assert_int_equal(route_health_end_snapshot(h), 1);
	assert_int_equal(route_health_down_count(h), 1);
	assert_int_equal(route_health_set(h, "n1", true), 1);
	assert_int_equal(route_health_set(h, "n2", false), 1);
	route_health_free(&h);
}

/* Thousands of names: the table grows and keeps every entry. */
static void test_health_grows(void **state)
{
	struct route_health *h = route_health_new();
	char name[32];

	(void)state;
	for (unsigned i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "node%u", i);
		assert_int_equal(route_health_set(h, name, true), 1);
	}
	assert_int_equal(route_health_down_count(h), 5000);
	for (unsigned i = 0; i < 5000; i += 2) {
		snprintf(name, sizeof(name), "node%u", i);
		assert_int_equal(route_health_set(h, name, false), 1);
	}
	assert_int_equal(route_health_down_count(h), 2500);
	route_health_free(&h);
}

static void test_view_down_is_null_when_all_up(void **state)
{
	struct router_dir *a = parse(seed_a);
	uint8_t down[4] = { 0, 0, 0, 0 };
	struct route_view *v = route_view_new(router_dir_ref(a), 1, down), *w;

	(void)state;
	assert_non_null(v);
	assert_null(v->down);                     /* the decision's fastest path */
	assert_int_equal(v->ndown, 0);
	assert_int_equal(v->local_dc, 1);
	route_view_release(&v);

	down[2] = 7;
	v = route_view_new(router_dir_ref(a), 0, down);
	assert_non_null(v->down);
	assert_int_equal(v->ndown, 1);
	assert_int_equal(v->down[2], 1);
	down[2] = 0;                              /* the view holds its own copy */
	assert_int_equal(v->down[2], 1);
	w = route_view_ref(v);
	route_view_release(&v);
	assert_null(v);
	assert_ptr_equal(w->dir, a);              /* still alive through w */
	route_view_release(&w);
	router_dir_release(&a);
}

static void test_holder_generation_and_acquire(void **state)
{
	struct route_view_holder *h = route_view_holder_new();
	uint64_t gen = 99;

	(void)state;
	assert_non_null(h);
	assert_null(route_view_holder_acquire(h, &gen));
	assert_int_equal(gen, 0);
	route_view_holder_publish(h, route_view_new(parse(seed_a), 0, NULL));
	assert_int_equal(route_view_holder_generation(h), 1);
	struct route_view *v = route_view_holder_acquire(h, &gen);
	assert_int_equal(gen, 1);
	route_view_holder_publish(h, route_view_new(parse(seed_b), 1, NULL));
	assert_int_equal(route_view_holder_generation(h), 2);
	assert_int_equal(router_dir_target_count(v->dir), 4);   /* the old view is still whole */
	route_view_release(&v);
	route_view_holder_free(&h);
	assert_null(h);
}

/* Readers behave like workers: re-acquire when the generation moves, use the
 * view (dir + down bytes of the same snapshot), release the old one. */
struct reader { struct route_view_holder *h; atomic_bool *stop; atomic_ulong swaps, checks; };

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct route_view *v = NULL;
	uint64_t gen = 0;

	while (!atomic_load(r->stop)) {
		if (route_view_holder_generation(r->h) != gen) {
			struct route_view *old = v;

			v = route_view_holder_acquire(r->h, &gen);
			route_view_release(&old);
			atomic_fetch_add_explicit(&r->swaps, 1, memory_order_relaxed);
		}
		unsigned n = router_dir_target_count(v->dir), nd = 0;

		if (v->down)
			for (unsigned i = 0; i < n; i++)
				nd += v->down[i];
		if (nd != v->ndown)
			abort();
		atomic_fetch_add_explicit(&r->checks, 1, memory_order_relaxed);
	}
	route_view_release(&v);
	return NULL;
}

static void test_holder_concurrent_readers(void **state)
{
	struct route_view_holder *h = route_view_holder_new();
	struct router_dir *a = parse(seed_a), *b = parse(seed_b);
	atomic_bool stop = false;
	struct reader r[2] = { { h, &stop, 0, 0 }, { h, &stop, 0, 0 } };
	pthread_t t[2];
	uint8_t down[8];

	(void)state;
	route_view_holder_publish(h, route_view_new(router_dir_ref(a), 0, NULL));
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
	/* On a busy machine the readers may not be scheduled before 20000
	 * publishes are done: wait until both run, and keep publishing (for
	 * at most ~10 s) until each has swapped views a few times. */
	while (!atomic_load(&r[0].checks) || !atomic_load(&r[1].checks))
		sched_yield();
	for (unsigned i = 0; i < 20000 || ((atomic_load(&r[0].swaps) < 3 || atomic_load(&r[1].swaps) < 3) &&
	                                   i < 20000000); i++) {
		struct router_dir *d = i & 1 ? a : b;
		unsigned n = router_dir_target_count(d);

		for (unsigned k = 0; k < n; k++)
			down[k] = (i + k) % 3 == 0;
		route_view_holder_publish(h, route_view_new(router_dir_ref(d), 0, down));
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_true(r[0].checks > 0 && r[1].checks > 0);
	assert_true(r[0].swaps > 0 && r[1].swaps > 0);
	route_view_holder_free(&h);
	router_dir_release(&a);
	router_dir_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health_set_reports_changes),
		cmocka_unit_test(test_health_fill_follows_names_across_snapshots),
		cmocka_unit_test(test_health_snapshot_sweeps_unmentioned),
		cmocka_unit_test(test_health_grows),
		cmocka_unit_test(test_view_down_is_null_when_all_up),
		cmocka_unit_test(test_holder_generation_and_acquire),
		cmocka_unit_test(test_holder_concurrent_readers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
