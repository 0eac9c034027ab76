/*
 * route_map.c — the map publisher (route_map.h).
 *
 * Workers -> main: one single-producer single-consumer ring per worker of
 * fixed-size items (a decision or a touch); the worker stores the item and
 * releases the tail, the main loop drains every RM_DRAIN_MS. A full ring
 * drops the item (counted): the project's next miss brings it again.
 *
 * Stale decisions: an item carries the generation of the view the worker
 * decided with. route_map_view() records the new generation before it
 * recomputes the table, and the drain drops items of any other generation,
 * so a decision made with an old view can never be published after the
 * invalidation that replaced it.
 *
 * The table (open addressing, keyed by the path's first segment) is what
 * this agent's map holds once the queued commands are applied. Commands
 * queue in order; a rebuild replaces the queue with a snapshot of the whole
 * table and runs prepare / add @V payloads / commit before the next queued
 * command. The cap: when a new entry would exceed --map-max, the most
 * recently used half is kept (misses, and sampled hits when haproxy.cfg
 * sends `route-touch`, mark an entry used) and the map is rebuilt from it.
 *
 * Admission: a project is published on its second miss, not its first. A
 * Bloom filter (the doorkeeper) remembers first misses; a stream of
 * never-seen projects (a scan, random ids) then costs HAProxy no `add map`
 * and no eviction rebuild at all, and a project in use is published after
 * one more round trip. A Bloom filter errs only towards admitting (a false
 * positive publishes a project on its first miss): a table of one hash per
 * slot erred the other way, and two projects sharing a slot, asked for in
 * turn, wiped each other out forever and were never published. The filter
 * is cleared after as many first misses as it has 64-bit words (false
 * positives stay below 1e-4), so it forgets projects seen once long ago.
 */
#include "route_map.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "router.h"
#include "route_agent.h"
#include "route_log.h"
#include "hc_daemon.h"
#include "hc_metrics.h"

#define RM_RING          1024u      /* items per worker ring (power of two) */
#define RM_DRAIN_S       0.010      /* the main loop drains the rings this often */
#define RM_PROBE_S       1.0        /* an idle publisher checks HAProxy's worker this often */
#define RM_TIMEOUT_S     2.0        /* a batch unanswered that long is given up */
#define RM_BATCH_MAX     12000u     /* bytes of commands per batch: payloads stay under 16 KB */
#define RM_OPS_MAX       (4u << 20) /* queued commands beyond this: start over (HAProxy not reading) */
#define RM_KEY_LEN       36         /* a project id, the only key published */
/* In HAProxy's map the key is the project id and a '/': haproxy.cfg looks
 * up `path,bytes(1,37)`, which costs HAProxy a fixed few instructions where
 * `path,field(2,/)` scanned the path (800 instructions per lookup, two
 * lookups on a miss). A hit then needs "/<id>/" at the start of the path,
 * exactly a project path; "/<id>" alone, or a longer first segment, never
 * hits and is asked of the agent. Every command writes the key with
 * RM_KEY_FMT and RM_KEY_ARG: a key written without its '/' would never hit. */
#define RM_KEY_FMT       "%.*s/"
#define RM_KEY_ARG(e)    RM_KEY_LEN, (e)->key
#define RM_DEST_MAX      (6 + ROUTER_NAME_MAX + 1 + ROUTER_NAME_MAX + 1)
/* Changed entries up to this many are deleted one by one; more rebuild the
 * map. On 2.6 `del map` scans the whole map (measured: 0.23 ms per del at
 * 20k entries, 2.6 ms at 100k, about 12-26 ns per entry) and a rebuild
 * costs 2.5-8 us per entry, so dels are cheaper up to a few hundred
 * changes; 64 bounds how long the dels stall HAProxy's thread (64 x 0.12 ms
 * at the default cap of 10k). */
#define RM_DEL_MAX       64u

enum { RM_DECIDED = 1, RM_TOUCH = 2 };
enum { E_FREE = 0, E_USED = 1, E_GONE = 2 };
enum batch_kind { B_NONE, B_PROBE, B_OPS, B_PREPARE, B_LOAD, B_COMMIT };
enum rb_phase { RB_NONE, RB_PREPARE, RB_LOAD, RB_COMMIT };

struct rm_item {
	uint64_t gen;
	uint8_t kind, klen, dlen;
	char key[RM_KEY_LEN];
	char dest[RM_DEST_MAX];
};

