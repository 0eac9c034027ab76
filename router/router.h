/*
 * router.h — the seed directory, placement and routing decision of seedgate.
 *
 * This is the one public header of librouter (build/librouter.a). It has no
 * I/O apart from router_dir_load() reading one file, never logs, never exits:
 * errors come back through a caller-owned buffer as "file:line: message".
 *
 * A loaded directory (struct router_dir) is an immutable, reference-counted
 * snapshot. Every pointer handed out by the accessors stays valid as long as
 * the caller holds a reference. A router_holder publishes a new snapshot
 * atomically; workers acquire a reference without ever blocking on a load.
 *
 * Link with $(XXH_LIBS) (Debian's libxxhash) and -pthread.
 */
#ifndef SEEDGATE_ROUTER_H
#define SEEDGATE_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits of the text form (docs/architecture.md §2.1). */
#define ROUTER_NAME_MAX      32      /* names: [A-Za-z0-9_.-]{1,32} */
#define ROUTER_MAX_REPLICAS  16      /* "replicas N": 1..16 */
#define ROUTER_MAX_DCS       64      /* datacenters per directory */
#define ROUTER_MAX_PIN       16      /* nodes named on one "project" line */
#define ROUTER_MAX_WEIGHT    256     /* weight=1..256 (HAProxy's server weight range) */
#define ROUTER_RING_SCALE_MAX      8  /* "ring-scale S": 0..8, 2^S points per unit of weight */
#define ROUTER_RING_SCALE_DEFAULT  8  /* 256 points per unit of weight */
#define ROUTER_MAX_NODE_SHARDS   256  /* "node-shards N": 1..256 node backends per dc */
/* Most ring points a directory may need, all datacenters together: the
 * parser refuses more (with the ring-scale that would fit) before it
 * builds anything, so no seed file can make a process allocate more than
 * about 9.2 bytes a point for its rings (docs/seed-directory.md). */
#define ROUTER_RING_POINTS_MAX     (UINT64_C(1) << 25)
/* A preference list never has more entries than this: pinned nodes plus R in
 * every datacenter. Size caller arrays with it. */
#define ROUTER_PREF_MAX      (ROUTER_MAX_PIN + ROUTER_MAX_REPLICAS * ROUTER_MAX_DCS)

struct router_dir;                 /* immutable snapshot, refcounted, opaque */

/* ROUTER_SERVER: a member of a pool ("server" line), reached by path
 * prefix ("route" lines), backend pool_<pool>_<dc>. */
enum router_kind { ROUTER_HUB, ROUTER_NODE, ROUTER_SERVER };

/* Path classes (docs/seed-directory.md, Pools): "route PREFIX POOL". */
#define ROUTER_ROUTE_LEN_MAX   128   /* bytes of a prefix, leading '/' included */
#define ROUTER_ROUTE_DEPTH_MAX 8     /* segments of a prefix */

enum router_check_kind { ROUTER_CHECK_DEFAULT, ROUTER_CHECK_TCP, ROUTER_CHECK_HTTP,
                         ROUTER_CHECK_HTTPS, ROUTER_CHECK_NONE };

/* Health-check settings of one target (healthcheckd applies them). Fields
 * left NULL / 0 mean "healthcheckd's default"; they are already merged with
 * the directory's check-defaults line. */
struct router_check {
	enum router_check_kind kind;
	const char *path, *host, *method, *sni;              /* NULL = default */
	unsigned status_min, status_max, interval_ms, timeout_ms, rise, fall, jitter_pct; /* 0 = default */
};

/* One hub or node. Read-only, valid while the snapshot is held. */
struct router_target {
	const char *name;
	enum router_kind kind;
	unsigned dc;
	unsigned weight;
	bool drain;
	const char *host;           /* as written: IP literal (no brackets) or hostname */
	uint16_t port;
	const char *addr;           /* "host:port" as written (v6 keeps its brackets) */
	struct router_check check;  /* merged with check-defaults */
	int pool;                   /* ROUTER_SERVER: its pool's index; -1 for hubs and nodes */
	unsigned shard;             /* ROUTER_NODE: its node backend in its dc (node-shards) */
};

/* Loading. Both return a snapshot holding one reference, or NULL with
 * "file:line: message" in err (the whole file is rejected). */
