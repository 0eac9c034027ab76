/*
 * route_agent.h — the `route` and `route-sess` SPOE messages: per-worker
 * state, the decision handler and its counters.
 *
 * `route` answers in scope txn (per-request routing); `route-auth` is `route`
 * plus the access-control answer (route_auth.h); `route-sess` makes the
 * same decision and answers in scope sess, for haproxy.cfg's decision cache
 * (SG_ROUTE_CACHE=1): dest = "<backend>/<node>/<why>" (node empty for the
 * hubs), then key, the path's first segment as HAProxy's `path,field(2,/)`
 * yields it (unset when longer than ROUTE_KEY_MAX).
 *
 * Each worker keeps its own reference to the current route_view and checks
 * the holder's generation (one atomic load) before every decision; a worker
 * that sees no traffic drops a stale view within a second through a timer
 * on its own loop. Counters are per worker, on their own cache lines,
 * written with relaxed atomics by their worker only and summed on demand.
 *
 * Per message: no allocation, no lock, no syscall.
 */
#ifndef ROUTE_AGENT_H
#define ROUTE_AGENT_H

#include <stdint.h>

#include "router.h"
#include "spop_runtime.h"
#include "route_view.h"

struct route_agent;
struct route_auth;

/* Longest first path segment the decision cache keys on (a project id is
 * 36 characters); a longer one is never cached. */
#define ROUTE_KEY_MAX 48

struct route_agent_counts {
	uint64_t decisions[ROUTER_WHY_COUNT];   /* by enum router_why */
	uint64_t no_path;                       /* messages without a usable `path` argument */
	uint64_t errors;                        /* decisions that failed (no view, bad dc) */
	uint64_t ack_overflow;                  /* actions that did not fit the frame */
};

/* Agent for `workers` workers reading views from `holder` (borrowed: it must
 * outlive the agent). NULL on allocation failure. */
struct route_agent *route_agent_new(struct route_view_holder *holder, unsigned workers);
/* Fills the worker_init/worker_fini hooks of a runtime configuration. */
void route_agent_configure(struct route_agent *a, struct spop_runtime_config *cfg);
/* Registers the `route` and `route-sess` message handlers on rt (before
 * spop_runtime_start). 0, or -1 when the runtime refuses one. */
int route_agent_attach(struct route_agent *a, struct spop_runtime *rt);
/* Access control for `route-auth` (borrowed; before spop_runtime_start).
 * Without it `route-auth` answers auth=401 for every project path. */
void route_agent_set_auth(struct route_agent *a, struct route_auth *auth);
/* Publishes the project decisions that name a node through m (the map
 * cache, route_map.h); before the workers start. NULL: none. */
struct route_map;
void route_agent_set_map(struct route_agent *a, struct route_map *m);
/* Sums the workers' counters (any thread). */
void route_agent_counts(const struct route_agent *a, struct route_agent_counts *out);
/* Frees the agent and the views its workers still hold. Call after the
 * runtime's workers have been joined. */
void route_agent_free(struct route_agent **a);

#endif /* ROUTE_AGENT_H */