struct rm_ring {
	_Alignas(64) _Atomic uint32_t head;    /* next item the main loop reads */
	_Alignas(64) _Atomic uint32_t tail;    /* next slot the worker writes */
	_Atomic uint64_t dropped;              /* ring full (worker writes) */
	struct rm_item item[RM_RING];
};

struct rm_entry {
	char key[RM_KEY_LEN];
	uint8_t state, dlen;
	char dest[RM_DEST_MAX];
	double used;                           /* ev_now() of the last miss or touch */
};

struct route_map {
	struct ev_loop *loop;
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *file;
	unsigned max, nworkers;
	struct rm_ring *rings;
	uint64_t gen;                          /* generation of the view the table follows */

	struct rm_entry *tab;
	size_t size, used, gone;               /* slots, live entries, tombstones */
	uint64_t *door;                        /* doorkeeper: Bloom filter of size words */
	size_t door_n;                         /* first misses since it was cleared */

	struct hcd_buf ops;                    /* queued commands, one per line */
	struct hcd_buf snap;                   /* rebuild payload: "key dest\n" lines */
	enum rb_phase rb;
	long rb_version;
	uint64_t rb_seq;

	/* the batch in flight */
	int fd;
	ev_io io;
	ev_timer timeout, drain, probe, backoff;
	struct hcd_buf wr, rd;
	enum batch_kind bkind;
	unsigned bcmds;                        /* commands after "show info" */
	uint64_t bseq;
	double last_batch;
	unsigned backoff_ms;
	long pid;                              /* HAProxy worker the table describes */
	bool ok;                               /* the last batch was answered */

	uint64_t adds, invalidations, rebuilds, evictions, touches, stale, batches, first_misses;
	uint64_t cmd_errors, conn_errors, resets_reload, resets_error;
};

static void rm_kick(struct route_map *m);

/* ---------------------------------------------------------------- workers */

/* Single producer: only worker `worker` writes its ring's tail. */
static void ring_put(struct route_map *m, unsigned worker, const struct rm_item *it)
{
	struct rm_ring *r = &m->rings[worker];
	uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);

	if (tail - head >= RM_RING) {
		atomic_store_explicit(&r->dropped, atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
		                      memory_order_relaxed);
		return;
	}
	r->item[tail & (RM_RING - 1)] = *it;
	atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
}

/* See route_map.h. Only a project id (36 bytes) is ever a key. */
void route_map_push(struct route_map *m, unsigned worker, uint64_t gen, const char *key, size_t klen,
                    const char *backend, const char *server)
{
	size_t bl = strlen(backend), sl = strlen(server);
	struct rm_item it;

	if (klen != RM_KEY_LEN || worker >= m->nworkers || bl + 1 + sl > RM_DEST_MAX)
		return;
	it.gen = gen;
	it.kind = RM_DECIDED;
	it.klen = (uint8_t)klen;
	it.dlen = (uint8_t)(bl + 1 + sl);
	memcpy(it.key, key, klen);
	memcpy(it.dest, backend, bl);
	it.dest[bl] = '/';
	memcpy(it.dest + bl + 1, server, sl);
	ring_put(m, worker, &it);
}

/* `route-touch` (args key): a sampled hit of the map; keeps the entry hot. */
static void on_touch(void *udata, unsigned worker, const struct spop_args *args, struct spop_ack *ack)
{
	struct route_map *m = udata;
	const struct spop_arg *k = spop_args_find(args, "key");
	struct rm_item it;

	(void)ack;
	if (!k || (k->value.type != SPOP_DATA_STR && k->value.type != SPOP_DATA_BIN) ||
	    k->value.v.str.len != RM_KEY_LEN || worker >= m->nworkers)
		return;
	it.gen = 0;
	it.kind = RM_TOUCH;
	it.klen = RM_KEY_LEN;
	it.dlen = 0;
	memcpy(it.key, k->value.v.str.ptr, RM_KEY_LEN);
	ring_put(m, worker, &it);
}

/* ---------------------------------------------------------------- table */

static uint64_t key_hash(const char *key)
{
	uint64_t h = 1469598103934665603ull;

	for (unsigned i = 0; i < RM_KEY_LEN; i++)
		h = (h ^ (uint8_t)key[i]) * 1099511628211ull;
	return h ^ (h >> 29);
}

