/*
 * router-bench — placement and seed-directory microbenchmarks.
 *
 *   build/tools/router-bench [--quick] [--weight W] [--scale S] [--rounds N]
 *   build/tools/router-bench --what build|lookup|decide|decide-pin|load
 *                            [--nodes N] [--pins N] [--iters N]
 *   build/tools/router-bench --pools [--rounds N]
 *   build/tools/router-bench --what decide-hub|decide-hub-api|decide-pool|decide-project
 *                            [--routes N] [--iters N]
 *
 * Without --what: for 100, 1k and 10k nodes (one dc, replicas 2) the table
 * build (parse + rings), ns per placement lookup (router_preference), ns
 * per full decision (router_decide on a "/<uuid>" path: classify, parse,
 * format, pin probe, ring, health), memory per node; then the load time of
 * two 100k-line directories read from a file (10k nodes in 2 dcs + 90k
 * pins, and 1k nodes + 99k pins) and memory per pin. Times are the thread's
 * CPU time (the machine is shared), each figure the median of --rounds.
 *
 * --pools: path classes. The cost of router_decide on a directory with no
 * route line (today's directories) and with 100 (10 pools; 60 one-segment
 * prefixes /dlN and 40 under /api, /api/rN, so /api requests walk two
 * segments), for hub paths that match no route (4096 paths, first
 * segments of 1-12 letters, a quarter of them under /api/), paths under a
 * route, and project paths.
 *
 * --what runs one thing once, quietly (load prints its time): for
 * instruction counts under valgrind --tool=callgrind
 * --toggle-collect=FUNCTION (bench-router.sh).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "router.h"

#define NIDS 65536
#define MAX_ROUNDS 31

static unsigned weight = 10;
static unsigned routes = 100;           /* --routes N: route lines of the --pools directory */
static int scale = -1;                  /* --scale S: a `ring-scale S` line; -1: none (default 8) */
static uint8_t ids[NIDS][16];

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);  /* CPU time: robust on a shared machine */
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Seed text: `nodes` nodes split over `dcs` dcs, plus `pins` pins whose ids
 * are ids[0..pins) when pins <= NIDS (so decide-pin hits them), random
 * beyond. */
