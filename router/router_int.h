/*
 * router_int.h — private layout of a seed directory snapshot.
 *
 * Only router/router_*.c include this; everything else sees router.h.
 * A snapshot is built once by the parser (router_parse.c), its placement
 * tables by router_place.c, and never changes after that: readers on any
 * thread use it without locks while they hold a reference.
 */
#ifndef SEEDGATE_ROUTER_INT_H
#define SEEDGATE_ROUTER_INT_H

#include <stdatomic.h>

#include "router.h"

/* How many points a datacenter's ring holds (router_place.c): a node of
 * weight w owns w x 2^S points, S the directory's `ring-scale` (0 to
 * ROUTER_RING_SCALE_MAX, default ROUTER_RING_SCALE_DEFAULT: 256 points per
 * unit of weight, 2560 for a node of the default weight 10). S is set by
 * the operator and by nothing else: it never follows the node count, so a
 * join or a leave keeps the ring's exact stability at any size.
 * The parser refuses a directory whose rings would hold more than
 * ROUTER_RING_POINTS_MAX points in all (router.h), before building
 * anything. Balance needs points: a node with V points gets a share with a
 * relative spread of about 1/sqrt(V) (2560 points: 2.0 %). Memory: see
 * struct router_ring, docs/seed-directory.md (Placement) and
 * bench/results/router.md. */
static inline uint32_t router_ring_points(unsigned weight, int s)
{
	return (uint32_t)weight << s;
}

/* Largest number of nodes in one datacenter (a node's ring index must fit
 * in the low bits of a ring entry, see router_place.c). */
#define ROUTER_DC_NODES_MAX (1u << 24)

/* A ring line: one 64-byte cache line, a header word then up to
 * ROUTER_LINE_SLOTS entries. */
#define ROUTER_LINE_WORDS 16
#define ROUTER_LINE_SLOTS (ROUTER_LINE_WORDS - 1)

/* Most points per bucket on average: the number of buckets is the smallest
 * power of two that keeps the mean at or under this (so the mean is
 * between half of it and it). Below ROUTER_LINE_SLOTS, so lines rarely
 * overflow. */
#ifndef ROUTER_LINE_FILL_MAX
#define ROUTER_LINE_FILL_MAX 13
#endif

/* The consistent-hash ring of one datacenter's nodes (router_place.c), a
 * "gapped" sorted array: bucket b (the points whose 32-bit position has b
 * as its top `bits` bits) starts in cache line b, so a lookup reads one
 * line (and sometimes its neighbour, fetched alongside).
 *
 * A point at position p of the node with ring index k is the entry
 * (p & ~top_bits) << ibits | k: the bucket gives the top bits, the entry
 * the rest, so a point takes 4 bytes. Ring indices follow node names, so
 * sorting entries numerically inside a bucket orders points by (position,
 * node name).
 *
 * Line L is the 16 words line[16 L .. 16 L + 15]: word 0 is the header
 * skip | count << 16, words 1..15 hold entries. All entries, in ring order,
 * are laid out bucket after bucket; bucket b starts at line b unless the
 * buckets before it spilled that far, in which case it starts right after
 * them: skip is the number of entries of earlier buckets at or after line
 * L (filling the lines from L on), count the number of entries of bucket
 * L. A line then holds min(15, skip + count) entries; a spill chain keeps
 * going through lines past 2^bits if it must (nlines >= 2^bits). */
struct router_ring {
	uint32_t *line;                /* nlines x 16 words, 64-byte aligned */
	uint32_t *node;                /* ring index -> target index (name order) */
	uint32_t npoints;
	uint32_t nlines;
	unsigned bits;                 /* bucket bits, >= ibits */
	unsigned ibits;                /* bits of a ring index */
	unsigned distinct;             /* nodes on the ring (a walk stops at min(R, distinct)) */
};

/* Starts fetching the line(s) a lookup of position key will read. */
static inline void router_ring_prefetch(const struct router_ring *r, uint32_t key)
{
	const uint32_t *l = r->line + ((size_t)(key >> (32 - r->bits)) * ROUTER_LINE_WORDS);

	__builtin_prefetch(l);
	__builtin_prefetch(l + ROUTER_LINE_WORDS);
}

/* A pin: a project id and the nodes named on its "project" line. */
struct router_pin {
	uint8_t id[16];
	uint32_t first;                /* index into dir->pin_nodes */
	uint32_t count;                /* 0 = empty slot of the pin table */
};

