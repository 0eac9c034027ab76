/*
 * sd_sync.c — keeping a copy of the seed directory in step with etcd, on
 * the daemon's loop (see sd_source.h and docs/etcd-sync.md).
 *
 * The cycle, as careful etcd clients do it:
 *
 *  1. LIST at one revision: read PREFIX/current (a linearizable read: its
 *     header revision R is committed cluster-wide), then the ranges
 *     PREFIX/g/<GEN>/ and PREFIX/live/ pinned with revision=R, in slices
 *     (range_bounds) and pages of SYNC_PAGE keys. A page answering
 *     "compacted" restarts the listing at a fresh revision.
 *  2. The source builds the directory beside the one in use and swaps it.
 *     A listing identical to the previous one (same generation, keys and
 *     values) is not rebuilt.
 *  3. WATCH PREFIX/ from R + 1 with progress notifications, on the endpoint
 *     the listing used. A relevant event (PREFIX/current, PREFIX/g/<GEN>/,
 *     PREFIX/live/) arms a short debounce, then step 1 again: bursts (an
 *     import's batches, a drain of ten nodes) are one re-list.
 *
 * Failures. The watch answering with an error object, cancelled, or
 * compacted (its revision is gone) -> list again (step 1), then watch from
 * the new revision. The stream ending, the connection failing, or a long
 * silence (SYNC_SILENCE without a byte: neither an event nor a progress
 * notification) -> the watch is reopened from the revision after the last
 * one it delivered, on the next endpoint: etcd replays what happened
 * meanwhile, so nothing is missed and no re-list is needed, and if that
 * revision was compacted meanwhile etcd says so and step 1 runs. The watch
 * asks etcd to cancel it when its member loses the leader (Grpc-Metadata-
 * hasleader), so a partitioned member does not leave us on a silent
 * stream. The watch never starts from a revision other than one listed or
 * delivered on our own connections. Every failure moves to the next
 * endpoint and waits a jittered, doubling back-off capped at SYNC_BACKOFF_MAX.
 */
#include "sd_int.h"

#include <ev.h>
#include <json-c/json.h>
#include <stdint.h>
#include <xxhash.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd_b64.h"
#include "sd_http.h"

#define SYNC_PAGE          5000     /* keys per range request (~1 MB of JSON) */
#define SYNC_CONNECT       2.0      /* seconds to connect to a member */
#define SYNC_REQ_TIMEOUT   30.0     /* one range page, start to end */
#define SYNC_SILENCE       30.0     /* watch: no byte that long = lost */
#define SYNC_BACKOFF_MIN   0.1
#define SYNC_BACKOFF_MAX   5.0
#define SYNC_LINE_MAX      (64u << 20)   /* one watch message (a huge txn) */

/* Listing steps: PREFIX/current, then the ranges of range_bounds(). */
enum { STEP_CURRENT = 0, STEP_RANGES = 20 };

/* One watch event kept until it is applied. */
struct sd_event {
	char *key, *val;             /* one allocation: key NUL value NUL */
	size_t klen, vlen;
	int64_t rev;
	bool del;
};

struct sd_sync {
	struct ev_loop *loop;
	struct sd_etcd_spec spec;
	double debounce;
	const struct sd_sync_ops *ops;
	void *udata;
	struct sd_http *http;
	unsigned ep;                     /* endpoint of the next request */

	/* listing */
	struct sd_http_req *list_req;
	int step;
	int64_t list_rev;
	char gen[24];                    /* of the listing (and of the last one) */
	char *next_key;                  /* range start of the next page */
	size_t next_len;
	struct sd_recs recs;
	bool listing, building, relist_wanted, force;
	bool have_hash;
	uint64_t last_hash;
	double list_backoff;
	ev_timer list_retry, debounce_t;

	/* incremental updates: the records of the directory as of base_rev
	 * (the last listing plus the events applied since), and the events
	 * the watch delivered that are not applied yet */
	struct sd_recs base;
	bool have_base, relist_needed, apply_wanted;
	int64_t relist_rev;              /* revision of the event that needs it */
	int64_t base_rev;
	char base_gen[24];
	struct sd_event *pend;
	size_t npend, pcap;

	/* watch */
	struct sd_http_req *watch_req;
	unsigned watch_ep;
	int64_t watch_from;              /* first revision the watch must deliver */
	bool watch_created, watch_relist;
	bool up;                         /* what ops->connected last said */
	uint64_t pages;                  /* range answers received, ever */
	char watch_err[256];
	char *line;
	size_t llen, lcap;
	bool line_overflow;
	double watch_backoff;
	ev_timer watch_retry, silence;
};

/* ---- records --------------------------------------------------------- */

