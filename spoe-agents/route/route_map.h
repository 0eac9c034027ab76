/*
 * route_map.h — the map publisher: puts the project decisions this agent
 * answered into its own HAProxy map through the runtime API, so that
 * haproxy.cfg's map cache (SG_ROUTE_MAP=1) routes the project's next
 * requests without asking the agent (spoe-agents/route/README.md, "Map
 * cache").
 *
 * Threads: route_map_push/route_map_touch run on the SPOP workers and only
 * write into the worker's own bounded single-producer ring (no allocation,
 * no lock, no syscall). Everything else runs on the main loop: it drains
 * the rings every RM_DRAIN_MS, keeps the table of what the map holds
 * (never a duplicate `add map`), recomputes every entry when a new view is
 * published (health, directory, drain) and writes batched runtime-API
 * commands: `add map`, `del map` for a few changed entries, a versioned
 * rebuild (`prepare map` / `add map @V` payloads / `commit map`) for many.
 *
 * Each batch is one short connection to the admin socket whose first
 * command is `show info`: the worker's Pid. A new Pid (HAProxy reloaded:
 * the new worker's map is the empty file) or a failed batch resets the
 * table and clears the map, so the agent never believes an entry is there
 * when it is not.
 */
#ifndef ROUTE_MAP_H
#define ROUTE_MAP_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "spop_runtime.h"
#include "route_view.h"

struct route_map;
struct hc_text;

/* Default --map-max: a full versioned rebuild of that many entries stays
 * within 100 ms (measured on HAProxy 2.6 on a busy 2-core machine: 76 ms to
 * load 10k entries in 12 KB payloads, 7 ms to commit; 20k took 180 ms). */
#define ROUTE_MAP_MAX_DEFAULT 10000u
#define ROUTE_MAP_MAX_LIMIT   1000000u

struct route_map_config {
	struct ev_loop *loop;          /* the main loop */
	const char *socket;            /* HAProxy admin socket (--haproxy-socket) */
	const char *map_file;          /* the map's name in HAProxy (--map-file) */
	unsigned max;                  /* entries at most (--map-max) */
	unsigned workers;              /* SPOP workers that push */
	int admit_first;               /* 1: publish on the first miss (no doorkeeper) */
};

/* NULL with err on a bad configuration or no memory. */
struct route_map *route_map_new(const struct route_map_config *cfg, char *err, size_t errlen);
/* Registers the `route-touch` message (before spop_runtime_start); 0 / -1. */
int route_map_attach(struct route_map *m, struct spop_runtime *rt);
/* Starts the timers and the first batch (clears the map). */
void route_map_start(struct route_map *m);
/* Worker thread: a decision for the first path segment key (klen bytes)
 * made with the view of generation gen. Dropped (and counted) when the
 * ring is full. */
void route_map_push(struct route_map *m, unsigned worker, uint64_t gen, const char *key, size_t klen,
                    const char *backend, const char *server);
/* Main thread: view v of generation gen was just published. */
void route_map_view(struct route_map *m, const struct route_view *v, uint64_t gen);
/* Main thread: Prometheus families. */
void route_map_metrics(const struct route_map *m, struct hc_text *t);
void route_map_free(struct route_map **m);

#endif /* ROUTE_MAP_H */
