/*
 * seedctl — the operator's tool for the seed directory: validate it, ask
 * where projects live, size a cluster, generate the HAProxy backends.
 *
 * This file holds main() and the subcommand table; each subcommand is its
 * own file (seedctl_<cmd>.c), see seedctl.h for how to add one.
 */
#include <stdio.h>
#include <string.h>

#include "seedctl.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{ "check",   seedctl_check,   "validate a seed directory (exit 1 with file:line on error)" },
	{ "where",   seedctl_where,   "print the chosen node and preference list of project ids" },
	{ "stats",   seedctl_stats,   "each node's share of primaries over a sample of ids" },
	{ "haproxy", seedctl_haproxy, "generate the hubs_<dc> and nodes_<dc> HAProxy backends" },
	{ "health",  seedctl_health,  "healthcheckd's table: state, since, last check, latency, reason" },
	{ "import",  seedctl_import,  "replace the directory in etcd with a file (validated, atomic switch)" },
	{ "export",  seedctl_export,  "print the directory held in etcd in its text form" },
	{ "put",     seedctl_put,     "add or replace one record of the directory in etcd" },
	{ "del",     seedctl_del,     "remove one record of the directory in etcd" },
	{ "drain",   seedctl_drain,   "set state=drain on a hub or node in etcd (--undrain: back up)" },
	{ "register", seedctl_register, "keep a node/hub in etcd under a lease while running" },
	{ "token",   seedctl_token,   "mint a project access token (ES256 JWT) with a private key" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: seedctl COMMAND [options] (seedctl COMMAND --help for each)\n"
	        "A seed directory (--seed) is a file or etcd://HOST:PORT[,HOST:PORT...]/PREFIX.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

struct router_dir *seedctl_load(const char *path, unsigned flags)
{
	char err[512];
	struct router_dir *d;

	if (sd_is_etcd(path))
		return seedctl_load_etcd(path, flags);
	d = router_dir_load_flags(path, flags, err, sizeof(err));
	if (!d)
		fprintf(stderr, "%s\n", err);
	return d;
}

int seedctl_dc(const struct router_dir *d, const char *name)
{
	int dc = name ? router_dir_dc_find(d, name) : 0;

	if (dc < 0)
		fprintf(stderr, "seedctl: no datacenter '%s' in the seed directory\n", name);
	return dc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "seedctl: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
