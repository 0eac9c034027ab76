/*
 * test_router_pools.c — path classes: pools, servers and route prefixes of
 * the seed directory (parse, the ambiguities refused with file:line, longest
 * prefix, failover across datacenters, the decision's fields).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_router_util.h"

static const char seed[] =
	"dc east\ndc west\ndc south\n"
	"hub he1 10.0.0.1:80 dc=east\nhub hw1 10.0.1.1:80 dc=west\nhub hs1 10.0.2.1:80 dc=south\n"
	"node e1 10.0.0.11:80 dc=east\nnode w1 10.0.1.11:80 dc=west\n"
	"pool mirrors\npool files\npool api\n"
	"server me1 10.0.0.21:80 dc=east pool=mirrors\nserver me2 10.0.0.22:80 dc=east pool=mirrors weight=20\n"
	"server mw1 10.0.1.21:80 dc=west pool=mirrors\n"
	"server fs1 10.0.2.31:80 dc=south pool=files check=tcp\n"
	"server api-e1 10.0.0.1:80 dc=east pool=api\nserver api-w1 10.0.1.1:80 dc=west pool=api state=drain\n"
	"route /download mirrors\nroute /static files\nroute /api api\nroute /api/v1/blobs files\n";

#define ID "2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"

static struct router_dir *load(void)
{
	char err[256];
	struct router_dir *d = router_dir_parse(seed, sizeof(seed) - 1, "p.conf", err, sizeof(err));

	if (!d)
		fail_msg("%s", err);
	return d;
}

#define T(name) ((unsigned)router_dir_target_find(d, name))

static void test_parse(void **state)
{
	struct router_dir *d = load();
	const uint32_t *m;
	const char *prefix;
	int p;

	assert_int_equal(router_dir_pool_count(d), 3);
	assert_int_equal(router_dir_route_count(d), 4);
	p = router_dir_pool_find(d, "mirrors");
	assert_int_equal(p, 0);
	assert_string_equal(router_dir_pool_name(d, 0), "mirrors");
	assert_string_equal(router_dir_pool_backend(d, 0, 0), "pool_mirrors_east");
	assert_string_equal(router_dir_pool_backend(d, 1, 2), "pool_files_south");
	assert_null(router_dir_pool_backend(d, 3, 0));
	assert_int_equal(router_dir_pool_members(d, 0, 0, &m), 2);
	assert_int_equal(m[0], T("me1"));
	assert_int_equal(m[1], T("me2"));
	assert_int_equal(router_dir_pool_members(d, 0, 1, &m), 1);
	assert_int_equal(router_dir_pool_members(d, 0, 2, &m), 0);
	assert_int_equal(router_dir_target(d, T("me2"))->kind, ROUTER_SERVER);
	assert_int_equal(router_dir_target(d, T("me2"))->pool, 0);
	assert_int_equal(router_dir_target(d, T("me2"))->weight, 20);
	assert_int_equal(router_dir_target(d, T("he1"))->pool, -1);
	assert_int_equal(router_dir_target(d, T("fs1"))->check.kind, ROUTER_CHECK_TCP);
	assert_true(router_dir_target(d, T("api-w1"))->drain);
	/* servers are neither hubs nor ring nodes */
	assert_int_equal(router_dir_hub_count(d, 0), 1);
	assert_int_equal(router_dir_node_count(d, 0), 1);
	assert_int_equal(router_dir_route(d, 3, &prefix), 1);
	assert_string_equal(prefix, "/api/v1/blobs");
	assert_int_equal(router_dir_route(d, 4, &prefix), -1);
	router_dir_release(&d);
}

/* Expects the text to be refused with exactly want as the message. */
static void refused(const char *text, const char *want)
{
	char err[512];
	struct router_dir *d = router_dir_parse(text, strlen(text), "bad.conf", err, sizeof(err));

	if (d)
		fail_msg("accepted: %s", text);
	if (strcmp(err, want))
		fail_msg("got  '%s'\nwant '%s'", err, want);
}

#define BASE "dc a\nhub h 10.0.0.1:80 dc=a\npool p\nserver s 10.0.0.2:80 dc=a pool=p\n"