/* See sd_int.h. */
int sd_recs_add(struct sd_recs *r, const char *key, size_t klen, const char *val, size_t vlen)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 256;
		size_t *off = realloc(r->off, cap * 2 * sizeof(*off));

		if (!off)
			return -1;
		r->off = off;
		r->cap = cap;
	}
	if (r->plen + klen + vlen + 2 > r->pcap) {
		size_t cap = r->pcap ? r->pcap : 65536;
		char *p;

		while (cap < r->plen + klen + vlen + 2)
			cap *= 2;
		p = realloc(r->pool, cap);
		if (!p)
			return -1;
		r->pool = p;
		r->pcap = cap;
	}
	r->off[2 * r->n] = r->plen;
	memcpy(r->pool + r->plen, key, klen);
	r->plen += klen;
	r->pool[r->plen++] = '\0';
	r->off[2 * r->n + 1] = r->plen;
	memcpy(r->pool + r->plen, val, vlen);
	r->plen += vlen;
	r->pool[r->plen++] = '\0';
	r->n++;
	return 0;
}

/* See sd_int.h. The lengths come from the offsets: every string is followed
 * by its NUL and the next one starts right after. */
void sd_recs_finish(struct sd_recs *r)
{
	free(r->rec);
	r->rec = calloc(r->n ? r->n : 1, sizeof(*r->rec));
	if (!r->rec) {
		r->n = 0;       /* an empty listing: sd_build reports it, nothing crashes */
		return;
	}
	for (size_t i = 0; i < r->n; i++) {
		size_t k = r->off[2 * i], v = r->off[2 * i + 1];
		size_t end = i + 1 < r->n ? r->off[2 * (i + 1)] : r->plen;

		r->rec[i].key = r->pool + k;
		r->rec[i].key_len = v - k - 1;
		r->rec[i].value = r->pool + v;
		r->rec[i].value_len = end - v - 1;
	}
}

/* See sd_int.h. */
void sd_recs_free(struct sd_recs *r)
{
	free(r->rec);
	free(r->off);
	free(r->pool);
	memset(r, 0, sizeof(*r));
}

/* A hash of the generation and the pool (keys and values in key order, as
 * ranges return them): equal listings hash equal. XXH3: the pool of 100k
 * pins is ~15 MB and this runs on the loop. */
uint64_t sd_recs_hash(const struct sd_recs *r, const char *gen)
{
	uint64_t seed = XXH3_64bits(gen, strlen(gen)) ^ (uint64_t)r->n;

	return XXH3_64bits_withSeed(r->pool ? r->pool : "", r->plen, seed);
}

/* ---- helpers --------------------------------------------------------- */

/* The range end covering every key that starts with p (etcd's rule: the
 * prefix with its last byte incremented). p never ends in 0xff here: our
 * prefixes end with '/'. */
static void prefix_end(const char *p, char *out, size_t len)
{
	snprintf(out, len, "%s", p);
	out[strlen(out) - 1]++;
}

static double jittered(double *backoff)
{
	double d = *backoff;

	*backoff = d * 2 > SYNC_BACKOFF_MAX ? SYNC_BACKOFF_MAX : d * 2;
	return d / 2 + d / 2 * ((double)random() / (double)RAND_MAX);
}

/* "message" of an etcd error answer ({"error": "...", "message": "...",
 * "code": N}, or the watch's {"error": {"message": ...}}), else the
 * status. */
static void answer_error(long status, const char *body, size_t len, char *out, size_t outlen)
{
	struct json_object *o = json_tokener_parse(body), *e, *m;

	(void)len;
	if (o && json_object_object_get_ex(o, "error", &e)) {
		if (json_object_is_type(e, json_type_object) && json_object_object_get_ex(e, "message", &m))
			e = m;
		snprintf(out, outlen, "HTTP %ld: %s", status, json_object_get_string(e));
	} else {
		snprintf(out, outlen, "HTTP %ld", status);
	}
	json_object_put(o);
}

