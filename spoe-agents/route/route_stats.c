/*
 * route_stats.c — the /metrics HTTP endpoint.
 */
#include "route_stats.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STATS_MAGIC       0x53544154u   /* "STAT" */
#define STATS_CLIENT_MAGIC 0x53434c49u  /* "SCLI" */
#define STATS_MAX_CLIENTS 32
#define STATS_REQ_MAX     4096
#define STATS_DEADLINE    5.0

struct stats_client {
	unsigned magic;
	struct route_stats_server *srv;
	int fd;
	ev_io io;
	ev_timer deadline;
	char req[STATS_REQ_MAX];
	size_t req_len;
	struct route_text resp;    /* headers + body, once the request is complete */
	size_t sent;
	struct stats_client *next;
};

struct route_stats_server {
	unsigned magic;
	struct ev_loop *loop;
	int fd;
	unsigned port;
	ev_io accept_io;
	route_stats_render_fn render;
	void *udata;
	struct stats_client *clients;
	unsigned nclients;
};

/* See route_stats.h. On failure the buffer keeps what it had and `failed`
 * is set, so the response can say 500 instead of sending half a text. */
void route_text_printf(struct route_text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		size_t room = t->cap - t->len;

		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
			return;
		}
		if ((size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap * 2 : 4096;
		while (cap - t->len <= (size_t)n)
			cap *= 2;
		char *p = realloc(t->p, cap);
		if (!p) {
			t->failed = 1;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
}

/* Stops the client's watchers, closes its fd, unlinks and frees it. */
static void stats_client_close(struct stats_client *c)
{
	struct route_stats_server *s = c->srv;
	struct stats_client **pp;

	ev_io_stop(s->loop, &c->io);
	ev_timer_stop(s->loop, &c->deadline);
	close(c->fd);
	for (pp = &s->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	s->nclients--;
	free(c->resp.p);
	c->magic = 0;
	free(c);
}

/* Builds the whole response for the request line in c->req. */
static void stats_client_respond(struct stats_client *c)
{
	struct route_stats_server *s = c->srv;
	struct route_text body = { 0 };
	const char *status = "200 OK", *ctype = "text/plain; version=0.0.4; charset=utf-8";
	bool head = strncmp(c->req, "HEAD ", 5) == 0;
	bool get = strncmp(c->req, "GET ", 4) == 0;
	const char *target = c->req + (head ? 5 : 4);

	if (!get && !head) {
		status = "405 Method Not Allowed";
		ctype = "text/plain";
		route_text_printf(&body, "only GET /metrics\n");
	} else if (strncmp(target, "/metrics", 8) != 0 ||
		   (target[8] != ' ' && target[8] != '?' && target[8] != '\r' && target[8] != '\n')) {
		status = "404 Not Found";
		ctype = "text/plain";
		route_text_printf(&body, "try /metrics\n");
	} else {
		s->render(s->udata, &body);
	}
	if (body.failed) {
		status = "500 Internal Server Error";
		body.len = 0;
	}
	route_text_printf(&c->resp, "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			  "Connection: close\r\n\r\n", status, ctype, body.len);
	if (!head && body.len)
		route_text_printf(&c->resp, "%.*s", (int)body.len, body.p);
	free(body.p);
}

/* Reads the request until the end of the headers, then writes the response
 * (possibly over several readiness events) and closes. */
static void stats_client_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct stats_client *c = io->data;
	ssize_t n;

	if (c->magic != STATS_CLIENT_MAGIC)
		abort();
	if (revents & EV_READ) {
		n = recv(c->fd, c->req + c->req_len, sizeof(c->req) - 1 - c->req_len, 0);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
			stats_client_close(c);
			return;
		}
		if (n > 0)
			c->req_len += (size_t)n;
		c->req[c->req_len] = '\0';
		if (!strstr(c->req, "\r\n\r\n") && !strstr(c->req, "\n\n")) {
			if (c->req_len == sizeof(c->req) - 1)
				stats_client_close(c);    /* headers too long */
			return;
		}
		stats_client_respond(c);
		if (c->resp.failed) {
			stats_client_close(c);
			return;
		}
		ev_io_stop(loop, &c->io);
		ev_io_set(&c->io, c->fd, EV_WRITE);
		ev_io_start(loop, &c->io);
		return;
	}
	n = send(c->fd, c->resp.p + c->sent, c->resp.len - c->sent, MSG_NOSIGNAL);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == -1) {
		stats_client_close(c);
		return;
	}
	c->sent += (size_t)n;
	if (c->sent == c->resp.len) {
		shutdown(c->fd, SHUT_WR);
		stats_client_close(c);
	}
}

/* A client that took too long. */
static void stats_client_deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct stats_client *c = t->data;

	(void)loop;
	(void)revents;
	if (c->magic != STATS_CLIENT_MAGIC)
		abort();
	stats_client_close(c);
}

