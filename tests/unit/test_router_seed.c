/*
 * test_router_seed.c — the seed directory text form: what parses, what each
 * error says (exact "file:line:" prefix), check settings, load from a file,
 * and that a failed load leaves the published snapshot in place.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>

#include "test_router_util.h"

static const char good[] =
	"# a comment line\n"
	"replicas 3   \r\n"
	"check-defaults check=http check-path=/health interval=1s timeout=500ms rise=2 fall=3 jitter=10%\n"
	"dc us-east\t# trailing comment\n"
	"dc eu-west\n"
	"\n   \t\r\n"
	"hub  hub1     127.0.0.1:5001  dc=us-east  weight=10\r\n"
	"hub  hub2     [::1]:5002      dc=eu-west  state=drain check=https check-sni=hub.example.com\n"
	"node compute1 127.0.0.1:6001  dc=us-east  weight=20 state=drain\n"
	"node compute2 node-2.example.com:6002 dc=us-east check=tcp check-status=200 interval=250\n"
	"node compute3 10.1.2.3:6003   dc=eu-west  check-method=HEAD check-host=app check-status=200-299\n"
	"project 2F1C3D4E-5A6B-4C7D-8E9F-0A1B2C3D4E5F  compute2 compute3\n"
	"node late     10.1.2.4:6004   dc=eu-west\n";

static void test_parse_good(void **state)
{
	char err[256] = "x";
	struct router_dir *d = router_dir_parse(good, sizeof(good) - 1, "good.conf", err, sizeof(err));
	const struct router_target *t;

	if (!d)
		fail_msg("%s", err);
	assert_int_equal(router_dir_replicas(d), 3);
	assert_int_equal(router_dir_dc_count(d), 2);
	assert_string_equal(router_dir_dc_name(d, 1), "eu-west");
	assert_int_equal(router_dir_dc_find(d, "eu-west"), 1);
	assert_int_equal(router_dir_dc_find(d, "mars"), -1);
	assert_null(router_dir_dc_name(d, 2));
	assert_string_equal(router_dir_hub_backend(d, 0), "hubs_us-east");
	assert_int_equal(router_dir_node_shards(d), 1);
	assert_string_equal(router_dir_node_backend(d, 1, 0), "nodes_eu-west");
	assert_null(router_dir_node_backend(d, 1, 1));
	assert_true(router_dir_is_node_backend(d, "nodes_eu-west"));
	assert_false(router_dir_is_node_backend(d, "nodes_eu-west_0"));
	assert_false(router_dir_is_node_backend(d, "nodes_eu"));
	assert_int_equal(router_dir_target_count(d), 6);
	assert_int_equal(router_dir_pin_count(d), 1);
	assert_int_equal(router_dir_hub_count(d, 0), 1);
	assert_int_equal(router_dir_node_count(d, 1), 2);
	assert_int_equal(router_dir_target_find(d, "nope"), -1);
	assert_true(router_dir_memory(d) > 0);

	t = router_dir_target(d, (unsigned)router_dir_target_find(d, "hub1"));
	assert_int_equal(t->kind, ROUTER_HUB);
	assert_string_equal(t->host, "127.0.0.1");
	assert_int_equal(t->port, 5001);
	assert_string_equal(t->addr, "127.0.0.1:5001");
	assert_int_equal(t->weight, 10);
	assert_false(t->drain);
	assert_int_equal(t->check.kind, ROUTER_CHECK_HTTP);         /* from check-defaults */
	assert_string_equal(t->check.path, "/health");
	assert_int_equal(t->check.interval_ms, 1000);
	assert_int_equal(t->check.timeout_ms, 500);
	assert_int_equal(t->check.rise, 2);
	assert_int_equal(t->check.fall, 3);
	assert_int_equal(t->check.jitter_pct, 10);
	assert_null(t->check.host);

	t = router_dir_target(d, (unsigned)router_dir_target_find(d, "hub2"));
	assert_string_equal(t->host, "::1");
	assert_string_equal(t->addr, "[::1]:5002");
	assert_true(t->drain);
	assert_int_equal(t->dc, 1);
	assert_int_equal(t->check.kind, ROUTER_CHECK_HTTPS);
	assert_string_equal(t->check.sni, "hub.example.com");

	t = router_dir_target(d, (unsigned)router_dir_target_find(d, "compute1"));
	assert_int_equal(t->kind, ROUTER_NODE);
	assert_int_equal(t->weight, 20);
	assert_true(t->drain);

	t = router_dir_target(d, (unsigned)router_dir_target_find(d, "compute2"));
	assert_string_equal(t->host, "node-2.example.com");
	assert_int_equal(t->check.kind, ROUTER_CHECK_TCP);
	assert_int_equal(t->check.status_min, 200);
	assert_int_equal(t->check.status_max, 200);
	assert_int_equal(t->check.interval_ms, 250);
	assert_int_equal(t->check.rise, 2);                          /* default kept */

	t = router_dir_target(d, (unsigned)router_dir_target_find(d, "compute3"));
	assert_string_equal(t->check.method, "HEAD");
	assert_string_equal(t->check.host, "app");
	assert_int_equal(t->check.status_max, 299);

	/* a pin may name a node declared after it */
	{
		uint8_t id[16];
		unsigned l[ROUTER_PREF_MAX];
		bool pinned;

		assert_int_equal(router_project_parse("2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f", 36, id), 0);
		assert_int_equal(router_preference(d, id, 1, l, ROUTER_PREF_MAX, &pinned), 2);
		assert_true(pinned);
		assert_string_equal(router_dir_target(d, l[0])->name, "compute3");
	}
	router_dir_release(&d);
	assert_null(d);
}

