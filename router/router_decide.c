/*
 * router_decide.c — the routing decision for one request.
 *
 * Given a request path, the proxy's datacenter and a health view, say which
 * backend (and server) HAProxy should use, and why. Called once per request
 * by route-agent: no allocation, no lock, and the work does not grow with
 * the cluster: one hash, a pin-table probe, a few ring points per dc
 * visited, and a scan of the hubs of one or two datacenters.
 */
#include <string.h>

/* XXH3 inlined: a route probe hashes a few bytes, where the call into the
 * shared library would cost as much as the hash. Same function, so the
 * same values as router_name_hash() (the table was built with it). */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "router_int.h"

static const char *const why_names[ROUTER_WHY_COUNT] = {
	[ROUTER_WHY_PRIMARY]   = "primary",
	[ROUTER_WHY_REPLICA]   = "replica",
	[ROUTER_WHY_REMOTE_DC] = "remote-dc",
	[ROUTER_WHY_PINNED]    = "pinned",
	[ROUTER_WHY_HUB]       = "hub",
	[ROUTER_WHY_NO_NODE]   = "no-node",
	[ROUTER_WHY_NO_HUB]    = "no-hub",
	[ROUTER_WHY_POOL]      = "pool",
	[ROUTER_WHY_NO_POOL]   = "no-pool",
};

/* The text of a reason, as route-agent puts it in txn.route.why. */
const char *router_why_str(enum router_why w)
{
	return (unsigned)w < ROUTER_WHY_COUNT ? why_names[w] : "unknown";
}

/* A target can take traffic: not reported down, not drained by the seed. */
static bool usable(const struct router_dir *d, const uint8_t *down, unsigned t)
{
	return !d->hot[t].drain && !(down && down[t]);
}

/* Routes to a node. */
static void to_node(const struct router_dir *d, unsigned t, enum router_why why, struct router_decision *out)
{
	out->why = why;
	out->target = (int)t;
	out->backend = d->dcs[d->hot[t].dc].node_backends[d->hot[t].shard];
	out->server = d->hot[t].name;
}

/* Routes to the hubs: the local dc's if one of its hubs is usable, else the
 * next dc in file order (wrapping) that has one; none at all -> no-hub on the
 * local backend (HAProxy answers 503 there rather than guessing). */
static void to_hubs(const struct router_dir *d, unsigned local_dc, const uint8_t *down, enum router_why why,
                    struct router_decision *out)
{
	out->target = -1;
	out->server = NULL;
	for (unsigned k = 0; k < d->ndcs; k++) {
		const struct router_dc *dc = &d->dcs[(local_dc + k) % d->ndcs];

		for (unsigned i = 0; i < dc->nhubs; i++)
			if (usable(d, down, dc->hubs[i])) {
				out->why = why;
				out->backend = dc->hub_backend;
				return;
			}
	}
	out->why = ROUTER_WHY_NO_HUB;
	out->backend = d->dcs[local_dc].hub_backend;
}

/* The pool of the longest route prefix of path (see router.h): walks the
 * hash trie one segment at a time, so the cost follows the depth of the
 * longest prefix (at most ROUTER_ROUTE_DEPTH_MAX probes), never the number
 * of routes; a path whose first segment has the first byte or the length
 * of no route's first segment costs two bit tests and no hash (most hub
 * paths). Reads at most ROUTER_ROUTE_LEN_MAX + 1 bytes. */
static int route_walk(const struct router_dir *d, const char *path, size_t len, const char **matched,
                      bool *deeper)
{
	size_t lim = len < ROUTER_ROUTE_LEN_MAX ? len : ROUTER_ROUTE_LEN_MAX, start = 1, e = 1;
	int best = -1;

	*deeper = false;
	if (matched)
		*matched = NULL;
	if (!d->nroutes || len < 2 || path[0] != '/')
		return -1;
	/* the first segment's first byte and length, against the routes' */
	if (!(d->route_first_byte[(unsigned char)path[1] >> 6] & (UINT64_C(1) << ((unsigned char)path[1] & 63))))
		return -1;
	while (e < lim && path[e] != '/' && path[e] != '?')
		e++;
	if (!(d->route_first_len & (UINT64_C(1) << (e - 1 < 63 ? e - 1 : 63))))
		return -1;
	for (;;) {
		const struct router_route_slot *sl;
		uint64_t h;
		uint32_t i;

		if (e == start || (e == lim && lim < len && path[e] != '/' && path[e] != '?'))
			break;                 /* empty segment, or longer than any prefix */
		h = XXH3_64bits(path, e);
		for (i = (uint32_t)h & d->route_mask; (sl = &d->route_slots[i])->key; i = (i + 1) & d->route_mask)
			if (sl->hash == h && sl->len == e && !memcmp(sl->key, path, e))
				break;
		if (!sl->key)
			break;
		if (sl->pool >= 0) {
			best = sl->pool;
			if (matched)
				*matched = d->routes[sl->route].prefix;
		}
		if (sl->deeper)
			*deeper = true;
		if (!sl->deeper || e == len || path[e] != '/')
			break;
		start = ++e;
		while (e < lim && path[e] != '/' && path[e] != '?')
			e++;
	}
	return best;
}

int router_route_match(const struct router_dir *d, const char *path, size_t len, const char **matched)
{
	bool deeper;

	return route_walk(d, path, len, matched, &deeper);
}

