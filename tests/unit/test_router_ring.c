/*
 * test_router_ring.c — the ring lookup against a reference walk.
 *
 * The ring's layout (buckets, cache lines, packed entries) is an
 * optimisation; placement is defined by the sorted list of points
 * (position, node name). Here the test computes every point itself from
 * the definition in router_place.c, sorts them, and checks that
 * router_place_dc gives, for every key tried, exactly the first R distinct
 * nodes met walking that sorted list clockwise: random keys, every point's
 * own position and its neighbours, bucket-like boundaries, both ends of the
 * ring (wrap-around), and the positions two nodes share (ties by name).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <xxhash.h>

#include "test_router_util.h"
#include "router_int.h"

struct ref_point {
	uint32_t pos;
	uint32_t rank;                 /* index of the node in name order */
};

struct ref_ring {
	struct ref_point *p;
	size_t n;
	unsigned nnodes;
	unsigned *target;              /* rank -> target index */
};

static int cmp_point(const void *a, const void *b)
{
	const struct ref_point *x = a, *y = b;

	if (x->pos != y->pos)
		return x->pos < y->pos ? -1 : 1;
	return (x->rank > y->rank) - (x->rank < y->rank);
}

static const struct router_dir *sort_dir;

static int cmp_target_name(const void *a, const void *b)
{
	return strcmp(router_dir_target(sort_dir, *(const unsigned *)a)->name,
	              router_dir_target(sort_dir, *(const unsigned *)b)->name);
}

/* Point j of the node whose name hashes to nh, straight from the definition
 * (XXH3 of the little-endian name hash then index, top 32 bits). */
static uint32_t ref_pos(uint64_t nh, uint64_t j)
{
	uint8_t buf[16];

	for (int k = 0; k < 8; k++) {
		buf[k] = (uint8_t)(nh >> (8 * k));
		buf[8 + k] = (uint8_t)(j >> (8 * k));
	}
	return (uint32_t)(XXH3_64bits(buf, 16) >> 32);
}

/* Every point of dc's nodes, sorted by (position, name). */
static void ref_build(const struct router_dir *d, unsigned dc, struct ref_ring *rr)
{
	size_t total = 0, n = 0;
	uint64_t wsum = 0;
	int scale = router_dir_ring_scale(d);

	rr->nnodes = 0;
	rr->target = malloc(router_dir_target_count(d) * sizeof(unsigned));
	assert_non_null(rr->target);
	for (unsigned t = 0; t < router_dir_target_count(d); t++) {
		const struct router_target *tg = router_dir_target(d, t);

		if (tg->kind == ROUTER_NODE && tg->dc == dc) {
			rr->target[rr->nnodes++] = t;
			wsum += tg->weight;
		}
	}
	total = wsum << scale;
	assert_int_equal(total, router_dir_ring_points(d, dc));
	sort_dir = d;
	qsort(rr->target, rr->nnodes, sizeof(unsigned), cmp_target_name);
	rr->p = malloc((total ? total : 1) * sizeof(*rr->p));
	assert_non_null(rr->p);
	for (unsigned k = 0; k < rr->nnodes; k++) {
		const struct router_target *tg = router_dir_target(d, rr->target[k]);
		uint64_t nh = XXH3_64bits(tg->name, strlen(tg->name));

		for (uint32_t j = 0; j < (uint32_t)tg->weight << scale; j++) {
			rr->p[n].pos = ref_pos(nh, j);
			rr->p[n++].rank = k;
		}
	}
	rr->n = n;
	qsort(rr->p, n, sizeof(*rr->p), cmp_point);
}

static void ref_free(struct ref_ring *rr)
{
	free(rr->p);
	free(rr->target);
}

/* The reference: first point at or after key (wrapping), then the first R
 * distinct nodes walking clockwise. Returns how many were written. */
static size_t ref_walk(const struct ref_ring *rr, uint32_t key, unsigned replicas, unsigned *out)
{
	size_t lo = 0, hi = rr->n, n = 0, want = replicas < rr->nnodes ? replicas : rr->nnodes;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rr->p[mid].pos < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo % rr->n; n < want; i = (i + 1) % rr->n) {
		unsigned t = rr->target[rr->p[i].rank];
		size_t s = 0;

		while (s < n && out[s] != t)
			s++;
		if (s == n)
			out[n++] = t;
	}
	return n;
}

