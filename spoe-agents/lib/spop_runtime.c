/*
 * spop_runtime.c — the agent runtime: configuration, workers, stop, stats.
 *
 * Each worker is a thread with its own libev loop, its own watchers on the
 * listening sockets (spop_listen.c) and its own connections (spop_conn.c);
 * workers share only the read-only handler table and their relaxed
 * counters. spop_runtime_stop() wakes every loop with an ev_async; each
 * worker then stops accepting, finishes its connections and returns.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "spop_int.h"

#define SPOP_STOP_DEADLINE_S 3.0

/* Creates a runtime from cfg (copied). Returns NULL with err filled on a
 * bad configuration or no memory. */
struct spop_runtime *spop_runtime_new(const struct spop_runtime_config *cfg, char *err, size_t errlen)
{
	struct spop_runtime *rt;
	uint32_t max = cfg->max_frame_size ? cfg->max_frame_size : SPOP_DEFAULT_FRAME_SIZE;

	if (cfg->workers > SPOP_MAX_WORKERS) {
		snprintf(err, errlen, "too many workers (%u, at most %u)", cfg->workers, SPOP_MAX_WORKERS);
		return NULL;
	}
	if (max < SPOP_MIN_FRAME_SIZE || max > SPOP_FRAME_SIZE_CAP) {
		snprintf(err, errlen, "max-frame-size %u outside [%u, %u]", (unsigned)max, SPOP_MIN_FRAME_SIZE,
			 SPOP_FRAME_SIZE_CAP);
		return NULL;
	}
	rt = calloc(1, sizeof(*rt));
	if (!rt) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	rt->env.our_max = max;
	rt->env.log = cfg->log;
	rt->env.log_udata = cfg->log_udata;
	rt->nworkers = cfg->workers ? cfg->workers : 1;
	rt->idle_timeout_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : 30000;
	rt->out_frames = cfg->out_buffer_frames ? cfg->out_buffer_frames : 4;
	rt->worker_init = cfg->worker_init;
	rt->worker_fini = cfg->worker_fini;
	rt->worker_udata = cfg->worker_udata;
	return rt;
}

/* Registers fn for the SPOE message called `message`. Returns 0, or -1
 * after start, for a duplicate, or when the table is full. */
int spop_runtime_on(struct spop_runtime *rt, const char *message, spop_handler_fn fn, void *udata)
{
	struct spop_handler *h;
	size_t len = strlen(message);

	if (rt->started || rt->env.nhandlers >= SPOP_MAX_HANDLERS || !fn)
		return -1;
	for (unsigned i = 0; i < rt->env.nhandlers; i++)
		if (rt->env.handlers[i].name_len == len && memcmp(rt->env.handlers[i].name, message, len) == 0)
			return -1;
	h = &rt->env.handlers[rt->env.nhandlers];
	h->name = strdup(message);
	if (!h->name)
		return -1;
	h->name_len = len;
	h->fn = fn;
	h->udata = udata;
	rt->env.nhandlers++;
	return 0;
}

/* Opens a listener now, so that address errors surface before start. */
int spop_runtime_listen(struct spop_runtime *rt, const char *addr, char *err, size_t errlen)
{
	if (rt->started) {
		snprintf(err, errlen, "%s: runtime already started", addr);
		return -1;
	}
	if (rt->nlisteners >= SPOP_MAX_LISTENERS) {
		snprintf(err, errlen, "%s: too many listeners (at most %d)", addr, SPOP_MAX_LISTENERS);
		return -1;
	}
	if (spop_listener_open(&rt->listeners[rt->nlisteners], addr, rt->nworkers, err, errlen) == -1)
		return -1;
	rt->nlisteners++;
	return 0;
}

static void worker_stop_deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct spop_worker *w = t->data;

	if (!w || w->magic != SPOP_WORKER_MAGIC)
		abort();
	spop_env_log(&w->rt->env, LOG_WARNING, "spop: worker %u: connections still open at the stop deadline, closing them",
		     w->index);
	spop_conn_close_all(w);
	ev_break(loop, EVBREAK_ALL);
}

