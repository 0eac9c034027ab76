/*
 * hc_haproxy.c — healthcheckd's client of HAProxy's runtime API (the stats
 * socket, --haproxy-socket PATH, one client per socket).
 *
 * One persistent connection in interactive mode ("prompt"): commands are
 * queued and written together once per loop iteration (pipelined; HAProxy
 * answers each with its output and a "> " prompt). When the connection
 * drops — HAProxy reloaded or restarted — the client reconnects with a
 * back-off and re-applies the full state, since a new HAProxy process starts
 * from its configuration. While disconnected, commands are dropped: the full
 * state replaces them on reconnect. A light keep-alive command stops the CLI
 * idle timeout ("stats timeout") from closing the session.
 *
 * A master-worker reload (SIGUSR2) does not close our session: the old
 * worker keeps serving it (and stays alive for it). So once a second a
 * short, separate connection asks "show info" for the worker's Pid; when it
 * differs from the one our session talks to, the session is closed and
 * reopened to the new worker, which gets the full state.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hc_daemon.h"

#define HAPROXY_MAGIC          0x48434850u   /* "HCHP" */
#define HAPROXY_BACKOFF_MIN_MS 100
#define HAPROXY_BACKOFF_MAX_MS 2000
#define HAPROXY_KEEPALIVE_S    1.0
#define HAPROXY_QUEUE_MAX      (16u << 20)

struct hcd_haproxy {
	unsigned magic;
	struct hcd *d;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;
	ev_io rio, wio;
	ev_prepare flush;          /* writes the queued commands once per iteration */
	ev_timer timer;            /* reconnect back-off, or keep-alive */
	unsigned backoff_ms;
	struct hcd_buf out;
	struct hc_line_buf lines;
	bool connected;
	bool reported_down;
	uint64_t commands, errors, connects;
	/* reload detection: a fresh connection asks for the worker's pid */
	ev_timer probe_timer;
	ev_io probe_io;
	int probe_fd;
	struct hc_line_buf probe_lines;
	long probe_pid;            /* Pid in the probe's answer, 0 if none yet */
	long session_pid;          /* worker our session is on (its own "show info") */
	bool in_info;              /* reading that "show info" answer */
};

static void haproxy_connect(struct hcd_haproxy *h);

static struct hcd_haproxy *haproxy_from(void *data)
{
	struct hcd_haproxy *h = data;

	if (!h || h->magic != HAPROXY_MAGIC)
		abort();
	return h;
}

/* Drops the connection and schedules a reconnect. */
static void haproxy_lost(struct hcd_haproxy *h, const char *why)
{
	struct ev_loop *loop = h->d->loop;

	if (h->fd != -1) {
		ev_io_stop(loop, &h->rio);
		ev_io_stop(loop, &h->wio);
		ev_prepare_stop(loop, &h->flush);
		close(h->fd);
		h->fd = -1;
	}
	if (h->connected || !h->reported_down)
		hcd_log("haproxy %s: %s; reconnecting", h->path, why);
	h->connected = false;
	h->reported_down = true;
	h->session_pid = 0;
	hcd_buf_reset(&h->out);
	ev_timer_stop(loop, &h->timer);
	ev_timer_set(&h->timer, h->backoff_ms / 1000.0, 0.0);
	ev_timer_start(loop, &h->timer);
	h->backoff_ms *= 2;
	if (h->backoff_ms > HAPROXY_BACKOFF_MAX_MS)
		h->backoff_ms = HAPROXY_BACKOFF_MAX_MS;
}

/* Writes the queue; keeps watching for writability if it is not empty. */
static void haproxy_flush(struct hcd_haproxy *h)
{
	if (hcd_buf_flush(&h->out, h->fd) == -1) {
		haproxy_lost(h, strerror(errno));
		return;
	}
	if (hcd_buf_pending(&h->out) > 0)
		ev_io_start(h->d->loop, &h->wio);
	else
		ev_io_stop(h->d->loop, &h->wio);
}

static void haproxy_on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct hcd_haproxy *h = haproxy_from(w->data);

	ev_prepare_stop(loop, w);
	if (h->connected)
		haproxy_flush(h);
}

static void haproxy_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	haproxy_flush(haproxy_from(w->data));
}

/* One line of HAProxy's answers: empty for success; a message otherwise.
 * Informational answers (address changes, keep-alive) are not errors. */