/* Each error kind: the exact "file:line: " prefix and the gist. */
static const struct {
	const char *text, *want;
} bad[] = {
	{ "dc a\nfrobnicate x\n", "bad.conf:2: unknown keyword 'frobnicate'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=b\n", "bad.conf:2: unknown datacenter 'b'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a\n\nhub n 1.2.3.5:80 dc=a\n", "bad.conf:4: duplicate name 'n' (first on line 2)" },
	{ "dc a\ndc a\n", "bad.conf:2: duplicate dc 'a'" },
	{ "dc a\nnode bad/name 1.2.3.4:80 dc=a\n", "bad.conf:2: bad name 'bad/name'" },
	{ "dc a\nnode aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 1.2.3.4:80 dc=a\n", "bad.conf:2: bad name" },
	{ "dc bad!\n", "bad.conf:1: bad name 'bad!'" },
	{ "dc a\nnode n 1.2.3:80 dc=a\n", "bad.conf:2: bad host '1.2.3'" },
	{ "dc a\nnode n 999.1.1.1:80 dc=a\n", "bad.conf:2: bad host '999.1.1.1'" },
	{ "dc a\nnode n 1.2.3.4 dc=a\n", "bad.conf:2: bad address '1.2.3.4'" },
	{ "dc a\nnode n 1.2.3.4:0 dc=a\n", "bad.conf:2: bad port '0'" },
	{ "dc a\nnode n 1.2.3.4:65536 dc=a\n", "bad.conf:2: bad port '65536'" },
	{ "dc a\nnode n 1.2.3.4:8x dc=a\n", "bad.conf:2: bad port '8x'" },
	{ "dc a\nnode n ::1:80 dc=a\n", "bad.conf:2: bad address '::1:80' (write IPv6 as [addr]:port)" },
	{ "dc a\nnode n [::g]:80 dc=a\n", "bad.conf:2: bad IPv6 address '::g'" },
	{ "dc a\nnode n -bad.host:80 dc=a\n", "bad.conf:2: bad host '-bad.host'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a weight=0\n", "bad.conf:2: bad weight '0'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a weight=-5\n", "bad.conf:2: bad weight '-5'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a weight=257\n", "bad.conf:2: bad weight '257'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a state=off\n", "bad.conf:2: bad state 'off'" },
	{ "dc a\nnode n 1.2.3.4:80\n", "bad.conf:2: node 'n' has no dc=" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a colour=red\n", "bad.conf:2: unknown key 'colour'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a weight=1 weight=2\n", "bad.conf:2: 'weight' given twice" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a check=ping\n", "bad.conf:2: bad check 'ping'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a interval=5x\n", "bad.conf:2: bad interval '5x'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a check-status=399-200\n", "bad.conf:2: bad check-status '399-200'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a check-path=health\n", "bad.conf:2: bad check-path 'health'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a rise=0\n", "bad.conf:2: bad rise '0'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a jitter=200%\n", "bad.conf:2: bad jitter '200%'" },
	{ "dc a\ncheck-defaults check=tcp bogus=1\n", "bad.conf:2: unknown key 'bogus' on check-defaults line" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a\nproject 2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5 n\n",
	  "bad.conf:3: bad project id '2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5'" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a\nproject 2f1c3d4e+5a6b-4c7d-8e9f-0a1b2c3d4e5f n\n", "bad.conf:3: bad project id" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a\nproject 2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f m\n",
	  "bad.conf:3: pin to unknown node 'm'" },
	{ "dc a\nhub h 1.2.3.4:80 dc=a\nproject 2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f h\n",
	  "bad.conf:3: pin to 'h', which is a hub" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a\nproject 2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f n\n"
	  "project 2F1C3D4E-5a6b-4c7d-8e9f-0a1b2c3d4e5f n\n",
	  "bad.conf:4: project 2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f already pinned on line 3" },
	{ "dc a\nnode n 1.2.3.4:80 dc=a\nproject 2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f n n\n",
	  "bad.conf:3: node 'n' named twice in pin" },
	{ "dc a\nproject 2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f\n", "bad.conf:2: usage: project" },
	{ "replicas 0\ndc a\n", "bad.conf:1: bad replicas '0'" },
	{ "replicas 2\nreplicas 3\ndc a\n", "bad.conf:2: replicas already set on line 1" },
	{ "# nothing\n", "bad.conf:1: no datacenter declared" },
	{ "dc a\nnode n\0 1.2.3.4:80 dc=a\n", "bad.conf:2: NUL byte in line" },
};