static int64_t get_i64(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

/* Decodes a base64 field of o into a malloc'd buffer; NULL when absent
 * (etcd leaves out empty values) with *len 0, or on bad base64 (*bad). */
static char *get_b64(struct json_object *o, const char *k, size_t *len, bool *bad)
{
	struct json_object *v;
	const char *s;
	size_t sl;
	char *out;

	*len = 0;
	if (!json_object_object_get_ex(o, k, &v))
		return NULL;
	s = json_object_get_string(v);
	sl = strlen(s);
	out = malloc(sl / 4 * 3 + 4);
	if (!out || sd_b64_decode(s, sl, out, len) == -1) {
		free(out);
		*bad = true;
		return NULL;
	}
	return out;
}

static void list_begin(struct sd_sync *y);
static void watch_begin(struct sd_sync *y);
static void events_drop_upto(struct sd_sync *y, int64_t rev);
static void after_work(struct sd_sync *y);

/* The key range [key, end) read by listing step `step` (1..STEP_RANGES).
 *
 * Why not one range per prefix: etcd 3.4 walks its whole index range to
 * count the keys of EVERY range request, whatever its limit, so paging
 * through 100k pins in one range costs a walk of the rest of the range per
 * page (measured: 0.13 s a page, 7 s for the directory). So the generation
 * is read in slices: everything before project/, the project ids by their
 * first character (16 hex digits and the gaps around them, so that an
 * invalid key is read too and reported), everything after project/, and
 * live/. Each slice is paged; a walk is never longer than its slice. */
static void range_bounds(const struct sd_sync *y, int step, char *key, char *end, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char g[SD_PREFIX_MAX + 32], p[SD_PREFIX_MAX + 48];
	int i = step - 1;

	snprintf(g, sizeof(g), "%s/g/%s/", y->spec.prefix, y->gen);
	snprintf(p, sizeof(p), "%sproject/", g);
	if (i == 0) {                             /* [g/GEN/, g/GEN/project/) */
		snprintf(key, len, "%s", g);
		snprintf(end, len, "%s", p);
	} else if (i <= 17) {                     /* project/ by first character */
		if (i == 1)
			snprintf(key, len, "%s", p);
		else
			snprintf(key, len, "%s%c", p, hex[i - 2]);
		if (i == 17)
			prefix_end(p, end, len);
		else
			snprintf(end, len, "%s%c", p, hex[i - 1]);
	} else if (i == 18) {                     /* after project/ */
		prefix_end(p, key, len);
		prefix_end(g, end, len);
	} else {                                  /* live/ */
		snprintf(key, len, "%s/live/", y->spec.prefix);
		prefix_end(key, end, len);
	}
}


/* ---- incremental updates ---------------------------------------------- */

/* See sd_int.h. */
int sd_recs_copy(struct sd_recs *dst, const struct sd_recs *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->pool = malloc(src->plen ? src->plen : 1);
	dst->off = malloc((src->n ? src->n : 1) * 2 * sizeof(*dst->off));
	if (!dst->pool || !dst->off) {
		sd_recs_free(dst);
		return -1;
	}
	if (src->plen)
		memcpy(dst->pool, src->pool, src->plen);
	if (src->n)
		memcpy(dst->off, src->off, src->n * 2 * sizeof(*dst->off));
	dst->n = dst->cap = src->n;
	dst->plen = dst->pcap = src->plen;
	sd_recs_finish(dst);
	return dst->rec || !src->n ? 0 : -1;
}

/* An event at revision rev cannot be applied: list again, at rev or later. */
static void need_relist(struct sd_sync *y, int64_t rev)
{
	y->relist_needed = true;
	if (rev > y->relist_rev)
		y->relist_rev = rev;
}

/* PREFIX/current, PREFIX/g/... or PREFIX/live/...: the directory's keys. */
static bool in_dir(const struct sd_sync *y, const char *k, size_t klen)
{
	size_t pl = strlen(y->spec.prefix);

	if (klen <= pl + 1 || memcmp(k, y->spec.prefix, pl) != 0 || k[pl] != '/')
		return false;
	k += pl + 1;
	klen -= pl + 1;
	return (klen == 7 && memcmp(k, "current", 7) == 0) || (klen > 2 && memcmp(k, "g/", 2) == 0) ||
	       (klen > 5 && memcmp(k, "live/", 5) == 0);
}

static bool is_current(const struct sd_sync *y, const char *k, size_t klen)
{
	size_t pl = strlen(y->spec.prefix);

	return klen == pl + 8 && memcmp(k, y->spec.prefix, pl) == 0 && memcmp(k + pl, "/current", 8) == 0;
}

static int event_add(struct sd_sync *y, const char *k, size_t klen, const char *v, size_t vlen,
		     int64_t rev, bool del)
{
	struct sd_event *e;

	if (y->npend == y->pcap) {
		size_t cap = y->pcap ? y->pcap * 2 : 64;
		struct sd_event *np = realloc(y->pend, cap * sizeof(*np));

		if (!np)
			return -1;
		y->pend = np;
		y->pcap = cap;
	}
	e = &y->pend[y->npend];
	e->key = malloc(klen + vlen + 2);
	if (!e->key)
		return -1;
	memcpy(e->key, k, klen);
	e->key[klen] = '\0';
	e->val = e->key + klen + 1;
	if (vlen)
		memcpy(e->val, v, vlen);
	e->val[vlen] = '\0';
	e->klen = klen;
	e->vlen = vlen;
	e->rev = rev;
	e->del = del;
	y->npend++;
	return 0;
}

/* Forgets the events a listing at revision rev already holds. */
static void events_drop_upto(struct sd_sync *y, int64_t rev)
{
	size_t w = 0;

	for (size_t i = 0; i < y->npend; i++) {
		if (y->pend[i].rev <= rev)
			free(y->pend[i].key);
		else
			y->pend[w++] = y->pend[i];
	}
	y->npend = w;
}

static int keycmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : (al > bl) - (al < bl);
}

/* Events by key, then by revision: the last of a key's run wins. */
static int event_cmp(const void *pa, const void *pb)
{
	const struct sd_event *a = pa, *b = pb;
	int c = keycmp(a->key, a->klen, b->key, b->klen);

	return c ? c : (a->rev > b->rev) - (a->rev < b->rev);
}

/* Is key inside what a listing of generation gen reads? */
static bool in_listing(const struct sd_sync *y, const char *gen, const char *k, size_t klen)
{
	char g[SD_PREFIX_MAX + 32], l[SD_PREFIX_MAX + 8];
	size_t gl = (size_t)snprintf(g, sizeof(g), "%s/g/%s/", y->spec.prefix, gen);
	size_t ll = (size_t)snprintf(l, sizeof(l), "%s/live/", y->spec.prefix);

	return (klen > gl && memcmp(k, g, gl) == 0) || (klen > ll && memcmp(k, l, ll) == 0);
}