static void test_refused(void **state)
{
	/* ambiguous with project paths */
	refused(BASE "route / p\n", "bad.conf:5: route prefix '/' would take project paths (/<uuid>...); "
	        "name a first segment, e.g. /download");
	refused(BASE "route /abc p\n", "bad.conf:5: route prefix '/abc' could match a project path: its first "
	        "segment 'abc' starts like a project id (hex digits); choose another name");
	refused(BASE "route /deadbeef-01/x p\n", "bad.conf:5: route prefix '/deadbeef-01/x' could match a project "
	        "path: its first segment 'deadbeef-01' starts like a project id (hex digits); choose another name");
	refused(BASE "route /" ID " p\n", "bad.conf:5: route prefix '/" ID "' could match a project path: its first "
	        "segment '" ID "' starts like a project id (hex digits); choose another name");
	/* duplicates, unknown names, empty pools */
	refused(BASE "route /download p\n\nroute /download p\n",
	        "bad.conf:7: duplicate route '/download' (first on line 5)");
	refused(BASE "route /download q\n", "bad.conf:5: route '/download' to unknown pool 'q' (declare it: pool NAME)");
	refused(BASE "pool e\n", "bad.conf:5: pool 'e' has no server (add: server NAME ADDR dc=DC pool=e)");
	refused(BASE "server s2 10.0.0.3:80 dc=a pool=q\n",
	        "bad.conf:5: server 's2' in unknown pool 'q' (declare it: pool NAME)");
	refused(BASE "pool p\n", "bad.conf:5: duplicate pool 'p' (first on line 3)");
	refused(BASE "pool h\nserver s2 10.0.0.3:80 dc=a pool=h\n",
	        "bad.conf:5: pool 'h' has the name of a hub (line 2): names are unique across kinds");
	refused(BASE "node s 10.0.0.3:80 dc=a\n", "bad.conf:5: duplicate name 's' (first on line 4)");
	refused(BASE "server s2 10.0.0.3:80 dc=a\n", "bad.conf:5: server 's2' has no pool=");
	refused(BASE "hub h2 10.0.0.3:80 dc=a pool=p\n", "bad.conf:5: pool= only on server lines (a hub is not a "
	        "pool member; declare a server with its address)");
	refused(BASE "project " ID " s\n", "bad.conf:5: pin to 's', which is a server, not a node");
	/* prefix syntax */
	refused(BASE "route download p\n", "bad.conf:5: bad route prefix 'download' (must start with /)");
	refused(BASE "route /download/ p\n", "bad.conf:5: bad route prefix '/download/' (empty segment or trailing /)");
	refused(BASE "route /x//y p\n", "bad.conf:5: bad route prefix '/x//y' (empty segment or trailing /)");
	refused(BASE "route /x/../y p\n", "bad.conf:5: bad route prefix '/x/../y' (. or .. segment)");
	refused(BASE "route /x?y p\n", "bad.conf:5: bad route prefix '/x?y' (segments of [A-Za-z0-9_.~-] separated by /)");
	refused(BASE "route /s/1/2/3/4/5/6/7/8 p\n", "bad.conf:5: route prefix '/s/1/2/3/4/5/6/7/8' has more than 8 segments");
	refused(BASE "route /x p extra\n", "bad.conf:5: usage: route PREFIX POOL");
	refused(BASE "pool\n", "bad.conf:5: usage: pool NAME");
}

/* Decides path from an exact-size heap copy (ASan flags a read past len). */
static void decide(const struct router_dir *d, unsigned dc, const char *path, const uint8_t *down,
                   struct router_decision *dec)
{
	size_t len = strlen(path);
	char *p = malloc(len ? len : 1);

	memcpy(p, path, len);
	assert_int_equal(router_decide(d, dc, p, len, down, dec), 0);
	free(p);
}

static void expect(const struct router_dir *d, unsigned dc, const char *path, const uint8_t *down,
                   enum router_why why, const char *backend)
{
	struct router_decision dec;

	decide(d, dc, path, down, &dec);
	if (dec.why != why || strcmp(dec.backend, backend))
		fail_msg("%s: got %s %s, want %s %s", path, router_why_str(dec.why), dec.backend,
		         router_why_str(why), backend);
	assert_null(dec.server);
	assert_int_equal(dec.target, -1);
	assert_false(dec.is_project);
}

