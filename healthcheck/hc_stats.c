/*
 * hc_stats.c — healthcheckd's stats endpoint (--stats HOST:PORT): a tiny
 * HTTP/1.0 server answering GET /metrics with Prometheus text (counters,
 * per-target state, check latency histogram). One request per connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hc_daemon.h"

#define STATS_MAGIC      0x48435354u   /* "HCST" */
#define STATS_CONN_MAGIC 0x48435343u   /* "HCSC" */
#define STATS_REQ_MAX    4096

struct stats_conn {
	unsigned magic;
	struct hcd_stats *st;
	int fd;
	ev_io io;
	ev_timer deadline;
	char req[STATS_REQ_MAX];
	size_t len;
	bool writing;
	struct hcd_buf out;
	struct stats_conn *prev, *next;
};

struct hcd_stats {
	unsigned magic;
	struct hcd *d;
	int lfd;
	ev_io lio;
	struct stats_conn *conns;
};

static const char *const latency_le[12] = { "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                                            "0.1", "0.25", "0.5", "1", "2.5", "+Inf" };

static struct stats_conn *conn_from(void *data)
{
	struct stats_conn *c = data;

	if (!c || c->magic != STATS_CONN_MAGIC)
		abort();
	return c;
}

static void conn_close(struct stats_conn *c)
{
	struct ev_loop *loop = c->st->d->loop;

	ev_io_stop(loop, &c->io);
	ev_timer_stop(loop, &c->deadline);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->st->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);
	hcd_buf_free(&c->out);
	c->magic = 0;
	free(c);
}

/* Renders every metric into out. */
static void stats_render(struct hcd *d, struct hcd_buf *o)
{
	const struct hcd_counters *k = &d->ctr;
	uint64_t cum = 0, up = 0;

	hcd_buf_printf(o, "# HELP seedgate_hc_checks_total Health checks run, by result.\n"
	               "# TYPE seedgate_hc_checks_total counter\n"
	               "seedgate_hc_checks_total{result=\"ok\"} %llu\n"
	               "seedgate_hc_checks_total{result=\"fail\"} %llu\n"
	               "seedgate_hc_checks_total{result=\"timeout\"} %llu\n",
	               (unsigned long long)k->checks_ok, (unsigned long long)k->checks_fail,
	               (unsigned long long)k->checks_timeout);
	hcd_buf_printf(o, "# HELP seedgate_hc_check_latency_seconds Time from connect to verdict.\n"
	               "# TYPE seedgate_hc_check_latency_seconds histogram\n");
	for (unsigned b = 0; b < 12; b++) {
		cum += k->latency_buckets[b];
		hcd_buf_printf(o, "seedgate_hc_check_latency_seconds_bucket{le=\"%s\"} %llu\n", latency_le[b],
		               (unsigned long long)cum);
	}
	hcd_buf_printf(o, "seedgate_hc_check_latency_seconds_sum %.6f\nseedgate_hc_check_latency_seconds_count %llu\n",
	               k->latency_sum_s, (unsigned long long)cum);
	hcd_buf_printf(o, "# HELP seedgate_hc_state_changes_total Published state changes.\n"
	               "# TYPE seedgate_hc_state_changes_total counter\nseedgate_hc_state_changes_total %llu\n",
	               (unsigned long long)k->state_changes);
	hcd_buf_printf(o, "# TYPE seedgate_hc_seed_reloads_total counter\n"
	               "seedgate_hc_seed_reloads_total{result=\"ok\"} %llu\n"
	               "seedgate_hc_seed_reloads_total{result=\"error\"} %llu\n",
	               (unsigned long long)k->reloads_ok, (unsigned long long)k->reloads_error);
	hcd_buf_printf(o, "# TYPE seedgate_hc_dns_resolutions_total counter\n"
	               "seedgate_hc_dns_resolutions_total{result=\"ok\"} %llu\n"
	               "seedgate_hc_dns_resolutions_total{result=\"error\"} %llu\n",
	               (unsigned long long)k->dns_ok, (unsigned long long)k->dns_fail);
	hcd_buf_printf(o, "# TYPE seedgate_hc_feed_subscribers gauge\nseedgate_hc_feed_subscribers %u\n",
	               d->feed ? hcd_feed_subscribers(d->feed) : 0);
	hcd_buf_printf(o, "# TYPE seedgate_hc_haproxy_connected gauge\n");
	for (unsigned i = 0; i < d->opts.n_haproxy; i++)
		hcd_buf_printf(o, "seedgate_hc_haproxy_connected{socket=\"%s\"} %d\n"
		               "seedgate_hc_haproxy_commands_total{socket=\"%s\"} %llu\n"
		               "seedgate_hc_haproxy_connects_total{socket=\"%s\"} %llu\n"
		               "seedgate_hc_haproxy_messages_total{socket=\"%s\"} %llu\n",
		               hcd_haproxy_path(d->haproxy[i]), hcd_haproxy_connected(d->haproxy[i]),
		               hcd_haproxy_path(d->haproxy[i]), (unsigned long long)hcd_haproxy_commands(d->haproxy[i]),
		               hcd_haproxy_path(d->haproxy[i]), (unsigned long long)hcd_haproxy_connects(d->haproxy[i]),
		               hcd_haproxy_path(d->haproxy[i]), (unsigned long long)hcd_haproxy_errors(d->haproxy[i]));
	hcd_buf_printf(o, "# HELP seedgate_hc_target_up 1 when the target is up (or draining), 0 when down.\n"
	               "# TYPE seedgate_hc_target_up gauge\n");
	for (unsigned i = 0; i < d->ntargets; i++) {
		const struct hcd_target *t = d->targets[i];
		bool is_up = !t->published || t->state != HC_DOWN;

		up += is_up;
		hcd_buf_printf(o, "seedgate_hc_target_up{target=\"%s\",kind=\"%s\",dc=\"%s\"} %d\n", t->name,
		               t->kind_str, t->dc, is_up);
	}
	hcd_buf_printf(o, "# TYPE seedgate_hc_targets gauge\nseedgate_hc_targets{state=\"up\"} %llu\n"
	               "seedgate_hc_targets{state=\"down\"} %llu\n", (unsigned long long)up,
	               (unsigned long long)(d->ntargets - up));
}

