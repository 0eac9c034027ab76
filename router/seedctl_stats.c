/*
 * seedctl stats --seed FILE [--samples N] [--dc D]
 *
 * Places N pseudo-random project ids (a fixed sequence, so two runs agree)
 * and prints each node's share of primaries next to the share its weight
 * asks for: what ops look at before adding or re-weighting nodes. Also
 * prints the directory's ring-scale and each dc's ring points: changing
 * ring-scale moves about half of the primaries for each step of it (see
 * docs/seed-directory.md), so ops see which scale a file places with.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seedctl.h"

static void stats_usage(FILE *f)
{
	fprintf(f, "usage: seedctl stats --seed FILE [--samples N] [--dc D]\n"
	        "Places N ids (default 100000) and prints, per node of each dc (or of D):\n"
	        "node, weight, primaries, share %%, share its weight asks for %%, ratio; and each\n"
	        "dc's ring points at the directory's ring-scale (each step of ring-scale\n"
	        "moves about half of the primaries). Pools: per pool and dc, its servers,\n"
	        "weights and share of the pool's requests (0 when drained).\n");
}

/* splitmix64: a fixed, portable id sequence. */
static uint64_t next_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Path classes: per pool, the dc's servers and the share of the pool's
 * requests each gets there (HAProxy balances by weight; drained: 0). */
static void stats_pools(const struct router_dir *d, unsigned dc)
{
	for (unsigned p = 0; p < router_dir_pool_count(d); p++) {
		const uint32_t *m;
		size_t n = router_dir_pool_members(d, p, dc, &m);
		unsigned long wsum = 0;

		for (size_t i = 0; i < n; i++)
			wsum += router_dir_target(d, m[i])->drain ? 0 : router_dir_target(d, m[i])->weight;
		printf("# pool %s in dc %s: %zu servers, backend %s\n", router_dir_pool_name(d, p),
		       router_dir_dc_name(d, dc), n, router_dir_pool_backend(d, p, dc));
		if (!n)
			continue;
		printf("# server\tweight\tshare%%\n");
		for (size_t i = 0; i < n; i++) {
			const struct router_target *t = router_dir_target(d, m[i]);
			unsigned w = t->drain ? 0 : t->weight;

			printf("%s\t%u\t%.3f\n", t->name, w, wsum ? 100.0 * w / (double)wsum : 0.0);
		}
	}
}

static void stats_dc(const struct router_dir *d, unsigned dc, unsigned long samples, unsigned long *count)
{
	unsigned ntargets = router_dir_target_count(d);
	unsigned long wsum = 0, nodes = 0;
	double worst = 0;
	uint64_t seed = 42;
	unsigned list[ROUTER_PREF_MAX];

	memset(count, 0, ntargets * sizeof(*count));
	for (unsigned long i = 0; i < samples; i++) {
		uint8_t id[16];
		uint64_t a = next_rand(&seed), b = next_rand(&seed);

		for (int k = 0; k < 8; k++) {
			id[k] = (uint8_t)(a >> (8 * k));
			id[8 + k] = (uint8_t)(b >> (8 * k));
		}
		/* the primary as placed for this dc (a pinned id counts for its pin) */
		if (router_preference(d, id, dc, list, ROUTER_PREF_MAX, NULL) > 0 &&
		    router_dir_target(d, list[0])->dc == dc)
			count[list[0]]++;
	}
	for (unsigned t = 0; t < ntargets; t++) {
		const struct router_target *tg = router_dir_target(d, t);

		if (tg->dc == dc && tg->kind == ROUTER_NODE) {
			wsum += tg->weight;
			nodes++;
		}
	}
	printf("# dc %s: %lu nodes, %lu samples\n", router_dir_dc_name(d, dc), nodes, samples);
	printf("# ring %s: ring-scale %d (%u points per unit of weight), %llu points; each step of "
	       "ring-scale moves about half of the primaries\n", router_dir_dc_name(d, dc), router_dir_ring_scale(d),
	       1u << router_dir_ring_scale(d), (unsigned long long)router_dir_ring_points(d, dc));
	printf("# node\tweight\tprimaries\tshare%%\tweight-share%%\tratio\n");
	for (unsigned t = 0; t < ntargets; t++) {
		const struct router_target *tg = router_dir_target(d, t);
		double share, want;

		if (tg->dc != dc || tg->kind != ROUTER_NODE)
			continue;
		share = 100.0 * (double)count[t] / (double)samples;
		want = 100.0 * tg->weight / (double)wsum;
		printf("%s\t%u\t%lu\t%.3f\t%.3f\t%.3f\n", tg->name, tg->weight, count[t], share, want, share / want);
		if (share / want > worst)
			worst = share / want;
	}
	if (nodes)
		printf("# dc %s: busiest node gets %.3fx the share its weight asks for\n",
		       router_dir_dc_name(d, dc), worst);
	stats_pools(d, dc);
}

int seedctl_stats(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seed", required_argument, NULL, 's' }, { "dc", required_argument, NULL, 'd' },
		{ "samples", required_argument, NULL, 'n' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	const char *seed = NULL, *dcname = NULL;
	unsigned long samples = 100000, *count;
	struct router_dir *d;
	char *end;
	int c, dc;

	while ((c = getopt_long(argc, argv, "s:d:n:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': seed = optarg; break;
		case 'd': dcname = optarg; break;
		case 'n':
			samples = strtoul(optarg, &end, 10);
			if (*end || samples == 0) {
				fprintf(stderr, "seedctl: bad --samples '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h': stats_usage(stdout); return 0;
		default: stats_usage(stderr); return 2;
		}
	}
	if (!seed || optind != argc) {
		stats_usage(stderr);
		return 2;
	}
	d = seedctl_load(seed, 0);
	if (!d)
		return 1;
	count = calloc(router_dir_target_count(d) + 1, sizeof(*count));
	if (!count) {
		router_dir_release(&d);
		return 1;
	}
	if (dcname) {
		dc = seedctl_dc(d, dcname);
		if (dc >= 0)
			stats_dc(d, (unsigned)dc, samples, count);
	} else {
		dc = 0;
		for (unsigned i = 0; i < router_dir_dc_count(d); i++)
			stats_dc(d, i, samples, count);
	}
	free(count);
	router_dir_release(&d);
	return dc < 0 ? 1 : 0;
}