/* Routes to a pool: the first dc, local first then file order (wrapping, as
 * for the hubs), with a usable member; none -> the hubs, why no-pool. */
static void to_pool(const struct router_dir *d, unsigned local_dc, int pool, const uint8_t *down,
                    struct router_decision *out)
{
	const struct router_pool *pl = &d->pools[pool];

	out->pool = pool;
	for (unsigned k = 0; k < d->ndcs; k++) {
		unsigned dc = (local_dc + k) % d->ndcs;

		for (uint32_t i = pl->first[dc]; i < pl->first[dc + 1]; i++)
			if (usable(d, down, d->pool_members[i])) {
				out->why = ROUTER_WHY_POOL;
				out->target = -1;
				out->server = NULL;
				out->backend = pl->backend[dc];
				return;
			}
	}
	to_hubs(d, local_dc, down, ROUTER_WHY_NO_POOL, out);
}

/* Decision for a parsed project id whose canonical text is already in
 * out->project: the first usable entry of its preference list, computed one
 * datacenter at a time so a healthy primary costs one ring lookup (a cache
 * line and its neighbour, fetched together), and no pin probe at all in a
 * directory without pins. local_dc is in range. */
static void decide_id(const struct router_dir *d, unsigned local_dc, const uint8_t id[16],
                      const uint8_t *down, struct router_decision *out)
{
	uint64_t h = router_project_hash(id);
	const struct router_ring *r = &d->dcs[local_dc].ring;
	const struct router_pin *pin = NULL;
	unsigned list[ROUTER_MAX_REPLICAS];

	if (d->npins) {
		/* The pin probe and the ring's bucket are two independent cache
		 * misses: start the second before waiting on the first. */
		if (r->npoints)
			router_ring_prefetch(r, (uint32_t)(h >> 32));
		pin = router_pin_find(d, id, h);
	}

	out->is_project = true;
	if (pin) {
		/* Local pinned nodes first, then the others, in pin order. */
		for (int pass = 0; pass < 2; pass++)
			for (uint32_t k = 0; k < pin->count; k++) {
				unsigned t = d->pin_nodes[pin->first + k];

				if ((d->hot[t].dc == local_dc) == (pass == 0) && usable(d, down, t)) {
					to_node(d, t, ROUTER_WHY_PINNED, out);
					return;
				}
			}
	} else {
		for (unsigned k = 0; k < d->ndcs; k++) {
			/* local first, then the others in file order */
			unsigned dc = k == 0 ? local_dc : (k - 1 < local_dc ? k - 1 : k);
			size_t n = router_place_dc(d, dc, h, list, ROUTER_MAX_REPLICAS);

			for (size_t i = 0; i < n; i++)
				if (usable(d, down, list[i])) {
					to_node(d, list[i], k ? ROUTER_WHY_REMOTE_DC :
					        i == 0 ? ROUTER_WHY_PRIMARY : ROUTER_WHY_REPLICA, out);
					return;
				}
		}
	}
	to_hubs(d, local_dc, down, ROUTER_WHY_NO_NODE, out);
}

/* Decision for a parsed project id (see router.h). Returns 0, or -1 when
 * local_dc is out of range or the snapshot was loaded without rings
 * (ROUTER_LOAD_NO_RINGS: out then routes to nothing, backend NULL). */
int router_decide_project(const struct router_dir *d, unsigned local_dc, const uint8_t id[16],
                          const uint8_t *down, struct router_decision *out)
{
	if (local_dc >= d->ndcs || !d->rings) {
		out->why = ROUTER_WHY_NO_HUB;
		out->target = -1;
		out->backend = NULL;
		out->server = NULL;
		out->is_project = false;
		out->pool = -1;
		out->first_segment = true;
		out->project[0] = '\0';
		return -1;
	}
	out->pool = -1;
	out->first_segment = true;
	router_project_format(id, out->project);
	decide_id(d, local_dc, id, down, out);
	return 0;
}

/* Decision for a request path (see router.h). Returns 0, or -1 when
 * local_dc is out of range or the snapshot has no rings (out then routes
 * to nothing: backend NULL).
 * The path is read once: checking, decoding and lower-casing the id are
 * one pass over its 36 characters. */
int router_decide(const struct router_dir *d, unsigned local_dc, const char *path, size_t len,
                  const uint8_t *down, struct router_decision *out)
{
	uint8_t id[16];
	bool deeper;
	int pool;

	out->why = ROUTER_WHY_NO_HUB;
	out->target = -1;
	out->backend = NULL;
	out->server = NULL;
	out->is_project = false;
	out->pool = -1;
	out->first_segment = true;
	if (local_dc >= d->ndcs || !d->rings) {
		out->project[0] = '\0';
		return -1;
	}
	if (router_classify_scan(path, len, id, out->project)) {
		decide_id(d, local_dc, id, down, out);
		return 0;
	}
	out->project[0] = '\0';
	pool = d->nroutes ? route_walk(d, path, len, NULL, &deeper) : -1;
	if (d->nroutes)
		out->first_segment = !deeper;
	if (pool >= 0)
		to_pool(d, local_dc, pool, down, out);
	else
		to_hubs(d, local_dc, down, ROUTER_WHY_HUB, out);
	return 0;
}
