/*
 * hc_probe.c — one health check in flight: TCP connect, HTTP request and
 * status line, HTTPS through tls/. Everything runs on the daemon's libev
 * loop with watchers embedded in the target (no allocation per check apart
 * from TLS state); each target has at most one probe at a time, and the
 * same timer schedules the next check and bounds the one in flight.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hc_daemon.h"
#include "tls.h"

#define TARGET_MAGIC 0x48435447u   /* "HCTG" */

static void probe_on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void probe_on_io(struct ev_loop *loop, ev_io *w, int revents);

/* Returns the target behind a watcher, checking the magic. */
static struct hcd_target *target_from(void *data)
{
	struct hcd_target *t = data;

	if (!t || t->magic != TARGET_MAGIC)
		abort();
	return t;
}

/* Parses an IP literal into sa; 0 or -1 when host is not an IP literal. */
int hcd_addr_parse_ip(const char *host, uint16_t port, struct sockaddr_storage *sa, socklen_t *salen)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;

	memset(sa, 0, sizeof(*sa));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		*salen = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		*salen = sizeof(*s6);
		return 0;
	}
	return -1;
}

/* Formats sa as "ip:port" or "[v6]:port". */
void hcd_addr_format(const struct sockaddr *sa, char *out, size_t room)
{
	char ip[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(out, room, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(out, room, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		snprintf(out, room, "-");
	}
}

/* Prepares the watchers of a new target (no probe yet). */
void hcd_probe_init(struct hcd_target *t)
{
	t->magic = TARGET_MAGIC;
	t->fd = -1;
	t->phase = HCD_IDLE;
	ev_timer_init(&t->timer, probe_on_timer, 0.0, 0.0);
	t->timer.data = t;
	ev_io_init(&t->io, probe_on_io, -1, EV_READ);
	t->io.data = t;
}

/* Closes the probe's connection: a RST rather than a FIN, so that thousands
 * of checks per second leave no TIME_WAIT sockets behind. */
static void probe_close(struct hcd_target *t)
{
	if (t->tls_op)
		tls_connect_cancel(&t->tls_op);
	if (t->tls)
		tls_conn_free(&t->tls);
	if (t->fd != -1) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		ev_io_stop(t->d->loop, &t->io);
		(void)setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(t->fd);
		t->fd = -1;
	}
	t->rlen = 0;
	hc_http_req_rewind(&t->req);
}

/* Arms the timer for the next check: the normal interval, or the faster one
 * while a change is under way, spread by +-jitter%. first: a random delay
 * within one interval so that thousands of targets do not fire together. */
static void probe_schedule(struct hcd_target *t, bool first)
{
	double ms = hc_sm_changing(&t->sm) ? t->fast_ms : t->interval_ms;

	if (first) {
		ms = ms * (double)random() / (double)RAND_MAX;
	} else if (t->jitter_pct > 0) {
		double j = ms * t->jitter_pct / 100.0;
		ms += j * (2.0 * (double)random() / (double)RAND_MAX - 1.0);
	}
	if (ms < 1)
		ms = 1;
	t->phase = HCD_IDLE;
	ev_timer_stop(t->d->loop, &t->timer);
	ev_timer_set(&t->timer, ms / 1000.0, 0.0);
	ev_timer_start(t->d->loop, &t->timer);
}

/* Ends the probe with a result and schedules the next one. */
static void probe_finish(struct hcd_target *t, bool ok, bool timeout, const char *what)
{
	probe_close(t);
	ev_timer_stop(t->d->loop, &t->timer);
	hcd_target_result(t, ok, timeout, "%s", what);
	probe_schedule(t, false);
}

/* The check could not run for a reason of ours (out of descriptors,
 * memory, source ports): no verdict, the target keeps its state, the next
 * check comes at the normal interval. */
static void probe_skip(struct hcd_target *t, enum hcd_skip why, const char *what)
{
	probe_close(t);
	ev_timer_stop(t->d->loop, &t->timer);
	hcd_target_skipped(t, why, what);
	probe_schedule(t, false);
}

/* socket()/connect() failed with err: skipped when it is our shortage, a
 * failed check otherwise (e.g. ENETUNREACH says something about the path
 * to the target). */
static void probe_skip_or_fail(struct hcd_target *t, int err, const char *what)
{
	int why = hcd_skip_reason(err);

	if (why != -1) {
		probe_skip(t, (enum hcd_skip)why, what);
		return;
	}
	t->checks++;
	probe_finish(t, false, false, what);
}

/* Starts checking a target: the first probe after a random delay. */
void hcd_probe_start(struct hcd_target *t)
{
	if (t->ck == ROUTER_CHECK_NONE)
		return;
	probe_schedule(t, true);
}

/* Stops any probe and the timer (target removed or daemon exiting). */
void hcd_probe_abort(struct hcd_target *t)
{
	probe_close(t);
	ev_timer_stop(t->d->loop, &t->timer);
	t->phase = HCD_IDLE;
}

/* Judges a status code against the target's expected range. */
static void probe_judge_status(struct hcd_target *t, unsigned status)
{
	char what[96];
	bool ok = status >= t->status_min && status <= t->status_max;

	if (ok)
		snprintf(what, sizeof(what), "HTTP %u", status);
	else
		snprintf(what, sizeof(what), "HTTP %u (expected %u-%u)", status, t->status_min, t->status_max);
	probe_finish(t, ok, false, what);
}

/* Looks at the bytes read so far: a verdict once the status line is in. */
static void probe_parse(struct hcd_target *t)
{
	unsigned status;
	int rc = hc_http_status(t->rbuf, t->rlen, &status);

	if (rc == 1)
		probe_judge_status(t, status);
	else if (rc == -1)
		probe_finish(t, false, false, "not an HTTP response");
	else if (t->rlen == sizeof(t->rbuf))
		probe_finish(t, false, false, "HTTP status line too long");
}

/* HTTP over TLS: writes the request, then reads the status line. */
static void probe_tls_step(struct hcd_target *t)
{
	enum tls_status st;
	ssize_t n;
	char what[160];

	while (t->phase == HCD_SENDING) {
		size_t left;
		const char *rest = hc_http_req_rest(&t->req, &left);

		n = left ? tls_conn_write(t->tls, rest, left, &st) : 0;
		if (n > 0 || left == 0) {
			if (hc_http_req_wrote(&t->req, n > 0 ? (size_t)n : 0))
				t->phase = HCD_READING;
			continue;
		}
		goto wait_or_fail;
	}
	while (t->phase == HCD_READING) {
		n = tls_conn_read(t->tls, t->rbuf + t->rlen, sizeof(t->rbuf) - t->rlen, &st);
		if (n > 0) {
			t->rlen += (size_t)n;
			probe_parse(t);
			continue;     /* probe_parse may have finished: phase changed */
		}
		if (n == 0) {
			probe_finish(t, false, false, "TLS: closed before the status line");
			return;
		}
		goto wait_or_fail;
	}
	return;

wait_or_fail:
	if (st == TLS_WANT_READ || st == TLS_WANT_WRITE) {
		ev_io_stop(t->d->loop, &t->io);
		ev_io_set(&t->io, t->fd, st == TLS_WANT_READ ? EV_READ : EV_WRITE);
		ev_io_start(t->d->loop, &t->io);
		return;
	}
	snprintf(what, sizeof(what), "TLS %s: %s", tls_status_str(st), tls_conn_error(t->tls));
	probe_finish(t, false, false, what);
}

/* tls_connect_start() finished: handshake done or failed. */
static void probe_on_tls(void *udata, enum tls_status st, struct tls_conn *conn, int fd,
                         int64_t not_after, const char *err)
{
	struct hcd_target *t = target_from(udata);
	char what[200];

	t->tls_op = NULL;                   /* the helper freed itself */
	if (st != TLS_OK) {
		snprintf(what, sizeof(what), "TLS %s: %s", tls_status_str(st), err ? err : "");
		probe_finish(t, false, st == TLS_ERR_TIMEOUT, what);
		return;
	}
	t->tls = conn;
	t->fd = fd;
	t->phase = HCD_SENDING;
	ev_io_set(&t->io, fd, EV_WRITE);
	probe_tls_step(t);
}

/* Plain socket readiness: connect completion, request write, status read. */
static void probe_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hcd_target *t = target_from(w->data);
	char what[160];
	ssize_t n;

	if (t->tls) {
		probe_tls_step(t);
		return;
	}
	if (t->phase == HCD_CONNECTING) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == -1)
			soerr = errno;
		if (soerr != 0) {
			snprintf(what, sizeof(what), "connect: %s", strerror(soerr));
			probe_finish(t, false, false, what);
			return;
		}
		if (t->ck == ROUTER_CHECK_TCP) {
			probe_finish(t, true, false, "TCP connect");
			return;
		}
		t->phase = HCD_SENDING;
	}
	if (t->phase == HCD_SENDING) {
		size_t left;
		const char *rest = hc_http_req_rest(&t->req, &left);

		n = left ? write(t->fd, rest, left) : 0;
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			snprintf(what, sizeof(what), "write: %s", strerror(errno));
			probe_finish(t, false, false, what);
			return;
		}
		if (!hc_http_req_wrote(&t->req, (size_t)n))
			return;
		t->phase = HCD_READING;
		ev_io_stop(loop, &t->io);
		ev_io_set(&t->io, t->fd, EV_READ);
		ev_io_start(loop, &t->io);
		return;
	}
	if (t->phase == HCD_READING) {
		n = read(t->fd, t->rbuf + t->rlen, sizeof(t->rbuf) - t->rlen);
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			snprintf(what, sizeof(what), "read: %s", strerror(errno));
			probe_finish(t, false, false, what);
			return;
		}
		if (n == 0) {
			probe_finish(t, false, false, "closed before the status line");
			return;
		}
		t->rlen += (size_t)n;
		probe_parse(t);
	}
}