/* The doorkeeper: true if KEY's hash H was (probably) seen since the last
 * clear, else remembers it. Three bits by double hashing; SIZE words of 64
 * bits, cleared after SIZE insertions: at most SIZE keys in SIZE * 64 bits
 * with 3 hashes is a false positive rate under 1e-4. */
static bool door_seen(struct route_map *m, uint64_t h)
{
	uint64_t nbits = (uint64_t)m->size * 64;
	uint64_t h2 = (h ^ (h >> 31)) * 0x9e3779b97f4a7c15ull;
	uint64_t pos[3];
	bool seen = true;

	h2 |= 1;                               /* odd: the three positions differ */
	for (unsigned i = 0; i < 3; i++) {
		pos[i] = (h + i * h2) & (nbits - 1);
		if (!(m->door[pos[i] >> 6] & (1ull << (pos[i] & 63))))
			seen = false;
	}
	if (seen)
		return true;
	if (++m->door_n > m->size) {
		memset(m->door, 0, m->size * sizeof(*m->door));
		m->door_n = 1;
	}
	for (unsigned i = 0; i < 3; i++)
		m->door[pos[i] >> 6] |= 1ull << (pos[i] & 63);
	return false;
}

static struct rm_entry *tab_find(struct route_map *m, const char *key)
{
	for (size_t i = (size_t)key_hash(key) & (m->size - 1);; i = (i + 1) & (m->size - 1)) {
		struct rm_entry *e = &m->tab[i];

		if (e->state == E_FREE)
			return NULL;
		if (e->state == E_USED && memcmp(e->key, key, RM_KEY_LEN) == 0)
			return e;
	}
}

/* A slot for a key known absent (the table always has free slots: at most
 * max live entries plus tombstones in twice that many slots). */
static struct rm_entry *tab_insert(struct route_map *m, const char *key)
{
	size_t i = (size_t)key_hash(key) & (m->size - 1);

	while (m->tab[i].state == E_USED)
		i = (i + 1) & (m->size - 1);
	if (m->tab[i].state == E_GONE)
		m->gone--;
	m->used++;
	memcpy(m->tab[i].key, key, RM_KEY_LEN);
	m->tab[i].state = E_USED;
	return &m->tab[i];
}

static void tab_remove(struct route_map *m, struct rm_entry *e)
{
	e->state = E_GONE;
	m->used--;
	m->gone++;
}

/* Re-inserts `n` entries (a copy) into an emptied table. */
static void tab_refill(struct route_map *m, const struct rm_entry *keep, size_t n)
{
	memset(m->tab, 0, m->size * sizeof(*m->tab));
	m->used = m->gone = 0;
	for (size_t i = 0; i < n; i++) {
		struct rm_entry *e = tab_insert(m, keep[i].key);

		e->dlen = keep[i].dlen;
		memcpy(e->dest, keep[i].dest, keep[i].dlen);
		e->used = keep[i].used;
	}
}

/* Copies the live entries into a new array; NULL when out of memory. */
static struct rm_entry *tab_live(const struct route_map *m, size_t *n)
{
	struct rm_entry *out = malloc((m->used ? m->used : 1) * sizeof(*out));
	size_t k = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < m->size; i++)
		if (m->tab[i].state == E_USED)
			out[k++] = m->tab[i];
	*n = k;
	return out;
}

static int by_used_desc(const void *a, const void *b)
{
	double ua = ((const struct rm_entry *)a)->used, ub = ((const struct rm_entry *)b)->used;

	return ua < ub ? 1 : ua > ub ? -1 : 0;
}

/* ---------------------------------------------------------------- commands */

static void op(struct route_map *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void op(struct route_map *m, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(line))
		hcd_buf_append(&m->ops, line, (size_t)n);
}

/* Forgets everything: the map is cleared by the next batch, every entry
 * comes back with its project's next miss. */
static void rm_reset(struct route_map *m)
{
	memset(m->tab, 0, m->size * sizeof(*m->tab));
	m->used = m->gone = 0;
	hcd_buf_reset(&m->ops);
	hcd_buf_reset(&m->snap);
	m->rb = RB_NONE;
	m->rb_seq++;
	op(m, "clear map %s\n", m->file);
}

