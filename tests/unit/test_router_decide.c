/*
 * test_router_decide.c — request classification, the routing decision with
 * health views, reasons, and the snapshot holder under concurrent readers.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_router_util.h"

static const char seed[] =
	"replicas 2\ndc east\ndc west\n"
	"hub he1 10.0.0.1:80 dc=east\nhub he2 10.0.0.2:80 dc=east\nhub hw1 10.0.1.1:80 dc=west\n"
	"node e1 10.0.0.11:80 dc=east\nnode e2 10.0.0.12:80 dc=east\nnode e3 10.0.0.13:80 dc=east\n"
	"node w1 10.0.1.11:80 dc=west\nnode w2 10.0.1.12:80 dc=west\nnode wd 10.0.1.13:80 dc=west state=drain\n"
	"project 00000000-0000-0000-0000-0000000000aa w1 e2\n";

#define ID "2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"

static struct router_dir *load(void)
{
	char err[256];
	struct router_dir *d = router_dir_parse(seed, sizeof(seed) - 1, "d.conf", err, sizeof(err));

	if (!d)
		fail_msg("%s", err);
	return d;
}

/* Classifies from an exact-size heap copy: ASan flags any read past len. */
static bool classify(const char *s, uint8_t id[16])
{
	size_t len = strlen(s);
	char *p = malloc(len ? len : 1);
	bool r;

	memcpy(p, s, len);
	r = router_classify_path(p, len, id);
	free(p);
	return r;
}

static void test_classify(void **state)
{
	uint8_t id[16], ref[16];
	char txt[37];

	assert_int_equal(router_project_parse(ID, 36, ref), 0);
	assert_true(classify("/" ID, id));
	assert_memory_equal(id, ref, 16);
	assert_true(classify("/" ID "/", id));
	assert_true(classify("/" ID "/files/a.txt", id));
	assert_true(classify("/" ID "?x=1", id));
	assert_true(classify("/2F1C3D4E-5A6B-4C7D-8E9F-0A1B2C3D4E5F/raw", id));
	assert_memory_equal(id, ref, 16);
	router_project_format(id, txt);
	assert_string_equal(txt, ID);

	assert_false(classify("", id));
	assert_false(classify("/", id));
	assert_false(classify("/app", id));
	assert_false(classify(ID, id));                        /* no slash */
	assert_false(classify("/" ID "x", id));                /* longer segment */
	assert_false(classify("/2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5", id)); /* short */
	assert_false(classify("/2f1c3d4e_5a6b-4c7d-8e9f-0a1b2c3d4e5f", id));
	assert_false(classify("/2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5g", id));
	assert_false(classify("//" ID, id));
	assert_false(router_classify_path(NULL, 0, id));
	/* len bounds the read even when the buffer holds a valid id after it */
	assert_false(router_classify_path("/" ID, 20, id));
	assert_true(router_classify_path("/" ID "/zzz", 37, id));

	/* a 1 MB hostile path: classified on its first 38 bytes */
	{
		size_t n = 1 << 20;
		char *p = malloc(n);

		memset(p, 'a', n);
		p[0] = '/';
		assert_false(router_classify_path(p, n, id));
		memcpy(p, "/" ID "/", 38);
		assert_true(router_classify_path(p, n, id));
		free(p);
	}
}

/* Reference decoder: one character at a time, no tricks. */
static int ref_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Every byte value at every position of an id (upper and lower case base
 * text) is accepted or rejected exactly as a plain per-character decoder
 * says, and router_decide's canonical text and id agree with it: the fast
 * decoder works on eight characters at once. */
static void test_classify_every_byte(void **state)
{
	static const char *const bases[] = { ID, "2F1C3D4E-5A6B-4C7D-8E9F-0A1B2C3D4E5F" };
	struct router_dir *d = load();
	unsigned checked = 0;

	for (unsigned b = 0; b < 2; b++)
		for (unsigned pos = 0; pos < 36; pos++)
			for (unsigned c = 0; c < 256; c++) {
				char path[40] = "/";
				uint8_t id[16], ref[16];
				struct router_decision dec;
				bool dash = pos == 8 || pos == 13 || pos == 18 || pos == 23, expect;

				memcpy(path + 1, bases[b], 36);
				path[1 + pos] = (char)c;
				expect = dash ? c == '-' : ref_hex((int)c) >= 0;
				assert_int_equal(router_classify_path(path, 37, id), expect);
				assert_int_equal(router_decide(d, 0, path, 37, NULL, &dec), 0);
				assert_int_equal(dec.is_project, expect);
				if (!expect) {
					assert_int_equal(dec.why, ROUTER_WHY_HUB);
					continue;
				}
				for (unsigned i = 0, k = 0; i < 36; i++) {
					int hi, lo;

					if (i == 8 || i == 13 || i == 18 || i == 23)
						continue;
					hi = ref_hex(path[1 + i]);
					lo = ref_hex(path[2 + i]);
					ref[k++] = (uint8_t)(hi << 4 | lo);
					i++;
				}
				assert_memory_equal(id, ref, 16);
				for (unsigned i = 0; i < 36; i++)
					assert_int_equal(dec.project[i], path[1 + i] >= 'A' && path[1 + i] <= 'F' ?
					                 path[1 + i] + 32 : path[1 + i]);
				assert_int_equal(dec.project[36], '\0');
				checked++;
			}
	printf("classify: %u single-byte variants accepted, each decoded as the reference does\n", checked);
	assert_int_equal(checked, 2 * (32 * 22 + 4));
	router_dir_release(&d);
}

