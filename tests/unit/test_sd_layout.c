/*
 * test_sd_layout.c — the seed directory's etcd layout: etcd:// specs, the
 * records of one revision -> directory (every key/value rule, errors as
 * "KEY: message"), and text -> records -> the same directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "seeddir/seeddir.h"

/* ---- specs */

static void test_spec_good(void **state)
{
	struct sd_etcd_spec s;
	char err[256];

	assert_true(sd_is_etcd("etcd://x:1/p"));
	assert_false(sd_is_etcd("/etc/seed.conf"));
	assert_false(sd_is_etcd(NULL));
	if (sd_etcd_spec_parse("etcd://127.0.0.1:2379,[::1]:2380,etcd-1.example.com:12379/seedgate/prod",
	                       &s, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.endpoint[0], "http://127.0.0.1:2379");
	assert_string_equal(s.endpoint[1], "http://[::1]:2380");
	assert_string_equal(s.endpoint[2], "http://etcd-1.example.com:12379");
	assert_string_equal(s.prefix, "/seedgate/prod");
	assert_int_equal(sd_etcd_spec_parse("etcd://h:1/a", &s, err, sizeof(err)), 0);
	assert_string_equal(s.prefix, "/a");
}

static void test_spec_bad(void **state)
{
	static const struct { const char *spec, *msg; } bad[] = {
		{ "http://127.0.0.1:2379/p", "etcd spec: must start with etcd://" },
		{ "etcd://127.0.0.1:2379", "etcd spec: no key prefix (etcd://HOST:PORT/PREFIX)" },
		{ "etcd://127.0.0.1:2379/", "etcd spec: no key prefix (etcd://HOST:PORT/PREFIX; a directory never owns the whole key space)" },
		{ "etcd://127.0.0.1/p", "etcd spec: endpoint '127.0.0.1' has no :port" },
		{ "etcd://127.0.0.1:0/p", "etcd spec: bad port in '127.0.0.1:0' (1-65535)" },
		{ "etcd://127.0.0.1:65536/p", "etcd spec: bad port in '127.0.0.1:65536' (1-65535)" },
		{ "etcd://127.0.0.1:02379/p", "etcd spec: bad port in '127.0.0.1:02379' (1-65535)" },
		{ "etcd://127.0.0.1:23x/p", "etcd spec: bad port in '127.0.0.1:23x' (1-65535)" },
		{ "etcd://256.0.0.1:2379/p", "etcd spec: bad host in '256.0.0.1:2379' (IPv4, [IPv6] or host name)" },
		{ "etcd://1.2.3:2379/p", "etcd spec: bad host in '1.2.3:2379' (IPv4, [IPv6] or host name)" },
		{ "etcd://-x.com:2379/p", "etcd spec: bad host in '-x.com:2379' (IPv4, [IPv6] or host name)" },
		{ "etcd://a_b:2379/p", "etcd spec: bad host in 'a_b:2379' (IPv4, [IPv6] or host name)" },
		{ "etcd://::1:2379/p", "etcd spec: bad endpoint '::1:2379' (write IPv6 as [addr]:port)" },
		{ "etcd://[::1]/p", "etcd spec: bad endpoint '[::1]' (expected [v6]:port)" },
		{ "etcd://[zz::1]:1/p", "etcd spec: bad endpoint '[zz::1]:1' (expected [v6]:port)" },
		{ "etcd://a:1,,b:2/p", "etcd spec: empty endpoint in the list" },
		{ "etcd://a:1,a:1/p", "etcd spec: endpoint 'a:1' given twice" },
		{ "etcd:///p", "etcd spec: empty endpoint in the list" },
		{ "etcd://a:1/p/", "etcd spec: bad key prefix '/p/' (empty, '.' or '..' component, or trailing '/')" },
		{ "etcd://a:1/p//q", "etcd spec: bad key prefix '/p//q' (empty, '.' or '..' component, or trailing '/')" },
		{ "etcd://a:1/p/../q", "etcd spec: bad key prefix '/p/../q' (empty, '.' or '..' component, or trailing '/')" },
		{ "etcd://a:1/p q", "etcd spec: bad key prefix '/p q' (characters [A-Za-z0-9_.-] and '/')" },
		{ "etcd://a:1/p?x=1", "etcd spec: bad key prefix '/p?x=1' (characters [A-Za-z0-9_.-] and '/')" },
	};
	struct sd_etcd_spec s;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (sd_etcd_spec_parse(bad[i].spec, &s, err, sizeof(err)) != -1)
			fail_msg("accepted %s", bad[i].spec);
		if (strcmp(err, bad[i].msg))
			fail_msg("%s: got '%s', want '%s'", bad[i].spec, err, bad[i].msg);
	}
}