/* base + the pending events -> out, in key order. -1: out of memory. */
static int events_merge(struct sd_sync *y, struct sd_recs *out, int64_t *rev)
{
	size_t i = 0, j = 0;

	memset(out, 0, sizeof(*out));
	qsort(y->pend, y->npend, sizeof(*y->pend), event_cmp);
	*rev = y->base_rev;
	while (i < y->base.n || j < y->npend) {
		const struct sd_record *r = i < y->base.n ? &y->base.rec[i] : NULL;
		const struct sd_event *e;
		int c;

		/* the last event of a key's run, if it applies */
		if (j < y->npend) {
			while (j + 1 < y->npend && keycmp(y->pend[j].key, y->pend[j].klen, y->pend[j + 1].key,
							  y->pend[j + 1].klen) == 0)
				j++;
			e = &y->pend[j];
			if (e->rev <= y->base_rev || !in_listing(y, y->base_gen, e->key, e->klen)) {
				j++;
				continue;
			}
		} else {
			e = NULL;
		}
		c = !e ? -1 : !r ? 1 : keycmp(r->key, r->key_len, e->key, e->klen);
		if (c < 0) {                   /* unchanged record */
			if (sd_recs_add(out, r->key, r->key_len, r->value, r->value_len) == -1)
				goto oom;
			i++;
			continue;
		}
		if (e->rev > *rev)
			*rev = e->rev;
		if (!e->del && sd_recs_add(out, e->key, e->klen, e->val, e->vlen) == -1)
			goto oom;
		if (c == 0)
			i++;                   /* replaced or deleted */
		j++;
	}
	sd_recs_finish(out);
	return 0;
oom:
	sd_recs_free(out);
	return -1;
}

/* The debounce expired: apply what the watch delivered to the base and
 * build that, or list again when it cannot be applied (PREFIX/current
 * changed, no base yet, an undecodable event, out of memory). */
static void apply_events(struct sd_sync *y)
{
	struct sd_recs next, give;
	int64_t rev;
	uint64_t h;

	if (y->listing || y->building) {
		y->apply_wanted = true;
		return;
	}
	if (y->relist_needed || !y->have_base) {
		list_begin(y);
		return;
	}
	if (y->npend == 0)
		return;
	if (events_merge(y, &next, &rev) == -1) {
		list_begin(y);
		return;
	}
	events_drop_upto(y, INT64_MAX);
	sd_recs_free(&y->base);
	y->base = next;
	y->base_rev = rev;
	h = sd_recs_hash(&y->base, y->base_gen);
	if (h == y->last_hash) {
		y->ops->unchanged(y->udata, rev);
		return;
	}
	if (sd_recs_copy(&give, &y->base) == -1) {
		y->have_base = false;
		list_begin(y);
		return;
	}
	y->last_hash = h;
	y->have_hash = true;
	y->building = true;
	y->ops->listed(y->udata, rev, y->base_gen, &give);
}

/* A listing or a build finished: run what waited for it. */
static void after_work(struct sd_sync *y)
{
	if (y->relist_wanted) {
		y->relist_wanted = false;
		y->apply_wanted = false;
		list_begin(y);
	} else if (y->apply_wanted) {
		y->apply_wanted = false;
		apply_events(y);
	}
}

/* ---- listing --------------------------------------------------------- */

static void list_send(struct sd_sync *y);

/* A listing failed: report, move to the next endpoint, retry later. */
static void list_fail(struct sd_sync *y, const char *msg, bool connectivity)
{
	y->listing = false;
	sd_recs_free(&y->recs);
	y->ops->failed(y->udata, msg, connectivity);
	y->ep = (y->ep + 1) % y->spec.n;
	ev_timer_stop(y->loop, &y->list_retry);
	ev_timer_set(&y->list_retry, jittered(&y->list_backoff), 0.0);
	ev_timer_start(y->loop, &y->list_retry);
}

/* Every page arrived: hand the listing over (or note it is unchanged), and
 * make sure a watch runs from the listed revision + 1. */