static void test_why_str(void **state)
{
	assert_string_equal(router_why_str(ROUTER_WHY_PRIMARY), "primary");
	assert_string_equal(router_why_str(ROUTER_WHY_REPLICA), "replica");
	assert_string_equal(router_why_str(ROUTER_WHY_REMOTE_DC), "remote-dc");
	assert_string_equal(router_why_str(ROUTER_WHY_PINNED), "pinned");
	assert_string_equal(router_why_str(ROUTER_WHY_HUB), "hub");
	assert_string_equal(router_why_str(ROUTER_WHY_NO_NODE), "no-node");
	assert_string_equal(router_why_str(ROUTER_WHY_NO_HUB), "no-hub");
}

#define T(name) ((unsigned)router_dir_target_find(d, name))

/* Walks the failover order of one project as nodes go down. */
static void test_decide_failover(void **state)
{
	struct router_dir *d = load();
	uint8_t down[16] = { 0 }, id[16];
	unsigned list[ROUTER_PREF_MAX];
	struct router_decision dec;
	const char *path = "/" ID "/x";
	size_t len = strlen(path);

	assert_int_equal(router_project_parse(ID, 36, id), 0);
	assert_int_equal(router_preference(d, id, 0, list, ROUTER_PREF_MAX, NULL), 4);

	assert_int_equal(router_decide(d, 0, path, len, NULL, &dec), 0);
	assert_int_equal(dec.why, ROUTER_WHY_PRIMARY);
	assert_int_equal(dec.target, (int)list[0]);
	assert_string_equal(dec.backend, "nodes_east");
	assert_string_equal(dec.server, router_dir_target(d, list[0])->name);
	assert_true(dec.is_project);
	assert_string_equal(dec.project, ID);

	down[list[0]] = 1;
	router_decide(d, 0, path, len, down, &dec);
	assert_int_equal(dec.why, ROUTER_WHY_REPLICA);
	assert_int_equal(dec.target, (int)list[1]);

	down[list[1]] = 1;
	router_decide(d, 0, path, len, down, &dec);
	assert_int_equal(dec.why, ROUTER_WHY_REMOTE_DC);
	assert_string_equal(dec.backend, "nodes_west");
	assert_int_equal(dec.target, (int)(router_dir_target(d, list[2])->drain ? list[3] : list[2]));

	down[list[2]] = down[list[3]] = 1;
	router_decide(d, 0, path, len, down, &dec);
	assert_int_equal(dec.why, ROUTER_WHY_NO_NODE);
	assert_int_equal(dec.target, -1);
	assert_null(dec.server);
	assert_string_equal(dec.backend, "hubs_east");

	down[T("he1")] = 1;
	router_decide(d, 0, path, len, down, &dec);
	assert_string_equal(dec.backend, "hubs_east");          /* he2 still up */
	down[T("he2")] = 1;
	router_decide(d, 0, path, len, down, &dec);
	assert_int_equal(dec.why, ROUTER_WHY_NO_NODE);
	assert_string_equal(dec.backend, "hubs_west");          /* next dc's hubs */
	down[T("hw1")] = 1;
	router_decide(d, 0, path, len, down, &dec);
	assert_int_equal(dec.why, ROUTER_WHY_NO_HUB);
	assert_string_equal(dec.backend, "hubs_east");
	router_dir_release(&d);
}

