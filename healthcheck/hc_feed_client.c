/*
 * hc_feed_client.c — the subscriber side of the health feed, on libev.
 *
 * One unix stream connection to healthcheckd's --feed socket. The client
 * never writes and never blocks: it reads lines, decodes them and calls the
 * owner's callbacks. When the link drops it retries with an exponential
 * back-off; the owner keeps its last known state meanwhile (it is told once,
 * through link_cb, that the source is gone, and again once a fresh snapshot
 * has arrived).
 */
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hc_feed.h"

#define FEED_CLIENT_MAGIC    0x48434643u   /* "HCFC" */
#define FEED_BACKOFF_MIN_MS  50
#define FEED_BACKOFF_MAX_MS  2000

enum feed_report { FEED_REPORTED_NONE, FEED_REPORTED_UP, FEED_REPORTED_DOWN };

struct hc_feed_client {
	unsigned magic;
	struct ev_loop *loop;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;
	ev_io io;
	ev_timer retry;
	unsigned backoff_ms;
	bool in_snapshot;          /* connected, E not seen yet */
	enum feed_report reported;
	hc_feed_target_cb target_cb;
	hc_feed_link_cb link_cb;
	hc_feed_snapshot_cb snapshot_cb;
	hc_feed_retry_cb retry_cb;
	unsigned failures;         /* failed attempts since the last snapshot */
	void *udata;
	struct hc_line_buf lines;
	struct hc_feed_client_stats stats;
};

static void feed_connect(struct hc_feed_client *c);

/* Returns the client behind a libev watcher's data pointer, checking it. */
static struct hc_feed_client *feed_from(void *data)
{
	struct hc_feed_client *c = data;

	if (!c || c->magic != FEED_CLIENT_MAGIC)
		abort();
	return c;
}

/* Tells the owner the link is lost, once per loss. */
static void feed_report_down(struct hc_feed_client *c, const char *why)
{
	if (c->reported == FEED_REPORTED_DOWN)
		return;
	c->reported = FEED_REPORTED_DOWN;
	if (c->link_cb)
		c->link_cb(c->udata, false, why);
}

/* Closes the connection (if any) and arms the retry timer with the current
 * back-off, doubling it for next time. */
static void feed_schedule_retry(struct hc_feed_client *c, const char *why)
{
	if (c->fd != -1) {
		ev_io_stop(c->loop, &c->io);
		close(c->fd);
		c->fd = -1;
		c->stats.disconnects++;
	}
	c->in_snapshot = false;
	hc_line_buf_init(&c->lines);
	feed_report_down(c, why);
	ev_timer_set(&c->retry, c->backoff_ms / 1000.0, 0.0);
	ev_timer_start(c->loop, &c->retry);
	c->failures++;
	if (c->retry_cb)
		c->retry_cb(c->udata, c->failures, why, c->backoff_ms / 1000.0);
	c->backoff_ms *= 2;
	if (c->backoff_ms > FEED_BACKOFF_MAX_MS)
		c->backoff_ms = FEED_BACKOFF_MAX_MS;
}

/* Handles one complete line from the feed. */
static void feed_on_line(void *udata, const char *line, size_t len)
{
	struct hc_feed_client *c = udata;
	struct hc_feed_rec rec;
	int rc = hc_feed_decode(line, len, &rec);

	c->stats.lines++;
	if (rc == -1) {
		c->stats.bad_lines++;
		return;
	}
	if (rc == 0)
		return;
	switch (rec.type) {
	case HC_FEED_TARGET:
		c->target_cb(c->udata, rec.name, rec.state, rec.addr[0] ? rec.addr : NULL);
		break;
	case HC_FEED_END:
		if (c->in_snapshot) {
			char why[64];

			c->in_snapshot = false;
			c->backoff_ms = FEED_BACKOFF_MIN_MS;
			c->failures = 0;
			c->reported = FEED_REPORTED_UP;
			snprintf(why, sizeof(why), "snapshot of %llu targets", (unsigned long long)rec.count);
			if (c->link_cb)
				c->link_cb(c->udata, true, why);
		}
		if (c->snapshot_cb)
			c->snapshot_cb(c->udata, rec.count);
		break;
	default:
		break;
	}
}

