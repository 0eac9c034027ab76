/*
 * router_dir.c — the seed directory snapshot: references, accessors, and the
 * holder that publishes a new snapshot to running workers.
 *
 * A snapshot never changes once built, so readers need no lock; its life is
 * a reference count. Publishing swaps a pointer under a lock held for a few
 * instructions (never during a load or a parse), so a worker that acquires
 * the current snapshot never waits for a reload.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "router_int.h"

/* Biggest seed file router_dir_load() accepts: far above a 100k-line file
 * (about 6 MB), low enough that a wrong path (a disk image) fails fast. */
#define ROUTER_FILE_MAX (256u << 20)

/* Hash of a target name for the name table. XXH3 is stable across
 * machines and releases (its output is specified), like the placement. */
uint64_t router_name_hash(const char *name, size_t len)
{
	return XXH3_64bits(name, len);
}

/* Frees everything a snapshot holds. Only for the last reference (or a
 * snapshot the parser never handed out). Accepts NULL. */
void router_dir_destroy(struct router_dir *d)
{
	if (!d)
		return;
	router_place_free(d);
	for (unsigned i = 0; i < d->ndcs; i++)
		free(d->dcs[i].hubs);
	free(d->dcs);
	free(d->targets);
	free(d->hot);
	free(d->pins);
	free(d->pin_nodes);
	free(d->names);
	free(d->pools);
	free(d->pool_members);
	free(d->pool_backends);
	free(d->node_backends);
	free(d->pool_first);
	free(d->routes);
	free(d->route_slots);
	free(d->strings);
	free(d);
}

/* Reads a whole seed file and parses it. Returns a snapshot with one
 * reference, or NULL with "file: reason" / "file:line: message" in err. */
struct router_dir *router_dir_load(const char *path, char *err, size_t errlen)
{
	return router_dir_load_flags(path, 0, err, errlen);
}

/* Reads the whole file, then parses it with flags (ROUTER_LOAD_*). */
struct router_dir *router_dir_load_flags(const char *path, unsigned flags, char *err, size_t errlen)
{
	struct router_dir *d = NULL;
	char *buf = NULL;
	size_t len = 0, room = 0;
	FILE *f;

	f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		size_t n;

		if (len == room) {
			size_t nroom = room ? room * 2 : 65536;
			char *nbuf;

			if (nroom > ROUTER_FILE_MAX) {
				snprintf(err, errlen, "%s: file larger than %u MB", path, ROUTER_FILE_MAX >> 20);
				goto out_free_buf;
			}
			nbuf = realloc(buf, nroom);
			if (!nbuf) {
				snprintf(err, errlen, "%s: out of memory", path);
				goto out_free_buf;
			}
			buf = nbuf;
			room = nroom;
		}
		n = fread(buf + len, 1, room - len, f);
		len += n;
		if (n == 0) {
			if (ferror(f)) {
				snprintf(err, errlen, "%s: read error", path);
				goto out_free_buf;
			}
			break;
		}
	}
	d = router_dir_parse_flags(buf, len, path, flags, err, errlen);
out_free_buf:
	free(buf);
	fclose(f);
	return d;
}

/* Whether placement works on this snapshot: false when it was loaded with
 * ROUTER_LOAD_NO_RINGS (router_preference() then gives 0 entries and
 * router_decide*() -1). */
bool router_dir_has_rings(const struct router_dir *d)
{
	return d->rings;
}

/* Takes one more reference on a snapshot; returns it (NULL passes through). */
struct router_dir *router_dir_ref(struct router_dir *d)
{
	if (d)
		atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
	return d;
}

/* Drops the caller's reference and clears its pointer; the last one frees. */
void router_dir_release(struct router_dir **dp)
{
	struct router_dir *d = *dp;

	*dp = NULL;
	if (d && atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) == 1)
		router_dir_destroy(d);
}

unsigned router_dir_replicas(const struct router_dir *d)
{
	return d->replicas;
}

unsigned router_dir_dc_count(const struct router_dir *d)
{
	return d->ndcs;
}

/* Name of datacenter dc (file order), NULL when out of range. */
const char *router_dir_dc_name(const struct router_dir *d, unsigned dc)
{
	return dc < d->ndcs ? d->dcs[dc].name : NULL;
}

/* Index of the datacenter called name, or -1. Datacenters are few: a scan. */
int router_dir_dc_find(const struct router_dir *d, const char *name)
{
	for (unsigned i = 0; i < d->ndcs; i++)
		if (strcmp(d->dcs[i].name, name) == 0)
			return (int)i;
	return -1;
}

unsigned router_dir_target_count(const struct router_dir *d)
{
	return d->ntargets;
}

/* Target i (file order: hubs and nodes as their lines come), NULL when out
 * of range. */
const struct router_target *router_dir_target(const struct router_dir *d, unsigned i)
{
	return i < d->ntargets ? &d->targets[i] : NULL;
}

/* Index of the hub, node or server called name, or -1. O(1): a hash table built by
 * the parser (route-agent maps every health-feed line through this). */
int router_dir_target_find(const struct router_dir *d, const char *name)
{
	size_t len = strlen(name);
	uint32_t slot;

	if (!d->names)
		return -1;
	slot = (uint32_t)router_name_hash(name, len) & d->names_mask;
	for (;;) {
		uint32_t t = d->names[slot];

		if (t == UINT32_MAX)
			return -1;
		if (strcmp(d->targets[t].name, name) == 0)
			return (int)t;
		slot = (slot + 1) & d->names_mask;
	}
}