/* Replaces the queued commands with a versioned rebuild of the whole table. */
static void rm_rebuild(struct route_map *m)
{
	hcd_buf_reset(&m->ops);
	hcd_buf_reset(&m->snap);
	for (size_t i = 0; i < m->size; i++) {
		const struct rm_entry *e = &m->tab[i];

		if (e->state == E_USED)
			hcd_buf_printf(&m->snap, RM_KEY_FMT " %.*s\n", RM_KEY_ARG(e), (int)e->dlen, e->dest);
	}
	m->rb = RB_PREPARE;
	m->rb_seq++;
}

/* At the cap: keeps the most recently used half and rebuilds the map. */
static void rm_evict(struct route_map *m)
{
	size_t n, keep = m->max / 2;
	struct rm_entry *live = tab_live(m, &n);

	if (!live) {
		rm_reset(m);
		m->evictions += m->used;
		return;
	}
	qsort(live, n, sizeof(*live), by_used_desc);
	if (keep > n)
		keep = n;
	m->evictions += n - keep;
	tab_refill(m, live, keep);
	free(live);
	rm_rebuild(m);
}

/* One drained item, on the main loop. */
static void rm_item(struct route_map *m, const struct rm_item *it, double now)
{
	struct rm_entry *e = tab_find(m, it->key);

	if (it->kind == RM_TOUCH) {
		if (e) {
			e->used = now;
			m->touches++;
		}
		return;
	}
	if (it->gen != m->gen) {
		m->stale++;
		return;
	}
	if (e) {                    /* already published (or queued): a miss meanwhile */
		e->used = now;
		return;
	}
	if (m->door && !door_seen(m, key_hash(it->key))) {
		m->first_misses++;     /* a first miss: remembered, the next publishes */
		return;
	}
	if (m->used >= m->max)
		rm_evict(m);
	if (m->used + m->gone >= m->size * 3 / 4) {
		size_t n;
		struct rm_entry *live = tab_live(m, &n);

		if (!live)
			return;
		tab_refill(m, live, n);
		free(live);
	}
	e = tab_insert(m, it->key);
	e->dlen = it->dlen;
	memcpy(e->dest, it->dest, it->dlen);
	e->used = now;
	m->adds++;
	op(m, "add map %s " RM_KEY_FMT " %.*s\n", m->file, RM_KEY_ARG(e), (int)e->dlen, e->dest);
}

static void on_drain(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct route_map *m = w->data;
	double now = ev_now(loop);

	(void)revents;
	for (unsigned k = 0; k < m->nworkers; k++) {
		struct rm_ring *r = &m->rings[k];
		uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
		uint32_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);

		for (; head != tail; head++)
			rm_item(m, &r->item[head & (RM_RING - 1)], now);
		atomic_store_explicit(&r->head, head, memory_order_release);
	}
	if (hcd_buf_pending(&m->ops) > RM_OPS_MAX) {
		route_log(LOG_WARNING, "map %s: %zu bytes of commands queued, starting over", m->file,
		          hcd_buf_pending(&m->ops));
		m->resets_error++;
		rm_reset(m);
	}
	rm_kick(m);
}

/* See route_map.h. */
void route_map_view(struct route_map *m, const struct route_view *v, uint64_t gen)
{
	struct rm_entry **changed;
	size_t nchanged = 0;
	char path[1 + RM_KEY_LEN];

	m->gen = gen;
	if (m->used == 0 || !v)
		return;
	changed = malloc(m->used * sizeof(*changed));
	if (!changed) {
		route_log(LOG_ERR, "map %s: out of memory recomputing, clearing the map", m->file);
		m->resets_error++;
		rm_reset(m);
		rm_kick(m);
		return;
	}
	path[0] = '/';
	for (size_t i = 0; i < m->size; i++) {
		struct rm_entry *e = &m->tab[i];
		struct router_decision dec;
		char dest[RM_DEST_MAX + 1];
		int dl = 0;

		if (e->state != E_USED)
			continue;
		memcpy(path + 1, e->key, RM_KEY_LEN);
		if (router_decide(v->dir, v->local_dc, path, sizeof(path), v->down, &dec) == 0 && dec.is_project &&
		    dec.server)
			dl = snprintf(dest, sizeof(dest), "%s/%s", dec.backend, dec.server);
		if (dl > 0 && (size_t)dl <= RM_DEST_MAX && (size_t)dl == e->dlen && memcmp(dest, e->dest, e->dlen) == 0)
			continue;
		changed[nchanged++] = e;
		/* the old value goes first (del), the new one after */
		if (m->rb == RB_NONE && nchanged <= RM_DEL_MAX)
			op(m, "del map %s " RM_KEY_FMT "\n", m->file, RM_KEY_ARG(e));
		if (dl > 0 && (size_t)dl <= RM_DEST_MAX) {
			e->dlen = (uint8_t)dl;
			memcpy(e->dest, dest, (size_t)dl);
		} else {
			e->dlen = 0;            /* no node any more: dropped below */
		}
	}
	m->invalidations += nchanged;
	for (size_t i = 0; i < nchanged; i++) {
		struct rm_entry *e = changed[i];

		if (e->dlen == 0)
			tab_remove(m, e);
		else if (m->rb == RB_NONE && nchanged <= RM_DEL_MAX)
			op(m, "add map %s " RM_KEY_FMT " %.*s\n", m->file, RM_KEY_ARG(e), (int)e->dlen, e->dest);
	}
	free(changed);
	/* many changes, or changes while a rebuild runs: one fresh rebuild
	 * (it replaces the commands queued above) */
	if (nchanged > 0 && (m->rb != RB_NONE || nchanged > RM_DEL_MAX))
		rm_rebuild(m);
	rm_kick(m);
}

