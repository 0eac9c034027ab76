/*
 * route_loader.c — the loader thread: wait for a request, load, post the
 * result to the main loop with an ev_async.
 */
#include "route_loader.h"

#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOADER_MAGIC 0x4c4f4144u   /* "LOAD" */

struct route_loader {
	unsigned magic;
	struct ev_loop *loop;
	ev_async wake;                   /* loader -> loop: a result is ready */
	char *path;
	route_loader_done_fn done;
	void *udata;

	pthread_t thread;
	pthread_mutex_t lock;            /* guards everything below */
	pthread_cond_t cond;
	bool requested, stopping;
	bool has_result;
	struct router_dir *result;       /* NULL when the load failed */
	char result_err[512];
};

/* Thread body: one load per batch of requests; newer results replace an
 * older one the loop has not taken yet (only the latest file matters). */
static void *loader_main(void *arg)
{
	struct route_loader *l = arg;
	char err[512];

	pthread_mutex_lock(&l->lock);
	for (;;) {
		struct router_dir *dir;

		while (!l->requested && !l->stopping)
			pthread_cond_wait(&l->cond, &l->lock);
		if (l->stopping)
			break;
		l->requested = false;
		pthread_mutex_unlock(&l->lock);

		err[0] = '\0';
		dir = router_dir_load(l->path, err, sizeof(err));

		pthread_mutex_lock(&l->lock);
		if (l->has_result)
			router_dir_release(&l->result);
		l->result = dir;
		snprintf(l->result_err, sizeof(l->result_err), "%s", dir ? "" : err);
		l->has_result = true;
		ev_async_send(l->loop, &l->wake);
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

/* Loop side of ev_async: takes the result under the lock, calls done
 * outside it. */
static void loader_wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct route_loader *l = w->data;
	struct router_dir *dir;
	char err[512];
	bool have;

	(void)loop;
	(void)revents;
	if (l->magic != LOADER_MAGIC)
		abort();
	pthread_mutex_lock(&l->lock);
	have = l->has_result;
	dir = l->result;
	l->result = NULL;
	l->has_result = false;
	memcpy(err, l->result_err, sizeof(err));
	pthread_mutex_unlock(&l->lock);
	if (have)
		l->done(l->udata, dir, err);
}

/* See route_loader.h. */
struct route_loader *route_loader_new(struct ev_loop *loop, const char *path, route_loader_done_fn done,
                                      void *udata, char *err, size_t errlen)
{
	struct route_loader *l = calloc(1, sizeof(*l));
	sigset_t all, saved;
	int rc;

	if (!l) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->magic = LOADER_MAGIC;
	l->loop = loop;
	l->done = done;
	l->udata = udata;
	l->path = strdup(path);
	if (!l->path) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	ev_async_init(&l->wake, loader_wake_cb);
	l->wake.data = l;
	ev_async_start(loop, &l->wake);
	ev_unref(loop);                  /* the loader alone never keeps the loop running */

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	rc = pthread_create(&l->thread, NULL, loader_main, l);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the loader thread: %s", strerror(rc));
		goto out_stop_async;
	}
	return l;

out_stop_async:
	ev_ref(loop);
	ev_async_stop(loop, &l->wake);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
	free(l->path);
out_free:
	free(l);
	return NULL;
}

/* See route_loader.h. */
void route_loader_request(struct route_loader *l)
{
	pthread_mutex_lock(&l->lock);
	l->requested = true;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

/* See route_loader.h. */
void route_loader_free(struct route_loader **lp)
{
	struct route_loader *l = *lp;

	*lp = NULL;
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stopping = true;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->thread, NULL);
	ev_ref(l->loop);
	ev_async_stop(l->loop, &l->wake);
	router_dir_release(&l->result);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
	free(l->path);
	l->magic = 0;
	free(l);
}