static void test_parse_errors(void **state)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[256] = "";
		size_t len = strlen(bad[i].text);
		struct router_dir *d;

		if (strstr(bad[i].want, "NUL"))
			len += 1 + strlen(bad[i].text + len + 1);
		d = router_dir_parse(bad[i].text, len, "bad.conf", err, sizeof(err));
		if (d || strncmp(err, bad[i].want, strlen(bad[i].want)))
			fail_msg("case %zu: want '%s', got '%s'", i, bad[i].want, d ? "(parsed)" : err);
		assert_null(d);
	}
	printf("parse errors: %zu error kinds rejected with the exact file:line prefix\n",
	       sizeof(bad) / sizeof(bad[0]));
}

/* router_dir_load: a real file; a missing one; a failed reload keeps the
 * published snapshot. */
static void test_load_and_keep_old(void **state)
{
	char path[] = "/tmp/test_router_seed.XXXXXX", err[512];
	int fd = mkstemp(path);
	struct router_holder *h = router_holder_new();
	struct router_dir *d, *cur;

	assert_true(fd != -1);
	assert_int_equal(write(fd, good, sizeof(good) - 1), (ssize_t)(sizeof(good) - 1));
	close(fd);
	d = router_dir_load(path, err, sizeof(err));
	assert_non_null(d);
	router_holder_publish(h, d);

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd != -1);
	assert_int_equal(write(fd, "dc a\nbogus\n", 11), 11);
	close(fd);
	d = router_dir_load(path, err, sizeof(err));
	assert_null(d);
	assert_true(strstr(err, ":2: unknown keyword 'bogus'") != NULL);
	assert_int_equal(strncmp(err, path, strlen(path)), 0);
	cur = router_holder_acquire(h);
	assert_int_equal(router_dir_replicas(cur), 3);           /* still the good one */
	assert_int_equal(router_holder_generation(h), 1);
	router_dir_release(&cur);
	unlink(path);

	assert_null(router_dir_load("/nonexistent/seed.conf", err, sizeof(err)));
	assert_string_equal(err, "/nonexistent/seed.conf: No such file or directory");
	router_holder_free(&h);
}