static void test_spec_limits(void **state)
{
	char spec[2048], err[256];
	struct sd_etcd_spec s;
	size_t o = (size_t)snprintf(spec, sizeof(spec), "etcd://");

	for (int i = 1; i <= SD_MAX_ENDPOINTS; i++)
		o += (size_t)snprintf(spec + o, sizeof(spec) - o, "%s127.0.0.%d:2379", i > 1 ? "," : "", i);
	snprintf(spec + o, sizeof(spec) - o, "/p");
	assert_int_equal(sd_etcd_spec_parse(spec, &s, err, sizeof(err)), 0);
	assert_int_equal(s.n, SD_MAX_ENDPOINTS);
	snprintf(spec + o, sizeof(spec) - o, ",127.0.0.99:2379/p");
	assert_int_equal(sd_etcd_spec_parse(spec, &s, err, sizeof(err)), -1);
	assert_string_equal(err, "etcd spec: too many endpoints (max 16)");

	o = (size_t)snprintf(spec, sizeof(spec), "etcd://a:1/");
	memset(spec + o, 'x', 255);
	spec[o + 255] = '\0';
	assert_int_equal(sd_etcd_spec_parse(spec, &s, err, sizeof(err)), -1);
	assert_string_equal(err, "etcd spec: key prefix longer than 255 bytes");
	spec[o + 254] = '\0';
	assert_int_equal(sd_etcd_spec_parse(spec, &s, err, sizeof(err)), 0);
}

/* ---- records -> directory */

#define R(k, v) { k, sizeof(k) - 1, v, sizeof(v) - 1 }

