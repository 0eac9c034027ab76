/*
 * seedctl stats --seed FILE [--samples N] [--dc D]
 *
 * Places N pseudo-random project ids (a fixed sequence, so two runs agree)
 * and prints each node's share of primaries next to the share its weight
 * asks for: what ops look at before adding or re-weighting nodes. Also
 * prints each dc's ring scale and the node count of its next budget step
 * (where about half of the dc's primaries move, see docs/seed-directory.md).
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
	        "dc's ring scale with the node counts of its next budget steps (where about\n"
	        "half of the dc's primaries move).\n");
}

/* splitmix64: a fixed, portable id sequence. */
static uint64_t next_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The dc's ring scale, and at how many nodes it next moves when nodes of
 * the dc's mean weight are added or removed (a budget step moves about half
 * of the primaries: ops plan growth across one as a rebalancing). */
static void ring_steps(const struct router_dir *d, unsigned dc, unsigned nodes, unsigned long wsum)
{
	int s = router_ring_scale(nodes, wsum);
	unsigned long mean = (wsum + nodes / 2) / nodes;
	unsigned up = 0, down = 0;

	for (unsigned n = nodes + 1; n <= 4 * nodes + 4096 && !up; n++)
		if (router_ring_scale(n, wsum + (n - nodes) * mean) != s)
			up = n;
	for (unsigned n = nodes - 1; n >= 1 && !down; n--) {
		unsigned long gone = (nodes - n) * mean;

		if (router_ring_scale(n, gone < wsum ? wsum - gone : n) != s)
			down = n;
	}
	printf("# ring %s: %u points per unit of weight; next budget steps (each moves about half the "
	       "primaries), with nodes of weight %lu: ", router_dir_dc_name(d, dc), 1u << s, mean);
	if (up)
		printf("growing to %u nodes", up);
	else
		printf("none growing up to %u nodes", 4 * nodes + 4096);
	if (down)
		printf(", shrinking to %u nodes", down);
	putchar('\n');
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
	if (nodes)
		ring_steps(d, dc, (unsigned)nodes, wsum);
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
	d = seedctl_load(seed);
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
