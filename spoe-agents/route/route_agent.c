/*
 * route_agent.c — the decision handler that runs on the SPOP workers.
 */
#include "route_agent.h"
#include "route_auth.h"
#include "route_map.h"

#include <ev.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define AGENT_MAGIC          0x52544147u   /* "RTAG" */
#define WORKER_REFRESH_SEC   1.0          /* idle workers drop stale views this often */

/* One per worker thread, on cache lines of its own. Only `decisions`,
 * `no_path`, `errors` and `ack_overflow` are read by other threads. */
struct route_worker {
	_Alignas(64) uint64_t gen;           /* generation of `view` */
	struct route_view *view;             /* this worker's own reference */
	struct route_agent *agent;
	struct ev_loop *loop;                /* NULL until worker_init ran */
	ev_timer refresh;
	_Atomic uint64_t decisions[ROUTER_WHY_COUNT];
	_Atomic uint64_t no_path, errors, ack_overflow;
};

/* What one registered message writes: `route` answers in scope txn,
 * `route-sess` in scope sess (see route_on_message). */
struct route_message {
	struct route_agent *agent;
	enum spop_scope scope;
	bool auth;                           /* `route-auth`: also check the credential */
};

struct route_agent {
	unsigned magic;
	unsigned nworkers;
	struct route_view_holder *holder;
	struct route_worker *workers;        /* nworkers, 64-byte aligned */
	struct route_message txn_msg;        /* `route` */
	struct route_message sess_msg;       /* `route-sess` */
	struct route_message auth_msg;       /* `route-auth` (access control, route_auth.h) */
	struct route_auth *auth;             /* NULL: no --auth-keys, every project request 401 */
	struct route_map *map;               /* map publisher (--map-file), or NULL */
};

/* Single-writer counter bump: a relaxed load and store, no locked
 * instruction (the owning worker is the only writer). */
static inline void worker_count(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* Swaps the worker's view for the holder's current one. Rare: only after a
 * publish (reload or health change). */
static void worker_refresh(struct route_agent *a, struct route_worker *w)
{
	struct route_view *old = w->view;

	w->view = route_view_holder_acquire(a->holder, &w->gen);
	route_view_release(&old);
}

/* Timer on the worker's loop: an idle worker must not pin an old snapshot. */
static void worker_refresh_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct route_worker *w = t->data;

	(void)loop;
	(void)revents;
	if (w->agent->magic != AGENT_MAGIC)
		abort();
	if (route_view_holder_generation(w->agent->holder) != w->gen)
		worker_refresh(w->agent, w);
}

/* The `path` argument: by name, else an unnamed first argument (an
 * `args` line written without names). Strings and binaries both work;
 * NULL (a failed sample) or absence leaves *len 0, which routes to the
 * hubs. Returns false when no usable value was found. */
static bool route_find_path(const struct spop_args *args, const char **path, size_t *len)
{
	const struct spop_arg *found = NULL;

	for (unsigned i = 0; i < args->count; i++) {
		const struct spop_arg *arg = &args->arg[i];

		if (arg->name_len == 4 && memcmp(arg->name, "path", 4) == 0) {
			found = arg;
			break;
		}
	}
	if (!found && args->count && args->arg[0].name_len == 0)
		found = &args->arg[0];
	if (!found || (found->value.type != SPOP_DATA_STR && found->value.type != SPOP_DATA_BIN))
		return false;
	*path = found->value.v.str.ptr;
	*len = found->value.v.str.len;
	return true;
}

/* The first path segment as HAProxy's `path,field(2,/)` yields it: the
 * bytes between the first '/' and the next one (or the end). Returns false
 * when there is no second field (no '/' at all), when HAProxy would not
 * yield a string the decision cache can match. */
static bool route_first_segment(const char *path, size_t len, const char **seg, size_t *seg_len)
{
	const char *slash = len ? memchr(path, '/', len) : NULL;
	const char *start, *end;

	if (!slash)
		return false;
	start = slash + 1;
	end = memchr(start, '/', len - (size_t)(start - path));
	*seg = start;
	*seg_len = end ? (size_t)(end - start) : len - (size_t)(start - path);
	return true;
}

/* `dest` of a route-sess answer: "<backend>/<server>/<why>", server empty
 * when routed to hubs or a pool (names are [A-Za-z0-9_.-], never '/'). The
 * longest: a node's (nodes_<dc>/<node>/remote-dc), or a pool's
 * (pool_<pool>_<dc>//no-pool, 79 bytes: no server). */
#define DEST_MAX (6 + ROUTER_NAME_MAX + 1 + ROUTER_NAME_MAX + 1 + 9)

/* Worst case of a `route-sess` ACK (SET-VAR = 3 bytes + name + type +
 * 1-byte length + value; all lengths below 240): dest, then key. It must
 * fit the smallest frame an agent may negotiate after the largest header,
 * so the key (written last, only after dest) can never be left out while
 * the answer it names was replaced. */