/* ---------------------------------------------------------------- batches */

static void batch_close(struct route_map *m)
{
	if (m->fd != -1) {
		ev_io_stop(m->loop, &m->io);
		close(m->fd);
		m->fd = -1;
	}
	ev_timer_stop(m->loop, &m->timeout);
	hcd_buf_reset(&m->wr);
	hcd_buf_reset(&m->rd);
	m->bkind = B_NONE;
}

/* The batch failed: HAProxy's map is unknown, start over once it answers. */
static void batch_failed(struct route_map *m, const char *why)
{
	m->conn_errors++;
	if (m->conn_errors <= 10 || m->conn_errors % 100 == 0)
		route_log(LOG_WARNING, "map %s: runtime API %s: %s (%llu so far); the map starts over", m->file,
		          m->sock, why, (unsigned long long)m->conn_errors);
	batch_close(m);
	m->ok = false;
	m->resets_error++;
	rm_reset(m);
	ev_timer_set(&m->backoff, m->backoff_ms / 1000.0, 0.0);
	ev_timer_start(m->loop, &m->backoff);
	m->backoff_ms = m->backoff_ms * 2 > 1000 ? 1000 : m->backoff_ms * 2;
}

/* Copies whole lines of src (from its offset) into the batch, each
 * followed by sep, up to room bytes; returns how many lines. */
static unsigned take_lines(struct hcd_buf *dst, struct hcd_buf *src, size_t room, char sep)
{
	unsigned n = 0;

	while (hcd_buf_pending(src) > 0) {
		const char *p = src->p + src->off;
		const char *nl = memchr(p, '\n', hcd_buf_pending(src));
		size_t len = nl ? (size_t)(nl - p) : hcd_buf_pending(src);

		if (n > 0 && len + 1 > room)
			break;
		hcd_buf_append(dst, p, len);
		hcd_buf_append(dst, &sep, 1);
		room = room > len + 1 ? room - len - 1 : 0;
		src->off += len + (nl ? 1 : 0);
		n++;
	}
	if (src->off == src->len)
		hcd_buf_reset(src);
	return n;
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents);