/* Accepts every pending connection (over the limit they are closed at once). */
static void stats_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct route_stats_server *s = io->data;

	(void)revents;
	if (s->magic != STATS_MAGIC)
		abort();
	for (;;) {
		int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct stats_client *c;

		if (fd == -1)
			return;       /* EAGAIN, or a transient error: try on the next event */
		if (s->nclients >= STATS_MAX_CLIENTS || !(c = calloc(1, sizeof(*c)))) {
			close(fd);
			continue;
		}
		c->magic = STATS_CLIENT_MAGIC;
		c->srv = s;
		c->fd = fd;
		ev_io_init(&c->io, stats_client_io_cb, fd, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->deadline, stats_client_deadline_cb, STATS_DEADLINE, 0.);
		c->deadline.data = c;
		ev_io_start(loop, &c->io);
		ev_timer_start(loop, &c->deadline);
		c->next = s->clients;
		s->clients = c;
		s->nclients++;
	}
}

/* Splits "host:port" / "[v6]:port" / ":port" and binds a listening socket.
 * Returns the fd or -1 with err. */
static int stats_bind(const char *addr, unsigned *port, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	size_t hl;
	int fd = -1, one = 1, rc;

	if (!colon || !colon[1]) {
		snprintf(err, errlen, "stats address '%s': expected host:port", addr);
		return -1;
	}
	hl = (size_t)(colon - addr);
	if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
		addr++;
		hl -= 2;
	}
	if (hl >= sizeof(host)) {
		snprintf(err, errlen, "stats address '%s': host too long", addr);
		return -1;
	}
	memcpy(host, addr, hl);
	host[hl] = '\0';
	rc = getaddrinfo(hl == 0 || strcmp(host, "*") == 0 ? NULL : host, colon + 1, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "stats address '%s': %s", addr, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "stats socket: %s", strerror(errno));
		goto out_free_ai;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 64) == -1) {
		snprintf(err, errlen, "stats address %s: %s", addr, strerror(errno));
		close(fd);
		fd = -1;
		goto out_free_ai;
	}
	*port = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						       : ((struct sockaddr_in *)&ss)->sin_port);
out_free_ai:
	freeaddrinfo(res);
	return fd;
}

/* See route_stats.h. */
struct route_stats_server *route_stats_server_new(struct ev_loop *loop, const char *addr,
                                                  route_stats_render_fn render, void *udata,
                                                  char *err, size_t errlen)
{
	struct route_stats_server *s = calloc(1, sizeof(*s));

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->fd = stats_bind(addr, &s->port, err, errlen);
	if (s->fd == -1) {
		free(s);
		return NULL;
	}
	s->magic = STATS_MAGIC;
	s->loop = loop;
	s->render = render;
	s->udata = udata;
	ev_io_init(&s->accept_io, stats_accept_cb, s->fd, EV_READ);
	s->accept_io.data = s;
	ev_io_start(loop, &s->accept_io);
	return s;
}

unsigned route_stats_server_port(const struct route_stats_server *s)
{
	return s->port;
}

/* Closes every client and the listener. */
void route_stats_server_free(struct route_stats_server **sp)
{
	struct route_stats_server *s = *sp;

	*sp = NULL;
	if (!s)
		return;
	while (s->clients)
		stats_client_close(s->clients);
	ev_io_stop(s->loop, &s->accept_io);
	close(s->fd);
	s->magic = 0;
	free(s);
}
