/*
 * route_auth.c — token checks on the SPOP workers: key set holder,
 * per-worker verified-token cache, the auth answer.
 */
/* The token hash on a cache hit must not allocate: OpenSSL 3.0's SHA256()
 * and EVP_Digest* fetch and allocate on every call (7 and 1 allocations,
 * measured with valgrind), the SHA256_* functions on a stack context
 * allocate nothing and use the same assembly. They are deprecated in 3.0,
 * not removed: this file uses them on purpose. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "route_auth.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/sha.h>

#define WAYS 4

struct auth_entry {
	uint8_t hash[SHA256_DIGEST_LENGTH];
	int64_t exp;                 /* 0: empty */
	uint64_t stamp;              /* insertion order, for eviction */
	struct sg_jwt_claims claims;
};

/* One per worker, on cache lines of its own; counters are written by their
 * worker only (relaxed load + store) and summed on demand. */
struct auth_worker {
	_Alignas(64) uint64_t gen;           /* generation of `keys` */
	struct sg_jwt_keys *keys;            /* this worker's own reference */
	struct auth_entry *cache;            /* nsets * WAYS entries */
	uint64_t clock;
	/* the Cookie header without the token: "a;b" becomes "a; b", so up
	 * to half as long again as the header (an answer that does not fit
	 * the frame loses `cookie`, and HAProxy drops the whole header) */
	char cookies[ROUTE_AUTH_COOKIES_MAX * 3 / 2 + 2];
	_Atomic uint64_t results[SG_JWT_RESULT_COUNT];
	_Atomic uint64_t hits, misses, entries, flushes;
};

struct route_auth {
	_Alignas(64) atomic_uint_fast64_t generation;   /* bumped on every publish */
	pthread_mutex_t lock;                           /* guards current */
	struct sg_jwt_keys *current;
	unsigned from;
	unsigned nworkers;
	unsigned nsets;                                 /* power of two */
	struct auth_worker *workers;
};

static inline void count(_Atomic uint64_t *c, uint64_t add)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + add, memory_order_relaxed);
}

struct route_auth *route_auth_new(unsigned workers, unsigned cache, unsigned from)
{
	struct route_auth *a = aligned_alloc(64, sizeof(*a));
	unsigned sets = 1;

	if (!a)
		return NULL;
	memset(a, 0, sizeof(*a));
	if (workers == 0)
		workers = 1;
	while (sets * WAYS < cache && sets < (1u << 24))
		sets <<= 1;
	a->nsets = sets;
	a->from = from ? from : ROUTE_AUTH_FROM_COOKIE | ROUTE_AUTH_FROM_BEARER;
	a->nworkers = workers;
	atomic_init(&a->generation, 0);
	if (pthread_mutex_init(&a->lock, NULL) != 0) {
		free(a);
		return NULL;
	}
	a->workers = aligned_alloc(64, workers * sizeof(*a->workers));
	if (!a->workers) {
		route_auth_free(&a);
		return NULL;
	}
	memset(a->workers, 0, workers * sizeof(*a->workers));
	for (unsigned i = 0; i < workers; i++) {
		a->workers[i].cache = calloc((size_t)sets * WAYS, sizeof(struct auth_entry));
		if (!a->workers[i].cache) {
			route_auth_free(&a);
			return NULL;
		}
	}
	return a;
}

int route_auth_load(struct route_auth *a, const char *path, char *err, size_t errlen)
{
	struct sg_jwt_keys *k = sg_jwt_keys_load(path, err, errlen), *old;

	if (!k)
		return -1;
	pthread_mutex_lock(&a->lock);
	old = a->current;
	a->current = k;
	atomic_fetch_add_explicit(&a->generation, 1, memory_order_release);
	pthread_mutex_unlock(&a->lock);
	sg_jwt_keys_release(&old);
	return 0;
}

unsigned route_auth_key_count(const struct route_auth *a)
{
	unsigned n;

	pthread_mutex_lock((pthread_mutex_t *)&a->lock);
	n = sg_jwt_keys_count(a->current);
	pthread_mutex_unlock((pthread_mutex_t *)&a->lock);
	return n;
}

void route_auth_describe(const struct route_auth *a, char *out, size_t len)
{
	pthread_mutex_lock((pthread_mutex_t *)&a->lock);
	sg_jwt_keys_describe(a->current, out, len);
	pthread_mutex_unlock((pthread_mutex_t *)&a->lock);
}

