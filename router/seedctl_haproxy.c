/*
 * seedctl haproxy --seed FILE [--out FILE] [--server-opts "..."] [--cookie-key KEY]
 *
 * Generates the final HAProxy backends of the seed directory, the file
 * haproxy-conf/haproxy.cfg is loaded with (nothing patches it afterwards):
 * hubs_<dc> (round-robin, sticky cookie for websocket/long-poll sessions)
 * and nodes_<dc> (reached with use-server from the route agent's decision,
 * with the guards below), then pool_<pool>_<dc> for every pool (round-robin
 * and sticky like the hubs). Server names are the seed names, so the runtime
 * API and txn.route.server speak the same names. With --out the file is
 * replaced atomically (temp file in the same directory, fsync, rename): a
 * reload never reads half.
 *
 * Every backend accepts servers added at run time (healthcheckd follows
 * directory changes with "add server", see healthcheck/README.md), which
 * HAProxy 2.6 and 3.x allow only when:
 *   - the balance algorithm is dynamic: roundrobin (no static-rr, no
 *     map-based hash-type);
 *   - servers need no "cookie" keyword (2.6 refuses it on "add server"):
 *     the hub cookie is a dynamic one, a hash of the server's address and
 *     dynamic-cookie-key, which HAProxy computes for added servers too;
 *   - nothing comes from default-server (added servers do not inherit it):
 *     each line carries its options, the same ones healthcheckd gives
 *     (hc_backends.h).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hc_backends.h"
#include "seedctl.h"

#define DEFAULT_COOKIE_KEY "seedgate"

static void haproxy_usage(FILE *f)
{
	fprintf(f, "usage: seedctl haproxy --seed FILE [--out FILE] [--server-opts \"...\"] [--cookie-key KEY]\n"
	        "Writes the backends hubs_<dc>, nodes_<dc> and pool_<pool>_<dc> of every\n"
	        "datacenter, in file order (stdout, or FILE replaced atomically);\n"
	        "haproxy-conf/haproxy.cfg is loaded with exactly this output. The same seed\n"
	        "gives the same bytes.\n"
	        "\n"
	        "hubs_<dc>:  balance roundrobin; a sticky cookie SGHUB for websocket and\n"
	        "            long-poll sessions, computed from the hub's address and KEY\n"
	        "            (dynamic cookies: hubs added at run time get one too);\n"
	        "            server weight = seed weight, 0 when drained.\n"
	        "nodes_<dc>: use-server sends a request to the node the route agent named\n"
	        "            (txn.route.server, or sess.route.dest with SG_ROUTE_CACHE=1);\n"
	        "            every node has weight 0, so balancing never picks a node, and\n"
	        "            the one server it can pick is the backup %s, which\n"
	        "            leads to the hubs (haproxy.cfg's fe_node_fallback). Drained nodes\n"
	        "            keep their line (the route agent stops choosing them).\n"
	        "            With `node-shards N` (N > 1) in the directory, N backends\n"
	        "            nodes_<dc>_0 .. nodes_<dc>_<N-1> share a dc's nodes by a\n"
	        "            hash of their names, so that use-server, which HAProxy 2.6\n"
	        "            to 3.2 resolves by scanning a backend's servers, scans few.\n"
	        "pool_<pool>_<dc>: a pool's servers of that dc (path prefixes, seed `route`\n"
	        "            lines); balanced and sticky like the hubs (cookie SGPOOL_<pool>).\n"
	        "Servers: \"server NAME ADDR weight W init-addr last,libc,none " HC_SERVER_OPTS " [--server-opts]\".\n"
	        "Every backend accepts servers added at run time (healthcheckd's runtime API).\n"
	        "\n"
	        "  --server-opts \"...\"  appended to every hub, node and pool server line\n"
	        "  --cookie-key KEY      dynamic-cookie-key of the hub and pool backends (%s); the\n"
	        "                        same on every proxy, so a cookie works on all of them\n",
	        HC_FALLBACK_SERVER, DEFAULT_COOKIE_KEY);
}

/* One server line. init-addr lets HAProxy start while a host name does not
 * resolve yet (and is harmless for IP literals). */
static void server_line(FILE *f, const struct router_target *t, const char *opts)
{
	fprintf(f, "    server %s %s weight %u init-addr last,libc,none " HC_SERVER_OPTS, t->name, t->addr,
	        hc_server_weight(t));
	if (opts && *opts)
		fprintf(f, " %s", opts);
	fputc('\n', f);
}

/* The servers of one backend: targets of dc and kind (and pool, for pool
 * servers; node backend shard, for nodes), in file order. */
static void servers(FILE *f, const struct router_dir *d, unsigned dc, enum router_kind kind, int pool,
                    unsigned shard, const char *opts)
{
	for (unsigned i = 0; i < router_dir_target_count(d); i++) {
		const struct router_target *t = router_dir_target(d, i);

		if (t->dc == dc && t->kind == kind && t->pool == pool && t->shard == shard)
			server_line(f, t, opts);
	}
}