static void list_finish(struct sd_sync *y)
{
	uint64_t h;

	y->listing = false;
	y->list_backoff = SYNC_BACKOFF_MIN;
	sd_recs_finish(&y->recs);
	h = sd_recs_hash(&y->recs, y->gen);
	/* the base of the next incremental updates: this listing; events
	 * up to list_rev are in it */
	sd_recs_free(&y->base);
	if (sd_recs_copy(&y->base, &y->recs) == 0) {
		y->have_base = true;
		y->base_rev = y->list_rev;
		snprintf(y->base_gen, sizeof(y->base_gen), "%s", y->gen);
	} else {
		y->have_base = false;   /* out of memory: the next change re-lists */
	}
	/* an event that asked for a listing (PREFIX/current switched...)
	 * after the revision this one read still needs one */
	if (y->relist_rev <= y->list_rev)
		y->relist_needed = false;
	events_drop_upto(y, y->list_rev);
	if (!y->watch_req) {
		/* The listing holds everything up to list_rev: the watch
		 * starts right after it, on the endpoint that listed it. */
		ev_timer_stop(y->loop, &y->watch_retry);
		y->watch_from = y->list_rev + 1;
		y->watch_ep = y->ep;
		watch_begin(y);
	}
	if (!y->force && y->have_hash && h == y->last_hash) {
		sd_recs_free(&y->recs);
		y->ops->unchanged(y->udata, y->list_rev);
		after_work(y);
		return;
	}
	y->force = false;
	y->have_hash = true;
	y->last_hash = h;
	y->building = true;
	{
		struct sd_recs recs = y->recs;

		memset(&y->recs, 0, sizeof(y->recs));
		y->ops->listed(y->udata, y->list_rev, y->gen, &recs);
	}
}

/* The current generation: 1 to 20 decimal digits. */
static bool gen_ok(const char *v, size_t len)
{
	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++)
		if (v[i] < '0' || v[i] > '9')
			return false;
	return true;
}

/* Handles one page (or the PREFIX/current answer). */
static void list_page(struct sd_sync *y, struct json_object *o)
{
	struct json_object *kvs, *hdr, *more;
	size_t n;
	char msg[2 * SD_PREFIX_MAX + 200];
	const char *last = NULL;
	size_t last_len = 0;
	char *kbuf = NULL;

	if (!json_object_object_get_ex(o, "header", &hdr)) {
		list_fail(y, "range answer without a header", true);
		return;
	}
	if (!json_object_object_get_ex(o, "kvs", &kvs) || !json_object_is_type(kvs, json_type_array))
		kvs = NULL;
	n = kvs ? json_object_array_length(kvs) : 0;
	if (y->step == STEP_CURRENT) {
		char *v;
		size_t vlen;
		bool bad = false;

		y->list_rev = get_i64(hdr, "revision");
		if (n == 0) {
			snprintf(msg, sizeof(msg), "%s/current: no such key (no directory imported under %s)",
				 y->spec.prefix, y->spec.prefix);
			list_fail(y, msg, false);
			return;
		}
		v = get_b64(json_object_array_get_idx(kvs, 0), "value", &vlen, &bad);
		if (bad || !gen_ok(v ? v : "", vlen)) {
			snprintf(msg, sizeof(msg), "%s/current: expected a generation number (decimal digits)",
				 y->spec.prefix);
			free(v);
			list_fail(y, msg, false);
			return;
		}
		memcpy(y->gen, v, vlen);
		y->gen[vlen] = '\0';
		free(v);
		y->step = 1;
		free(y->next_key);
		y->next_key = NULL;
		list_send(y);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *kv = json_object_array_get_idx(kvs, i);
		size_t klen, vlen;
		bool bad = false;
		char *k = get_b64(kv, "key", &klen, &bad), *v = get_b64(kv, "value", &vlen, &bad);

		if (bad || !k || sd_recs_add(&y->recs, k, klen, v ? v : "", vlen) == -1) {
			free(kbuf);
			free(k);
			free(v);
			list_fail(y, bad || !k ? "range answer with a bad key or value encoding" : "out of memory",
				  false);
			return;
		}
		free(kbuf);
		kbuf = k;
		last = k;
		last_len = klen;
		free(v);
	}
	if (json_object_object_get_ex(o, "more", &more) && json_object_get_boolean(more) && last) {
		/* next page: right after the last key */
		free(y->next_key);
		y->next_key = malloc(last_len + 1);
		if (!y->next_key) {
			free(kbuf);
			list_fail(y, "out of memory", false);
			return;
		}
		memcpy(y->next_key, last, last_len);
		y->next_key[last_len] = '\0';
		y->next_len = last_len + 1;   /* the key followed by a NUL byte */
		free(kbuf);
		list_send(y);
		return;
	}
	free(kbuf);
	free(y->next_key);
	y->next_key = NULL;
	if (y->step < STEP_RANGES) {
		y->step++;
		list_send(y);
		return;
	}
	list_finish(y);
}

static void list_done(void *udata, long status, const char *err, const char *body, size_t len)
{
	struct sd_sync *y = udata;
	struct json_object *o;
	char msg[512];

	y->list_req = NULL;
	if (err || status != 200) {
		if (err)
			snprintf(msg, sizeof(msg), "%s: %s", y->spec.endpoint[y->ep], err);
		else
			answer_error(status, body, len, msg, sizeof(msg));
		if (!err && strstr(msg, "compacted")) {
			/* our pinned revision was compacted between pages:
			 * start over at the current revision */
			y->listing = false;
			sd_recs_free(&y->recs);
			list_begin(y);
			return;
		}
		list_fail(y, msg, err != NULL || status >= 500);
		return;
	}
	o = json_tokener_parse(body);
	if (!o) {
		list_fail(y, "range answer is not JSON", true);
		return;
	}
	y->pages++;
	list_page(y, o);
	json_object_put(o);
}