/* Starts the next batch if none is in flight and there is something to say. */
static void rm_kick(struct route_map *m)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	double now = ev_now(m->loop);

	if (m->fd != -1 || ev_is_active(&m->backoff))
		return;
	hcd_buf_reset(&m->wr);
	hcd_buf_printf(&m->wr, "show info;");
	m->bcmds = 1;
	m->bseq = m->rb_seq;
	if (m->rb == RB_LOAD && hcd_buf_pending(&m->snap) == 0)
		m->rb = RB_COMMIT;
	if (m->rb == RB_PREPARE) {
		hcd_buf_printf(&m->wr, "prepare map %s\n", m->file);
		m->bkind = B_PREPARE;
	} else if (m->rb == RB_LOAD) {
		hcd_buf_printf(&m->wr, "add map @%ld %s <<\n", m->rb_version, m->file);
		take_lines(&m->wr, &m->snap, RM_BATCH_MAX, '\n');
		hcd_buf_append(&m->wr, "\n", 1);
		m->bkind = B_LOAD;
	} else if (m->rb == RB_COMMIT) {
		hcd_buf_printf(&m->wr, "commit map @%ld %s\n", m->rb_version, m->file);
		m->bkind = B_COMMIT;
	} else if (hcd_buf_pending(&m->ops) > 0) {
		m->bcmds = take_lines(&m->wr, &m->ops, RM_BATCH_MAX, ';');
		m->wr.p[m->wr.len - 1] = '\n';
		m->bkind = B_OPS;
	} else if (now - m->last_batch >= RM_PROBE_S) {
		m->wr.p[m->wr.len - 1] = '\n';
		m->bcmds = 0;
		m->bkind = B_PROBE;
	} else {
		hcd_buf_reset(&m->wr);
		return;
	}
	m->last_batch = now;
	m->batches++;
	strcpy(sa.sun_path, m->sock);
	m->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (m->fd == -1 || connect(m->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		char why[160];

		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		batch_failed(m, why);
		return;
	}
	ev_io_set(&m->io, m->fd, EV_READ | EV_WRITE);
	ev_io_start(m->loop, &m->io);
	ev_timer_set(&m->timeout, RM_TIMEOUT_S, 0.0);
	ev_timer_start(m->loop, &m->timeout);
}

/* The next response of a non-interactive answer: lines up to an empty one.
 * Returns false when no complete response is left. */
static bool next_response(const char **p, const char *end, const char **r, size_t *rlen)
{
	const char *s = *p;

	for (const char *q = s; q < end; ) {
		const char *nl = memchr(q, '\n', (size_t)(end - q));

		if (!nl)
			return false;
		if (nl == q) {               /* the empty line ends the response */
			*r = s;
			*rlen = (size_t)(q - s);
			*p = nl + 1;
			return true;
		}
		q = nl + 1;
	}
	return false;
}

static void command_error(struct route_map *m, const char *r, size_t len)
{
	m->cmd_errors++;
	if (m->cmd_errors <= 20 || m->cmd_errors % 1000 == 0)
		route_log(LOG_WARNING, "map %s: HAProxy refused a command: %.*s (%llu so far)", m->file,
		          (int)(len > 200 ? 200 : len), r, (unsigned long long)m->cmd_errors);
}

/* The whole answer (HAProxy closed the connection): judge it. */
static void batch_done(struct route_map *m)
{
	const char *p = m->rd.p + m->rd.off, *end = m->rd.p + m->rd.len, *r, *pidl;
	enum batch_kind kind = m->bkind;
	bool current = m->bseq == m->rb_seq;
	size_t rlen;
	long pid;

	if (!next_response(&p, end, &r, &rlen) || !(pidl = memmem(r, rlen, "Pid: ", 5))) {
		batch_failed(m, "no \"show info\" answer");
		return;
	}
	pid = strtol(pidl + 5, NULL, 10);
	if (m->pid != 0 && pid != m->pid) {
		route_log(LOG_NOTICE, "map %s: HAProxy worker %ld replaced by %ld (reload): the map starts over",
		          m->file, m->pid, pid);
		m->pid = pid;
		batch_close(m);
		m->resets_reload++;
		rm_reset(m);
		rm_kick(m);
		return;
	}
	m->pid = pid;
	m->ok = true;
	m->backoff_ms = 100;
	for (unsigned i = 0; i < m->bcmds; i++) {
		if (!next_response(&p, end, &r, &rlen)) {
			batch_failed(m, "answer cut short");
			return;
		}
		if (kind == B_PREPARE) {
			const char *v = memmem(r, rlen, "New version created: ", 21);

			if (!v) {
				command_error(m, r, rlen);
				batch_failed(m, "prepare map refused");
				return;
			}
			if (current) {
				m->rb_version = strtol(v + 21, NULL, 10);
				m->rb = RB_LOAD;
			}
		} else if (rlen > 0) {
			command_error(m, r, rlen);
			if (kind == B_LOAD || kind == B_COMMIT) {
				batch_failed(m, "rebuild refused");
				return;
			}
		} else if (kind == B_COMMIT && current) {
			m->rb = RB_NONE;
			m->rebuilds++;
		}
	}
	batch_close(m);
	rm_kick(m);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct route_map *m = w->data;
	char buf[16384];
	ssize_t n;

	(void)loop;
	if (revents & EV_WRITE) {
		if (hcd_buf_flush(&m->wr, m->fd) == -1) {
			batch_failed(m, strerror(errno));
			return;
		}
		if (hcd_buf_pending(&m->wr) == 0) {
			ev_io_stop(m->loop, &m->io);
			ev_io_set(&m->io, m->fd, EV_READ);
			ev_io_start(m->loop, &m->io);
		}
	}
	if (!(revents & EV_READ))
		return;
	n = read(m->fd, buf, sizeof(buf));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == -1) {
		batch_failed(m, strerror(errno));
		return;
	}
	if (n > 0) {
		if (hcd_buf_append(&m->rd, buf, (size_t)n) == -1)
			batch_failed(m, "out of memory");
		return;
	}
	batch_done(m);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	batch_failed(w->data, "no answer for 2 s");
}

