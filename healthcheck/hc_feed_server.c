/*
 * hc_feed_server.c — the publishing side of the health feed: a unix stream
 * listener (--feed PATH); each subscriber gets the snapshot once the initial
 * round of checks is in, then every delta as it happens. Lines are written
 * at once (a verdict reaches route agents within one loop iteration); a
 * subscriber that stops reading is dropped once its queue passes
 * FEED_SUB_QUEUE_MAX instead of growing without bound.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "hc_daemon.h"

#define FEED_MAGIC          0x48434650u   /* "HCFP" */
#define FEED_SUB_MAGIC      0x48434653u   /* "HCFS" */
#define FEED_SUB_QUEUE_MAX  (8u << 20)

struct feed_sub {
	unsigned magic;
	struct hcd_feed *feed;
	int fd;
	ev_io rio, wio;
	struct hcd_buf out;
	bool ready;                /* snapshot queued: deltas follow */
	struct feed_sub *next;
};

struct hcd_feed {
	unsigned magic;
	struct hcd *d;
	int lfd;
	ev_io lio;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct feed_sub *subs;
	unsigned nsubs;
	bool ready;
};

static struct feed_sub *sub_from(void *data)
{
	struct feed_sub *s = data;

	if (!s || s->magic != FEED_SUB_MAGIC)
		abort();
	return s;
}

/* Unlinks and frees a subscriber. */
static void sub_drop(struct feed_sub *s, const char *why)
{
	struct hcd_feed *f = s->feed;
	struct feed_sub **pp;

	for (pp = &f->subs; *pp && *pp != s; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = s->next;
	f->nsubs--;
	if (why)
		hcd_log("feed: subscriber fd %d dropped: %s", s->fd, why);
	ev_io_stop(f->d->loop, &s->rio);
	ev_io_stop(f->d->loop, &s->wio);
	close(s->fd);
	hcd_buf_free(&s->out);
	s->magic = 0;
	free(s);
}

/* Writes what is queued; watches for writability when the socket is full.
 * Returns -1 when the subscriber was dropped. */
static int sub_flush(struct feed_sub *s)
{
	struct hcd_feed *f = s->feed;

	if (hcd_buf_flush(&s->out, s->fd) == -1) {
		sub_drop(s, strerror(errno));
		return -1;
	}
	if (hcd_buf_pending(&s->out) > FEED_SUB_QUEUE_MAX) {
		sub_drop(s, "not reading (queue full)");
		return -1;
	}
	if (hcd_buf_pending(&s->out) > 0)
		ev_io_start(f->d->loop, &s->wio);
	else
		ev_io_stop(f->d->loop, &s->wio);
	return 0;
}

/* Queues the snapshot for a subscriber. */
static void sub_snapshot(struct feed_sub *s)
{
	s->ready = true;
	if (hcd_snapshot(s->feed->d, &s->out) == -1) {
		sub_drop(s, "out of memory for the snapshot");
		return;
	}
	(void)sub_flush(s);
}

static void sub_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)sub_flush(sub_from(w->data));
}

/* Subscribers never write: anything read is discarded; EOF drops them. */
static void sub_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct feed_sub *s = sub_from(w->data);
	char buf[512];
	ssize_t n = read(s->fd, buf, sizeof(buf));

	if (n == 0)
		sub_drop(s, NULL);
	else if (n == -1 && errno != EAGAIN && errno != EINTR)
		sub_drop(s, strerror(errno));
}

static void feed_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hcd_feed *f = w->data;
	struct feed_sub *s;
	int fd = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd == -1) {
		if (errno != EAGAIN && errno != EINTR)
			hcd_log("feed: accept: %s", strerror(errno));
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return;
	}
	s->magic = FEED_SUB_MAGIC;
	s->feed = f;
	s->fd = fd;
	ev_io_init(&s->rio, sub_on_read, fd, EV_READ);
	s->rio.data = s;
	ev_io_init(&s->wio, sub_on_write, fd, EV_WRITE);
	s->wio.data = s;
	ev_io_start(loop, &s->rio);
	s->next = f->subs;
	f->subs = s;
	f->nsubs++;
	if (f->ready)
		sub_snapshot(s);
}

/* Listens on path (a stale socket file is replaced). */
struct hcd_feed *hcd_feed_new(struct hcd *d, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct hcd_feed *f;
	struct stat st;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "--feed %s: path longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		snprintf(err, errlen, "feed: out of memory");
		return NULL;
	}
	f->magic = FEED_MAGIC;
	f->d = d;
	strcpy(f->path, path);
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		(void)unlink(path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->lfd == -1) {
		snprintf(err, errlen, "feed: socket: %s", strerror(errno));
		goto out_free;
	}
	if (bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) == -1 || listen(f->lfd, 128) == -1) {
		snprintf(err, errlen, "--feed %s: %s", path, strerror(errno));
		goto out_close;
	}
	ev_io_init(&f->lio, feed_on_accept, f->lfd, EV_READ);
	f->lio.data = f;
	ev_io_start(d->loop, &f->lio);
	return f;

out_close:
	close(f->lfd);
out_free:
	free(f);
	return NULL;
}

/* Closes every subscriber and the listener; removes the socket file. */
void hcd_feed_free(struct hcd_feed **pf)
{
	struct hcd_feed *f = pf ? *pf : NULL;

	if (!f)
		return;
	while (f->subs)
		sub_drop(f->subs, NULL);
	ev_io_stop(f->d->loop, &f->lio);
	close(f->lfd);
	(void)unlink(f->path);
	f->magic = 0;
	free(f);
	*pf = NULL;
}

/* Sends one line to every subscriber that has its snapshot. */
void hcd_feed_publish(struct hcd_feed *f, const char *line, size_t len)
{
	struct feed_sub *s, *next;

	for (s = f->subs; s; s = next) {
		next = s->next;
		if (!s->ready)
			continue;
		if (hcd_buf_append(&s->out, line, len) == -1) {
			sub_drop(s, "out of memory");
			continue;
		}
		(void)sub_flush(s);
	}
}

/* The initial verdicts are in: subscribers waiting get their snapshot. */
void hcd_feed_ready(struct hcd_feed *f)
{
	struct feed_sub *s, *next;

	f->ready = true;
	for (s = f->subs; s; s = next) {
		next = s->next;
		if (!s->ready)
			sub_snapshot(s);
	}
}

unsigned hcd_feed_subscribers(const struct hcd_feed *f)
{
	return f->nsubs;
}