static char *make_seed(unsigned nodes, unsigned dcs, unsigned pins, size_t *len)
{
	size_t room = 256 + (size_t)nodes * 64 + (size_t)pins * 80, n = 0;
	char *b = malloc(room);
	uint64_t s = 77;

	if (!b)
		abort();
	n += (size_t)sprintf(b + n, "replicas 2\n");
	if (scale >= 0)
		n += (size_t)sprintf(b + n, "ring-scale %d\n", scale);
	for (unsigned d = 0; d < dcs; d++)
		n += (size_t)sprintf(b + n, "dc dc%u\nhub hub%u 127.0.0.1:%u dc=dc%u\n", d, d, 5000 + d, d);
	for (unsigned i = 0; i < nodes; i++)
		n += (size_t)sprintf(b + n, "node node%05u 10.%u.%u.%u:6000 dc=dc%u weight=%u\n", i, i >> 16,
		                     (i >> 8) & 255, i & 255, i % dcs, weight);
	for (unsigned i = 0; i < pins; i++) {
		uint64_t a = rnd(&s), c = rnd(&s);

		if (i < NIDS) {
			memcpy(&a, ids[i], 8);
			memcpy(&c, ids[i] + 8, 8);
			a = __builtin_bswap64(a);
			c = __builtin_bswap64(c);
		}
		n += (size_t)sprintf(b + n, "project %08x-%04x-%04x-%04x-%012llx node%05u node%05u\n",
		                     (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xffff,
		                     (unsigned)(c >> 48), (unsigned long long)(c & 0xffffffffffffull),
		                     (unsigned)(a % nodes), (unsigned)((a + 1) % nodes));
	}
	*len = n;
	return b;
}

static struct router_dir *parse_timed(unsigned nodes, unsigned dcs, unsigned pins, double *secs)
{
	size_t len;
	char *txt = make_seed(nodes, dcs, pins, &len), err[256];
	double t0 = now();
	struct router_dir *d = router_dir_parse(txt, len, "bench.conf", err, sizeof(err));

	*secs = now() - t0;
	free(txt);
	if (!d) {
		fprintf(stderr, "router-bench: %s\n", err);
		exit(1);
	}
	return d;
}

/* ns per router_preference over iters ids. */
static double run_lookup(const struct router_dir *d, unsigned long iters)
{
	unsigned list[ROUTER_PREF_MAX], sink = 0;
	double t0 = now();

	for (unsigned long i = 0; i < iters; i++) {
		router_preference(d, ids[i & (NIDS - 1)], 0, list, ROUTER_PREF_MAX, NULL);
		sink += list[0];
	}
	if (sink == 0xdeadbeef)
		printf(" ");
	return (now() - t0) * 1e9 / (double)iters;
}

/* ns per router_decide on "/<uuid>/x" paths (texts made beforehand, the
 * same NIDS ids as the lookups). */
static double run_decide(const struct router_dir *d, unsigned long iters)
{
	static char paths[NIDS][40];
	struct router_decision out;
	unsigned sink = 0;
	double t0;

	for (unsigned i = 0; i < NIDS; i++) {
		paths[i][0] = '/';
		router_project_format(ids[i], paths[i] + 1);
		memcpy(paths[i] + 37, "/x", 3);
	}
	t0 = now();
	for (unsigned long i = 0; i < iters; i++) {
		router_decide(d, 0, paths[i & (NIDS - 1)], 39, NULL, &out);
		sink += (unsigned)out.target;
	}
	if (sink == 0xdeadbeef)
		printf(" ");
	return (now() - t0) * 1e9 / (double)iters;
}

/* Writes a seed to a temp file; returns its malloc'd path. */
static char *seed_file(unsigned nodes, unsigned dcs, unsigned pins, size_t *len)
{
	char *txt = make_seed(nodes, dcs, pins, len), *path = strdup("/tmp/router-bench.XXXXXX");
	int fd = mkstemp(path);

	if (fd == -1 || write(fd, txt, *len) != (ssize_t)*len) {
		perror("router-bench: temp file");
		exit(1);
	}
	close(fd);
	free(txt);
	return path;
}

static struct router_dir *load_timed(const char *path, double *secs)
{
	char err[256];
	double t0 = now();
	struct router_dir *d = router_dir_load(path, err, sizeof(err));

	*secs = now() - t0;
	if (!d) {
		fprintf(stderr, "router-bench: %s\n", err);
		exit(1);
	}
	return d;
}

/* One 100k-line directory: median load time over rounds, memory per pin. */
static void bench_load(unsigned nodes, unsigned dcs, unsigned pins, unsigned rounds)
{
	double v[MAX_ROUNDS], secs, dec[MAX_ROUNDS];
	size_t len, mem;
	char *path = seed_file(nodes, dcs, pins, &len);
	struct router_dir *d = NULL, *bare;

	for (unsigned r = 0; r < rounds; r++) {
		router_dir_release(&d);
		d = load_timed(path, &v[r]);
		dec[r] = run_decide(d, 1000000);
	}
	unlink(path);
	free(path);
	mem = router_dir_memory(d);
	bare = parse_timed(nodes, dcs, 0, &secs);
	printf("| %u nodes in %u dc%s + %u pins | %u | %zu | %.0f | %.1f | %.0f | %.1f |\n", nodes, dcs,
	       dcs > 1 ? "s" : "", pins, nodes + pins, len, median(v, rounds) * 1e3, (double)mem / 1048576.0,
	       (double)(mem - router_dir_memory(bare)) / pins, median(dec, rounds));
	router_dir_release(&d);
	router_dir_release(&bare);
}

/* ---- path classes (--pools) */

#define NPATHS 4096

static char hub_paths[NPATHS][64], api_paths[NPATHS][64], pool_paths[NPATHS][64], project_paths[NPATHS][40];

/* 1 dc, 1 hub, 100 nodes, and unless nroutes is 0 (today's directories,
 * which a build without pools parses too) 10 pools of 2 servers and
 * nroutes routes: the first 60 % /dlN, the others /api/rN. */
static struct router_dir *pools_dir(unsigned nroutes)
{
	size_t room = 65536 + (size_t)nroutes * 64, n = 0;
	char *b = malloc(room), err[256];
	struct router_dir *d;

	if (!b)
		abort();
	n += (size_t)sprintf(b + n, "dc a\nhub hub 127.0.0.1:5000 dc=a\n");
	for (unsigned i = 0; i < 100; i++)
		n += (size_t)sprintf(b + n, "node node%03u 10.0.0.%u:6000 dc=a\n", i, i + 1);
	for (unsigned p = 0; nroutes && p < 10; p++)
		n += (size_t)sprintf(b + n, "pool p%u\nserver s%ua 10.0.1.%u:80 dc=a pool=p%u\n"
		                     "server s%ub 10.0.2.%u:80 dc=a pool=p%u\n", p, p, p + 1, p, p, p + 1, p);
	for (unsigned r = 0; r < nroutes; r++)
		n += (size_t)sprintf(b + n, r < nroutes * 6 / 10 ? "route /dl%u p%u\n" : "route /api/r%u p%u\n", r, r % 10);
	d = router_dir_parse(b, n, "pools.conf", err, sizeof(err));
	free(b);
	if (!d) {
		fprintf(stderr, "router-bench: %s\n", err);
		exit(1);
	}
	return d;
}

/* The path sets: hub paths (no route matches any of them), paths under
 * the 100 routes, project paths (the ids of the lookups). */
static void make_paths(void)
{
	uint64_t s = 99;

	for (unsigned i = 0; i < NPATHS; i++) {
		uint64_t r = rnd(&s);
		unsigned len = 1 + (unsigned)(r % 12), o = 0;
		char seg[16];

		for (unsigned k = 0; k < len; k++)
			seg[k] = (char)('g' + (r >> (8 + 4 * k)) % 20);      /* g..z: never a route, never hex */
		seg[len] = '\0';
		if (i % 4 == 0)
			o = (unsigned)snprintf(hub_paths[i], sizeof(hub_paths[i]), "/api/%s/x", seg);
		else
			o = (unsigned)snprintf(hub_paths[i], sizeof(hub_paths[i]), "/%s/page%u.html", seg, i);
		(void)o;
		/* the worst hub path: its first segment is a route's, its second none */
		snprintf(api_paths[i], sizeof(api_paths[i]), "/api/%s/x", seg);
		project_paths[i][0] = '/';
		router_project_format(ids[i], project_paths[i] + 1);
		memcpy(project_paths[i] + 37, "/x", 3);
	}
}

/* Paths under the routes of pools_dir(nroutes): 60 % /dlN/..., 40 %
 * /api/rN/... */
static void fill_pool_paths(unsigned nroutes)
{
	unsigned one = nroutes * 6 / 10;

	for (unsigned i = 0; i < NPATHS; i++) {
		if (i % 5 < 3)
			snprintf(pool_paths[i], sizeof(pool_paths[i]), "/dl%u/file%u.xo", i % one, i);
		else
			snprintf(pool_paths[i], sizeof(pool_paths[i]), "/api/r%u/item/%u", one + i % (nroutes - one), i);
	}
}

/* ns per router_decide over the paths of one set (its lengths known). */
static double run_paths(const struct router_dir *d, char (*paths)[64], char (*proj)[40], unsigned long iters,
                        const char *want_why)
{
	static size_t len[NPATHS];
	struct router_decision out;
	unsigned sink = 0;
	double t0;

	for (unsigned i = 0; i < NPATHS; i++) {
		const char *p = paths ? paths[i] : proj[i];

		len[i] = strlen(p);
		router_decide(d, 0, p, len[i], NULL, &out);
		if (strcmp(router_why_str(out.why), want_why)) {
			fprintf(stderr, "router-bench: %s: %s, not %s\n", p, router_why_str(out.why), want_why);
			exit(1);
		}
	}
	t0 = now();
	for (unsigned long i = 0; i < iters; i++) {
		unsigned k = i & (NPATHS - 1);

		router_decide(d, 0, paths ? paths[k] : proj[k], len[k], NULL, &out);
		sink += (unsigned)out.why;
	}
	if (sink == 0xdeadbeef)
		printf(" ");
	return (now() - t0) * 1e9 / (double)iters;
}

static void bench_pools(unsigned rounds)
{
	static const unsigned counts[] = { 0, 100, 1000 };
	struct router_dir *d[3];
	double v[4][3][MAX_ROUNDS];
	unsigned long iters = 2000000ul;

	make_paths();
	for (unsigned k = 0; k < 3; k++)
		d[k] = pools_dir(counts[k]);
	/* interleaved, so that the machine's load moves every column alike */
	for (unsigned r = 0; r < rounds; r++)
		for (unsigned k = 0; k < 3; k++) {
			v[0][k][r] = run_paths(d[k], hub_paths, NULL, iters, "hub");
			v[1][k][r] = run_paths(d[k], api_paths, NULL, iters, "hub");
			if (k)
				fill_pool_paths(counts[k]);
			v[2][k][r] = k ? run_paths(d[k], pool_paths, NULL, iters, "pool") : 0;
			v[3][k][r] = run_paths(d[k], NULL, project_paths, iters, "primary");
		}
	printf("router_decide, ns/op (thread CPU time, median of %u rounds of %lu decisions)\n\n", rounds, iters);
	printf("| request | no pool, no route (today's directories) | 100 routes, 10 pools | 1000 routes, 10 pools |\n"
	       "|---|---:|---:|---:|\n");
	printf("| hub path, no route (4096 paths: 3/4 /<1-12 letters>/page.html, 1/4 /api/<letters>/x) ");
	for (unsigned k = 0; k < 3; k++)
		printf("| %.1f ", median(v[0][k], rounds));
	printf("|\n| hub path, worst case: /api/<letters>/x (/api starts routes, two probes) ");
	for (unsigned k = 0; k < 3; k++)
		printf("| %.1f ", median(v[1][k], rounds));
	printf("|\n| path under a route (60 %% /dlN/..., 40 %% /api/rN/...) | - ");
	for (unsigned k = 1; k < 3; k++)
		printf("| %.1f ", median(v[2][k], rounds));
	printf("|\n| project path /<uuid>/x ");
	for (unsigned k = 0; k < 3; k++)
		printf("| %.1f ", median(v[3][k], rounds));
	printf("|\n");
	for (unsigned k = 0; k < 3; k++)
		router_dir_release(&d[k]);
}

/* --what: one run of one thing, for callgrind. */
static int run_one(const char *what, unsigned nodes, unsigned pins, unsigned long iters)
{
	double secs;
	struct router_dir *d;

	if (!strncmp(what, "decide-", 7) && strcmp(what, "decide-pin")) {
		const char *kind = what + 7;

		d = pools_dir(routes);
		make_paths();
		if (!strcmp(kind, "hub"))
			run_paths(d, hub_paths, NULL, iters, "hub");
		else if (!strcmp(kind, "hub-api"))
			run_paths(d, api_paths, NULL, iters, "hub");
		else if (!strcmp(kind, "pool") && routes >= 10) {
			fill_pool_paths(routes);
			run_paths(d, pool_paths, NULL, iters, "pool");
		}
		else if (!strcmp(kind, "project"))
			run_paths(d, NULL, project_paths, iters, "primary");
		else {
			fprintf(stderr, "router-bench: unknown --what '%s'\n", what);
			return 2;
		}
		router_dir_release(&d);
		return 0;
	}
	if (!strcmp(what, "load")) {
		size_t len;
		char *path = seed_file(nodes, 2, pins, &len);

		d = load_timed(path, &secs);
		unlink(path);
		free(path);
		printf("load %u nodes + %u pins: %.0f ms\n", nodes, pins, secs * 1e3);
	} else {
		d = parse_timed(nodes, 1, !strcmp(what, "decide-pin") ? pins : 0, &secs);
	}
	if (!strcmp(what, "lookup"))
		run_lookup(d, iters);
	else if (!strcmp(what, "decide") || !strcmp(what, "decide-pin"))
		run_decide(d, iters);
	else if (strcmp(what, "build") && strcmp(what, "load")) {
		fprintf(stderr, "router-bench: unknown --what '%s'\n", what);
		return 2;
	}
	router_dir_release(&d);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: router-bench [--quick] [--weight W] [--scale S] [--rounds N]\n"
	        "       router-bench --what build|lookup|decide|decide-pin|load "
	        "[--nodes N] [--pins N] [--iters N]\n"
	        "       router-bench --pools [--rounds N]\n"
	        "       router-bench --what decide-hub|decide-hub-api|decide-pool|decide-project [--routes N] [--iters N]\n"
	        "Placement microbenchmark: table build time, lookup and decision cost\n"
	        "(thread CPU time, median of N rounds) for 100, 1k and 10k nodes, memory\n"
	        "per node and pin, and the load time of 100k-line seed directories.\n"
	        "--scale S adds a `ring-scale S` line (default: none, i.e. scale 8).\n"
	        "--what runs one operation alone (for callgrind instruction counts).\n"
	        "--pools: router_decide with no route and with 100 routes (path classes);\n"
	        "--what decide-hub|decide-pool|decide-project --routes N: one of its sets alone.\n");
}