struct router_dir *router_dir_load(const char *path, char *err, size_t errlen);
struct router_dir *router_dir_parse(const char *text, size_t len, const char *filename,
                                    char *err, size_t errlen);
/* The same with flags. ROUTER_LOAD_NO_RINGS: a directory for a process that
 * never routes (healthcheckd, seedctl check/haproxy): the rings are not
 * built (no placement time nor memory), router_dir_has_rings() is false,
 * router_preference() returns 0 entries (pins included) and
 * router_decide*() return -1 with a NULL backend. Everything else (targets,
 * names, dcs, pins, checks) is there. */
#define ROUTER_LOAD_NO_RINGS  0x1u
struct router_dir *router_dir_load_flags(const char *path, unsigned flags, char *err, size_t errlen);
struct router_dir *router_dir_parse_flags(const char *text, size_t len, const char *filename,
                                          unsigned flags, char *err, size_t errlen);
bool router_dir_has_rings(const struct router_dir *d);
struct router_dir *router_dir_ref(struct router_dir *d);
void router_dir_release(struct router_dir **d);         /* drops a ref, sets *d = NULL */

unsigned router_dir_replicas(const struct router_dir *d);
unsigned router_dir_dc_count(const struct router_dir *d);
const char *router_dir_dc_name(const struct router_dir *d, unsigned dc);
int router_dir_dc_find(const struct router_dir *d, const char *name);         /* index or -1 */
unsigned router_dir_target_count(const struct router_dir *d);                /* hubs + nodes */
const struct router_target *router_dir_target(const struct router_dir *d, unsigned i);
int router_dir_target_find(const struct router_dir *d, const char *name);     /* index or -1 */
const char *router_dir_hub_backend(const struct router_dir *d, unsigned dc);   /* "hubs_<dc>" */
/* Node backends (docs/seed-directory.md, node-shards): a dc's nodes are
 * spread over router_dir_node_shards() backends by a hash of their name,
 * "nodes_<dc>" when there is one, "nodes_<dc>_<k>" (k from 0) when there
 * are more. A node's own is router_dir_node_backend(d, t->dc, t->shard). */
unsigned router_dir_node_shards(const struct router_dir *d);
const char *router_dir_node_backend(const struct router_dir *d, unsigned dc, unsigned shard);
/* Whether be is one of d's node backends. */
bool router_dir_is_node_backend(const struct router_dir *d, const char *be);
/* Additions: counts for summaries and sizing. */
unsigned router_dir_pin_count(const struct router_dir *d);
unsigned router_dir_hub_count(const struct router_dir *d, unsigned dc);
unsigned router_dir_node_count(const struct router_dir *d, unsigned dc);   /* all nodes, drained too */
size_t router_dir_memory(const struct router_dir *d);                       /* bytes held by the snapshot */
/* Pools and routes (path classes). A pool has a backend in every dc,
 * "pool_<pool>_<dc>"; its members of one dc, in file order, are target
 * indices. A route's prefix is a whole number of path segments. */
unsigned router_dir_pool_count(const struct router_dir *d);
const char *router_dir_pool_name(const struct router_dir *d, unsigned pool);
int router_dir_pool_find(const struct router_dir *d, const char *name);      /* index or -1 */
const char *router_dir_pool_backend(const struct router_dir *d, unsigned pool, unsigned dc);
size_t router_dir_pool_members(const struct router_dir *d, unsigned pool, unsigned dc,
                               const uint32_t **members);
unsigned router_dir_route_count(const struct router_dir *d);
/* The i-th route in file order: its prefix, returns its pool (-1 if i is out of range). */
int router_dir_route(const struct router_dir *d, unsigned i, const char **prefix);
/* The pool of the longest route prefix matching path (a non-project path:
 * the prefix, then end, '/' or '?'), or -1; *matched (may be NULL) gets
 * the prefix. Reads at most len bytes, never allocates, costs at most one
 * hash probe per segment of the longest prefix, whatever the number of
 * routes. */
int router_route_match(const struct router_dir *d, const char *path, size_t len, const char **matched);
/* Placement rings (docs/seed-directory.md, Placement): `ring-scale S` gives
 * a node of weight W W x 2^S points on its dc's ring. The scale, and a dc's
 * points, are there with or without rings (ROUTER_LOAD_NO_RINGS). */
