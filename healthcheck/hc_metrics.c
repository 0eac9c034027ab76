/*
 * hc_metrics.c — the /metrics HTTP/1.0 server and its text buffer (see
 * hc_metrics.h). Shared by route-agent and healthcheckd, which only render.
 */
#include "hc_metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define METRICS_MAGIC        0x4d545253u   /* "MTRS" */
#define METRICS_CLIENT_MAGIC 0x4d54434cu   /* "MTCL" */
#define METRICS_REQ_MAX      4096
#define METRICS_DEADLINE     5.0           /* seconds for a client to ask and read */
#define METRICS_CTYPE        "text/plain; version=0.0.4; charset=utf-8"

struct metrics_client {
	unsigned magic;
	struct hc_metrics_server *srv;
	int fd;
	ev_io io;
	ev_timer deadline;
	char req[METRICS_REQ_MAX];
	size_t req_len;
	struct hc_text resp;       /* headers + body, once the request is complete */
	size_t sent;
	struct metrics_client *next;
};

struct hc_metrics_server {
	unsigned magic;
	struct ev_loop *loop;
	int fd;
	unsigned port;
	struct hc_acceptor acceptor;
	hc_metrics_render_fn render;
	void *udata;
	struct metrics_client *clients;   /* newest first */
	unsigned nclients, cap;
	unsigned long long evictions;
};

/* See hc_metrics.h. vsnprintf first into the room left; when it does not
 * fit, the buffer doubles and the same call is made again. */
void hc_text_printf(struct hc_text *t, const char *fmt, ...)
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
			t->failed = true;
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
			t->failed = true;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
}

/* See hc_metrics.h. */
void hc_text_free(struct hc_text *t)
{
	free(t->p);
	*t = (struct hc_text){ 0 };
}

/* Checks the magic of a client that came back through a watcher's data. */
static struct metrics_client *client_from(void *data)
{
	struct metrics_client *c = data;

	if (!c || c->magic != METRICS_CLIENT_MAGIC)
		abort();
	return c;
}

/* Stops the client's watchers, closes its fd, unlinks and frees it. */
static void client_close(struct metrics_client *c)
{
	struct hc_metrics_server *s = c->srv;
	struct metrics_client **pp;

	ev_io_stop(s->loop, &c->io);
	ev_timer_stop(s->loop, &c->deadline);
	close(c->fd);
	for (pp = &s->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	s->nclients--;
	hc_text_free(&c->resp);
	c->magic = 0;
	free(c);
}

/* Builds the whole response (status line, headers, body) into c->resp from
 * the request line in c->req. Only the request line matters: a scraper's
 * headers are ignored. */
static void client_respond(struct metrics_client *c)
{
	struct hc_metrics_server *s = c->srv;
	struct hc_text body = { 0 };
	const char *status = "200 OK", *ctype = METRICS_CTYPE;
	bool head = strncmp(c->req, "HEAD ", 5) == 0;
	bool get = strncmp(c->req, "GET ", 4) == 0;
	const char *target = c->req + (head ? 5 : 4);

	if (!get && !head) {
		status = "405 Method Not Allowed";
		ctype = "text/plain";
		hc_text_printf(&body, "only GET /metrics\n");
	} else if (strncmp(target, "/metrics", 8) != 0 ||
		   (target[8] != ' ' && target[8] != '?' && target[8] != '\r' && target[8] != '\n')) {
		status = "404 Not Found";
		ctype = "text/plain";
		hc_text_printf(&body, "try /metrics\n");
	} else {
		s->render(s->udata, &body);
	}
	if (body.failed) {
		status = "500 Internal Server Error";
		body.len = 0;
	}
	hc_text_printf(&c->resp, "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		       "Connection: close\r\n\r\n", status, ctype, body.len);
	if (!head && body.len)
		hc_text_printf(&c->resp, "%.*s", (int)body.len, body.p);
	hc_text_free(&body);
}

/* Sends what is left of the response. Returns true when the client is
 * finished with (sent, or failed: it has been closed), false when the
 * socket is full and the rest waits for EV_WRITE. */
static bool client_send(struct metrics_client *c)
{
	while (c->sent < c->resp.len) {
		ssize_t n = send(c->fd, c->resp.p + c->sent, c->resp.len - c->sent, MSG_NOSIGNAL);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		if (n == -1)
			break;
		c->sent += (size_t)n;
	}
	if (c->sent == c->resp.len)
		shutdown(c->fd, SHUT_WR);
	client_close(c);
	return true;
}

/* Reads the request until the end of the headers, then answers with one
 * write straight away (a fresh socket has room for a metrics page); only a
 * response larger than the socket buffer waits for EV_WRITE. */
static void client_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct metrics_client *c = client_from(io->data);
	ssize_t n;

	if (revents & EV_WRITE) {
		client_send(c);
		return;
	}
	n = recv(c->fd, c->req + c->req_len, sizeof(c->req) - 1 - c->req_len, 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(c);
		return;
	}
	c->req_len += (size_t)n;
	c->req[c->req_len] = '\0';
	if (!strstr(c->req, "\r\n\r\n") && !strstr(c->req, "\n\n")) {
		if (c->req_len == sizeof(c->req) - 1)
			client_close(c);          /* headers too long */
		return;
	}
	client_respond(c);
	if (c->resp.failed) {
		client_close(c);
		return;
	}
	if (client_send(c))
		return;
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(loop, &c->io);
}

/* A client that took too long to ask or to read. */
static void client_deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	client_close(client_from(t->data));
}