static void on_probe(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	rm_kick(w->data);
}

/* ---------------------------------------------------------------- API */

/* See route_map.h. */
struct route_map *route_map_new(const struct route_map_config *cfg, char *err, size_t errlen)
{
	struct route_map *m;
	size_t size = 64;

	if (strlen(cfg->socket) >= sizeof(m->sock)) {
		snprintf(err, errlen, "--haproxy-socket %s: path too long", cfg->socket);
		return NULL;
	}
	if (!cfg->map_file[0] || strpbrk(cfg->map_file, " \t\n;\\")) {
		snprintf(err, errlen, "--map-file '%s': must be non-empty, without spaces, ';' or '\\'",
		         cfg->map_file);
		return NULL;
	}
	while (size < 2 * (size_t)cfg->max)
		size *= 2;
	m = calloc(1, sizeof(*m));
	if (!m || !(m->file = strdup(cfg->map_file)) ||
	    !(m->rings = aligned_alloc(64, (cfg->workers ? cfg->workers : 1) * sizeof(*m->rings))) ||
	    !(m->tab = calloc(size, sizeof(*m->tab))) ||
	    (cfg->admit_first == 0 && !(m->door = calloc(size, sizeof(*m->door))))) {
		if (m) {
			free(m->tab);
			free(m->file);
			free(m->rings);
			free(m);
		}
		snprintf(err, errlen, "map publisher: out of memory");
		return NULL;
	}
	memset(m->rings, 0, (cfg->workers ? cfg->workers : 1) * sizeof(*m->rings));
	strcpy(m->sock, cfg->socket);
	m->loop = cfg->loop;
	m->max = cfg->max;
	m->nworkers = cfg->workers ? cfg->workers : 1;
	m->size = size;
	m->fd = -1;
	m->backoff_ms = 100;
	m->last_batch = -1e9;
	ev_io_init(&m->io, on_io, -1, EV_READ);
	ev_timer_init(&m->timeout, on_timeout, RM_TIMEOUT_S, 0.0);
	ev_timer_init(&m->drain, on_drain, RM_DRAIN_S, RM_DRAIN_S);
	ev_timer_init(&m->probe, on_probe, RM_PROBE_S, RM_PROBE_S);
	ev_timer_init(&m->backoff, on_probe, 0.1, 0.0);
	m->io.data = m->timeout.data = m->drain.data = m->probe.data = m->backoff.data = m;
	return m;
}

/* See route_map.h. */
int route_map_attach(struct route_map *m, struct spop_runtime *rt)
{
	return spop_runtime_on(rt, "route-touch", on_touch, m);
}

/* See route_map.h. */
void route_map_start(struct route_map *m)
{
	op(m, "clear map %s\n", m->file);
	ev_timer_start(m->loop, &m->drain);
	ev_timer_start(m->loop, &m->probe);
	rm_kick(m);
}