static const struct sd_record good[] = {
	R("/sg/current", "7"),
	R("/sg/g/7/project/2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "project 2F1C3D4E-5A6B-4C7D-8E9F-0A1B2C3D4E5F n2 n1"),
	R("/sg/g/7/node/n2", "node n2 127.0.0.1:6002 dc=b state=drain"),
	R("/sg/g/7/node/n1", "node n1 127.0.0.1:6001 dc=a weight=5 # comment"),
	R("/sg/g/7/dc/0010", "dc a"),
	R("/sg/g/7/dc/0002", "dc b"),
	R("/sg/g/7/hub/h1", "hub h1 127.0.0.1:5001 dc=a"),
	R("/sg/live/node/n3", "node n3 127.0.0.1:6003 dc=b"),
	R("/sg/live/hub/h2", "hub h2 127.0.0.1:5002 dc=b"),
	R("/sg/g/7/check-defaults", "check-defaults check=tcp"),
	R("/sg/g/7/replicas", "replicas 1"),
	R("/sg/g/6/node/old", "not even a line"),          /* other generation: ignored */
	R("/sgx/g/7/node/zz", "junk"),                     /* other prefix: ignored */
	R("/sg/other", "junk"),                            /* not ours */
};

static void test_build_good(void **state)
{
	char err[512] = "";
	struct router_dir *d = sd_build("/sg", "7", good, sizeof(good) / sizeof(good[0]), 0, err, sizeof(err));
	size_t len;
	char *text;

	if (!d)
		fail_msg("%s", err);
	assert_int_equal(router_dir_replicas(d), 1);
	/* dc order is the position in the key (0002 before 0010) */
	assert_string_equal(router_dir_dc_name(d, 0), "b");
	assert_string_equal(router_dir_dc_name(d, 1), "a");
	assert_int_equal(router_dir_target_count(d), 5);
	assert_true(router_dir_target_find(d, "n3") >= 0);
	assert_int_equal(router_dir_target_find(d, "old"), -1);
	assert_int_equal(router_dir_target(d, (unsigned)router_dir_target_find(d, "n1"))->check.kind, ROUTER_CHECK_TCP);
	assert_int_equal(router_dir_pin_count(d), 1);
	router_dir_release(&d);

	text = sd_text("/sg", "7", good, sizeof(good) / sizeof(good[0]), &len, err, sizeof(err));
	assert_non_null(text);
	assert_string_equal(text,
		"replicas 1\n"
		"check-defaults check=tcp\n"
		"dc b\n"
		"dc a\n"
		"hub h1 127.0.0.1:5001 dc=a\n"
		"node n1 127.0.0.1:6001 dc=a weight=5 # comment\n"
		"node n2 127.0.0.1:6002 dc=b state=drain\n"
		"hub h2 127.0.0.1:5002 dc=b\n"
		"node n3 127.0.0.1:6003 dc=b\n"
		"project 2F1C3D4E-5A6B-4C7D-8E9F-0A1B2C3D4E5F n2 n1\n");
	assert_int_equal(len, strlen(text));
	free(text);
}

/* Builds good[] with one record added; returns the error (static). */
static const char *build_err(struct sd_record extra, const char *gen)
{
	static char err[512];
	struct sd_record recs[32];
	size_t n = sizeof(good) / sizeof(good[0]);
	struct router_dir *d;

	memcpy(recs, good, sizeof(good));
	recs[n++] = extra;
	d = sd_build("/sg", gen, recs, n, ROUTER_LOAD_NO_RINGS, err, sizeof(err));
	if (d) {
		router_dir_release(&d);
		return "built";
	}
	return err;
}

static void test_build_key_rules(void **state)
{
	static const struct { struct sd_record r; const char *msg; } cases[] = {
		{ R("/sg/g/7/node/x", "node y 127.0.0.1:1 dc=a"),
		  "/sg/g/7/node/x: the node's name in the value differs from the key" },
		{ R("/sg/g/7/node/x", "hub x 127.0.0.1:1 dc=a"), "/sg/g/7/node/x: value is not a 'node' line" },
		{ R("/sg/g/7/hub/x", "node x 127.0.0.1:1 dc=a"), "/sg/g/7/hub/x: value is not a 'hub' line" },
		{ R("/sg/live/hub/x", "node x 127.0.0.1:1 dc=a"), "/sg/live/hub/x: value is not a 'hub' line" },
		{ R("/sg/live/node/x", "node y 127.0.0.1:1 dc=a"),
		  "/sg/live/node/x: the node's name in the value differs from the key" },
		{ R("/sg/live/nodes/x", "node x 127.0.0.1:1 dc=a"),
		  "/sg/live/nodes/x: unknown key under live/ (live/hub/NAME or live/node/NAME)" },
		{ R("/sg/g/7/dc/0003", "dc c\nnode evil 1.2.3.4:5 dc=c"),
		  "/sg/g/7/dc/0003: line break in value (a value is exactly one line)" },
		{ R("/sg/g/7/dc/0003", "dc c\r"), "/sg/g/7/dc/0003: line break in value (a value is exactly one line)" },
		{ { "/sg/g/7/dc/0003", 15, "dc c\0x", 6 }, "/sg/g/7/dc/0003: NUL byte in value (a value is one line)" },
		{ R("/sg/g/7/dc/003", "dc c"), "/sg/g/7/dc/003: dc position must be 4 digits, 0001-9999" },
		{ R("/sg/g/7/dc/0000", "dc c"), "/sg/g/7/dc/0000: dc position must be 4 digits, 0001-9999" },
		{ R("/sg/g/7/dc/00a1", "dc c"), "/sg/g/7/dc/00a1: dc position must be 4 digits, 0001-9999" },
		{ R("/sg/g/7/dc/0003", "dc d e"), "/sg/g/7/dc/0003: usage: dc NAME" },
		{ R("/sg/g/7/dc/0003", "dc a"), "/sg/g/7/dc/0010: duplicate dc 'a' (first at /sg/g/7/dc/0003)" },
		{ R("/sg/g/7/dc/0002", "dc b"), "/sg/g/7/dc/0002: key given twice" },
		{ R("/sg/g/7/project/2F1C3D4E-5A6B-4C7D-8E9F-0A1B2C3D4E50", "project 2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e50 n1"),
		  "/sg/g/7/project/2F1C3D4E-5A6B-4C7D-8E9F-0A1B2C3D4E50: key must be the lower-case project id of the value" },
		{ R("/sg/g/7/project/2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e50", "project 2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e51 n1"),
		  "/sg/g/7/project/2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e50: key must be the lower-case project id of the value" },
		{ R("/sg/g/7/project/x", "project x n1"),
		  "/sg/g/7/project/x: bad project id in the value (8-4-4-4-12 hex digits)" },
		{ R("/sg/g/7/project/2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e50", "project 2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e50 h1"),
		  "/sg/g/7/project/2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e50: pin to 'h1', which is a hub, not a node" },
		{ R("/sg/g/7/node/x", "node x 127.0.0.1:1 dc=nowhere"), "/sg/g/7/node/x: unknown datacenter 'nowhere'" },
		{ R("/sg/g/7/node/x", "node x 127.0.0.1:99999 dc=a"), "/sg/g/7/node/x: bad port '99999' (1-65535)" },
		{ R("/sg/live/hub/n1", "hub n1 127.0.0.1:1 dc=a"),
		  "/sg/live/hub/n1: duplicate name 'n1' (first at /sg/g/7/node/n1)" },
		{ R("/sg/g/7/replicas", "replicas 3"), "/sg/g/7/replicas: key given twice" },
		{ R("/sg/g/7/replica", "replicas 3"), "/sg/g/7/replica: unknown key in the generation" },
		{ R("/sg/g/7/node/\x01x", "node \x01x 1:1"), "/sg/g/7/node/\\x01x: bad name '\\x01x' ([A-Za-z0-9_.-]{1,32})" },
		{ R("/sg/g/7/node/x", ""), "/sg/g/7/node/x: value is not a 'node' line" },
		{ R("/sg/g/7/node/x", "# node x 1.2.3.4:5 dc=a"), "/sg/g/7/node/x: value is not a 'node' line" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = build_err(cases[i].r, "7");

		if (strcmp(got, cases[i].msg))
			fail_msg("case %zu: got '%s', want '%s'", i, got, cases[i].msg);
	}
}

static void test_build_gen_and_empty(void **state)
{
	static const struct sd_record only_replicas[] = { R("/sg/g/1/replicas", "replicas 2") };
	char err[512];

	assert_null(sd_build("/sg", NULL, good, 1, 0, err, sizeof(err)));
	assert_string_equal(err, "/sg/current: missing (no directory was imported)");
	assert_null(sd_build("/sg", "07", good, 1, 0, err, sizeof(err)));
	assert_string_equal(err, "/sg/current: bad generation '07' (a decimal number)");
	assert_null(sd_build("/sg", "1 2", good, 1, 0, err, sizeof(err)));
	assert_string_equal(err, "/sg/current: bad generation '1 2' (a decimal number)");
	assert_null(sd_build("/sg", "1", only_replicas, 1, 0, err, sizeof(err)));
	assert_string_equal(err, "/sg/g/1/: no datacenter declared (add a 'dc NAME' line)");
	assert_null(sd_build("/sg", "1", NULL, 0, 0, err, sizeof(err)));
	assert_string_equal(err, "/sg/g/1/: no datacenter declared (add a 'dc NAME' line)");
}

/* ---- text -> records -> directory */

static const char file[] =
	"# the example\n"
	"replicas 2\n"
	"ring-scale 6\n"
	"node-shards 3\n"
	"check-defaults check=http   check-path=/health\n"
	"dc us-east\n"
	"hub  hub1 127.0.0.1:5001 dc=us-east\t# first hub\n"
	"project 2F1C3D4E-5A6B-4C7D-8E9F-0A1B2C3D4E5F compute2\r\n"
	"dc eu-west\n"
	"\n"
	"node compute2 127.0.0.1:6002 dc=eu-west\n"
	"node compute1 127.0.0.1:6001 dc=us-east weight=20\n";

/* Splits text into records and checks them against want (key, value). */
static struct sd_record *split_as(const char *text, size_t len, const char *prefix, const char *gen,
                                  const char *const want[][2], size_t nwant, size_t *n)
{
	struct sd_record *recs;
	char err[512];

	if (sd_records_from_text(prefix, gen, text, len, "f.conf", &recs, n, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(*n, nwant);
	for (size_t i = 0; i < *n; i++) {
		assert_int_equal(recs[i].key_len, strlen(want[i][0]));
		assert_memory_equal(recs[i].key, want[i][0], recs[i].key_len);
		assert_int_equal(recs[i].value_len, strlen(want[i][1]));
		assert_memory_equal(recs[i].value, want[i][1], recs[i].value_len);
	}
	return recs;
}

static void test_records_from_text(void **state)
{
	struct sd_record *recs;
	size_t n, len;
	char err[512], *text;
	struct router_dir *d;
	static const char *const want[][2] = {
		{ "/p/q/g/12/replicas", "replicas 2" },
		{ "/p/q/g/12/ring-scale", "ring-scale 6" },   /* etcd could not hold it before */
		{ "/p/q/g/12/node-shards", "node-shards 3" },
		{ "/p/q/g/12/check-defaults", "check-defaults check=http check-path=/health" },
		{ "/p/q/g/12/dc/0001", "dc us-east" },
		{ "/p/q/g/12/hub/hub1", "hub hub1 127.0.0.1:5001 dc=us-east" },
		{ "/p/q/g/12/project/2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
		  "project 2F1C3D4E-5A6B-4C7D-8E9F-0A1B2C3D4E5F compute2" },
		{ "/p/q/g/12/dc/0002", "dc eu-west" },
		{ "/p/q/g/12/node/compute2", "node compute2 127.0.0.1:6002 dc=eu-west" },
		{ "/p/q/g/12/node/compute1", "node compute1 127.0.0.1:6001 dc=us-east weight=20" },
	};

	recs = split_as(file, sizeof(file) - 1, "/p/q", "12", want, sizeof(want) / sizeof(want[0]), &n);
	d = sd_build("/p/q", "12", recs, n, 0, err, sizeof(err));
	if (!d)
		fail_msg("%s", err);
	assert_string_equal(router_dir_dc_name(d, 0), "us-east");
	assert_string_equal(router_dir_dc_name(d, 1), "eu-west");
	assert_int_equal(router_dir_target_count(d), 3);
	assert_int_equal(router_dir_ring_scale(d), 6);
	assert_int_equal(router_dir_node_shards(d), 3);
	/* the settings, and only they, are keys without a name */
	assert_true(sd_setting("replicas") && sd_setting("ring-scale") && sd_setting("node-shards") &&
	            sd_setting("check-defaults"));
	assert_false(sd_setting("node") || sd_setting("replica") || sd_setting("") || sd_setting("ring-scales"));
	router_dir_release(&d);
	/* and back: the text of the records is what export prints; it splits
	 * into the same records */
	text = sd_text("/p/q", "12", recs, n, &len, err, sizeof(err));
	assert_non_null(text);
	{
		struct sd_record *recs2;
		size_t n2;

		assert_int_equal(sd_records_from_text("/p/q", "12", text, len, "x", &recs2, &n2, err, sizeof(err)), 0);
		assert_int_equal(n2, n);
		free(recs2);
	}
	free(text);
	free(recs);
}

static void test_records_from_text_bad(void **state)
{
	static const char bad[] = "dc a\nnode n1 127.0.0.1:1 dc=a\nnode n1 127.0.0.1:2 dc=a\n";
	struct sd_record *recs = (void *)1;
	size_t n = 9;
	char err[512];

	assert_int_equal(sd_records_from_text("/p", "1", bad, sizeof(bad) - 1, "bad.conf", &recs, &n, err, sizeof(err)), -1);
	assert_string_equal(err, "bad.conf:3: duplicate name 'n1' (first on line 2)");
	assert_null(recs);
	assert_int_equal(n, 0);
	assert_int_equal(sd_records_from_text("/p", "01", "dc a\n", 5, "f", &recs, &n, err, sizeof(err)), -1);
	assert_int_equal(sd_records_from_text("/p", "1", "dc a\n", 5, "f", &recs, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	free(recs);
}

/* ---- path classes: pools, servers and routes in etcd */

static const char pools_file[] =
	"dc a\ndc b\nhub h1 127.0.0.1:5001 dc=a\n"
	"pool mirrors\nserver m1 127.0.0.1:7001 dc=a pool=mirrors\nserver m2 127.0.0.1:7002 dc=b pool=mirrors\n"
	"route /download mirrors\nroute /api/v1/blobs mirrors\n";

static void test_pools(void **state)
{
	struct sd_record *recs, more[16];
	size_t n, len;
	char err[512], *text;
	struct router_dir *d;
	struct router_decision dec;
	static const char *const want[][2] = {
		{ "/p/g/3/dc/0001", "dc a" },
		{ "/p/g/3/dc/0002", "dc b" },
		{ "/p/g/3/hub/h1", "hub h1 127.0.0.1:5001 dc=a" },
		{ "/p/g/3/pool/mirrors", "pool mirrors" },
		{ "/p/g/3/server/m1", "server m1 127.0.0.1:7001 dc=a pool=mirrors" },
		{ "/p/g/3/server/m2", "server m2 127.0.0.1:7002 dc=b pool=mirrors" },
		{ "/p/g/3/route/download", "route /download mirrors" },
		{ "/p/g/3/route/api/v1/blobs", "route /api/v1/blobs mirrors" },
	};
	static const struct { struct sd_record r; const char *msg; } cases[] = {
		{ R("/p/g/3/route/downloads", "route /download mirrors"),
		  "/p/g/3/route/downloads: the route's prefix in the value differs from the key "
		  "(route/PREFIX-without-its-leading-slash)" },
		{ R("/p/g/3/route/dl", "pool dl"), "/p/g/3/route/dl: value is not a 'route' line" },
		{ R("/p/g/3/pool/x", "pool y"), "/p/g/3/pool/x: the pool's name in the value differs from the key" },
		{ R("/p/g/3/server/x", "server y 127.0.0.1:1 dc=a pool=mirrors"),
		  "/p/g/3/server/x: the server's name in the value differs from the key" },
		{ R("/p/g/3/route/abc", "route /abc mirrors"),
		  "/p/g/3/route/abc: route prefix '/abc' could match a project path: its first segment 'abc' starts "
		  "like a project id (hex digits); choose another name" },
		{ R("/p/g/3/route/files", "route /files nothere"),
		  "/p/g/3/route/files: route '/files' to unknown pool 'nothere' (declare it: pool NAME)" },
		{ R("/p/g/3/pool/empty", "pool empty"),
		  "/p/g/3/pool/empty: pool 'empty' has no server (add: server NAME ADDR dc=DC pool=empty)" },
	};

	recs = split_as(pools_file, sizeof(pools_file) - 1, "/p", "3", want, sizeof(want) / sizeof(want[0]), &n);
	d = sd_build("/p", "3", recs, n, 0, err, sizeof(err));
	if (!d)
		fail_msg("%s", err);
	assert_int_equal(router_dir_pool_count(d), 1);
	assert_int_equal(router_dir_route_count(d), 2);
	assert_int_equal(router_decide(d, 1, "/download/x.xo", 14, NULL, &dec), 0);
	assert_int_equal(dec.why, ROUTER_WHY_POOL);
	assert_string_equal(dec.backend, "pool_mirrors_b");
	router_dir_release(&d);
	/* export prints the same directory (records of a kind in key order) */
	text = sd_text("/p", "3", recs, n, &len, err, sizeof(err));
	assert_non_null(text);
	assert_string_equal(text, "dc a\ndc b\nhub h1 127.0.0.1:5001 dc=a\npool mirrors\n"
	                    "server m1 127.0.0.1:7001 dc=a pool=mirrors\nserver m2 127.0.0.1:7002 dc=b pool=mirrors\n"
	                    "route /api/v1/blobs mirrors\nroute /download mirrors\n");
	free(text);
	/* the same rules as the file, with the key that holds the record */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(more, recs, n * sizeof(*recs));
		more[n] = cases[i].r;
		d = sd_build("/p", "3", more, n + 1, ROUTER_LOAD_NO_RINGS, err, sizeof(err));
		if (d)
			fail_msg("case %zu built", i);
		if (strcmp(err, cases[i].msg))
			fail_msg("case %zu: got '%s', want '%s'", i, err, cases[i].msg);
	}
	free(recs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_good),
		cmocka_unit_test(test_spec_bad),
		cmocka_unit_test(test_spec_limits),
		cmocka_unit_test(test_build_good),
		cmocka_unit_test(test_build_key_rules),
		cmocka_unit_test(test_build_gen_and_empty),
		cmocka_unit_test(test_records_from_text),
		cmocka_unit_test(test_records_from_text_bad),
		cmocka_unit_test(test_pools),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