static void haproxy_on_line(void *udata, const char *line, size_t len)
{
	struct hcd_haproxy *h = udata;

	while (len >= 2 && line[0] == '>' && line[1] == ' ') {
		line += 2;
		len -= 2;
	}
	/* the session's own "show info" (sent on connect): note the worker's pid */
	if (len >= 13 && memcmp(line, "Name: HAProxy", 13) == 0)
		h->in_info = true;
	if (h->in_info) {
		if (len > 5 && memcmp(line, "Pid: ", 5) == 0)
			h->session_pid = strtol(line + 5, NULL, 10);
		if (len == 0)
			h->in_info = false;
		return;
	}
	if (len == 0 || (len >= 10 && memcmp(line, "IP changed", 10) == 0) ||
	    (len >= 12 && memcmp(line, "no need to c", 12) == 0) ||
	    (len == 5 && memcmp(line, "admin", 5) == 0) || (len == 8 && memcmp(line, "operator", 8) == 0) ||
	    (len == 4 && memcmp(line, "user", 4) == 0))
		return;
	h->errors++;
	if (h->errors <= 20 || h->errors % 1000 == 0)
		hcd_log("haproxy %s: %.*s (%llu messages so far)", h->path, (int)len, line,
		        (unsigned long long)h->errors);
}

static void haproxy_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hcd_haproxy *h = haproxy_from(w->data);
	char buf[8192];
	ssize_t n = read(h->fd, buf, sizeof(buf));

	if (n == 0) {
		haproxy_lost(h, "connection closed (HAProxy reloaded or stopped)");
		return;
	}
	if (n == -1) {
		if (errno != EAGAIN && errno != EINTR)
			haproxy_lost(h, strerror(errno));
		return;
	}
	hc_line_buf_feed(&h->lines, buf, (size_t)n, haproxy_on_line, h);
}

/* Reconnect time, or keep-alive while connected. */
static void haproxy_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hcd_haproxy *h = haproxy_from(w->data);

	if (!h->connected) {
		haproxy_connect(h);
		return;
	}
	hcd_buf_append(&h->out, "show cli level\n", 15);
	haproxy_flush(h);
	ev_timer_set(&h->timer, HAPROXY_KEEPALIVE_S, 0.0);
	ev_timer_start(loop, &h->timer);
}

/* Ends the probe connection. */
static void probe_close(struct hcd_haproxy *h)
{
	if (h->probe_fd != -1) {
		ev_io_stop(h->d->loop, &h->probe_io);
		close(h->probe_fd);
		h->probe_fd = -1;
	}
}

/* One line of "show info": we only want "Pid: N". */
static void probe_on_line(void *udata, const char *line, size_t len)
{
	struct hcd_haproxy *h = udata;

	if (len > 5 && memcmp(line, "Pid: ", 5) == 0)
		h->probe_pid = strtol(line + 5, NULL, 10);
}

/* The probe's answer: when complete, compare the worker's pid. */
static void probe_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hcd_haproxy *h = haproxy_from(w->data);
	char buf[4096];
	ssize_t n = read(h->probe_fd, buf, sizeof(buf));
	char why[96];

	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		hc_line_buf_feed(&h->probe_lines, buf, (size_t)n, probe_on_line, h);
		return;
	}
	probe_close(h);
	if (!h->connected || h->probe_pid <= 0)
		return;
	if (h->session_pid != 0 && h->probe_pid != h->session_pid) {
		snprintf(why, sizeof(why), "HAProxy reloaded (worker %ld -> %ld)", h->session_pid, h->probe_pid);
		haproxy_lost(h, why);
		/* reconnect at once: the new worker is there */
		ev_timer_stop(loop, &h->timer);
		h->backoff_ms = HAPROXY_BACKOFF_MIN_MS;
		haproxy_connect(h);
	}
}

/* Every second: a short non-interactive connection asks "show info". */
static void probe_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hcd_haproxy *h = haproxy_from(w->data);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static const char cmd[] = "show info\n";

	if (!h->connected || h->probe_fd != -1)
		return;
	strcpy(sa.sun_path, h->path);
	h->probe_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->probe_fd == -1)
		return;
	if (connect(h->probe_fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    write(h->probe_fd, cmd, sizeof(cmd) - 1) != (ssize_t)(sizeof(cmd) - 1)) {
		probe_close(h);
		return;
	}
	h->probe_pid = 0;
	hc_line_buf_init(&h->probe_lines);
	ev_io_set(&h->probe_io, h->probe_fd, EV_READ);
	ev_io_start(loop, &h->probe_io);
}