static void test_decide_hubs(void **state)
{
	struct router_dir *d = load();
	uint8_t down[16] = { 0 };
	struct router_decision dec;

	assert_int_equal(router_decide(d, 0, "/", 1, NULL, &dec), 0);
	assert_int_equal(dec.why, ROUTER_WHY_HUB);
	assert_false(dec.is_project);
	assert_null(dec.server);
	assert_string_equal(dec.backend, "hubs_east");
	router_decide(d, 1, "/app/login", 10, NULL, &dec);
	assert_string_equal(dec.backend, "hubs_west");
	down[T("hw1")] = 1;
	router_decide(d, 1, "/app/login", 10, down, &dec);
	assert_int_equal(dec.why, ROUTER_WHY_HUB);
	assert_string_equal(dec.backend, "hubs_east");
	assert_int_equal(router_decide(d, 7, "/", 1, NULL, &dec), -1);
	router_dir_release(&d);
}

/* Drained nodes are never chosen; a pin is followed local-first. */
static void test_decide_drain_and_pin(void **state)
{
	struct router_dir *d = load();
	uint8_t down[16] = { 0 };
	struct router_decision dec;
	uint64_t s = 99;
	unsigned drained_first = 0;
	const char *pin = "/00000000-0000-0000-0000-0000000000AA/x";

	for (unsigned i = 0; i < 2000; i++) {
		uint8_t id[16];
		unsigned list[ROUTER_PREF_MAX];

		tr_id(&s, id);
		router_preference(d, id, 1, list, ROUTER_PREF_MAX, NULL);
		router_decide_project(d, 1, id, NULL, &dec);
		assert_int_not_equal(dec.target, T("wd"));
		if (list[0] == T("wd")) {
			drained_first++;
			assert_int_equal(dec.why, ROUTER_WHY_REPLICA);
		}
	}
	assert_true(drained_first > 0);

	router_decide(d, 0, pin, strlen(pin), NULL, &dec);
	assert_int_equal(dec.why, ROUTER_WHY_PINNED);
	assert_string_equal(dec.server, "e2");
	assert_string_equal(dec.project, "00000000-0000-0000-0000-0000000000aa");
	router_decide(d, 1, pin, strlen(pin), NULL, &dec);
	assert_string_equal(dec.server, "w1");
	down[T("w1")] = 1;
	router_decide(d, 1, pin, strlen(pin), down, &dec);
	assert_int_equal(dec.why, ROUTER_WHY_PINNED);
	assert_string_equal(dec.server, "e2");
	assert_string_equal(dec.backend, "nodes_east");
	down[T("e2")] = 1;
	router_decide(d, 1, pin, strlen(pin), down, &dec);
	assert_int_equal(dec.why, ROUTER_WHY_NO_NODE);
	assert_string_equal(dec.backend, "hubs_west");
	router_dir_release(&d);
}

/* Holder: readers acquire while a writer publishes new snapshots. */
struct reader_arg {
	struct router_holder *h;
	atomic_bool *stop;
	unsigned long decisions;
};

static void *reader(void *p)
{
	struct reader_arg *a = p;
	struct router_decision dec;

	while (!atomic_load(a->stop)) {
		struct router_dir *d = router_holder_acquire(a->h);

		if (router_decide(d, 0, "/" ID, 37, NULL, &dec) == 0 && dec.why == ROUTER_WHY_PRIMARY)
			a->decisions++;
		router_dir_release(&d);
	}
	return NULL;
}

static void test_holder(void **state)
{
	struct router_holder *h = router_holder_new();
	atomic_bool stop = false;
	struct reader_arg args[2] = { { h, &stop, 0 }, { h, &stop, 0 } };
	pthread_t th[2];
	struct router_dir *d;

	assert_null(router_holder_acquire(h));
	assert_int_equal(router_holder_generation(h), 0);
	router_holder_publish(h, load());
	assert_int_equal(router_holder_generation(h), 1);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, reader, &args[i]), 0);
	for (int i = 0; i < 200; i++)
		router_holder_publish(h, load());
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	printf("holder: 200 publishes during %lu + %lu decisions\n", args[0].decisions, args[1].decisions);
	assert_int_equal(router_holder_generation(h), 201);
	assert_true(args[0].decisions > 0 && args[1].decisions > 0);
	/* a reader's ref outlives a publish */
	d = router_holder_acquire(h);
	router_holder_publish(h, load());
	assert_int_equal(router_dir_replicas(d), 2);
	router_dir_release(&d);
	assert_null(d);
	router_holder_free(&h);
	assert_null(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_classify_every_byte),
		cmocka_unit_test(test_why_str),
		cmocka_unit_test(test_decide_failover),
		cmocka_unit_test(test_decide_hubs),
		cmocka_unit_test(test_decide_drain_and_pin),
		cmocka_unit_test(test_holder),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