/* Every target name finds its index; 10k nodes. */
static void test_find_many(void **state)
{
	struct tr_buf b = { 0 };
	struct router_dir *d;

	tr_printf(&b, "dc a\n");
	for (unsigned i = 0; i < 10000; i++)
		tr_printf(&b, "node node%u 10.%u.%u.%u:80 dc=a weight=1\n", i, i >> 16, (i >> 8) & 255, i & 255);
	d = tr_parse(&b);
	free(b.p);
	assert_non_null(d);
	for (unsigned i = 0; i < 10000; i++) {
		char name[32];

		snprintf(name, sizeof(name), "node%u", i);
		assert_int_equal(router_dir_target_find(d, name), (int)i);
	}
	router_dir_release(&d);
}

/* node-shards N: a dc's nodes over N backends nodes_<dc>_<k>, by a hash of
 * the name alone (the same node lands in the same backend whatever else the
 * directory holds), every decision naming its node's own backend. */
static void test_node_shards(void **state)
{
	char text[16384], err[256] = "x";
	size_t n = 0;
	unsigned per[8] = { 0 };
	struct router_dir *d, *d2;

	n += (size_t)snprintf(text + n, sizeof(text) - n, "node-shards 8\ndc east\ndc west\n"
	                      "hub h1 127.0.0.1:5001 dc=east\n");
	for (unsigned i = 0; i < 200; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "node n%u 127.0.0.1:%u dc=%s\n", i, 6000 + i,
		                      i % 2 ? "west" : "east");
	d = router_dir_parse(text, n, "s.conf", err, sizeof(err));
	if (!d)
		fail_msg("%s", err);
	assert_int_equal(router_dir_node_shards(d), 8);
	assert_string_equal(router_dir_node_backend(d, 0, 0), "nodes_east_0");
	assert_string_equal(router_dir_node_backend(d, 1, 7), "nodes_west_7");
	assert_null(router_dir_node_backend(d, 1, 8));
	assert_true(router_dir_is_node_backend(d, "nodes_west_7"));
	assert_false(router_dir_is_node_backend(d, "nodes_west_8"));
	assert_false(router_dir_is_node_backend(d, "nodes_west_07"));
	assert_false(router_dir_is_node_backend(d, "nodes_west"));
	assert_false(router_dir_is_node_backend(d, "nodes_west_"));
	assert_false(router_dir_is_node_backend(d, "hubs_west_1"));
	for (unsigned i = 0; i < router_dir_target_count(d); i++) {
		const struct router_target *t = router_dir_target(d, i);

		if (t->kind != ROUTER_NODE) {
			assert_int_equal(t->shard, 0);
			continue;
		}
		assert_true(t->shard < 8);
		per[t->shard]++;
	}
	for (unsigned k = 0; k < 8; k++)          /* 200 names over 8: none empty, none a majority */
		assert_true(per[k] > 5 && per[k] < 60);
	/* every project decision names the backend of the node it chose */
	for (unsigned i = 0; i < 500; i++) {
		char path[64];
		struct router_decision dec;
		const struct router_target *t;

		snprintf(path, sizeof(path), "/%08x-0000-4000-8000-%012x/x", i * 2654435761u, i);
		assert_int_equal(router_decide(d, i % 2, path, strlen(path), NULL, &dec), 0);
		assert_true(dec.target >= 0);
		t = router_dir_target(d, (unsigned)dec.target);
		assert_string_equal(dec.backend, router_dir_node_backend(d, t->dc, t->shard));
	}
	/* the shard depends on the name only: n7 stays put when others go */
	n = (size_t)snprintf(text, sizeof(text), "node-shards 8\ndc east\ndc west\nnode n7 127.0.0.1:6007 dc=west\n");
	d2 = router_dir_parse(text, n, "s2.conf", err, sizeof(err));
	if (!d2)
		fail_msg("%s", err);
	assert_int_equal(router_dir_target(d2, 0)->shard,
	                 router_dir_target(d, (unsigned)router_dir_target_find(d, "n7"))->shard);
	router_dir_release(&d2);
	router_dir_release(&d);

	assert_null(router_dir_parse("node-shards 0\ndc a\n", 20, "z.conf", err, sizeof(err)));
	assert_string_equal(err, "z.conf:1: bad node-shards '0' (1-256)");
	assert_null(router_dir_parse("node-shards 2\nnode-shards 2\ndc a\n", 34, "z.conf", err, sizeof(err)));
	assert_string_equal(err, "z.conf:2: node-shards already set on line 1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_node_shards),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_load_and_keep_old),
		cmocka_unit_test(test_find_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
