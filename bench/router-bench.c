/*
 * router-bench — placement and seed-directory microbenchmarks.
 *
 *   build/tools/router-bench [--quick] [--weight W]
 *
 * For 100, 1k and 10k nodes (one dc, weight 10, replicas 2): table build
 * (parse + rings), ns per placement lookup (router_preference) and per full
 * decision (router_decide on a project path), memory per node. Then a
 * 100k-line directory (10k nodes + 90k pins, 2 dcs) loaded from a file:
 * load time, memory per pin. Prints a markdown table.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "router.h"

#define NIDS 65536

static unsigned weight = 10;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);  /* CPU time: robust on a shared machine */
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Seed text: `nodes` nodes split over `dcs` dcs, plus `pins` pins. */
static char *make_seed(unsigned nodes, unsigned dcs, unsigned pins, size_t *len)
{
	size_t room = 256 + (size_t)nodes * 64 + (size_t)pins * 80, n = 0;
	char *b = malloc(room);
	uint64_t s = 77;

	if (!b)
		abort();
	n += (size_t)sprintf(b + n, "replicas 2\n");
	for (unsigned d = 0; d < dcs; d++)
		n += (size_t)sprintf(b + n, "dc dc%u\nhub hub%u 127.0.0.1:%u dc=dc%u\n", d, d, 5000 + d, d);
	for (unsigned i = 0; i < nodes; i++)
		n += (size_t)sprintf(b + n, "node node%05u 10.%u.%u.%u:6000 dc=dc%u weight=%u\n", i, i >> 16,
		                     (i >> 8) & 255, i & 255, i % dcs, weight);
	for (unsigned i = 0; i < pins; i++) {
		uint64_t a = rnd(&s), c = rnd(&s);

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

int main(int argc, char **argv)
{
	static uint8_t ids[NIDS][16];
	static const unsigned sizes[] = { 100, 1000, 10000 };
	bool quick = false;
	unsigned long iters;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = true;
		else if (!strcmp(argv[i], "--weight") && i + 1 < argc)
			weight = (unsigned)atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: router-bench [--quick] [--weight W]\n");
			return 2;
		}
	}
	iters = quick ? 1000000ul : 10000000ul;
	printf("node weight %u\n\n", weight);
	uint64_t s = 1;
	size_t mem_nodes_only = 0;

	for (unsigned i = 0; i < NIDS; i++)
		for (int k = 0; k < 16; k += 8) {
			uint64_t v = rnd(&s);

			memcpy(ids[i] + k, &v, 8);
		}
	printf("| nodes | table build (ms) | lookup (ns/op) | decide (ns/op) | memory/node (KB) |\n");
	printf("|---:|---:|---:|---:|---:|\n");
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		double build, t0, look, dec;
		struct router_dir *d = parse_timed(sizes[k], 1, 0, &build);
		unsigned list[ROUTER_PREF_MAX], sink = 0;
		char path[40] = "/";
		struct router_decision out;

		t0 = now();
		for (unsigned long i = 0; i < iters; i++) {
			router_preference(d, ids[i & (NIDS - 1)], 0, list, ROUTER_PREF_MAX, NULL);
			sink += list[0];
		}
		look = (now() - t0) * 1e9 / (double)iters;
		t0 = now();
		for (unsigned long i = 0; i < iters; i++) {
			router_project_format(ids[i & (NIDS - 1)], path + 1);
			router_decide(d, 0, path, 37, NULL, &out);
			sink += (unsigned)out.target;
		}
		dec = (now() - t0) * 1e9 / (double)iters;
		printf("| %u | %.1f | %.1f | %.1f | %.1f |\n", sizes[k], build * 1e3, look, dec,
		       (double)router_dir_memory(d) / sizes[k] / 1024.0);
		if (sink == 0xdeadbeef)
			printf(" ");
		if (sizes[k] == 10000)
			mem_nodes_only = router_dir_memory(d);
		router_dir_release(&d);
	}

	/* 100k-line directory from a file: 10k nodes (2 dcs) + 90k pins. */
	{
		size_t len;
		char *txt = make_seed(10000, 2, 90000, &len), path[] = "/tmp/router-bench.XXXXXX", err[256];
		int fd = mkstemp(path);
		double t0, load;
		struct router_dir *d, *nodes_only;

		if (fd == -1 || write(fd, txt, len) != (ssize_t)len) {
			perror("router-bench: temp file");
			return 1;
		}
		close(fd);
		free(txt);
		t0 = now();
		d = router_dir_load(path, err, sizeof(err));
		load = now() - t0;
		unlink(path);
		if (!d) {
			fprintf(stderr, "router-bench: %s\n", err);
			return 1;
		}
		nodes_only = parse_timed(10000, 2, 0, &t0);
		mem_nodes_only = router_dir_memory(nodes_only);
		printf("\n100k-line directory (10000 nodes in 2 dcs + 90000 pins, %zu bytes): "
		       "load %.0f ms, memory %.1f MB, %.0f bytes per pin\n", len, load * 1e3,
		       (double)router_dir_memory(d) / 1048576.0,
		       (double)(router_dir_memory(d) - mem_nodes_only) / 90000.0);
		router_dir_release(&d);
		router_dir_release(&nodes_only);
	}
	return 0;
}