/* See route_map.h. */
void route_map_metrics(const struct route_map *m, struct hc_text *t)
{
	uint64_t dropped = 0;

	for (unsigned k = 0; k < m->nworkers; k++)
		dropped += atomic_load_explicit(&m->rings[k].dropped, memory_order_relaxed);
	hc_text_printf(t, "# HELP seedgate_route_map_connected 1 when HAProxy answered the publisher's last batch.\n"
	                  "# TYPE seedgate_route_map_connected gauge\nseedgate_route_map_connected %d\n", m->ok ? 1 : 0);
	hc_text_printf(t, "# HELP seedgate_route_map_entries Entries in this agent's HAProxy map (--map-file).\n"
	                  "# TYPE seedgate_route_map_entries gauge\nseedgate_route_map_entries %zu\n"
	                  "# HELP seedgate_route_map_max_entries The cap (--map-max).\n"
	                  "# TYPE seedgate_route_map_max_entries gauge\nseedgate_route_map_max_entries %u\n"
	                  "# HELP seedgate_route_map_adds_total Entries added to the map.\n"
	                  "# TYPE seedgate_route_map_adds_total counter\nseedgate_route_map_adds_total %llu\n"
	                  "# HELP seedgate_route_map_invalidations_total Entries changed or removed because a health verdict, a drain or the directory changed their decision.\n"
	                  "# TYPE seedgate_route_map_invalidations_total counter\nseedgate_route_map_invalidations_total %llu\n"
	                  "# HELP seedgate_route_map_rebuilds_total Versioned rebuilds committed (prepare/add/commit map).\n"
	                  "# TYPE seedgate_route_map_rebuilds_total counter\nseedgate_route_map_rebuilds_total %llu\n"
	                  "# HELP seedgate_route_map_evictions_total Entries left out at the cap (the least recently used half).\n"
	                  "# TYPE seedgate_route_map_evictions_total counter\nseedgate_route_map_evictions_total %llu\n"
	                  "# HELP seedgate_route_map_touches_total Sampled map hits (route-touch) that marked an entry used.\n"
	                  "# TYPE seedgate_route_map_touches_total counter\nseedgate_route_map_touches_total %llu\n"
	                  "# HELP seedgate_route_map_first_misses_total Decisions not published yet: the project's first miss (it is published on its second).\n"
	                  "# TYPE seedgate_route_map_first_misses_total counter\nseedgate_route_map_first_misses_total %llu\n"
	                  "# HELP seedgate_route_map_stale_total Decisions not published: made with a view that was already replaced.\n"
	                  "# TYPE seedgate_route_map_stale_total counter\nseedgate_route_map_stale_total %llu\n"
	                  "# HELP seedgate_route_map_dropped_total Decisions not published: the worker's ring was full.\n"
	                  "# TYPE seedgate_route_map_dropped_total counter\nseedgate_route_map_dropped_total %llu\n"
	                  "# HELP seedgate_route_map_batches_total Runtime API connections (each starts with show info).\n"
	                  "# TYPE seedgate_route_map_batches_total counter\nseedgate_route_map_batches_total %llu\n"
	                  "# HELP seedgate_route_map_api_errors_total Runtime API failures: commands HAProxy refused, connections that failed.\n"
	                  "# TYPE seedgate_route_map_api_errors_total counter\n"
	                  "seedgate_route_map_api_errors_total{kind=\"command\"} %llu\n"
	                  "seedgate_route_map_api_errors_total{kind=\"connection\"} %llu\n"
	                  "# HELP seedgate_route_map_resets_total Times the map started over (cleared), by cause.\n"
	                  "# TYPE seedgate_route_map_resets_total counter\n"
	                  "seedgate_route_map_resets_total{cause=\"reload\"} %llu\n"
	                  "seedgate_route_map_resets_total{cause=\"error\"} %llu\n",
	               m->used, m->max, (unsigned long long)m->adds, (unsigned long long)m->invalidations,
	               (unsigned long long)m->rebuilds, (unsigned long long)m->evictions,
	               (unsigned long long)m->touches, (unsigned long long)m->first_misses,
	               (unsigned long long)m->stale, (unsigned long long)dropped,
	               (unsigned long long)m->batches, (unsigned long long)m->cmd_errors,
	               (unsigned long long)m->conn_errors, (unsigned long long)m->resets_reload,
	               (unsigned long long)m->resets_error);
}

/* See route_map.h. Call after the workers were joined. */
void route_map_free(struct route_map **mp)
{
	struct route_map *m = *mp;

	*mp = NULL;
	if (!m)
		return;
	batch_close(m);
	ev_timer_stop(m->loop, &m->drain);
	ev_timer_stop(m->loop, &m->probe);
	ev_timer_stop(m->loop, &m->backoff);
	hcd_buf_free(&m->ops);
	hcd_buf_free(&m->snap);
	hcd_buf_free(&m->wr);
	hcd_buf_free(&m->rd);
	free(m->tab);
	free(m->door);
	free(m->rings);
	free(m->file);
	free(m);
}