#define SET_VAR_SIZE(name_len, val_len)   (3 + 1 + (name_len) + 1 + 1 + (val_len))
_Static_assert(SET_VAR_SIZE(4, DEST_MAX) + SET_VAR_SIZE(3, ROUTE_KEY_MAX) <=
	       SPOP_MIN_FRAME_SIZE + 4 - SPOP_FRAME_HDR_MAX, "a route-sess ACK must fit the smallest frame");

/* Appends s (len bytes) at *p, bounded by end. False when it does not fit. */
static bool dest_put(char **p, const char *end, const char *s, size_t len)
{
	if ((size_t)(end - *p) < len)
		return false;
	memcpy(*p, s, len);
	*p += len;
	return true;
}

/* The `route` answer, scope txn: backend, server (node only), project
 * (project paths only), why. Returns 0, or -1 if an action did not fit. */
static int answer_txn(struct spop_ack *ack, const struct router_decision *dec)
{
	const char *why = router_why_str(dec->why);
	int rc = 0;

	rc |= spop_ack_set_str(ack, SPOP_SCOPE_TXN, "backend", dec->backend, strlen(dec->backend));
	if (dec->server)
		rc |= spop_ack_set_str(ack, SPOP_SCOPE_TXN, "server", dec->server, strlen(dec->server));
	if (dec->is_project)
		rc |= spop_ack_set_str(ack, SPOP_SCOPE_TXN, "project", dec->project, 36);
	rc |= spop_ack_set_str(ack, SPOP_SCOPE_TXN, "why", why, strlen(why));
	return rc;
}

/* The `route-sess` answer, scope sess: the decision cache's whole entry in
 * two variables (each SPOE action costs HAProxy about 2k instructions, so
 * a miss must carry few): dest = "<backend>/<server>/<why>" (one variable,
 * so a node name can never outlive its answer), then key, the path's first
 * segment as HAProxy's `path,field(2,/)` yields it, unset when there is
 * none, it is longer than ROUTE_KEY_MAX, or a route of the directory goes
 * deeper than it (never a hit). dec NULL (no
 * decision): both unset, so HAProxy routes to the hubs and asks again.
 * Returns 0, or -1 if an action did not fit. */
static int answer_sess(struct spop_ack *ack, const struct router_decision *dec, const char *path, size_t len)
{
	char dest[DEST_MAX], *p = dest;
	const char *why, *seg;
	size_t seg_len;
	int rc = 0;

	if (dec) {
		why = router_why_str(dec->why);
		if (!dest_put(&p, dest + sizeof(dest), dec->backend, strlen(dec->backend)) ||
		    !dest_put(&p, dest + sizeof(dest), "/", 1) ||
		    (dec->server && !dest_put(&p, dest + sizeof(dest), dec->server, strlen(dec->server))) ||
		    !dest_put(&p, dest + sizeof(dest), "/", 1) ||
		    !dest_put(&p, dest + sizeof(dest), why, strlen(why)))
			dec = NULL;    /* names beyond the router's limits: fail open */
	}
	if (!dec) {
		rc |= spop_ack_unset_var(ack, SPOP_SCOPE_SESS, "key");
		rc |= spop_ack_unset_var(ack, SPOP_SCOPE_SESS, "dest");
		return rc;
	}
	rc |= spop_ack_set_str(ack, SPOP_SCOPE_SESS, "dest", dest, (size_t)(p - dest));
	/* a route deeper than the first segment (path classes): the segment
	 * does not decide, so no key (every request asks) */
	if (!rc && dec->first_segment && route_first_segment(path, len, &seg, &seg_len) && seg_len <= ROUTE_KEY_MAX)
		rc |= spop_ack_set_str(ack, SPOP_SCOPE_SESS, "key", seg, seg_len);
	else
		rc |= spop_ack_unset_var(ack, SPOP_SCOPE_SESS, "key");
	return rc;
}

/* The map cache (route_map.h): a project decision that names a node goes
 * to the publisher's ring, keyed like haproxy.cfg's lookup. */
static void publish_decision(struct route_agent *a, unsigned worker, uint64_t gen, const char *path, size_t len,
			     const struct router_decision *dec)
{
	const char *seg;
	size_t seg_len;

	if (route_first_segment(path, len, &seg, &seg_len))
		route_map_push(a->map, worker, gen, seg, seg_len, dec->backend, dec->server);
}

/* Handler of both messages; udata is the route_message that says which
 * scope the answer goes to: `route` (txn, per request; an empty ACK when no
 * decision could be made, and HAProxy's fallback rules send the request to
 * the hubs) or `route-sess` (sess, the decision cache; see answer_sess). */
