/*
 * hc_backends.h — what HAProxy server a hub or node of the seed directory
 * becomes. One definition for the two writers of those servers, so that they
 * can never disagree: `seedctl haproxy` (the backends file HAProxy starts
 * from) and healthcheckd (servers added, re-weighted and removed at run time
 * through the runtime API, hc_servers.c).
 *
 * Header only (static inline): seedctl and healthcheckd link different
 * sets of objects.
 */
#ifndef SEEDGATE_HC_BACKENDS_H
#define SEEDGATE_HC_BACKENDS_H

#include <stdbool.h>
#include <string.h>

#include "router.h"

/* The backup server of every nodes_<dc> backend (leads to the hubs). A seed
 * name, so it is reserved: `seedctl haproxy` refuses a target called so,
 * healthcheckd never removes it. */
#define HC_FALLBACK_SERVER "sg_hubs_fallback"

/* Options every hub and node server carries, in the backends file and on
 * "add server" alike. pool-purge-delay: HAProxy refuses "del server" while
 * a server still holds idle keep-alive connections, and with the default
 * (5 s, closing a share of them per period) a removed node could linger in
 * maintenance for 20 s and more; 1 s empties the pool of a server that gets
 * no more requests within a few seconds, at the cost of a reconnect now and
 * then on busy servers. */
#define HC_SERVER_OPTS "pool-purge-delay 1s"

/* The backend a target's server lives in: hubs_<dc>, its node backend
 * (nodes_<dc>, or nodes_<dc>_<k> with node-shards), or for a pool server
 * pool_<pool>_<dc>. */
static inline const char *hc_backend_of(const struct router_dir *d, const struct router_target *t)
{
	return t->kind == ROUTER_HUB ? router_dir_hub_backend(d, t->dc) :
	       t->kind == ROUTER_NODE ? router_dir_node_backend(d, t->dc, t->shard) :
	       router_dir_pool_backend(d, (unsigned)t->pool, t->dc);
}

/* Whether be is one of d's backends (hubs_<dc>, node backends, pool_<pool>_<dc>). */
static inline bool hc_backend_ours(const struct router_dir *d, const char *be)
{
	if (router_dir_is_node_backend(d, be))
		return true;
	for (unsigned dc = 0; dc < router_dir_dc_count(d); dc++) {
		if (strcmp(be, router_dir_hub_backend(d, dc)) == 0)
			return true;
		for (unsigned p = 0; p < router_dir_pool_count(d); p++)
			if (strcmp(be, router_dir_pool_backend(d, p, dc)) == 0)
				return true;
	}
	return false;
}

/* A target's kind as healthcheckd's feed, log and metrics name it. */
static inline const char *hc_kind_name(enum router_kind k)
{
	return k == ROUTER_HUB ? "hub" : k == ROUTER_NODE ? "node" : "server";
}

/* Balanced backends (round robin, dynamic cookie): hubs and pools. */
static inline bool hc_kind_balanced(enum router_kind k)
{
	return k != ROUTER_NODE;
}

/* A server's HAProxy weight. Hubs and pool servers are balanced by their
 * seed weight, 0 while drained (no new sessions, sticky ones finish). Nodes
 * always 0: they are reached by `use-server` only, balancing must never
 * pick one (that would be the wrong node for the project); their seed
 * weight is a placement matter (the rings), not HAProxy's. */
static inline unsigned hc_server_weight(const struct router_target *t)
{
	return hc_kind_balanced(t->kind) && !t->drain ? t->weight : 0;
}

#endif /* SEEDGATE_HC_BACKENDS_H */
