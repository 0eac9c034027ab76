/*
 * route_auth.h — project access control in the route agent
 * (docs/access-control.md): the `route-auth` message carries the request's
 * credentials (args `cookies`, the whole Cookie header, `cname`, the token
 * cookie's name, and `authz`, the Authorization header). For a project
 * path the agent answers either txn.route.auth = "401" | "403" (refused),
 * or txn.route.user (the token's `sub`: let in) and txn.route.cookie (the
 * Cookie header without the token cookie, when the request had one). The
 * agent splits the Cookie header itself: in HAProxy, req.cook() and a
 * regex to cut the cookie out cost more than the rest of the check (about
 * 30,000 instructions a request, bench/bench-auth.sh), and each SPOE
 * action costs HAProxy about 2,000, so "ok" is told by `user` alone.
 *
 * Keys: a key file (sg_jwt_keys_load), loaded by the main thread and
 * published to the workers like the routing views (one atomic load per
 * message to notice a new set). A worker that sees a new key set empties
 * its token cache before its next check, so a revoked key stops working
 * at the first request after the reload.
 *
 * Verified-token cache, one per worker (no lock): key SHA-256 of the token,
 * value user + granted projects + exp; 4-way set associative, an expired or
 * the oldest way is replaced. A hit costs one SHA-256 of the token and 4
 * comparisons; only a miss verifies (ECDSA, about 60 us) and allocates.
 */
#ifndef ROUTE_AUTH_H
#define ROUTE_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/sg_jwt.h"
#include "router.h"
#include "spop.h"
#include "spop_runtime.h"

#define ROUTE_AUTH_CACHE_DEFAULT 4096    /* entries per worker */
/* Longest Cookie header the agent splits (spoe-route.conf sends at most
 * this much; haproxy.cfg answers 401 for a longer one on a project path). */
#define ROUTE_AUTH_COOKIES_MAX   10240

/* Which credentials the agent reads (--auth-from). */
#define ROUTE_AUTH_FROM_COOKIE 1u
#define ROUTE_AUTH_FROM_BEARER 2u

struct route_auth;

struct route_auth_counts {
	uint64_t results[SG_JWT_RESULT_COUNT];   /* by enum sg_jwt_result */
	uint64_t cache_hits, cache_misses, cache_entries, cache_flushes;
};

/* For `workers` workers, `cache` entries each (rounded up to a power of
 * two, at least 4), reading the credentials in `from`. NULL on allocation
 * failure. */
struct route_auth *route_auth_new(unsigned workers, unsigned cache, unsigned from);
/* Main thread: (re)loads the key file and publishes it. -1 with
 * "file:line: reason" in err: the key set in use stays. */
int route_auth_load(struct route_auth *a, const char *path, char *err, size_t errlen);
/* Keys in the published set; their kids for the logs. */
unsigned route_auth_key_count(const struct route_auth *a);
void route_auth_describe(const struct route_auth *a, char *out, size_t len);
/* Worker: checks the message's credential for dec (a project decision),
 * at unix time now, and appends auth (and user) to ack. -1 when an action
 * did not fit the frame. */
int route_auth_answer(struct route_auth *a, unsigned worker, double now, const struct spop_args *args,
		      const struct router_decision *dec, struct spop_ack *ack);
/* Sums the workers' counters (any thread). */
void route_auth_counts(const struct route_auth *a, struct route_auth_counts *out);
void route_auth_free(struct route_auth **a);

#endif /* ROUTE_AUTH_H */
