/*
 * seedctl where --seed FILE [--dc D] [--down NAME,...] ID|PATH... | -
 *
 * One line per id: the id, the chosen node (or the hubs backend when no node
 * of its list is usable), then the whole preference list, tab-separated.
 * One line per request path (starts with '/'): the path, the backend (and
 * node) chosen, why, the pool and route prefix (or -), then the order the
 * path's servers are tried in: a pool's members, local dc first then the
 * others in file order; a project path's preference list.
 * The same library calls route-agent makes, so this is what the proxies do.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seedctl.h"

static void where_usage(FILE *f)
{
	fprintf(f, "usage: seedctl where --seed FILE [--dc D] [--down NAME,...] ID|PATH... (or - to read them from stdin)\n"
	        "Prints, per project id: id, chosen node (or hubs_<dc> when none is usable),\n"
	        "then the preference list, tab-separated.\n"
	        "Per request path (/download/foo.xo): path, chosen backend (node/backend for a\n"
	        "node), why, pool and matched route prefix (- when none), then the servers in\n"
	        "the order they are tried (a pool: local dc first, then the others in file\n"
	        "order; a project path: its preference list).\n"
	        "--dc is the proxy's datacenter (default: the first dc of the file); --down\n"
	        "marks hubs, nodes and pool servers as down.\n");
}

/* Marks each comma-separated name of list in down[]; -1 on an unknown name. */
static int mark_down(const struct router_dir *d, char *list, uint8_t *down)
{
	char *save = NULL;

	for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		int t = router_dir_target_find(d, name);

		if (t < 0) {
			fprintf(stderr, "seedctl: --down: no hub, node or server '%s'\n", name);
			return -1;
		}
		down[t] = 1;
	}
	return 0;
}

/* Prints the line of one id; returns 0, or 1 for a malformed id. */
static int where_one(const struct router_dir *d, unsigned dc, const uint8_t *down, const char *txt, size_t len)
{
	unsigned list[ROUTER_PREF_MAX];
	struct router_decision dec;
	uint8_t id[16];
	size_t n;

	if (router_project_parse(txt, len, id) == -1) {
		fprintf(stderr, "seedctl: bad project id '%.*s'\n", (int)(len > 64 ? 64 : len), txt);
		return 1;
	}
	router_decide_project(d, dc, id, down, &dec);
	n = router_preference(d, id, dc, list, ROUTER_PREF_MAX, NULL);
	fputs(dec.project, stdout);
	putchar('\t');
	fputs(dec.server ? dec.server : dec.backend, stdout);
	for (size_t i = 0; i < n; i++) {
		putchar('\t');
		fputs(router_dir_target(d, list[i])->name, stdout);
	}
	putchar('\n');
	return 0;
}

/* Prints the line of one request path; returns 0. */
static int where_path(const struct router_dir *d, unsigned dc, const uint8_t *down, const char *path, size_t len)
{
	unsigned list[ROUTER_PREF_MAX];
	struct router_decision dec;
	const char *prefix = NULL;
	uint8_t id[16];

	router_decide(d, dc, path, len, down, &dec);
	if (dec.pool >= 0)
		router_route_match(d, path, len, &prefix);
	printf("%.*s\t", (int)len, path);
	if (dec.server)
		printf("%s/%s", dec.backend, dec.server);
	else
		fputs(dec.backend, stdout);
	printf("\t%s\t%s\t%s", router_why_str(dec.why), dec.pool >= 0 ? router_dir_pool_name(d, (unsigned)dec.pool) : "-",
	       prefix ? prefix : "-");
	if (dec.pool >= 0) {
		unsigned ndcs = router_dir_dc_count(d);

		for (unsigned k = 0; k < ndcs; k++) {
			const uint32_t *m;
			size_t n = router_dir_pool_members(d, (unsigned)dec.pool, (dc + k) % ndcs, &m);

			for (size_t i = 0; i < n; i++)
				printf("\t%s", router_dir_target(d, m[i])->name);
		}
	} else if (router_classify_path(path, len, id)) {
		size_t n = router_preference(d, id, dc, list, ROUTER_PREF_MAX, NULL);

		for (size_t i = 0; i < n; i++)
			printf("\t%s", router_dir_target(d, list[i])->name);
	}
	putchar('\n');
	return 0;
}

/* A path or an id. */
static int where_arg(const struct router_dir *d, unsigned dc, const uint8_t *down, const char *s, size_t len)
{
	return len && s[0] == '/' ? where_path(d, dc, down, s, len) : where_one(d, dc, down, s, len);
}

int seedctl_where(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seed", required_argument, NULL, 's' }, { "dc", required_argument, NULL, 'd' },
		{ "down", required_argument, NULL, 'D' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	const char *seed = NULL, *dcname = NULL;
	char *downlist = NULL;
	struct router_dir *d = NULL;
	uint8_t *down = NULL;
	int c, dc, ret = 2;

	while ((c = getopt_long(argc, argv, "s:d:D:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': seed = optarg; break;
		case 'd': dcname = optarg; break;
		case 'D': downlist = optarg; break;
		case 'h': where_usage(stdout); return 0;
		default: where_usage(stderr); return 2;
		}
	}
	if (!seed || optind == argc) {
		where_usage(stderr);
		return 2;
	}
	d = seedctl_load(seed, 0);
	if (!d)
		return 1;
	dc = seedctl_dc(d, dcname);
	if (dc < 0)
		goto out_release;
	down = calloc(router_dir_target_count(d) + 1, 1);
	if (!down)
		goto out_release;
	if (downlist && mark_down(d, downlist, down) == -1)
		goto out_free_down;
	ret = 0;
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "-")) {
			ret |= where_arg(d, (unsigned)dc, down, argv[i], strlen(argv[i]));
			continue;
		}
		char *line = NULL;
		size_t room = 0;
		ssize_t n;

		while ((n = getline(&line, &room, stdin)) != -1) {
			while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
				n--;
			if (n > 0)
				ret |= where_arg(d, (unsigned)dc, down, line, (size_t)n);
		}
		free(line);
	}
	if (fflush(stdout) == EOF)
		ret = 1;
out_free_down:
	free(down);
out_release:
	router_dir_release(&d);
	return ret;
}
