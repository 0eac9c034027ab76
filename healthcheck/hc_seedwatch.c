/*
 * hc_seedwatch.c — the seed directory reloader both daemons use (see
 * hc_seedwatch.h): a loader thread that waits for a request, loads, and
 * posts the result to the loop with an ev_async; inotify on the file's
 * directory, debounced with an ev_timer.
 *
 * Who touches what: `busy`, `again` and `reason` belong to the loop's
 * thread (requests and results are both handled there, so one load at a
 * time needs no lock); the fields under `lock` are the hand-over between
 * the loop and the loader thread.
 */
#include "hc_seedwatch.h"

#include <errno.h>
#include <ev.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define SEEDWATCH_MAGIC  0x53454544u   /* "SEED" */
#define SEEDWATCH_EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY | IN_ATTRIB)
#define SEEDWATCH_ERR    512

struct hc_seedwatch {
	unsigned magic;
	struct ev_loop *loop;
	char *path;
	hc_seedwatch_fn done;
	void *udata;

	/* loop thread only */
	bool busy;                       /* a load was handed to the thread */
	bool again;                      /* a request came during it */
	char reason[32];                 /* of the load in flight */
	ev_async wake;                   /* loader -> loop: a result is ready */

	/* file watching (hc_seedwatch_follow), loop thread only */
	int inotify_fd;                  /* -1 when not following */
	char *base;                      /* the file's name inside its directory */
	ev_io inotify_io;
	ev_timer settle;                 /* debounce */

	/* hand-over, guarded by lock */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool go, stopping;
	bool has_result;
	struct router_dir *result;       /* NULL when the load failed */
	char result_err[SEEDWATCH_ERR];
};

/* Checks the magic of a watcher that came back through a `data` pointer. */
static struct hc_seedwatch *seedwatch_from(void *data)
{
	struct hc_seedwatch *sw = data;

	if (!sw || sw->magic != SEEDWATCH_MAGIC)
		abort();
	return sw;
}

/* Thread body: one load per go, until stopping. The loop starts a load
 * only when the previous result was taken, so a result is never replaced
 * unreported. */
static void *seedwatch_thread(void *arg)
{
	struct hc_seedwatch *sw = arg;
	char err[SEEDWATCH_ERR];

	pthread_mutex_lock(&sw->lock);
	for (;;) {
		struct router_dir *dir;

		while (!sw->go && !sw->stopping)
			pthread_cond_wait(&sw->cond, &sw->lock);
		if (sw->stopping)
			break;
		sw->go = false;
		pthread_mutex_unlock(&sw->lock);

		err[0] = '\0';
		dir = router_dir_load(sw->path, err, sizeof(err));

		pthread_mutex_lock(&sw->lock);
		sw->result = dir;
		snprintf(sw->result_err, sizeof(sw->result_err), "%s", dir ? "" : err);
		sw->has_result = true;
		ev_async_send(sw->loop, &sw->wake);
	}
	pthread_mutex_unlock(&sw->lock);
	return NULL;
}

/* Hands a load to the thread (loop side). */
static void seedwatch_start_load(struct hc_seedwatch *sw, const char *reason)
{
	sw->busy = true;
	snprintf(sw->reason, sizeof(sw->reason), "%s", reason);
	pthread_mutex_lock(&sw->lock);
	sw->go = true;
	pthread_cond_signal(&sw->cond);
	pthread_mutex_unlock(&sw->lock);
}

/* See hc_seedwatch.h. */
void hc_seedwatch_request(struct hc_seedwatch *sw, const char *reason)
{
	if (sw->busy) {
		sw->again = true;
		return;
	}
	seedwatch_start_load(sw, reason);
}

/* Loop side of ev_async: takes the result under the lock, reports it
 * outside, then runs the load that requests during this one asked for. */
static void seedwatch_wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct hc_seedwatch *sw = seedwatch_from(w->data);
	struct router_dir *dir;
	char err[SEEDWATCH_ERR], reason[sizeof(sw->reason)];
	bool have;

	(void)loop;
	(void)revents;
	pthread_mutex_lock(&sw->lock);
	have = sw->has_result;
	dir = sw->result;
	sw->result = NULL;
	sw->has_result = false;
	memcpy(err, sw->result_err, sizeof(err));
	pthread_mutex_unlock(&sw->lock);
	if (!have)
		return;
	sw->busy = false;
	memcpy(reason, sw->reason, sizeof(reason));   /* done may request again */
	sw->done(sw->udata, dir, dir ? NULL : err, reason);
	if (sw->again) {
		sw->again = false;
		if (!sw->busy)          /* done may have asked for one already */
			seedwatch_start_load(sw, HC_SEEDWATCH_AGAIN);
	}
}

/* Debounce expired: one load for the burst. ev_timer_again() armed the
 * timer as a repeating one; stop it so that it fires once per burst. */