/* Full: closes the oldest client that is still asking (an answer being
 * sent is left to finish). Returns false when every client is answering. */
static bool metrics_evict_idle(struct hc_metrics_server *s)
{
	struct metrics_client *c, *oldest = NULL;

	for (c = s->clients; c; c = c->next)
		if (c->resp.len == 0)
			oldest = c;
	if (!oldest)
		return false;
	s->evictions++;
	client_close(oldest);
	return true;
}

/* A new connection (hc_acceptor). At the cap the oldest idle client makes
 * room: a scraper is never locked out by connections that do not ask. */
static void metrics_on_accept(void *udata, int fd)
{
	struct hc_metrics_server *s = udata;
	struct metrics_client *c;

	if (!s || s->magic != METRICS_MAGIC)
		abort();
	if ((s->nclients >= s->cap && !metrics_evict_idle(s)) || !(c = calloc(1, sizeof(*c)))) {
		close(fd);
		return;
	}
	c->magic = METRICS_CLIENT_MAGIC;
	c->srv = s;
	c->fd = fd;
	ev_io_init(&c->io, client_io_cb, fd, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->deadline, client_deadline_cb, METRICS_DEADLINE, 0.);
	c->deadline.data = c;
	ev_io_start(s->loop, &c->io);
	ev_timer_start(s->loop, &c->deadline);
	c->next = s->clients;
	s->clients = c;
	s->nclients++;
}

/* See hc_metrics.h. */
unsigned hc_metrics_client_cap(unsigned long nofile)
{
	unsigned long cap = nofile / 16;

	if (cap < HC_METRICS_MIN_CLIENTS)
		cap = HC_METRICS_MIN_CLIENTS;
	if (cap > HC_METRICS_MAX_CLIENTS)
		cap = HC_METRICS_MAX_CLIENTS;
	return (unsigned)cap;
}

/* Splits "host:port" / "[v6]:port" / "*:port" / ":port", resolves it and
 * binds a listening socket. Returns the fd (and the bound port) or -1 with
 * err. */
static int metrics_bind(const char *addr, unsigned *port, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	const char *colon = strrchr(addr, ':');
	const char *h = addr;
	char host[256];
	size_t hl;
	int fd = -1, one = 1, rc;

	if (!colon || !colon[1]) {
		snprintf(err, errlen, "stats address %s: expected host:port", addr);
		return -1;
	}
	hl = (size_t)(colon - addr);
	if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl >= sizeof(host)) {
		snprintf(err, errlen, "stats address %s: host too long", addr);
		return -1;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	rc = getaddrinfo(hl == 0 || strcmp(host, "*") == 0 ? NULL : host, colon + 1, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "stats address %s: %s", addr, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "stats address %s: socket: %s", addr, strerror(errno));
		goto out_free_ai;
	}
	/* a restarted daemon must get its port back despite TIME_WAIT */
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
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

/* See hc_metrics.h. */
struct hc_metrics_server *hc_metrics_server_new(struct ev_loop *loop, const char *addr,
                                                hc_metrics_render_fn render, void *udata,
                                                char *err, size_t errlen)
{
	struct hc_metrics_server *s = calloc(1, sizeof(*s));

	if (!s) {
		snprintf(err, errlen, "stats: out of memory");
		return NULL;
	}
	s->fd = metrics_bind(addr, &s->port, err, errlen);
	if (s->fd == -1) {
		free(s);
		return NULL;
	}
	s->magic = METRICS_MAGIC;
	s->loop = loop;
	s->render = render;
	s->udata = udata;
	s->cap = hc_metrics_client_cap(hc_nofile_limit());
	hc_acceptor_start(&s->acceptor, loop, s->fd, metrics_on_accept, s, "stats", NULL);
	return s;
}

/* See hc_metrics.h. */
void hc_metrics_server_set_log(struct hc_metrics_server *s, hc_log_fn log)
{
	s->acceptor.log = log ? log : hc_log_stderr;
}

/* See hc_metrics.h. */
unsigned long long hc_metrics_server_evictions(const struct hc_metrics_server *s)
{
	return s->evictions;
}

/* See hc_metrics.h. */
unsigned hc_metrics_server_port(const struct hc_metrics_server *s)
{
	return s->port;
}

/* See hc_metrics.h. */
void hc_metrics_server_free(struct hc_metrics_server **sp)
{
	struct hc_metrics_server *s = *sp;

	*sp = NULL;
	if (!s)
		return;
	while (s->clients)
		client_close(s->clients);
	hc_acceptor_stop(&s->acceptor);
	close(s->fd);
	s->magic = 0;
	free(s);
}