/* Readable: drain the socket into the line splitter. */
static void feed_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hc_feed_client *c = feed_from(w->data);
	char buf[16384];

	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t n = read(c->fd, buf, sizeof(buf));

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			char why[128];
			snprintf(why, sizeof(why), "read: %s", strerror(errno));
			feed_schedule_retry(c, why);
			return;
		}
		if (n == 0) {
			feed_schedule_retry(c, "healthcheckd closed the feed");
			return;
		}
		hc_line_buf_feed(&c->lines, buf, (size_t)n, feed_on_line, c);
		c->stats.overlong = c->lines.overlong;
		if ((size_t)n < sizeof(buf))
			return;
	}
}

/* Retry timer fired: try to connect again. */
static void feed_on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	feed_connect(feed_from(w->data));
}

/* One connection attempt. A unix stream connect completes at once or fails
 * at once (EAGAIN means the listener's backlog is full: retry later). */
static void feed_connect(struct hc_feed_client *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char why[160];
	int fd;

	memcpy(sa.sun_path, c->path, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(why, sizeof(why), "socket: %s", strerror(errno));
		feed_schedule_retry(c, why);
		return;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		snprintf(why, sizeof(why), "connect %s: %s", c->path, strerror(errno));
		close(fd);
		feed_schedule_retry(c, why);
		return;
	}
	c->fd = fd;
	c->in_snapshot = true;
	c->stats.connects++;
	hc_line_buf_init(&c->lines);
	ev_io_set(&c->io, fd, EV_READ);
	ev_io_start(c->loop, &c->io);
}

/* Creates the client; the first attempt runs on the next loop iteration. */
struct hc_feed_client *hc_feed_client_new(struct ev_loop *loop, const char *path,
                                          hc_feed_target_cb target_cb,
                                          hc_feed_link_cb link_cb, void *udata,
                                          char *err, size_t errlen)
{
	struct hc_feed_client *c;

	if (!loop || !path || !target_cb) {
		snprintf(err, errlen, "hc_feed_client_new: loop, path and target callback are required");
		return NULL;
	}
	if (!*path || strlen(path) >= sizeof(c->path)) {
		snprintf(err, errlen, "health feed path '%s': empty or longer than %zu bytes",
		         path, sizeof(c->path) - 1);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "health feed client: out of memory");
		return NULL;
	}
	c->magic = FEED_CLIENT_MAGIC;
	c->loop = loop;
	strcpy(c->path, path);
	c->fd = -1;
	c->backoff_ms = FEED_BACKOFF_MIN_MS;
	c->target_cb = target_cb;
	c->link_cb = link_cb;
	c->udata = udata;
	hc_line_buf_init(&c->lines);
	ev_io_init(&c->io, feed_on_read, -1, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->retry, feed_on_retry, 0.0, 0.0);
	c->retry.data = c;
	/* first attempt from the loop, so no callback runs before we return */
	ev_timer_start(loop, &c->retry);
	return c;
}

/* Stops the watchers, closes the socket and frees the client. */
void hc_feed_client_free(struct hc_feed_client **cp)
{
	struct hc_feed_client *c = cp ? *cp : NULL;

	if (!c)
		return;
	ev_timer_stop(c->loop, &c->retry);
	if (c->fd != -1) {
		ev_io_stop(c->loop, &c->io);
		close(c->fd);
	}
	c->magic = 0;
	free(c);
	*cp = NULL;
}

/* Installs the optional end-of-snapshot callback. */
void hc_feed_client_set_snapshot_cb(struct hc_feed_client *c, hc_feed_snapshot_cb cb)
{
	c->snapshot_cb = cb;
}

/* Installs the optional failed-attempt callback. */
void hc_feed_client_set_retry_cb(struct hc_feed_client *c, hc_feed_retry_cb cb)
{
	c->retry_cb = cb;
}

/* True once a snapshot arrived on the current connection. */
bool hc_feed_client_connected(const struct hc_feed_client *c)
{
	return c->fd != -1 && c->reported == FEED_REPORTED_UP;
}

/* Copies the client's counters. */
void hc_feed_client_stats(const struct hc_feed_client *c, struct hc_feed_client_stats *out)
{
	*out = c->stats;
}
