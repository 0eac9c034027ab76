/*
 * route_agent.c — the decision handler that runs on the SPOP workers.
 */
#include "route_agent.h"

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

struct route_agent {
	unsigned magic;
	unsigned nworkers;
	struct route_view_holder *holder;
	struct route_worker *workers;        /* nworkers, 64-byte aligned */
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

/* The `route` message: decide, then set txn.<prefix>.backend, .server (node
 * only), .project (project paths only) and .why. */
static void route_on_message(void *udata, unsigned worker, const struct spop_args *args, struct spop_ack *ack)
{
	struct route_agent *a = udata;
	struct route_worker *w = &a->workers[worker];
	const struct route_view *v;
	struct router_decision dec;
	const char *path = "", *why;
	size_t len = 0;
	int rc = 0;

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
		return;   /* empty ACK: HAProxy's fallback rules send the request to the hubs */
	}
	why = router_why_str(dec.why);
	rc |= spop_ack_set_str(ack, SPOP_SCOPE_TXN, "backend", dec.backend, strlen(dec.backend));
	if (dec.server)
		rc |= spop_ack_set_str(ack, SPOP_SCOPE_TXN, "server", dec.server, strlen(dec.server));
	if (dec.is_project)
		rc |= spop_ack_set_str(ack, SPOP_SCOPE_TXN, "project", dec.project, 36);
	rc |= spop_ack_set_str(ack, SPOP_SCOPE_TXN, "why", why, strlen(why));
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
	return spop_runtime_on(rt, "route", route_on_message, a);
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