/* Compares router_place_dc with the reference at key; counts the keys. */
static void check_key(const struct router_dir *d, unsigned dc, const struct ref_ring *rr, uint32_t key,
                      unsigned long *checked)
{
	unsigned got[ROUTER_MAX_REPLICAS], want[ROUTER_MAX_REPLICAS];
	size_t ng = router_place_dc(d, dc, (uint64_t)key << 32 | 0x5a5a5a5au, got, ROUTER_MAX_REPLICAS);
	size_t nw = ref_walk(rr, key, router_dir_replicas(d), want);

	if (ng != nw || memcmp(got, want, nw * sizeof(unsigned)) != 0) {
		fprintf(stderr, "key %08x: got %zu entries, reference %zu\n", key, ng, nw);
		for (size_t k = 0; k < nw || k < ng; k++)
			fprintf(stderr, "  %zu: got %u want %u\n", k, k < ng ? got[k] : ~0u, k < nw ? want[k] : ~0u);
		fail();
	}
	(*checked)++;
}

/* Prints how much the ring's lines spill (router_int.h), so the output
 * shows that the spilled paths were exercised. */
static void layout_stats(const struct router_dir *d, unsigned dc)
{
	const struct router_ring *r = &d->dcs[dc].ring;
	uint32_t spilled = 0, later = 0, maxskip = 0;

	for (size_t b = 0; b < (size_t)1 << r->bits; b++) {
		uint32_t skip = r->line[b * ROUTER_LINE_WORDS] & 0xffff;

		spilled += skip > 0;
		later += skip >= ROUTER_LINE_SLOTS;
		maxskip = skip > maxskip ? skip : maxskip;
	}
	printf("  %u buckets of mean %.1f points: %u start after a spill, %u in a later line, "
	       "longest spill %u, %u lines past the last bucket\n", 1u << r->bits,
	       (double)r->npoints / (1u << r->bits), spilled, later, maxskip, r->nlines - (1u << r->bits));
}

/* Keys for one dc: random, each point's position and its neighbours (all of
 * them, or every step-th), ties, bucket-like boundaries, both ends. */
static void check_dc(const struct router_dir *d, unsigned dc, size_t step, const char *what)
{
	struct ref_ring rr;
	unsigned long checked = 0, ties = 0;
	uint64_t s = 42;

	ref_build(d, dc, &rr);
	assert_true(rr.n > 0);
	for (unsigned i = 0; i < 100000; i++)
		check_key(d, dc, &rr, (uint32_t)tr_rand(&s), &checked);
	for (size_t i = 0; i < rr.n; i++) {
		uint32_t p = rr.p[i].pos;
		bool tie = (i > 0 && rr.p[i - 1].pos == p) || (i + 1 < rr.n && rr.p[i + 1].pos == p);

		if (tie)
			ties++;
		if (!tie && i % step)
			continue;
		check_key(d, dc, &rr, p, &checked);
		check_key(d, dc, &rr, p - 1, &checked);
		check_key(d, dc, &rr, p + 1, &checked);
	}
	for (unsigned sh = 4; sh < 32; sh++)
		for (uint32_t k = 0; k < 64; k++) {
			uint32_t edge = (uint32_t)((tr_rand(&s) >> 40) << sh);

			check_key(d, dc, &rr, edge, &checked);
			check_key(d, dc, &rr, edge - 1, &checked);
		}
	check_key(d, dc, &rr, 0, &checked);
	check_key(d, dc, &rr, 1, &checked);
	check_key(d, dc, &rr, UINT32_MAX, &checked);
	check_key(d, dc, &rr, UINT32_MAX - 1, &checked);
	check_key(d, dc, &rr, rr.p[rr.n - 1].pos + 1, &checked);   /* past the last point: wraps */
	check_key(d, dc, &rr, rr.p[0].pos, &checked);
	printf("ring %s, dc %u: %zu points (%lu on shared positions), %lu keys: identical to the reference\n",
	       what, dc, rr.n, ties, checked);
	layout_stats(d, dc);
	ref_free(&rr);
}