struct router_dc {
	const char *name;
	const char *hub_backend;       /* "hubs_<dc>" */
	const char **node_backends;    /* node_shards entries: "nodes_<dc>" or "nodes_<dc>_<k>" */
	unsigned nhubs, nnodes;
	uint64_t points;               /* sum of its nodes' weight x 2^ring_scale (rings or not) */
	uint32_t *hubs;                /* target indices of the dc's hubs, file order */
	struct router_ring ring;
};

/* What a decision reads about a target, packed: 16 bytes a target instead
 * of a whole struct router_target, so the table of a 10k-node directory
 * (160 KB) stays in cache between requests. */
struct router_hot {
	const char *name;
	uint32_t dc;
	uint16_t drain;
	uint16_t shard;                /* its node backend in its dc */
};

/* A pool: its backend in every dc and its members there (target indices
 * in dir->pool_members, members of dc k at [first[k], first[k + 1])). */
struct router_pool {
	const char *name;
	const char **backend;          /* ndcs entries, "pool_<pool>_<dc>" */
	const uint32_t *first;         /* ndcs + 1 offsets into dir->pool_members */
};

/* The route table, a hash trie: every route prefix and every shorter
 * prefix of it (whole segments) has a slot, keyed by its text; a lookup
 * hashes the path's first segment, then its first two... and stops at the
 * first miss or at a slot no longer prefix extends. Open addressing, load
 * factor <= 1/2. */
struct router_route_slot {
	const char *key;               /* NULL = empty slot */
	uint64_t hash;
	uint32_t len;
	int32_t pool;                  /* -1: only a step towards longer prefixes */
	uint32_t deeper;               /* a longer prefix continues with '/' */
	uint32_t route;                /* index into dir->routes when pool >= 0 */
};

struct router_route {
	const char *prefix;
	int pool;
};

struct router_dir {
	atomic_uint refs;
	unsigned replicas;
	int ring_scale;                /* `ring-scale S`: 2^S points per unit of weight */
	unsigned node_shards;          /* `node-shards N`: node backends per dc */
	const char **node_backends;    /* ndcs x node_shards, see struct router_dc */
	unsigned ndcs;
	struct router_dc *dcs;
	unsigned ntargets;
	struct router_target *targets;
	struct router_hot *hot;        /* ntargets entries, see above */
	struct router_pin *pins;       /* open-addressing table, pin_mask + 1 slots */
	uint32_t pin_mask;
	unsigned npins;
	uint32_t *pin_nodes;
	uint32_t *names;               /* name -> target index table, names_mask + 1 slots, UINT32_MAX = empty */
	uint32_t names_mask;
	unsigned npools;
	struct router_pool *pools;
	uint32_t *pool_members;        /* target indices, by pool then dc, file order */
	const char **pool_backends;    /* npools x ndcs */
	uint32_t *pool_first;          /* npools x (ndcs + 1) */
	unsigned nroutes;
	struct router_route *routes;   /* file order */
	struct router_route_slot *route_slots;
	uint32_t route_mask;
	/* What the first segments of the routes look like, so that most paths
	 * are told "no route" before any hash: a bit per first byte, and a bit
	 * per length (63: 63 bytes or more). */
	uint64_t route_first_byte[4];
	uint64_t route_first_len;
	char *strings;                 /* arena holding every string of the snapshot */
	size_t strings_len;
	size_t memory;                 /* bytes allocated for this snapshot */
	bool rings;                    /* rings built (not loaded with ROUTER_LOAD_NO_RINGS) */
};

/* router_place.c: most records a ring build sorts at once (more points
 * take more passes over them); a variable for the ring test. */
extern size_t router_place_scratch_max;
/* router_place.c: builds every dc's ring, unless flags has
 * ROUTER_LOAD_NO_RINGS; -1 on allocation failure. */
int router_place_build(struct router_dir *d, unsigned flags, char *err, size_t errlen);
void router_place_free(struct router_dir *d);
/* Hash of a project id shared by pin lookup and the rings. */
uint64_t router_project_hash(const uint8_t id[16]);
/* R distinct nodes of one dc for a project hash; returns the count written. */
size_t router_place_dc(const struct router_dir *d, unsigned dc, uint64_t h, unsigned *out, size_t max);
/* router_project.c: one pass over an id's text (see there). */
bool router_project_scan(const char *s, uint8_t id[16], char *canon);
bool router_classify_scan(const char *path, size_t len, uint8_t id[16], char *canon);
/* The pin of a project, or NULL. */
const struct router_pin *router_pin_find(const struct router_dir *d, const uint8_t id[16], uint64_t h);

/* router_dir.c */
void router_dir_destroy(struct router_dir *d);
uint64_t router_name_hash(const char *name, size_t len);

#endif /* SEEDGATE_ROUTER_INT_H */