/* Sends the request of the current step. */
static void list_send(struct sd_sync *y)
{
	char key[SD_PREFIX_MAX + 64], end[SD_PREFIX_MAX + 64], url[SD_ENDPOINT_MAX + 32], err[128];
	char *bkey = NULL, *bend = NULL, *body = NULL;
	struct sd_http_opts o = { .connect_timeout = SYNC_CONNECT, .timeout = SYNC_REQ_TIMEOUT };

	if (y->step == STEP_CURRENT) {
		snprintf(key, sizeof(key), "%s/current", y->spec.prefix);
		bkey = sd_b64_encode(key, strlen(key));
		if (bkey && asprintf(&body, "{\"key\":\"%s\"}", bkey) == -1)
			body = NULL;
	} else {
		range_bounds(y, y->step, key, end, sizeof(key));
		bkey = y->next_key ? sd_b64_encode(y->next_key, y->next_len) : sd_b64_encode(key, strlen(key));
		bend = sd_b64_encode(end, strlen(end));
		if (bkey && bend &&
		    asprintf(&body, "{\"key\":\"%s\",\"range_end\":\"%s\",\"revision\":\"%lld\",\"limit\":\"%d\"}",
			     bkey, bend, (long long)y->list_rev, SYNC_PAGE) == -1)
			body = NULL;
	}
	free(bkey);
	free(bend);
	snprintf(url, sizeof(url), "%s/v3/kv/range", y->spec.endpoint[y->ep]);
	if (!body || !(y->list_req = sd_http_post(y->http, url, body, &o, list_done, y, err, sizeof(err))))
		list_fail(y, "out of memory", false);
	free(body);
}

/* Starts a listing, or remembers to start one after the one running (or
 * the build of its result). */
static void list_begin(struct sd_sync *y)
{
	if (y->listing || y->building) {
		y->relist_wanted = true;
		return;
	}
	ev_timer_stop(y->loop, &y->list_retry);
	ev_timer_stop(y->loop, &y->debounce_t);
	y->listing = true;
	y->step = STEP_CURRENT;
	sd_recs_free(&y->recs);
	list_send(y);
}

static void list_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	list_begin(w->data);
}

static void debounce_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	apply_events(w->data);
}

/* ---- watch ----------------------------------------------------------- */

/* Is key part of what we list? (PREFIX/current, PREFIX/g/<GEN>/..., or
 * PREFIX/live/...). Writes to another generation (an import in progress)
 * are not: they matter once PREFIX/current names them. */
static bool relevant(const struct sd_sync *y, const char *k, size_t klen)
{
	size_t pl = strlen(y->spec.prefix);
	const char *r;
	size_t rl, gl = strlen(y->gen);

	if (klen <= pl || memcmp(k, y->spec.prefix, pl) != 0 || k[pl] != '/')
		return false;
	r = k + pl + 1;
	rl = klen - pl - 1;
	if (rl == 7 && memcmp(r, "current", 7) == 0)
		return true;
	if (rl >= 5 && memcmp(r, "live/", 5) == 0)
		return true;
	return rl > 2 + gl && memcmp(r, "g/", 2) == 0 && memcmp(r + 2, y->gen, gl) == 0 && r[2 + gl] == '/';
}

/* One message of the watch stream. Returns -1 when the watch must end
 * (y->watch_relist / watch_err tell why). Runs inside curl's write
 * callback: timers only, no requests. */