static void worker_stop_cb(struct ev_loop *loop, ev_async *a, int revents)
{
	struct spop_worker *w = a->data;

	if (!w || w->magic != SPOP_WORKER_MAGIC)
		abort();
	if (w->stopping)
		return;
	w->stopping = true;
	spop_conn_stop_all(w);
	if (!w->conns) {
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	ev_timer_start(loop, &w->stop_deadline);
}

static void *worker_main(void *arg)
{
	struct spop_worker *w = arg;
	struct spop_runtime *rt = w->rt;

	if (rt->worker_init)
		rt->worker_init(rt->worker_udata, w->index, w->loop);
	ev_run(w->loop, 0);
	if (rt->worker_fini)
		rt->worker_fini(rt->worker_udata, w->index, w->loop);
	return NULL;
}

/* Prepares worker i: loop, stop watchers, one watcher per listener. */
static int worker_init(struct spop_runtime *rt, unsigned i, char *err, size_t errlen)
{
	struct spop_worker *w = &rt->workers[i];

	w->magic = SPOP_WORKER_MAGIC;
	w->index = i;
	w->rt = rt;
	w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (!w->loop) {
		snprintf(err, errlen, "worker %u: cannot create an event loop", i);
		return -1;
	}
	ev_async_init(&w->stop_async, worker_stop_cb);
	w->stop_async.data = w;
	ev_async_start(w->loop, &w->stop_async);
	ev_timer_init(&w->stop_deadline, worker_stop_deadline_cb, SPOP_STOP_DEADLINE_S, 0.);
	w->stop_deadline.data = w;
	ev_init(&w->accept_resume, spop_conn_accept_resume_cb);
	w->accept_resume.data = w;
	for (unsigned l = 0; l < rt->nlisteners; l++) {
		struct spop_listener *ls = &rt->listeners[l];
		struct spop_wlisten *wl = &w->wl[w->nwl++];

		wl->magic = SPOP_LISTEN_MAGIC;
		wl->w = w;
		wl->fd = ls->is_unix ? ls->fds[0] : ls->fds[i];
		ev_io_init(&wl->io, spop_conn_accept_cb, wl->fd, EV_READ);
		wl->io.data = wl;
		ev_io_start(w->loop, &wl->io);
	}
	return 0;
}

/* Spawns the workers. Workers block every signal, so signals reach the
 * caller's thread. Returns 0 or -1 with err filled (nothing running). */
int spop_runtime_start(struct spop_runtime *rt, char *err, size_t errlen)
{
	sigset_t all, old;
	int rc;

	if (rt->started) {
		snprintf(err, errlen, "runtime already started");
		return -1;
	}
	if (!rt->nlisteners) {
		snprintf(err, errlen, "no listener configured");
		return -1;
	}
	rt->workers = calloc(rt->nworkers, sizeof(*rt->workers));
	if (!rt->workers) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (worker_init(rt, i, err, errlen) == -1)
			goto out_free_workers;
	rt->started = true;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (unsigned i = 0; i < rt->nworkers; i++) {
		rc = pthread_create(&rt->workers[i].thread, NULL, worker_main, &rt->workers[i]);
		if (rc != 0) {
			snprintf(err, errlen, "worker %u: pthread_create: %s", i, strerror(rc));
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			spop_runtime_stop(rt);
			return -1;
		}
		rt->workers[i].started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return 0;

out_free_workers:
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (rt->workers[i].loop)
			ev_loop_destroy(rt->workers[i].loop);
	free(rt->workers);
	rt->workers = NULL;
	return -1;
}

/* Graceful stop: wakes every worker (they stop accepting, answer what was
 * read, DISCONNECT and close their connections within a deadline), joins
 * them and closes the listeners. Idempotent. */
void spop_runtime_stop(struct spop_runtime *rt)
{
	if (!rt->started || rt->stopped)
		return;
	rt->stopped = true;
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (rt->workers[i].started)
			ev_async_send(rt->workers[i].loop, &rt->workers[i].stop_async);
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (rt->workers[i].started)
			pthread_join(rt->workers[i].thread, NULL);
	for (unsigned i = 0; i < rt->nlisteners; i++)
		spop_listener_close(&rt->listeners[i], rt->nworkers);
}

static uint64_t ld(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* Sums every worker's counters into *out. Safe from any thread. */
void spop_runtime_stats(struct spop_runtime *rt, struct spop_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!rt->workers)
		return;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct spop_counters *c = &rt->workers[i].ctr;

		out->conns_total += ld(&c->conns_total);
		out->conns_current += ld(&c->conns_current);
		out->hellos += ld(&c->hellos);
		out->healthchecks += ld(&c->healthchecks);
		out->notifies += ld(&c->notifies);
		out->acks += ld(&c->acks);
		out->messages += ld(&c->messages);
		out->haproxy_disconnects += ld(&c->haproxy_disconnects);
		out->bytes_in += ld(&c->bytes_in);
		out->bytes_out += ld(&c->bytes_out);
		for (unsigned s = 0; s < 100; s++)
			out->disconnect_status[s] += ld(&c->disconnect_status[s]);
	}
}

unsigned spop_runtime_workers(const struct spop_runtime *rt)
{
	return rt->nworkers;
}

unsigned spop_runtime_listen_port(const struct spop_runtime *rt, unsigned index)
{
	return index < rt->nlisteners ? rt->listeners[index].port : 0;
}

/* Stops the runtime if needed and frees it; clears *rtp. */
void spop_runtime_free(struct spop_runtime **rtp)
{
	struct spop_runtime *rt = *rtp;

	if (!rt)
		return;
	spop_runtime_stop(rt);
	if (!rt->started)
		for (unsigned i = 0; i < rt->nlisteners; i++)
			spop_listener_close(&rt->listeners[i], rt->nworkers);
	if (rt->workers) {
		for (unsigned i = 0; i < rt->nworkers; i++)
			ev_loop_destroy(rt->workers[i].loop);
		free(rt->workers);
	}
	for (unsigned i = 0; i < rt->env.nhandlers; i++)
		free(rt->env.handlers[i].name);
	free(rt);
	*rtp = NULL;
}