static void route_on_message(void *udata, unsigned worker, const struct spop_args *args, struct spop_ack *ack)
{
	const struct route_message *m = udata;
	struct route_agent *a = m->agent;
	const bool sess = m->scope == SPOP_SCOPE_SESS;
	struct route_worker *w = &a->workers[worker];
	const struct route_view *v;
	struct router_decision dec;
	const char *path = "";
	size_t len = 0;
	int rc;

	if (route_view_holder_generation(a->holder) != w->gen)
		worker_refresh(a, w);
	v = w->view;
	if (!route_find_path(args, &path, &len)) {
		path = "";
		len = 0;
		worker_count(&w->no_path);
	}
	if (!v || router_decide(v->dir, v->local_dc, path, len, v->down, &dec) == -1) {
		worker_count(&w->errors);
		if (sess && answer_sess(ack, NULL, path, len))
			worker_count(&w->ack_overflow);
		return;
	}
	if (a->map && dec.is_project && dec.server)
		publish_decision(a, worker, w->gen, path, len, &dec);
	rc = sess ? answer_sess(ack, &dec, path, len) : answer_txn(ack, &dec);
	/* Access control hook: project paths only, hub paths are unaffected. */
	if (m->auth && dec.is_project)
		rc |= a->auth ? route_auth_answer(a->auth, worker, w->loop ? ev_now(w->loop) : 0, args, &dec, ack)
			      : spop_ack_set_str(ack, SPOP_SCOPE_TXN, "auth", "401", 3);
	if (rc)
		worker_count(&w->ack_overflow);
	worker_count(&w->decisions[dec.why]);
}

/* Runtime hook, on the worker's thread before its loop runs: starts the
 * refresh timer without letting it keep the loop alive. */
static void route_worker_init(void *udata, unsigned worker, struct ev_loop *loop)
{
	struct route_agent *a = udata;
	struct route_worker *w = &a->workers[worker];

	w->loop = loop;
	ev_timer_init(&w->refresh, worker_refresh_cb, WORKER_REFRESH_SEC, WORKER_REFRESH_SEC);
	w->refresh.data = w;
	ev_timer_start(loop, &w->refresh);
	ev_unref(loop);
}

/* Runtime hook, on the worker's thread after its loop ended. */
static void route_worker_fini(void *udata, unsigned worker, struct ev_loop *loop)
{
	struct route_agent *a = udata;
	struct route_worker *w = &a->workers[worker];

	if (w->loop) {
		ev_ref(loop);
		ev_timer_stop(loop, &w->refresh);
		w->loop = NULL;
	}
	route_view_release(&w->view);
	w->gen = 0;
}

/* See route_agent.h. */
struct route_agent *route_agent_new(struct route_view_holder *holder, unsigned workers)
{
	struct route_agent *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	if (workers == 0)
		workers = 1;
	a->workers = aligned_alloc(64, workers * sizeof(*a->workers));
	if (!a->workers) {
		free(a);
		return NULL;
	}
	memset(a->workers, 0, workers * sizeof(*a->workers));
	for (unsigned i = 0; i < workers; i++)
		a->workers[i].agent = a;
	a->magic = AGENT_MAGIC;
	a->nworkers = workers;
	a->holder = holder;
	a->txn_msg = (struct route_message){ .agent = a, .scope = SPOP_SCOPE_TXN };
	a->sess_msg = (struct route_message){ .agent = a, .scope = SPOP_SCOPE_SESS };
	a->auth_msg = (struct route_message){ .agent = a, .scope = SPOP_SCOPE_TXN, .auth = true };
	return a;
}

/* See route_agent.h. */
void route_agent_configure(struct route_agent *a, struct spop_runtime_config *cfg)
{
	cfg->workers = a->nworkers;
	cfg->worker_init = route_worker_init;
	cfg->worker_fini = route_worker_fini;
	cfg->worker_udata = a;
}

/* See route_agent.h. */
int route_agent_attach(struct route_agent *a, struct spop_runtime *rt)
{
	if (spop_runtime_on(rt, "route", route_on_message, &a->txn_msg) == -1 ||
	    spop_runtime_on(rt, "route-auth", route_on_message, &a->auth_msg) == -1)
		return -1;
	return spop_runtime_on(rt, "route-sess", route_on_message, &a->sess_msg);
}

/* See route_agent.h. */
void route_agent_set_auth(struct route_agent *a, struct route_auth *auth)
{
	a->auth = auth;
}

/* See route_agent.h. */
void route_agent_set_map(struct route_agent *a, struct route_map *m)
{
	a->map = m;
}

/* See route_agent.h. */
void route_agent_counts(const struct route_agent *a, struct route_agent_counts *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < a->nworkers; i++) {
		struct route_worker *w = &a->workers[i];

		for (unsigned k = 0; k < ROUTER_WHY_COUNT; k++)
			out->decisions[k] += atomic_load_explicit(&w->decisions[k], memory_order_relaxed);
		out->no_path += atomic_load_explicit(&w->no_path, memory_order_relaxed);
		out->errors += atomic_load_explicit(&w->errors, memory_order_relaxed);
		out->ack_overflow += atomic_load_explicit(&w->ack_overflow, memory_order_relaxed);
	}
}

/* See route_agent.h. */
void route_agent_free(struct route_agent **ap)
{
	struct route_agent *a = *ap;

	*ap = NULL;
	if (!a)
		return;
	for (unsigned i = 0; i < a->nworkers; i++)
		route_view_release(&a->workers[i].view);
	a->magic = 0;
	free(a->workers);
	free(a);
}
