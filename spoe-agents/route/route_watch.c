/*
 * route_watch.c — inotify on the seed file's directory, debounced with an
 * ev_timer.
 */
#include "route_watch.h"

#include <errno.h>
#include <ev.h>
#include <stdbool.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define WATCH_MAGIC 0x57415443u   /* "WATC" */
#define WATCH_EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY | IN_ATTRIB)

struct route_watch {
	unsigned magic;
	struct ev_loop *loop;
	int fd;                    /* inotify instance */
	char *base;                /* the file's name inside its directory */
	ev_io io;
	ev_timer settle;           /* debounce */
	route_watch_fn changed;
	void *udata;
};

/* Debounce expired: report one change. ev_timer_again() armed the timer as
 * a repeating one; stop it so that it fires once per burst. */
static void watch_settle_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct route_watch *w = t->data;

	(void)revents;
	if (w->magic != WATCH_MAGIC)
		abort();
	ev_timer_stop(loop, t);
	w->changed(w->udata);
}

/* Drains the inotify fd; any event naming our file (or a queue overflow,
 * which may have hidden one) re-arms the debounce timer. */
static void watch_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct route_watch *w = io->data;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool hit = false;
	ssize_t n;

	(void)revents;
	if (w->magic != WATCH_MAGIC)
		abort();
	while ((n = read(w->fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			if (ev->mask & IN_Q_OVERFLOW)
				hit = true;
			else if (ev->len && strcmp(ev->name, w->base) == 0)
				hit = true;
			p += sizeof(*ev) + ev->len;
		}
	}
	if (hit)
		ev_timer_again(loop, &w->settle);
}

/* See route_watch.h. */
struct route_watch *route_watch_new(struct ev_loop *loop, const char *file, double debounce,
                                    route_watch_fn changed, void *udata, char *err, size_t errlen)
{
	struct route_watch *w = calloc(1, sizeof(*w));
	char *dcopy = NULL, *bcopy = NULL;

	if (!w) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->magic = WATCH_MAGIC;
	w->loop = loop;
	w->changed = changed;
	w->udata = udata;
	dcopy = strdup(file);
	bcopy = strdup(file);
	if (!dcopy || !bcopy) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	w->base = strdup(basename(bcopy));
	if (!w->base) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd == -1) {
		snprintf(err, errlen, "inotify_init1: %s", strerror(errno));
		goto out_free;
	}
	if (inotify_add_watch(w->fd, dirname(dcopy), WATCH_EVENTS) == -1) {
		snprintf(err, errlen, "inotify on %s: %s", dcopy, strerror(errno));
		goto out_close;
	}
	ev_io_init(&w->io, watch_io_cb, w->fd, EV_READ);
	w->io.data = w;
	ev_io_start(loop, &w->io);
	ev_init(&w->settle, watch_settle_cb);
	w->settle.repeat = debounce;
	w->settle.data = w;
	free(dcopy);
	free(bcopy);
	return w;

out_close:
	close(w->fd);
out_free:
	free(w->base);
	free(dcopy);
	free(bcopy);
	free(w);
	return NULL;
}

/* Stops the watchers, closes the inotify fd, frees. */
void route_watch_free(struct route_watch **wp)
{
	struct route_watch *w = *wp;

	*wp = NULL;
	if (!w)
		return;
	ev_io_stop(w->loop, &w->io);
	ev_timer_stop(w->loop, &w->settle);
	close(w->fd);
	free(w->base);
	w->magic = 0;
	free(w);
}