/* Writes the response; closes when done. */
static void conn_write(struct stats_conn *c)
{
	if (hcd_buf_flush(&c->out, c->fd) == -1 || hcd_buf_pending(&c->out) == 0)
		conn_close(c);
}

/* Builds the response for the request line in c->req. */
static void conn_answer(struct stats_conn *c)
{
	struct hcd_buf body = { 0 };
	const char *status = "200 OK";

	if (strncmp(c->req, "GET /metrics ", 13) == 0 || strncmp(c->req, "GET /metrics?", 13) == 0) {
		stats_render(c->st->d, &body);
	} else if (strncmp(c->req, "GET / ", 6) == 0) {
		hcd_buf_printf(&body, "healthcheckd: GET /metrics (Prometheus text)\n");
	} else {
		status = "404 Not Found";
		hcd_buf_printf(&body, "not found\n");
	}
	hcd_buf_printf(&c->out, "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
	               "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, hcd_buf_pending(&body));
	if (body.len)
		hcd_buf_append(&c->out, body.p, body.len);
	hcd_buf_free(&body);
	c->writing = true;
	ev_io_stop(c->st->d->loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(c->st->d->loop, &c->io);
	conn_write(c);
}

static void conn_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct stats_conn *c = conn_from(w->data);
	ssize_t n;

	if (c->writing) {
		conn_write(c);
		return;
	}
	n = read(c->fd, c->req + c->len, sizeof(c->req) - 1 - c->len);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n") || c->len == sizeof(c->req) - 1)
		conn_answer(c);
}

static void conn_on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	conn_close(conn_from(w->data));
}

static void stats_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hcd_stats *st = w->data;
	struct stats_conn *c;
	int fd = accept4(st->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd == -1)
		return;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->magic = STATS_CONN_MAGIC;
	c->st = st;
	c->fd = fd;
	ev_io_init(&c->io, conn_on_io, fd, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->deadline, conn_on_deadline, 5.0, 0.0);
	c->deadline.data = c;
	ev_io_start(loop, &c->io);
	ev_timer_start(loop, &c->deadline);
	c->next = st->conns;
	if (c->next)
		c->next->prev = c;
	st->conns = c;
}

/* Listens on "host:port" (IPv4/IPv6 literal or name). */
struct hcd_stats *hcd_stats_new(struct hcd *d, const char *addr, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL;
	char host[256];
	const char *colon = strrchr(addr, ':');
	struct hcd_stats *st = NULL;
	int one = 1, rc, fd = -1;
	size_t hl;

	if (!colon || colon == addr || (hl = (size_t)(colon - addr)) >= sizeof(host)) {
		snprintf(err, errlen, "--stats %s: expected HOST:PORT", addr);
		return NULL;
	}
	memcpy(host, addr, hl);
	host[hl] = '\0';
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "--stats %s: %s", addr, gai_strerror(rc));
		return NULL;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "--stats %s: socket: %s", addr, strerror(errno));
		goto out_free_res;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 64) == -1) {
		snprintf(err, errlen, "--stats %s: %s", addr, strerror(errno));
		goto out_close;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		snprintf(err, errlen, "stats: out of memory");
		goto out_close;
	}
	st->magic = STATS_MAGIC;
	st->d = d;
	st->lfd = fd;
	ev_io_init(&st->lio, stats_on_accept, fd, EV_READ);
	st->lio.data = st;
	ev_io_start(d->loop, &st->lio);
	freeaddrinfo(res);
	return st;

out_close:
	close(fd);
out_free_res:
	freeaddrinfo(res);
	return NULL;
}

/* Stops listening and closes the connections still open. */
void hcd_stats_free(struct hcd_stats **pst)
{
	struct hcd_stats *st = pst ? *pst : NULL;

	if (!st)
		return;
	while (st->conns)
		conn_close(st->conns);
	ev_io_stop(st->d->loop, &st->lio);
	close(st->lfd);
	st->magic = 0;
	free(st);
	*pst = NULL;
}