static int watch_message(struct sd_sync *y, const char *line, size_t len)
{
	struct json_object *o = NULL, *res, *hdr, *evs, *v;
	struct json_tokener *tok = json_tokener_new();
	bool hit = false, created;
	int rc = 0;
	size_t n;

	if (tok) {
		o = json_tokener_parse_ex(tok, line, (int)len);
		json_tokener_free(tok);
	}
	if (!o) {
		snprintf(y->watch_err, sizeof(y->watch_err), "watch: a message that is not JSON");
		return -1;
	}
	if (json_object_object_get_ex(o, "error", &v)) {
		struct json_object *m;

		if (json_object_is_type(v, json_type_object) && json_object_object_get_ex(v, "message", &m))
			v = m;
		snprintf(y->watch_err, sizeof(y->watch_err), "watch: %s", json_object_get_string(v));
		y->watch_relist = true;
		rc = -1;
		goto out;
	}
	if (!json_object_object_get_ex(o, "result", &res))
		goto out;
	if (get_i64(res, "compact_revision") > 0) {
		snprintf(y->watch_err, sizeof(y->watch_err),
			 "watch: revision %lld was compacted (compact revision %lld): listing again",
			 (long long)y->watch_from, (long long)get_i64(res, "compact_revision"));
		y->watch_relist = true;
		rc = -1;
		goto out;
	}
	if (json_object_object_get_ex(res, "canceled", &v) && json_object_get_boolean(v)) {
		struct json_object *cr;

		snprintf(y->watch_err, sizeof(y->watch_err), "watch cancelled by etcd%s%s",
			 json_object_object_get_ex(res, "cancel_reason", &cr) ? ": " : "",
			 cr ? json_object_get_string(cr) : "");
		y->watch_relist = true;
		rc = -1;
		goto out;
	}
	created = json_object_object_get_ex(res, "created", &v) && json_object_get_boolean(v);
	if (created) {
		y->watch_created = true;
		y->watch_backoff = SYNC_BACKOFF_MIN;
		if (!y->up) {
			y->up = true;
			y->ops->connected(y->udata, true, y->spec.endpoint[y->watch_ep]);
		}
	}
	n = json_object_object_get_ex(res, "events", &evs) && json_object_is_type(evs, json_type_array)
		    ? json_object_array_length(evs) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *kv;
		char *k;
		size_t klen;
		bool bad = false;
		int64_t mod;

		if (!json_object_object_get_ex(json_object_array_get_idx(evs, i), "kv", &kv))
			continue;
		mod = get_i64(kv, "mod_revision");
		if (mod >= y->watch_from)
			y->watch_from = mod + 1;
		k = get_b64(kv, "key", &klen, &bad);
		if (bad || !k) {
			need_relist(y, mod);         /* cannot tell what changed */
			hit = true;
		} else if (in_dir(y, k, klen)) {
			/* Kept even for another generation: a listing of the
			 * generation PREFIX/current just switched to may be
			 * under way, and its later writes must not be lost
			 * (apply_events keeps only the listed generation's).
			 * Only changes to what is in use arm the debounce. */
			struct json_object *t;
			bool del = json_object_object_get_ex(json_object_array_get_idx(evs, i), "type", &t) &&
				   strcmp(json_object_get_string(t), "DELETE") == 0;
			size_t vlen = 0;
			char *val = del ? NULL : get_b64(kv, "value", &vlen, &bad);

			if (is_current(y, k, klen) || bad || event_add(y, k, klen, val, vlen, mod, del) == -1)
				need_relist(y, mod);
			free(val);
			if (relevant(y, k, klen) || bad)
				hit = true;
		}
		free(k);
	}
	if (n == 0 && !created && y->watch_created && json_object_object_get_ex(res, "header", &hdr)) {
		/* A progress notification: nothing before this revision is
		 * left to deliver. Not the "created" answer: its header holds
		 * the current revision while the events since watch_from may
		 * still be on their way (a resumed watch catching up). */
		int64_t rev = get_i64(hdr, "revision");

		if (rev >= y->watch_from)
			y->watch_from = rev + 1;
	}
	if (hit && !ev_is_active(&y->debounce_t)) {
		ev_timer_set(&y->debounce_t, y->debounce, 0.0);
		ev_timer_start(y->loop, &y->debounce_t);
	}
out:
	json_object_put(o);
	return rc;
}

/* Stream bytes: any byte proves the stream alive; complete lines are
 * messages. */
static int watch_data(void *udata, const char *buf, size_t len)
{
	struct sd_sync *y = udata;

	ev_timer_again(y->loop, &y->silence);
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\n') {
			if (y->llen && watch_message(y, y->line, y->llen) == -1) {
				y->llen = 0;
				return -1;
			}
			y->llen = 0;
			continue;
		}
		if (y->llen + 1 > y->lcap) {
			size_t cap = y->lcap ? y->lcap * 2 : 4096;
			char *l = cap <= SYNC_LINE_MAX ? realloc(y->line, cap) : NULL;

			if (!l) {
				snprintf(y->watch_err, sizeof(y->watch_err), "watch: message too large");
				y->watch_relist = true;      /* we may have lost events */
				return -1;
			}
			y->line = l;
			y->lcap = cap;
		}
		y->line[y->llen++] = buf[i];
	}
	return 0;
}

/* The watch is gone: relist, or reopen it from where it stopped. */
static void watch_lost(struct sd_sync *y, const char *why)
{
	ev_timer_stop(y->loop, &y->silence);
	y->watch_created = false;
	y->llen = 0;
	if (y->up) {
		y->up = false;
		y->ops->connected(y->udata, false, y->spec.endpoint[y->watch_ep]);
	}
	y->ops->failed(y->udata, why, !y->watch_relist);
	if (y->watch_relist) {
		/* list again; the listing reopens the watch from its own
		 * revision (after the running listing or build, if any) */
		y->watch_relist = false;
		list_begin(y);
		return;
	}
	y->watch_ep = (y->watch_ep + 1) % y->spec.n;
	y->ep = y->watch_ep;
	ev_timer_set(&y->watch_retry, jittered(&y->watch_backoff), 0.0);
	ev_timer_start(y->loop, &y->watch_retry);
}

static void watch_done(void *udata, long status, const char *err, const char *body, size_t len)
{
	struct sd_sync *y = udata;
	char msg[600];

	y->watch_req = NULL;
	if (y->watch_err[0])
		snprintf(msg, sizeof(msg), "%s", y->watch_err);
	else if (err)
		snprintf(msg, sizeof(msg), "watch on %s: %s", y->spec.endpoint[y->watch_ep], err);
	else if (status != 200)
		answer_error(status, body, len, msg, sizeof(msg));
	else
		snprintf(msg, sizeof(msg), "watch on %s: the stream ended", y->spec.endpoint[y->watch_ep]);
	y->watch_err[0] = '\0';
	watch_lost(y, msg);
}