/* A new key set was published: take it and forget every token verified
 * with the old one (a removed kid must stop working now). Rare. */
static void worker_refresh(struct route_auth *a, struct auth_worker *w)
{
	struct sg_jwt_keys *old = w->keys;

	pthread_mutex_lock(&a->lock);
	w->keys = sg_jwt_keys_ref(a->current);
	w->gen = atomic_load_explicit(&a->generation, memory_order_relaxed);
	pthread_mutex_unlock(&a->lock);
	if (old)                             /* not the first set this worker sees */
		count(&w->flushes, 1);
	sg_jwt_keys_release(&old);
	memset(w->cache, 0, (size_t)a->nsets * WAYS * sizeof(*w->cache));
	atomic_store_explicit(&w->entries, 0, memory_order_relaxed);
}

/* A string argument by name; false when absent, NULL or empty. */
static bool find_arg(const struct spop_args *args, const char *name, size_t name_len, const char **v, size_t *len)
{
	for (unsigned i = 0; i < args->count; i++) {
		const struct spop_arg *arg = &args->arg[i];

		if (arg->name_len == name_len && memcmp(arg->name, name, name_len) == 0) {
			if ((arg->value.type != SPOP_DATA_STR && arg->value.type != SPOP_DATA_BIN) ||
			    arg->value.v.str.len == 0)
				return false;
			*v = arg->value.v.str.ptr;
			*len = arg->value.v.str.len;
			return true;
		}
	}
	return false;
}

/* The credential: a Bearer Authorization header first, else the token
 * cookie (each only when --auth-from allows it). The Cookie header (arg
 * `cookies`, the name in `cname`) is split here, in C: w->cookies gets the
 * other cookies (what the node may see), *rest_len its length, or -1 when
 * the request has no Cookie header or it could not be split. */
static bool find_token(const struct route_auth *a, struct auth_worker *w, const struct spop_args *args,
		       const char **tok, size_t *len, ssize_t *rest_len)
{
	const char *v, *cv = NULL, *name;
	size_t n, cn = 0, name_len, rl;
	int found = 0;

	*rest_len = -1;
	if (find_arg(args, "cookies", 7, &v, &n) && find_arg(args, "cname", 5, &name, &name_len)) {
		found = sg_cookie_take(v, n, name, name_len, &cv, &cn, w->cookies, sizeof(w->cookies), &rl);
		if (found >= 0)
			*rest_len = (ssize_t)rl;
	}
	if ((a->from & ROUTE_AUTH_FROM_BEARER) && find_arg(args, "authz", 5, &v, &n) && n > 7 &&
	    strncasecmp(v, "Bearer ", 7) == 0) {
		v += 7;
		n -= 7;
		while (n && v[0] == ' ') {
			v++;
			n--;
		}
		while (n && v[n - 1] == ' ')
			n--;
		*tok = v;
		*len = n;
		return n > 0;
	}
	if ((a->from & ROUTE_AUTH_FROM_COOKIE) && found == 1 && cn > 0) {
		*tok = cv;
		*len = cn;
		return true;
	}
	return false;
}

/* SHA-256 of the token, allocation-free (see the top of this file). */
static void token_hash(const char *tok, size_t len, uint8_t out[SHA256_DIGEST_LENGTH])
{
	SHA256_CTX c;

	SHA256_Init(&c);
	SHA256_Update(&c, tok, len);
	SHA256_Final(out, &c);
}

static const struct sg_jwt_claims *cache_get(struct route_auth *a, struct auth_worker *w,
					     const uint8_t hash[SHA256_DIGEST_LENGTH], int64_t now)
{
	uint32_t set;
	struct auth_entry *e;

	memcpy(&set, hash, sizeof(set));
	e = &w->cache[(size_t)(set & (a->nsets - 1)) * WAYS];
	for (unsigned i = 0; i < WAYS; i++)
		if (e[i].exp > now && memcmp(e[i].hash, hash, SHA256_DIGEST_LENGTH) == 0)
			return &e[i].claims;
	return NULL;
}