/* Opens the connection of a new probe. */
static void probe_begin(struct hcd_target *t)
{
	char what[160];
	int fd;

	t->started_us = hcd_mono_us();
	t->rlen = 0;
	hc_http_req_rewind(&t->req);
	if (!t->have_addr) {
		t->checks++;
		snprintf(what, sizeof(what), "no address%s%s", t->dns_error[0] ? ": " : " yet",
		         t->dns_error);
		probe_finish(t, false, false, what);
		return;
	}
	ev_timer_set(&t->timer, t->timeout_ms / 1000.0, 0.0);
	ev_timer_start(t->d->loop, &t->timer);
	if (t->ck == ROUTER_CHECK_HTTPS) {
		if (!t->d->tls) {
			t->checks++;
			probe_finish(t, false, false, "HTTPS check but no TLS context");
			return;
		}
		t->phase = HCD_TLS;
		errno = 0;
		t->tls_op = tls_connect_start(t->d->loop, t->d->tls, (struct sockaddr *)&t->sa, t->salen,
		                              t->sni[0] ? t->sni : NULL, t->timeout_ms, probe_on_tls, t,
		                              what, sizeof(what));
		if (!t->tls_op) {
			int why = hcd_skip_reason(errno);

			/* its socket() hit our descriptor or memory limit */
			if (why != -1 && strncmp(what, "socket:", 7) == 0) {
				probe_skip(t, (enum hcd_skip)why, what);
				return;
			}
			t->checks++;
			probe_finish(t, false, false, what);
			return;
		}
		t->checks++;
		return;
	}
	fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(what, sizeof(what), "socket: %s", strerror(errno));
		probe_skip_or_fail(t, errno, what);
		return;
	}
	t->fd = fd;
	t->phase = HCD_CONNECTING;
	if (connect(fd, (struct sockaddr *)&t->sa, t->salen) == -1 && errno != EINPROGRESS) {
		snprintf(what, sizeof(what), "connect: %s", strerror(errno));
		probe_skip_or_fail(t, errno, what);
		return;
	}
	t->checks++;
	ev_io_set(&t->io, fd, EV_WRITE);
	ev_io_start(t->d->loop, &t->io);
}

/* The target's timer: time for a check, or the check in flight timed out. */
static void probe_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hcd_target *t = target_from(w->data);
	static const char *const phase_str[] = { "idle", "connecting", "in TLS handshake",
	                                         "sending the request", "reading the status" };
	char what[96];

	if (t->phase == HCD_IDLE) {
		probe_begin(t);
		return;
	}
	snprintf(what, sizeof(what), "timeout after %u ms %s", t->timeout_ms, phase_str[t->phase]);
	probe_finish(t, false, true, what);
}