const char *router_dir_hub_backend(const struct router_dir *d, unsigned dc)
{
	return dc < d->ndcs ? d->dcs[dc].hub_backend : NULL;
}

unsigned router_dir_node_shards(const struct router_dir *d)
{
	return d->node_shards;
}

const char *router_dir_node_backend(const struct router_dir *d, unsigned dc, unsigned shard)
{
	return dc < d->ndcs && shard < d->node_shards ? d->dcs[dc].node_backends[shard] : NULL;
}

/* "nodes_<dc>" exactly, or "nodes_<dc>_<k>" with k < node_shards: parsed,
 * not compared with every name (256 shards x 64 dcs). */
bool router_dir_is_node_backend(const struct router_dir *d, const char *be)
{
	for (unsigned dc = 0; dc < d->ndcs; dc++) {
		const char *base = d->dcs[dc].node_backends[0];
		size_t bl = d->node_shards == 1 ? strlen(base) : strlen(base) - 2;   /* without "_0" */
		unsigned long k;
		char *end;

		if (strncmp(be, base, bl))
			continue;
		if (d->node_shards == 1) {
			if (!be[bl])
				return true;
			continue;
		}
		if (be[bl] != '_' || be[bl + 1] < '0' || be[bl + 1] > '9' || (be[bl + 1] == '0' && be[bl + 2]))
			continue;
		k = strtoul(be + bl + 1, &end, 10);
		if (!*end && k < d->node_shards)
			return true;
	}
	return false;
}

unsigned router_dir_pin_count(const struct router_dir *d)
{
	return d->npins;
}

unsigned router_dir_hub_count(const struct router_dir *d, unsigned dc)
{
	return dc < d->ndcs ? d->dcs[dc].nhubs : 0;
}

unsigned router_dir_node_count(const struct router_dir *d, unsigned dc)
{
	return dc < d->ndcs ? d->dcs[dc].nnodes : 0;
}

unsigned router_dir_pool_count(const struct router_dir *d)
{
	return d->npools;
}

const char *router_dir_pool_name(const struct router_dir *d, unsigned pool)
{
	return pool < d->npools ? d->pools[pool].name : NULL;
}

/* Pools are few (at most 1024) and looked up by tools, never per request. */
int router_dir_pool_find(const struct router_dir *d, const char *name)
{
	for (unsigned i = 0; i < d->npools; i++)
		if (strcmp(d->pools[i].name, name) == 0)
			return (int)i;
	return -1;
}

const char *router_dir_pool_backend(const struct router_dir *d, unsigned pool, unsigned dc)
{
	return pool < d->npools && dc < d->ndcs ? d->pools[pool].backend[dc] : NULL;
}

size_t router_dir_pool_members(const struct router_dir *d, unsigned pool, unsigned dc, const uint32_t **members)
{
	if (pool >= d->npools || dc >= d->ndcs) {
		*members = NULL;
		return 0;
	}
	*members = d->pool_members + d->pools[pool].first[dc];
	return d->pools[pool].first[dc + 1] - d->pools[pool].first[dc];
}

unsigned router_dir_route_count(const struct router_dir *d)
{
	return d->nroutes;
}

int router_dir_route(const struct router_dir *d, unsigned i, const char **prefix)
{
	if (i >= d->nroutes) {
		*prefix = NULL;
		return -1;
	}
	*prefix = d->routes[i].prefix;
	return d->routes[i].pool;
}

/* Bytes the snapshot allocated (tables, rings, strings): for sizing. */
size_t router_dir_memory(const struct router_dir *d)
{
	return d->memory;
}

/* ------------------------------------------------------------------------ */
/* The holder. The lock only covers "read the pointer and take a ref" and
 * "swap the pointer"; the old snapshot is released after unlocking, so even
 * freeing a big directory happens outside it. */
struct router_holder {
	pthread_mutex_t lock;
	struct router_dir *dir;
	_Atomic uint64_t generation;
};

/* An empty holder (acquire returns NULL until the first publish), or NULL
 * when out of memory. */
struct router_holder *router_holder_new(void)
{
	struct router_holder *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	if (pthread_mutex_init(&h->lock, NULL) != 0) {
		free(h);
		return NULL;
	}
	atomic_init(&h->generation, 0);
	return h;
}

/* Frees the holder and drops its snapshot reference; clears *hp. */
void router_holder_free(struct router_holder **hp)
{
	struct router_holder *h = *hp;

	*hp = NULL;
	if (!h)
		return;
	router_dir_release(&h->dir);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/* Makes d the current snapshot (the holder takes over the caller's ref) and
 * bumps the generation. Workers still holding the old one keep using it. */
void router_holder_publish(struct router_holder *h, struct router_dir *d)
{
	struct router_dir *old;

	pthread_mutex_lock(&h->lock);
	old = h->dir;
	h->dir = d;
	atomic_fetch_add_explicit(&h->generation, 1, memory_order_release);
	pthread_mutex_unlock(&h->lock);
	router_dir_release(&old);
}

/* A new reference on the current snapshot, or NULL if none was published. */
struct router_dir *router_holder_acquire(struct router_holder *h)
{
	struct router_dir *d;

	pthread_mutex_lock(&h->lock);
	d = router_dir_ref(h->dir);
	pthread_mutex_unlock(&h->lock);
	return d;
}

/* Publish count so far: a worker compares it with the one it saw when it
 * last acquired, and re-acquires only when it moved. */
uint64_t router_holder_generation(const struct router_holder *h)
{
	return atomic_load_explicit(&((struct router_holder *)h)->generation, memory_order_acquire);
}