int router_dir_ring_scale(const struct router_dir *d);
uint64_t router_dir_ring_points(const struct router_dir *d, unsigned dc);

/* Atomic holder: a loader thread publishes, workers read without blocking. */
struct router_holder;
struct router_holder *router_holder_new(void);
void router_holder_free(struct router_holder **h);       /* drops the held snapshot's ref */
void router_holder_publish(struct router_holder *h, struct router_dir *d); /* takes over the caller's ref */
struct router_dir *router_holder_acquire(struct router_holder *h);       /* new ref, or NULL if none */
/* Atomic load; bumps on publish, lets a worker keep its own ref and
 * re-acquire only on change. */
uint64_t router_holder_generation(const struct router_holder *h);

/* Project ids and placement */
int router_project_parse(const char *s, size_t len, uint8_t id[16]);   /* 0 ok (accepts upper case), -1 */
void router_project_format(const uint8_t id[16], char out[37]);        /* lower-case canonical */
/* Fills targets[] (at most max entries) with the project's preference list:
 * R nodes of local_dc, then R of every other dc in file order; a pin replaces
 * the computed list (see docs/seed-directory.md). Returns the count; *pinned
 * (may be NULL) tells whether a pin applied. Never allocates. */
size_t router_preference(const struct router_dir *d, const uint8_t id[16], unsigned local_dc,
                         unsigned *targets, size_t max, bool *pinned);
/* RFC 1123 host name (labels of [A-Za-z0-9-], at most 253 bytes) with at
 * least one non-digit, so a mistyped IPv4 address never passes as a name.
 * The rule for seed addresses, also used for etcd endpoints. */
bool router_hostname_valid(const char *s, size_t len);
/* "/<uuid>" or "/<uuid>/..." (query ignored); reads at most len bytes. */
bool router_classify_path(const char *path, size_t len, uint8_t id[16]);

/* Decision */
enum router_why { ROUTER_WHY_PRIMARY, ROUTER_WHY_REPLICA, ROUTER_WHY_REMOTE_DC, ROUTER_WHY_PINNED,
                  ROUTER_WHY_HUB, ROUTER_WHY_NO_NODE, ROUTER_WHY_NO_HUB, ROUTER_WHY_POOL,
                  ROUTER_WHY_NO_POOL };
#define ROUTER_WHY_COUNT 9
/* "primary","replica","remote-dc","pinned","hub","no-node","no-hub","pool","no-pool" */
const char *router_why_str(enum router_why w);

struct router_decision {
	enum router_why why;
	int target;             /* chosen node index (project routed to a node), else -1 */
	const char *backend;    /* "nodes_<dc>", "hubs_<dc>" or "pool_<pool>_<dc>", owned by the snapshot */
	const char *server;     /* node name, or NULL when routed to hubs (HAProxy balances) */
	bool is_project;
	int pool;               /* the path's pool (route prefix), -1 if none; set even when
	                         * no member is up (why no-pool, routed to the hubs) */
	bool first_segment;     /* the path's first segment alone decided (no route goes
	                         * deeper under it): a decision cache may key on it */
	char project[37];       /* canonical id when is_project */
};

/* down: one byte per target index of THIS snapshot, non-zero = down; NULL = all up.
 * Drained nodes (state=drain) are never chosen. Hubs: local dc's hubs backend if any
 * local hub is up, else the next dc (file order) with a hub up; none -> ROUTER_WHY_NO_HUB
 * with the local hubs backend. A non-project path matching a route prefix
 * (longest wins) goes to its pool: the local dc's pool backend if one of its
 * members there is up, else the next dc (file order, wrapping) with one up
 * (ROUTER_WHY_POOL); none up -> the hubs rule with ROUTER_WHY_NO_POOL.
 * Returns 0, or -1 on bad arguments (local_dc out of
 * range). Never allocates; O(1) in cluster size apart from the hub scan. */
int router_decide(const struct router_dir *d, unsigned local_dc, const char *path, size_t len,
                  const uint8_t *down, struct router_decision *out);

/* Decision for an already-parsed project id (what router_decide does after
 * classifying the path). */
int router_decide_project(const struct router_dir *d, unsigned local_dc, const uint8_t id[16],
                          const uint8_t *down, struct router_decision *out);

#endif /* SEEDGATE_ROUTER_H */
