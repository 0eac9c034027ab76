/*
 * seedctl health — the health table ops read at 3 a.m.
 *
 * healthcheckd already publishes every target's verdict on its feed socket;
 * this subcommand subscribes once, reads the snapshot and prints one row
 * per target (target, kind, dc, state, since, last check, latency, reason).
 * The table itself is formatted by libhc (hc_status_print), the same code
 * behind `healthcheckd --status`, so the two never disagree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hc_feed.h"
#include "seedctl.h"

#define SEEDCTL_HEALTH_DEFAULT_FEED "build/demo/health.sock"

static void health_usage(FILE *f)
{
	fprintf(f,
		"usage: seedctl health [--feed PATH] [--timeout MS]\n"
		"  Print healthcheckd's view of every hub, node and pool server: target, kind, dc,\n"
		"  state, since, last check, latency, reason.\n"
		"  --feed PATH    healthcheckd's feed socket (default %s)\n"
		"  --timeout MS   give up after MS milliseconds (default 3000)\n"
		"Exit status: 0 table printed, 1 feed unreachable, 2 usage error.\n",
		SEEDCTL_HEALTH_DEFAULT_FEED);
}

int seedctl_health(int argc, char **argv)
{
	const char *feed = SEEDCTL_HEALTH_DEFAULT_FEED;
	unsigned long timeout_ms = 3000;
	char err[256];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			health_usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--feed") && i + 1 < argc) {
			feed = argv[++i];
		} else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			char *end;

			timeout_ms = strtoul(argv[++i], &end, 10);
			if (*end || !timeout_ms || timeout_ms > 600000) {
				fprintf(stderr, "seedctl health: bad --timeout '%s'\n", argv[i]);
				return 2;
			}
		} else {
			health_usage(stderr);
			return 2;
		}
	}
	if (hc_status_print(feed, stdout, (unsigned)timeout_ms, err, sizeof(err)) == -1) {
		fprintf(stderr, "seedctl health: %s: %s\n", feed, err);
		return 1;
	}
	return 0;
}
