/*
 * sd_filewatch.c — follow one file by name (sd_filewatch.h).
 */
#include "sd_filewatch.h"

#include <errno.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

/* Every way a file can change under its name. */
#define WATCH_EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY | IN_ATTRIB | IN_DELETE | IN_MOVED_FROM)

static void settle_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct sd_filewatch *w = t->data;

	(void)revents;
	ev_timer_stop(loop, t);
	w->changed(w, w->arg);
}

/* Drains inotify; an event naming our file (or an overflow) re-arms the
 * settle timer. */
static void inotify_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct sd_filewatch *w = io->data;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool hit = false;
	ssize_t n;

	(void)revents;
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

/* See sd_filewatch.h. */
void sd_filewatch_init(struct sd_filewatch *w)
{
	memset(w, 0, sizeof(*w));
	w->fd = -1;
}

/* See sd_filewatch.h. */
int sd_filewatch_start(struct sd_filewatch *w, struct ev_loop *loop, const char *path, double settle,
                       sd_filewatch_cb changed, void *arg, char *err, size_t errlen)
{
	char *dcopy = strdup(path), *bcopy = strdup(path);
	int rc = -1;

	sd_filewatch_stop(w);
	if (!dcopy || !bcopy || !(w->base = strdup(basename(bcopy)))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd == -1 || inotify_add_watch(w->fd, dirname(dcopy), WATCH_EVENTS) == -1) {
		snprintf(err, errlen, "inotify on %s: %s", dcopy, strerror(errno));
		sd_filewatch_stop(w);
		goto out;
	}
	w->loop = loop;
	w->changed = changed;
	w->arg = arg;
	ev_io_init(&w->io, inotify_cb, w->fd, EV_READ);
	w->io.data = w;
	ev_io_start(loop, &w->io);
	ev_init(&w->settle, settle_cb);
	w->settle.repeat = settle;
	w->settle.data = w;
	rc = 0;
out:
	free(dcopy);
	free(bcopy);
	return rc;
}

/* See sd_filewatch.h. */
void sd_filewatch_stop(struct sd_filewatch *w)
{
	if (w->loop) {
		ev_io_stop(w->loop, &w->io);
		ev_timer_stop(w->loop, &w->settle);
	}
	if (w->fd != -1)
		close(w->fd);
	free(w->base);
	sd_filewatch_init(w);
}
