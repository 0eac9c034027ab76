/*
 * seedctl check FILE — validate a seed directory.
 *
 * Loads with ROUTER_LOAD_NO_RINGS: checking never routes, so it builds no
 * placement rings and costs the parse alone (an 8000-node file: about
 * 0.05 s and 10 MB instead of the rings' time and memory). Everything a
 * file can be wrong about is found by the parser.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "seedctl.h"

static void check_usage(FILE *f)
{
	fprintf(f, "usage: seedctl check FILE | --seed FILE|etcd://HOST:PORT[,...]/PREFIX\n"
	        "Parses the seed directory. On error prints 'file:line: message' (for etcd\n"
	        "'KEY: message', the key holding the bad record) and exits 1; otherwise\n"
	        "prints a one-line summary and exits 0.\n"
	        "  --seed SPEC  the directory: a file, or etcd (read at one revision)\n");
}

/* Nodes in the fullest node backend above this: a note. HAProxy 2.6 to 3.2
 * resolve `use-server %[...]` by scanning the backend's servers, about 10 ns
 * a server for every request routed to a node (bench/results/node-backends.md). */
#define SHARD_NOTE_NODES 64

static void shard_note(const struct router_dir *d)
{
	unsigned ndcs = router_dir_dc_count(d), shards = router_dir_node_shards(d);
	unsigned *counts = calloc((size_t)ndcs * shards, sizeof(*counts));
	unsigned big = 0, big_dc = 0, big_k = 0, want = 1;

	if (!counts)
		return;                        /* only a note: say nothing */
	for (unsigned i = 0; i < router_dir_target_count(d); i++) {
		const struct router_target *t = router_dir_target(d, i);

		if (t->kind == ROUTER_NODE && ++counts[t->dc * shards + t->shard] > big) {
			big = counts[t->dc * shards + t->shard];
			big_dc = t->dc;
			big_k = t->shard;
		}
	}
	free(counts);
	if (big <= SHARD_NOTE_NODES)
		return;
	while (want < ROUTER_MAX_NODE_SHARDS &&
	       (router_dir_node_count(d, big_dc) + want - 1) / want > SHARD_NOTE_NODES)
		want *= 2;
	fprintf(stderr, "seedctl: note: %s holds %u nodes; HAProxy 2.6 to 3.2 scan a backend's servers "
	        "for every request routed to a node (about 10 ns a server): `node-shards %u` keeps each "
	        "node backend near %u (docs/seed-directory.md, node-shards)\n",
	        router_dir_node_backend(d, big_dc, big_k), big, want, SHARD_NOTE_NODES);
}

int seedctl_check(int argc, char **argv)
{
	static const struct option opts[] = { { "seed", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
	const char *seed = NULL;
	struct router_dir *d;
	unsigned hubs = 0, nodes = 0, servers = 0, drained = 0;
	int c;

	while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
		if (c == 's') {
			seed = optarg;
			continue;
		}
		if (c == 'h') {
			check_usage(stdout);
			return 0;
		}
		check_usage(stderr);
		return 2;
	}
	if (seed ? optind != argc : optind != argc - 1) {
		check_usage(stderr);
		return 2;
	}
	if (!seed)
		seed = argv[optind];
	/* checking never routes: no rings (the ring budget is still checked) */
	d = seedctl_load(seed, ROUTER_LOAD_NO_RINGS);
	if (!d)
		return 1;
	for (unsigned i = 0; i < router_dir_target_count(d); i++) {
		const struct router_target *t = router_dir_target(d, i);

		if (t->kind == ROUTER_HUB)
			hubs++;
		else if (t->kind == ROUTER_NODE)
			nodes++;
		else
			servers++;
		drained += t->drain;
	}
	printf("%s: ok: %u datacenters, %u hubs, %u nodes (%u drained), %u pins, replicas %u",
	       seed, router_dir_dc_count(d), hubs, nodes, drained, router_dir_pin_count(d),
	       router_dir_replicas(d));
	/* the summary of a directory without pools stays as it was */
	if (router_dir_pool_count(d))
		printf(", %u pools, %u pool servers, %u routes", router_dir_pool_count(d), servers,
		       router_dir_route_count(d));
	putchar('\n');
	shard_note(d);
	router_dir_release(&d);
	return 0;
}