/* One attempt; on success queues "prompt" and the full state. */
static void haproxy_connect(struct hcd_haproxy *h)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ev_loop *loop = h->d->loop;
	char why[200];
	uint64_t before;

	strcpy(sa.sun_path, h->path);
	h->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd == -1) {
		snprintf(why, sizeof(why), "socket: %s", strerror(errno));
		haproxy_lost(h, why);
		return;
	}
	if (connect(h->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		haproxy_lost(h, why);
		return;
	}
	h->connected = true;
	h->reported_down = false;
	h->connects++;
	h->backoff_ms = HAPROXY_BACKOFF_MIN_MS;
	hc_line_buf_init(&h->lines);
	hcd_buf_reset(&h->out);
	ev_io_set(&h->rio, h->fd, EV_READ);
	ev_io_set(&h->wio, h->fd, EV_WRITE);
	ev_io_start(loop, &h->rio);
	hcd_buf_append(&h->out, "prompt\nshow info\n", 17);
	h->in_info = false;
	before = h->commands;
	hcd_haproxy_full_state(h->d, h);
	hcd_log("haproxy %s: connected, applying the full state (%llu commands)", h->path,
	        (unsigned long long)(h->commands - before));
	haproxy_flush(h);
	if (h->connected) {
		ev_timer_stop(loop, &h->timer);
		ev_timer_set(&h->timer, HAPROXY_KEEPALIVE_S, 0.0);
		ev_timer_start(loop, &h->timer);
	}
}

/* Creates a client for the stats socket at path and connects. */
struct hcd_haproxy *hcd_haproxy_new(struct hcd *d, const char *path, char *err, size_t errlen)
{
	struct hcd_haproxy *h;

	if (strlen(path) >= sizeof(h->path)) {
		snprintf(err, errlen, "--haproxy-socket %s: path too long", path);
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "haproxy client: out of memory");
		return NULL;
	}
	h->magic = HAPROXY_MAGIC;
	h->d = d;
	strcpy(h->path, path);
	h->fd = -1;
	h->probe_fd = -1;
	ev_timer_init(&h->probe_timer, probe_on_timer, 1.0, 1.0);
	h->probe_timer.data = h;
	ev_io_init(&h->probe_io, probe_on_read, -1, EV_READ);
	h->probe_io.data = h;
	h->backoff_ms = HAPROXY_BACKOFF_MIN_MS;
	ev_io_init(&h->rio, haproxy_on_read, -1, EV_READ);
	h->rio.data = h;
	ev_io_init(&h->wio, haproxy_on_write, -1, EV_WRITE);
	h->wio.data = h;
	ev_prepare_init(&h->flush, haproxy_on_prepare);
	h->flush.data = h;
	ev_timer_init(&h->timer, haproxy_on_timer, 0.0, 0.0);
	h->timer.data = h;
	return h;
}

/* Starts the first connection attempt (called once targets exist). */
void hcd_haproxy_start(struct hcd_haproxy *h)
{
	ev_timer_start(h->d->loop, &h->probe_timer);
	haproxy_connect(h);
}

/* Closes and frees the client. */
void hcd_haproxy_free(struct hcd_haproxy **ph)
{
	struct hcd_haproxy *h = ph ? *ph : NULL;
	struct ev_loop *loop;

	if (!h)
		return;
	loop = h->d->loop;
	ev_timer_stop(loop, &h->timer);
	ev_timer_stop(loop, &h->probe_timer);
	probe_close(h);
	ev_prepare_stop(loop, &h->flush);
	if (h->fd != -1) {
		ev_io_stop(loop, &h->rio);
		ev_io_stop(loop, &h->wio);
		close(h->fd);
	}
	hcd_buf_free(&h->out);
	h->magic = 0;
	free(h);
	*ph = NULL;
}

/* Queues one command line; written before the loop next waits. */
void hcd_haproxy_command(struct hcd_haproxy *h, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	if (!h->connected)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 1)
		return;
	line[n++] = '\n';
	if (hcd_buf_pending(&h->out) > HAPROXY_QUEUE_MAX) {
		haproxy_lost(h, "command queue full (HAProxy not reading)");
		return;
	}
	if (hcd_buf_append(&h->out, line, (size_t)n) == -1)
		return;
	h->commands++;
	ev_prepare_start(h->d->loop, &h->flush);
}

bool hcd_haproxy_connected(const struct hcd_haproxy *h) { return h->connected; }
uint64_t hcd_haproxy_commands(const struct hcd_haproxy *h) { return h->commands; }
uint64_t hcd_haproxy_errors(const struct hcd_haproxy *h) { return h->errors; }
uint64_t hcd_haproxy_connects(const struct hcd_haproxy *h) { return h->connects; }
const char *hcd_haproxy_path(const struct hcd_haproxy *h) { return h->path; }