static void cache_put(struct route_auth *a, struct auth_worker *w, const uint8_t hash[SHA256_DIGEST_LENGTH],
		      const struct sg_jwt_claims *c, int64_t now)
{
	uint32_t set;
	struct auth_entry *e, *victim;

	memcpy(&set, hash, sizeof(set));
	e = &w->cache[(size_t)(set & (a->nsets - 1)) * WAYS];
	victim = &e[0];
	for (unsigned i = 0; i < WAYS; i++) {
		if (e[i].exp <= now) {           /* empty or expired: take it */
			victim = &e[i];
			break;
		}
		if (e[i].stamp < victim->stamp)
			victim = &e[i];
	}
	if (victim->exp == 0)
		count(&w->entries, 1);
	memcpy(victim->hash, hash, SHA256_DIGEST_LENGTH);
	victim->exp = c->exp;
	victim->stamp = ++w->clock;
	victim->claims = *c;
}

int route_auth_answer(struct route_auth *a, unsigned worker, double now_d, const struct spop_args *args,
		      const struct router_decision *dec, struct spop_ack *ack)
{
	struct auth_worker *w = &a->workers[worker];
	const int64_t now = (int64_t)now_d;
	const struct sg_jwt_claims *c = NULL;
	struct sg_jwt_claims fresh;
	enum sg_jwt_result r;
	uint8_t hash[SHA256_DIGEST_LENGTH], id[16];
	const char *tok = NULL;
	size_t len = 0;
	ssize_t rest_len;
	int rc = 0;

	if (atomic_load_explicit(&a->generation, memory_order_acquire) != w->gen)
		worker_refresh(a, w);
	if (!find_token(a, w, args, &tok, &len, &rest_len)) {
		r = SG_JWT_MISSING;
	} else if (len > SG_JWT_TOKEN_MAX) {
		r = SG_JWT_MALFORMED;
	} else {
		token_hash(tok, len, hash);
		c = cache_get(a, w, hash, now);
		if (c) {
			count(&w->hits, 1);
			r = SG_JWT_OK;
		} else {
			count(&w->misses, 1);
			r = sg_jwt_verify(w->keys, tok, len, now, &fresh);
			if (r == SG_JWT_OK) {
				cache_put(a, w, hash, &fresh, now);
				c = &fresh;
			}
		}
	}
	if (r == SG_JWT_OK && (router_project_parse(dec->project, 36, id) != 0 || !sg_jwt_grants(c, id)))
		r = SG_JWT_FORBIDDEN;
	count(&w->results[r], 1);
	if (r == SG_JWT_OK) {
		/* let in: user, then the Cookie header the node may see. No
		 * `cookie` (nothing left, no Cookie header, or it could not be
		 * split): HAProxy removes the whole header, so a token never
		 * passes, and an action (about 2,000 instructions) is saved. */
		rc |= spop_ack_set_str(ack, SPOP_SCOPE_TXN, "user", c->user, c->user_len);
		if (rest_len > 0)
			rc |= spop_ack_set_str(ack, SPOP_SCOPE_TXN, "cookie", w->cookies, (size_t)rest_len);
	} else {
		rc |= spop_ack_set_str(ack, SPOP_SCOPE_TXN, "auth", r == SG_JWT_FORBIDDEN ? "403" : "401", 3);
	}
	return rc;
}

void route_auth_counts(const struct route_auth *a, struct route_auth_counts *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < a->nworkers; i++) {
		struct auth_worker *w = &a->workers[i];

		for (unsigned k = 0; k < SG_JWT_RESULT_COUNT; k++)
			out->results[k] += atomic_load_explicit(&w->results[k], memory_order_relaxed);
		out->cache_hits += atomic_load_explicit(&w->hits, memory_order_relaxed);
		out->cache_misses += atomic_load_explicit(&w->misses, memory_order_relaxed);
		out->cache_entries += atomic_load_explicit(&w->entries, memory_order_relaxed);
		out->cache_flushes += atomic_load_explicit(&w->flushes, memory_order_relaxed);
	}
}

void route_auth_free(struct route_auth **ap)
{
	struct route_auth *a = *ap;

	*ap = NULL;
	if (!a)
		return;
	if (a->workers) {
		for (unsigned i = 0; i < a->nworkers; i++) {
			sg_jwt_keys_release(&a->workers[i].keys);
			free(a->workers[i].cache);
		}
		free(a->workers);
	}
	sg_jwt_keys_release(&a->current);
	pthread_mutex_destroy(&a->lock);
	free(a);
}