int main(int argc, char **argv)
{
	static const unsigned sizes[] = { 100, 1000, 10000 };
	unsigned rounds = 5, nodes = 1000, pins = 0;
	unsigned long iters = 0;
	const char *what = NULL;
	bool quick = false, pools = false;
	uint64_t s = 1;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = true;
		else if (!strcmp(argv[i], "--weight") && i + 1 < argc)
			weight = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--scale") && i + 1 < argc)
			scale = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--what") && i + 1 < argc)
			what = argv[++i];
		else if (!strcmp(argv[i], "--nodes") && i + 1 < argc)
			nodes = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--pins") && i + 1 < argc)
			pins = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--pools"))
			pools = true;
		else if (!strcmp(argv[i], "--routes") && i + 1 < argc)
			routes = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
			iters = strtoul(argv[++i], NULL, 10);
		else {
			bool help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");

			usage(help ? stdout : stderr);
			return help ? 0 : 2;
		}
	}
	if (rounds < 1 || rounds > MAX_ROUNDS || weight < 1 || nodes < 1) {
		fprintf(stderr, "router-bench: --rounds 1-%d, --weight and --nodes >= 1\n", MAX_ROUNDS);
		return 2;
	}
	for (unsigned i = 0; i < NIDS; i++)
		for (int k = 0; k < 16; k += 8) {
			uint64_t v = rnd(&s);

			memcpy(ids[i] + k, &v, 8);
		}
	if (what)
		return run_one(what, nodes, pins, iters ? iters : 100000);
	if (pools) {
		bench_pools(rounds);
		return 0;
	}
	if (quick)
		rounds = 1;
	iters = quick ? 500000ul : 2000000ul;

	printf("node weight %u, ring-scale %d, %u round%s, medians of thread CPU time\n\n", weight,
	       scale >= 0 ? scale : ROUTER_RING_SCALE_DEFAULT, rounds, rounds > 1 ? "s" : "");
	printf("| nodes | table build (ms) | lookup (ns/op) | decide (ns/op) | memory/node (KB) |\n");
	printf("|---:|---:|---:|---:|---:|\n");
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		double b[MAX_ROUNDS], l[MAX_ROUNDS], dc[MAX_ROUNDS];
		struct router_dir *d = NULL;

		for (unsigned r = 0; r < rounds; r++) {
			router_dir_release(&d);
			d = parse_timed(sizes[k], 1, 0, &b[r]);
			l[r] = run_lookup(d, iters);
			dc[r] = run_decide(d, iters);
		}
		printf("| %u | %.1f | %.1f | %.1f | %.2f |\n", sizes[k], median(b, rounds) * 1e3,
		       median(l, rounds), median(dc, rounds), (double)router_dir_memory(d) / sizes[k] / 1024.0);
		router_dir_release(&d);
	}

	printf("\n| 100k-line directory | lines | bytes | load (ms) | memory (MB) | bytes/pin | decide, pinned id (ns/op) |\n");
	printf("|---|---:|---:|---:|---:|---:|---:|\n");
	bench_load(10000, 2, 90000, rounds);
	bench_load(1000, 1, 99000, rounds);
	return 0;
}
