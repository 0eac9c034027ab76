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

#include "seedctl.h"

static void check_usage(FILE *f)
{
	fprintf(f, "usage: seedctl check FILE | --seed FILE|etcd://HOST:PORT[,...]/PREFIX\n"
	        "Parses the seed directory. On error prints 'file:line: message' (for etcd\n"
	        "'KEY: message', the key holding the bad record) and exits 1; otherwise\n"
	        "prints a one-line summary and exits 0.\n"
	        "  --seed SPEC  the directory: a file, or etcd (read at one revision)\n");
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
	router_dir_release(&d);
	return 0;
}