static void seedwatch_settle_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct hc_seedwatch *sw = seedwatch_from(t->data);

	(void)revents;
	ev_timer_stop(loop, t);
	hc_seedwatch_request(sw, HC_SEEDWATCH_FILE_CHANGED);
}

/* Drains the inotify fd; any event naming our file (or a queue overflow,
 * which may have hidden one) re-arms the debounce timer. */
static void seedwatch_inotify_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct hc_seedwatch *sw = seedwatch_from(io->data);
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool hit = false;
	ssize_t n;

	(void)revents;
	while ((n = read(sw->inotify_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			if (ev->mask & IN_Q_OVERFLOW)
				hit = true;
			else if (ev->len && strcmp(ev->name, sw->base) == 0)
				hit = true;
			p += sizeof(*ev) + ev->len;
		}
	}
	if (hit)
		ev_timer_again(loop, &sw->settle);
}

/* See hc_seedwatch.h. */
struct hc_seedwatch *hc_seedwatch_new(struct ev_loop *loop, const char *path, hc_seedwatch_fn done,
                                      void *udata, char *err, size_t errlen)
{
	struct hc_seedwatch *sw = calloc(1, sizeof(*sw));
	sigset_t all, saved;
	int rc;

	if (!sw) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	sw->magic = SEEDWATCH_MAGIC;
	sw->loop = loop;
	sw->done = done;
	sw->udata = udata;
	sw->inotify_fd = -1;
	sw->path = strdup(path);
	if (!sw->path) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	pthread_mutex_init(&sw->lock, NULL);
	pthread_cond_init(&sw->cond, NULL);
	ev_async_init(&sw->wake, seedwatch_wake_cb);
	sw->wake.data = sw;
	ev_async_start(loop, &sw->wake);
	ev_unref(loop);                  /* the loader alone never keeps the loop running */

	/* The daemon handles signals on its loop; the thread must never be
	 * the one a process-directed signal lands on. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	rc = pthread_create(&sw->thread, NULL, seedwatch_thread, sw);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the loader thread: %s", strerror(rc));
		goto out_stop_async;
	}
	return sw;

out_stop_async:
	ev_ref(loop);
	ev_async_stop(loop, &sw->wake);
	pthread_cond_destroy(&sw->cond);
	pthread_mutex_destroy(&sw->lock);
	free(sw->path);
out_free:
	free(sw);
	return NULL;
}

/* See hc_seedwatch.h. */
int hc_seedwatch_follow(struct hc_seedwatch *sw, double debounce, char *err, size_t errlen)
{
	char *dcopy = strdup(sw->path), *bcopy = strdup(sw->path);
	int fd = -1, rc = -1;

	if (!dcopy || !bcopy) {
		snprintf(err, errlen, "out of memory");
		goto out_free_copies;
	}
	free(sw->base);
	sw->base = strdup(basename(bcopy));
	if (!sw->base) {
		snprintf(err, errlen, "out of memory");
		goto out_free_copies;
	}
	fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd == -1) {
		snprintf(err, errlen, "inotify on %s: %s", dirname(dcopy), strerror(errno));
		goto out_free_copies;
	}
	if (inotify_add_watch(fd, dirname(dcopy), SEEDWATCH_EVENTS) == -1) {
		snprintf(err, errlen, "inotify on %s: %s", dcopy, strerror(errno));
		close(fd);
		goto out_free_copies;
	}
	sw->inotify_fd = fd;
	ev_io_init(&sw->inotify_io, seedwatch_inotify_cb, fd, EV_READ);
	sw->inotify_io.data = sw;
	ev_io_start(sw->loop, &sw->inotify_io);
	ev_init(&sw->settle, seedwatch_settle_cb);
	sw->settle.repeat = debounce;
	sw->settle.data = sw;
	rc = 0;
out_free_copies:
	free(dcopy);
	free(bcopy);
	return rc;
}

/* See hc_seedwatch.h. */
void hc_seedwatch_free(struct hc_seedwatch **swp)
{
	struct hc_seedwatch *sw = *swp;

	*swp = NULL;
	if (!sw)
		return;
	if (sw->inotify_fd != -1) {
		ev_io_stop(sw->loop, &sw->inotify_io);
		ev_timer_stop(sw->loop, &sw->settle);
		close(sw->inotify_fd);
	}
	pthread_mutex_lock(&sw->lock);
	sw->stopping = true;
	pthread_cond_signal(&sw->cond);
	pthread_mutex_unlock(&sw->lock);
	pthread_join(sw->thread, NULL);
	ev_ref(sw->loop);
	ev_async_stop(sw->loop, &sw->wake);
	router_dir_release(&sw->result);
	pthread_cond_destroy(&sw->cond);
	pthread_mutex_destroy(&sw->lock);
	free(sw->path);
	free(sw->base);
	sw->magic = 0;
	free(sw);
}