static void test_longest_prefix(void **state)
{
	struct router_dir *d = load();
	const char *m;

	expect(d, 0, "/download", NULL, ROUTER_WHY_POOL, "pool_mirrors_east");
	expect(d, 0, "/download/", NULL, ROUTER_WHY_POOL, "pool_mirrors_east");
	expect(d, 0, "/download/foo.xo", NULL, ROUTER_WHY_POOL, "pool_mirrors_east");
	expect(d, 0, "/download?x=1", NULL, ROUTER_WHY_POOL, "pool_mirrors_east");
	expect(d, 0, "/api/projects", NULL, ROUTER_WHY_POOL, "pool_api_east");
	expect(d, 0, "/api/v1", NULL, ROUTER_WHY_POOL, "pool_api_east");
	expect(d, 0, "/api/v1/blob", NULL, ROUTER_WHY_POOL, "pool_api_east");
	expect(d, 0, "/api/v1/blobs", NULL, ROUTER_WHY_POOL, "pool_files_south");
	expect(d, 0, "/api/v1/blobs/a/b?c", NULL, ROUTER_WHY_POOL, "pool_files_south");
	/* whole segments only, case matters, no decoding */
	expect(d, 0, "/downloads", NULL, ROUTER_WHY_HUB, "hubs_east");
	expect(d, 0, "/Download/x", NULL, ROUTER_WHY_HUB, "hubs_east");
	expect(d, 0, "/%64ownload/x", NULL, ROUTER_WHY_HUB, "hubs_east");
	expect(d, 0, "//download", NULL, ROUTER_WHY_HUB, "hubs_east");
	expect(d, 0, "/", NULL, ROUTER_WHY_HUB, "hubs_east");
	expect(d, 0, "/index.html", NULL, ROUTER_WHY_HUB, "hubs_east");
	assert_int_equal(router_route_match(d, "/api/v1/blobs/z", 15, &m), 1);
	assert_string_equal(m, "/api/v1/blobs");
	assert_int_equal(router_route_match(d, "/api/v1/blobs/z", 8, &m), 2);   /* reads only len bytes */
	assert_string_equal(m, "/api");
	assert_int_equal(router_route_match(d, "/nothing", 8, &m), -1);
	assert_null(m);
	router_dir_release(&d);
}

static void test_project_paths_untouched(void **state)
{
	struct router_dir *d = load();
	struct router_decision dec;

	decide(d, 0, "/" ID "/download/x", NULL, &dec);
	assert_true(dec.is_project);
	assert_int_equal(dec.pool, -1);
	assert_string_equal(dec.backend, "nodes_east");
	router_dir_release(&d);
}

static void test_failover(void **state)
{
	struct router_dir *d = load();
	uint8_t *down = calloc(router_dir_target_count(d), 1);
	struct router_decision dec;

	/* local members first, from every dc */
	expect(d, 1, "/download/a", down, ROUTER_WHY_POOL, "pool_mirrors_west");
	expect(d, 2, "/download/a", down, ROUTER_WHY_POOL, "pool_mirrors_east");     /* south: none, next is east */
	/* one local member down: the other one still serves */
	down[T("me1")] = 1;
	expect(d, 0, "/download/a", down, ROUTER_WHY_POOL, "pool_mirrors_east");
	/* both down: the next dc in file order with one up */
	down[T("me2")] = 1;
	expect(d, 0, "/download/a", down, ROUTER_WHY_POOL, "pool_mirrors_west");
	expect(d, 2, "/download/a", down, ROUTER_WHY_POOL, "pool_mirrors_west");     /* wraps: south, east, west */
	/* none up anywhere: the hubs rule, said so */
	down[T("mw1")] = 1;
	decide(d, 0, "/download/a", down, &dec);
	assert_int_equal(dec.why, ROUTER_WHY_NO_POOL);
	assert_string_equal(dec.backend, "hubs_east");
	assert_int_equal(dec.pool, 0);
	down[T("he1")] = 1;
	expect(d, 0, "/download/a", down, ROUTER_WHY_NO_POOL, "hubs_west");
	/* a drained member is never chosen */
	expect(d, 1, "/api/x", down, ROUTER_WHY_POOL, "pool_api_east");
	/* a pool whose only dc is another one */
	expect(d, 0, "/static/a.css", down, ROUTER_WHY_POOL, "pool_files_south");
	free(down);
	router_dir_release(&d);
}