static void generate(FILE *f, const struct router_dir *d, const char *seed, const char *opts, const char *key)
{
	fprintf(f, "# generated by seedctl from %s \xe2\x80\x94 do not edit (seedctl haproxy --help)\n", seed);
	for (unsigned dc = 0; dc < router_dir_dc_count(d); dc++) {
		fprintf(f, "\nbackend %s\n    balance roundrobin\n"
		        "    # sticky hub for websocket/long-poll sessions; the value is a hash of the\n"
		        "    # hub's address and the key, so hubs added at run time get one too\n"
		        "    cookie SGHUB insert indirect nocache dynamic\n"
		        "    dynamic-cookie-key \"%s\"\n",
		        router_dir_hub_backend(d, dc), key);
		servers(f, d, dc, ROUTER_HUB, -1, 0, opts);
		for (unsigned k = 0; k < router_dir_node_shards(d); k++) {
			fprintf(f, "\nbackend %s\n    balance roundrobin    # only ever picks the backup: nodes have weight 0\n"
			        "    # the node the route agent named, or the hubs; never another node\n"
			        ".if streq(\"${SG_ROUTE_CACHE}\",1)\n"
			        "    use-server %%[var(sess.route.dest),field(2,/)] if TRUE\n"
			        ".elif streq(\"${SG_ROUTE_MAP}\",1)\n"
			        "    # a map hit (\"<backend>/<node>\") names the node; a miss asks the agent\n"
			        "    use-server %%[var(txn.sg_dest),field(2,/)] if { var(txn.sg_dest) -m found }\n"
			        "    use-server %%[var(txn.route.server)] if { var(txn.route.server) -m found }\n"
			        ".else\n"
			        "    use-server %%[var(txn.route.server)] if { var(txn.route.server) -m found }\n"
			        ".endif\n",
			        router_dir_node_backend(d, dc, k));
			servers(f, d, dc, ROUTER_NODE, -1, k, opts);
			fprintf(f, "    server %s \"unix@${SG_RUN_DIR}/node-fallback.sock\" backup\n", HC_FALLBACK_SERVER);
		}
		for (unsigned p = 0; p < router_dir_pool_count(d); p++) {
			fprintf(f, "\nbackend %s\n    balance roundrobin\n"
			        "    # pool %s (route prefixes of the seed directory); sticky like the hubs\n"
			        "    cookie SGPOOL_%s insert indirect nocache dynamic\n"
			        "    dynamic-cookie-key \"%s\"\n",
			        router_dir_pool_backend(d, p, dc), router_dir_pool_name(d, p), router_dir_pool_name(d, p), key);
			servers(f, d, dc, ROUTER_SERVER, (int)p, 0, opts);
		}
	}
}

/* Writes to out via out.tmp.<pid> + rename; returns 0 or -1 (message printed). */
static int write_atomic(const char *out, const struct router_dir *d, const char *seed, const char *opts,
                        const char *key)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", out, (long)getpid());
	f = fopen(tmp, "w");
	if (!f) {
		fprintf(stderr, "seedctl: %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	generate(f, d, seed, opts, key);
	if (fflush(f) == EOF || fsync(fileno(f)) == -1) {
		fprintf(stderr, "seedctl: %s: %s\n", tmp, strerror(errno));
		fclose(f);
		goto out_unlink;
	}
	if (fclose(f) == EOF) {
		fprintf(stderr, "seedctl: %s: %s\n", tmp, strerror(errno));
		goto out_unlink;
	}
	if (rename(tmp, out) == -1) {
		fprintf(stderr, "seedctl: rename to %s: %s\n", out, strerror(errno));
		goto out_unlink;
	}
	return 0;
out_unlink:
	unlink(tmp);
	return -1;
}

/* A target named like the fallback server would clash with it. */
static int check_names(const struct router_dir *d, const char *seed)
{
	for (unsigned i = 0; i < router_dir_target_count(d); i++) {
		if (strcmp(router_dir_target(d, i)->name, HC_FALLBACK_SERVER) == 0) {
			fprintf(stderr, "seedctl: %s: the name %s is reserved (the nodes backends' backup server)\n",
			        seed, HC_FALLBACK_SERVER);
			return -1;
		}
	}
	return 0;
}

/* Words that go into the file as they are: one line, and the key inside
 * double quotes (no quote, backslash or $ that HAProxy would interpret). */
static int check_words(const char *opts, const char *key)
{
	if (opts && strpbrk(opts, "\r\n")) {
		fprintf(stderr, "seedctl: --server-opts must be one line\n");
		return -1;
	}
	if (!*key || strlen(key) > 256 || key[strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                                                  "0123456789_.:/+=-")] != '\0') {
		fprintf(stderr, "seedctl: --cookie-key: 1 to 256 of A-Z a-z 0-9 _ . : / + = -\n");
		return -1;
	}
	return 0;
}

int seedctl_haproxy(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seed", required_argument, NULL, 's' }, { "out", required_argument, NULL, 'o' },
		{ "server-opts", required_argument, NULL, 'O' }, { "cookie-key", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
	const char *seed = NULL, *out = NULL, *server_opts = NULL, *key = DEFAULT_COOKIE_KEY;
	struct router_dir *d;
	int c, ret = 0;

	while ((c = getopt_long(argc, argv, "s:o:O:k:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': seed = optarg; break;
		case 'o': out = optarg; break;
		case 'O': server_opts = optarg; break;
		case 'k': key = optarg; break;
		case 'h': haproxy_usage(stdout); return 0;
		default: haproxy_usage(stderr); return 2;
		}
	}
	if (!seed || optind != argc) {
		haproxy_usage(stderr);
		return 2;
	}
	if (check_words(server_opts, key) == -1)
		return 2;
	d = seedctl_load(seed, ROUTER_LOAD_NO_RINGS);
	if (!d)
		return 1;
	if (check_names(d, seed) == -1) {
		ret = 1;
	} else if (out) {
		ret = write_atomic(out, d, seed, server_opts, key) == -1 ? 1 : 0;
	} else {
		generate(stdout, d, seed, server_opts, key);
		ret = fflush(stdout) == EOF ? 1 : 0;
	}
	router_dir_release(&d);
	return ret;
}
