/*
 * spop_runtime.c — the agent runtime: configuration, workers, stop, stats.
 *
 * Each worker is a thread with its own libev loop, its own watchers on the
 * listening sockets (spop_listen.c) and its own connections (spop_conn.c);
 * workers share only the read-only handler table and their relaxed
 * counters. spop_runtime_stop() wakes every loop with an ev_async; each
 * worker then stops accepting, finishes its connections and returns.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
	rt->idle_timeout_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : SPOP_DEFAULT_IDLE_TIMEOUT_MS;
	rt->out_frames = cfg->out_buffer_frames ? cfg->out_buffer_frames : 4;
	rt->agent_name = cfg->agent_name ? cfg->agent_name : "agent";
	rt->max_conns_cfg = cfg->max_connections;
	rt->fd_reserve = cfg->fd_reserve ? cfg->fd_reserve : SPOP_DEFAULT_FD_RESERVE;
	/* DISCONNECT lines: enough to see what a few bad peers do; refusals
	 * and accept errors: one line per 10 s says it goes on */
	spop_ratelog_init(&rt->disc_log, 20, 10.0);
	spop_ratelog_init(&rt->accept_log, 1, 10.0);
	spop_ratelog_init(&rt->cap_log, 1, 10.0);
	rt->env.disc_log = &rt->disc_log;
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
	if (spop_listener_open(&rt->listeners[rt->nlisteners], addr, rt->agent_name, err, errlen) == -1)
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
		wl->fd = ls->fd;
		ev_io_init(&wl->io, spop_conn_accept_cb, wl->fd, EV_READ);
		wl->io.data = wl;
		ev_io_start(w->loop, &wl->io);
	}
	return 0;
}

/* Descriptors open in the process now: /proc/self/fd, or a probe of the
 * first `limit` numbers where /proc is not mounted. */
static unsigned long open_fds(unsigned long limit)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned long n = 0;

	if (d) {
		struct dirent *e;

		while ((e = readdir(d)) != NULL)
			if (e->d_name[0] != '.')
				n++;
		closedir(d);
		return n ? n - 1 : 0;   /* the directory's own descriptor */
	}
	for (unsigned long fd = 0; fd < limit && fd < 65536; fd++)
		if (fcntl((int)fd, F_GETFD) != -1)
			n++;
	return n;
}

/* Sets rt->max_conns. Every connection holds one descriptor, so the
 * ceiling is the soft open-files limit minus what is open now (listeners,
 * event loops, the program's own sockets), minus the reserve for what the
 * program opens later, minus the refused connections that may linger at
 * once (one more per worker: they check the slots concurrently). A
 * configured cap above that could only end in EMFILE: refused. */
static int compute_cap(struct spop_runtime *rt, char *err, size_t errlen)
{
	struct rlimit rl;
	unsigned long soft, used, avail, overhead;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		snprintf(err, errlen, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return -1;
	}
	soft = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1ul << 30) ? (1ul << 30) : (unsigned long)rl.rlim_cur;
	used = open_fds(soft);
	overhead = used + rt->fd_reserve + SPOP_REJECT_MAX + rt->nworkers;
	avail = soft > overhead ? soft - overhead : 0;
	if (avail > 1u << 30)
		avail = 1u << 30;
	if (avail == 0) {
		snprintf(err, errlen, "the open-files limit (%lu) leaves no room for connections "
			 "(%lu open now, %u reserved)", soft, used, rt->fd_reserve + SPOP_REJECT_MAX + rt->nworkers);
		return -1;
	}
	if (rt->max_conns_cfg > avail) {
		snprintf(err, errlen, "max-connections %u is more than the open-files limit allows: %lu "
			 "(limit %lu - %lu open now - %u reserved)", rt->max_conns_cfg, avail, soft, used,
			 rt->fd_reserve + SPOP_REJECT_MAX + rt->nworkers);
		return -1;
	}
	rt->max_conns = rt->max_conns_cfg ? rt->max_conns_cfg : (unsigned)avail;
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
	/* after the loops exist: their descriptors count as open */
	if (compute_cap(rt, err, errlen) == -1)
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

/* At stop: says how many events a rate limit left out since its last line. */
static void flush_ratelog(struct spop_runtime *rt, struct spop_ratelog *r, const char *what)
{
	uint64_t n = spop_ratelog_flush(r);

	if (n)
		spop_env_log(&rt->env, LOG_NOTICE, "spop: %llu more %s since the last such line",
			     (unsigned long long)n, what);
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
		spop_listener_close(&rt->listeners[i]);
	flush_ratelog(rt, &rt->disc_log, "DISCONNECT log lines");
	flush_ratelog(rt, &rt->cap_log, "connections refused at the cap");
	flush_ratelog(rt, &rt->accept_log, "accept errors");
}

static uint64_t ld(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* Sums every worker's counters into *out. Safe from any thread. */
void spop_runtime_stats(struct spop_runtime *rt, struct spop_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->idle_timeout_ms = rt->idle_timeout_ms;
	out->log_suppressed = spop_ratelog_suppressed_total(&rt->disc_log) +
			      spop_ratelog_suppressed_total(&rt->accept_log) +
			      spop_ratelog_suppressed_total(&rt->cap_log);
	if (!rt->workers)
		return;
	out->conns_max = rt->max_conns;
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
		out->conns_refused += ld(&c->conns_refused);
		out->accept_errors += ld(&c->accept_errors);
		out->hello_timeouts += ld(&c->hello_timeouts);
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
			spop_listener_close(&rt->listeners[i]);
	if (rt->workers) {
		for (unsigned i = 0; i < rt->nworkers; i++)
			ev_loop_destroy(rt->workers[i].loop);
		free(rt->workers);
	}
	for (unsigned i = 0; i < rt->env.nhandlers; i++)
		free(rt->env.handlers[i].name);
	spop_ratelog_destroy(&rt->disc_log);
	spop_ratelog_destroy(&rt->accept_log);
	spop_ratelog_destroy(&rt->cap_log);
	free(rt);
	*rtp = NULL;
}