static void test_first_segment(void **state)
{
	struct router_dir *d = load();
	struct router_decision dec;

	decide(d, 0, "/download/x", NULL, &dec);
	assert_true(dec.first_segment);
	decide(d, 0, "/other/x", NULL, &dec);
	assert_true(dec.first_segment);
	decide(d, 0, "/api/x", NULL, &dec);       /* /api/v1/blobs goes deeper */
	assert_false(dec.first_segment);
	decide(d, 0, "/" ID, NULL, &dec);
	assert_true(dec.first_segment);
	router_dir_release(&d);
}

/* 100 prefixes: every one reaches its pool, neighbours do not. */
static void test_many(void **state)
{
	struct tr_buf b = { 0 };
	struct router_dir *d;
	char path[64], want[64];

	tr_printf(&b, "dc a\nhub h 10.0.0.1:80 dc=a\n");
	for (unsigned i = 0; i < 10; i++)
		tr_printf(&b, "pool p%u\nserver s%u 10.0.1.%u:80 dc=a pool=p%u\n", i, i, i + 1, i);
	for (unsigned i = 0; i < 100; i++)
		tr_printf(&b, "route /r%u%s p%u\n", i / 2, i % 2 ? "/deep" : "", i % 10);
	d = tr_parse(&b);
	assert_non_null(d);
	for (unsigned i = 0; i < 100; i++) {
		snprintf(path, sizeof(path), "/r%u%s/file", i / 2, i % 2 ? "/deep" : "");
		snprintf(want, sizeof(want), "pool_p%u_a", i % 10);
		expect(d, 0, path, NULL, ROUTER_WHY_POOL, want);
	}
	expect(d, 0, "/r50/file", NULL, ROUTER_WHY_HUB, "hubs_a");
	router_dir_release(&d);
	free(b.p);
}

/* The longest names: a 70-byte backend (healthcheckd's and the agent's
 * buffers are sized for it). */
static void test_long_names(void **state)
{
	struct tr_buf b = { 0 };
	struct router_dir *d;
	struct router_decision dec;
	const char *p32 = "pppppppppppppppppppppppppppppppp", *d32 = "dddddddddddddddddddddddddddddddd";

	tr_printf(&b, "dc %s\nhub h 10.0.0.1:80 dc=%s\npool %s\nserver s 10.0.0.2:80 dc=%s pool=%s\n"
	          "route /x %s\n", d32, d32, p32, d32, p32, p32);
	d = tr_parse(&b);
	assert_non_null(d);
	decide(d, 0, "/x/y", NULL, &dec);
	assert_int_equal(dec.why, ROUTER_WHY_POOL);
	assert_int_equal(strlen(dec.backend), 5 + 32 + 1 + 32);
	router_dir_release(&d);
	free(b.p);
}

static void test_why_str(void **state)
{
	assert_string_equal(router_why_str(ROUTER_WHY_POOL), "pool");
	assert_string_equal(router_why_str(ROUTER_WHY_NO_POOL), "no-pool");
	assert_int_equal(ROUTER_WHY_COUNT, ROUTER_WHY_NO_POOL + 1);
}

/* A directory without pools decides exactly as before. */
static void test_no_pools(void **state)
{
	static const char plain[] = "dc a\nhub h 10.0.0.1:80 dc=a\n";
	char err[256];
	struct router_dir *d = router_dir_parse(plain, sizeof(plain) - 1, "x", err, sizeof(err));
	struct router_decision dec;

	assert_non_null(d);
	assert_int_equal(router_dir_pool_count(d), 0);
	decide(d, 0, "/download/x", NULL, &dec);
	assert_int_equal(dec.why, ROUTER_WHY_HUB);
	assert_int_equal(dec.pool, -1);
	assert_true(dec.first_segment);
	router_dir_release(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_longest_prefix),
		cmocka_unit_test(test_project_paths_untouched),
		cmocka_unit_test(test_failover),
		cmocka_unit_test(test_first_segment),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_long_names),
		cmocka_unit_test(test_why_str),
		cmocka_unit_test(test_no_pools),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