/* SYNC_SILENCE without a byte. On an idle directory that is normal (etcd
 * sends progress notifications every 10 minutes by default), and it is
 * also what a stuck stream looks like: either way the watch is reopened
 * from the revision after the last one delivered, on the next endpoint,
 * at once and quietly. It is not an error unless the reopening fails (then
 * the usual path: back-off, log, metrics). */
static void silence_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sd_sync *y = w->data;

	(void)loop;
	(void)revents;
	sd_http_cancel(&y->watch_req);
	y->watch_created = false;
	y->watch_ep = (y->watch_ep + 1) % y->spec.n;
	y->ep = y->watch_ep;
	watch_begin(y);
}

/* Opens the watch from y->watch_from on y->watch_ep. */
static void watch_begin(struct sd_sync *y)
{
	char key[SD_PREFIX_MAX + 8], end[SD_PREFIX_MAX + 8], url[SD_ENDPOINT_MAX + 32], err[128];
	char *bkey, *bend, *body = NULL;
	struct sd_http_opts o = { .connect_timeout = SYNC_CONNECT, .require_leader = true, .data = watch_data };

	ev_timer_stop(y->loop, &y->watch_retry);
	snprintf(key, sizeof(key), "%s/", y->spec.prefix);
	prefix_end(key, end, sizeof(end));
	bkey = sd_b64_encode(key, strlen(key));
	bend = sd_b64_encode(end, strlen(end));
	if (bkey && bend &&
	    asprintf(&body, "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\",\"start_revision\":\"%lld\","
			    "\"progress_notify\":true}}", bkey, bend, (long long)y->watch_from) == -1)
		body = NULL;
	free(bkey);
	free(bend);
	y->watch_err[0] = '\0';
	y->watch_relist = false;
	y->llen = 0;
	snprintf(url, sizeof(url), "%s/v3/watch", y->spec.endpoint[y->watch_ep]);
	if (body)
		y->watch_req = sd_http_post(y->http, url, body, &o, watch_done, y, err, sizeof(err));
	free(body);
	if (!y->watch_req) {
		watch_lost(y, "watch: out of memory");
		return;
	}
	y->silence.repeat = SYNC_SILENCE;
	ev_timer_again(y->loop, &y->silence);
}

static void watch_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	watch_begin(w->data);
}

/* ---- API ------------------------------------------------------------- */

/* See sd_int.h. */
struct sd_sync *sd_sync_new(struct ev_loop *loop, const struct sd_etcd_spec *spec, double debounce,
                            const struct sd_sync_ops *ops, void *udata, char *err, size_t errlen)
{
	struct sd_sync *y = calloc(1, sizeof(*y));

	if (!y) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	y->http = sd_http_new(loop, err, errlen);
	if (!y->http) {
		free(y);
		return NULL;
	}
	y->loop = loop;
	y->spec = *spec;
	y->debounce = debounce;
	y->ops = ops;
	y->udata = udata;
	y->list_backoff = y->watch_backoff = SYNC_BACKOFF_MIN;
	ev_init(&y->list_retry, list_retry_cb);
	ev_init(&y->watch_retry, watch_retry_cb);
	ev_init(&y->debounce_t, debounce_cb);
	ev_init(&y->silence, silence_cb);
	y->list_retry.data = y->watch_retry.data = y->debounce_t.data = y->silence.data = y;
	return y;
}

/* See sd_int.h. */
void sd_sync_start(struct sd_sync *y)
{
	list_begin(y);
}

/* See sd_int.h. */
void sd_sync_built(struct sd_sync *y)
{
	y->building = false;
	after_work(y);
}

/* See sd_int.h. */
void sd_sync_relist(struct sd_sync *y, bool force)
{
	if (force)
		y->force = true;
	list_begin(y);
}

/* See sd_int.h. */
uint64_t sd_sync_pages(const struct sd_sync *y)
{
	return y->pages;
}

/* See sd_int.h. */
int sd_sync_feed_watch(struct sd_sync *y, const char *buf, size_t len)
{
	return watch_data(y, buf, len);
}

/* See sd_int.h. */
void sd_sync_feed_list(struct sd_sync *y, int step, const char *body, size_t len)
{
	y->listing = true;
	y->step = step;
	list_done(y, 200, NULL, body, len);
}

/* See sd_int.h. */
void sd_sync_free(struct sd_sync **yp)
{
	struct sd_sync *y = *yp;

	*yp = NULL;
	if (!y)
		return;
	ev_timer_stop(y->loop, &y->list_retry);
	ev_timer_stop(y->loop, &y->watch_retry);
	ev_timer_stop(y->loop, &y->debounce_t);
	ev_timer_stop(y->loop, &y->silence);
	sd_http_free(&y->http);        /* cancels the list and the watch */
	sd_recs_free(&y->recs);
	sd_recs_free(&y->base);
	events_drop_upto(y, INT64_MAX);
	free(y->pend);
	free(y->next_key);
	free(y->line);
	free(y);
}