/* Seed text: replicas R, dcs a and b; nodes of dc a get weights from the
 * list (cycled), dc b gets nb nodes of weight 1. */
static const char *ring_extra = "";      /* a line ring_dir adds, e.g. "ring-scale 3\n" */

static struct router_dir *ring_dir(unsigned replicas, unsigned na, const unsigned *weights, unsigned nw,
                                   unsigned nb)
{
	struct tr_buf b = { 0 };
	struct router_dir *d;

	tr_printf(&b, "%sreplicas %u\ndc a\ndc b\nhub h 127.0.0.1:5001 dc=a\n", ring_extra, replicas);
	for (unsigned i = 0; i < na; i++)
		tr_printf(&b, "node a%u 10.0.%u.%u:80 dc=a weight=%u\n", i, i >> 8, i & 255, weights[i % nw]);
	for (unsigned i = 0; i < nb; i++)
		tr_printf(&b, "node b%u 10.1.%u.%u:80 dc=b weight=1\n", i, i >> 8, i & 255);
	d = tr_parse(&b);
	free(b.p);
	assert_non_null(d);
	return d;
}

/* Small rings: one node, fewer nodes than R, R = 2 (the fast path) and
 * R = 3 and 5 (the general walk); every point checked. */
static void test_ring_small(void **state)
{
	static const unsigned w10[] = { 10 }, mixed[] = { 1, 7, 30, 2, 10 };
	struct router_dir *d;

	d = ring_dir(2, 1, w10, 1, 1);
	check_dc(d, 0, 1, "1 node R=2");
	check_dc(d, 1, 1, "1 node of weight 1");
	router_dir_release(&d);
	d = ring_dir(3, 2, mixed, 5, 3);
	check_dc(d, 0, 1, "2 nodes R=3");
	check_dc(d, 1, 1, "3 nodes of weight 1, R=3");
	router_dir_release(&d);
	d = ring_dir(2, 50, mixed, 5, 7);
	check_dc(d, 0, 1, "50 mixed-weight nodes R=2");
	check_dc(d, 1, 1, "7 nodes of weight 1, R=2");
	router_dir_release(&d);
	d = ring_dir(5, 50, mixed, 5, 0);
	check_dc(d, 0, 1, "50 mixed-weight nodes R=5");
	router_dir_release(&d);
}

/* Bigger rings, where two nodes share positions (ties ordered by name) and
 * buckets spill into the next line: every tie and every 7th point. */
static void test_ring_big(void **state)
{
	static const unsigned w10[] = { 10 }, w1[] = { 1 };
	struct router_dir *d;

	d = ring_dir(2, 1000, w10, 1, 0);
	check_dc(d, 0, 7, "1000 nodes of weight 10, R=2");
	router_dir_release(&d);
	d = ring_dir(3, 3000, w1, 1, 0);
	check_dc(d, 0, 3, "3000 nodes of weight 1, R=3");
	router_dir_release(&d);
}

/* A ring too big for the build's scratch records is scattered in several
 * passes over its points, a group of partitions each: every ring above,
 * built again with the cap made tiny so that they take up to 31 passes
 * (as rings of 8 M points and more do in production), must be the same. */
static void test_ring_multipass(void **state)
{
	size_t saved = router_place_scratch_max;

	router_place_scratch_max = 25000;
	printf("multi-pass builds (at most %zu records at once):\n", router_place_scratch_max);
	test_ring_small(state);
	test_ring_big(state);
	router_place_scratch_max = saved;
}

/* The rings at ring-scale 0 (one point per unit of weight: nodes of weight
 * 1 own a single point, fewer points than buckets) and 3. */
static void test_ring_scales(void **state)
{
	static const char *const lines[] = { "ring-scale 0\n", "ring-scale 3\n" };

	for (size_t k = 0; k < 2; k++) {
		ring_extra = lines[k];
		printf("%s", lines[k]);
		test_ring_small(state);
		test_ring_big(state);
	}
	ring_extra = "";
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ring_small),
		cmocka_unit_test(test_ring_big),
		cmocka_unit_test(test_ring_multipass),
		cmocka_unit_test(test_ring_scales),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
