/*
 * spop_conn.c — one agent connection on a worker's libev loop.
 *
 * Each connection owns two buffers allocated once with it (input: one
 * maximal frame; output: a few maximal frames) and three watchers embedded
 * in the struct (read, write, timer). A read event does one recv(), runs
 * every complete frame through the protocol engine (spop_proto.c) and
 * sends all the replies it produced with one send(). When the peer stops
 * reading and the output buffer cannot hold another maximal reply, reading
 * stops until the output drains (back-pressure). One timer serves as idle
 * timeout (libev's "last activity" idiom: no timer update per read) and,
 * once closing, as the deadline of the lingering close: after the last
 * frame (DISCONNECT or health-check AGENT-HELLO) the write side is shut and
 * input is drained until EOF, so the peer reads the frame instead of a
 * reset. conn_free() is the one teardown.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "spop_int.h"

#define SPOP_LINGER_S        1.0
#define SPOP_ACCEPT_BATCH    64
#define SPOP_ACCEPT_RETRY_S  0.1

struct spop_conn {
	unsigned magic;
	int fd;
	struct spop_worker *w;
	ev_io rio, wio;
	ev_timer timer;
	ev_tstamp last_activity;
	struct spop_proto proto;
	uint8_t *in;
	size_t in_len, in_cap;
	struct spop_out out;
	bool read_paused;       /* back-pressure: rio stopped until out drains */
	bool lingering;         /* write side shut, draining input until EOF */
	bool peer_eof;
	struct spop_conn *prev, *next;
};

#define CHECK_MAGIC(p, m) do { if (!(p) || (p)->magic != (m)) abort(); } while (0)

static void conn_read_cb(struct ev_loop *loop, ev_io *io, int revents);
static void conn_write_cb(struct ev_loop *loop, ev_io *io, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);

/* The one teardown: stops every watcher, closes the fd, unlinks and frees
 * the connection; ends the worker's loop when it was the last one of a
 * stopping worker. */
static void conn_free(struct spop_conn *c)
{
	struct spop_worker *w = c->w;

	ev_io_stop(w->loop, &c->rio);
	ev_io_stop(w->loop, &c->wio);
	ev_timer_stop(w->loop, &c->timer);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	SPOP_CTR_SUB(&w->ctr, conns_current, 1);
	c->magic = 0;
	free(c);
	if (w->stopping && !w->conns)
		ev_break(w->loop, EVBREAK_ALL);
}

/* Stops reading until the output drains. */
static void pause_reading(struct spop_conn *c)
{
	if (!c->read_paused) {
		ev_io_stop(c->w->loop, &c->rio);
		c->read_paused = true;
	}
}

static void resume_reading(struct spop_conn *c)
{
	if (c->read_paused) {
		ev_io_start(c->w->loop, &c->rio);
		c->read_paused = false;
	}
}

/* Sends what the output buffer holds with one send(). Returns 0, or -1 if
 * the connection failed (the caller tears it down). A partial send keeps
 * the rest at the front of the buffer and waits for writability. */
static int conn_flush(struct spop_conn *c)
{
	ssize_t n;

	if (c->out.len == 0)
		return 0;
	do
		n = send(c->fd, c->out.buf, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n == -1 && errno == EINTR);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			ev_io_start(c->w->loop, &c->wio);
			return 0;
		}
		return -1;      /* EPIPE, ECONNRESET ...: a normal close */
	}
	SPOP_CTR_ADD(&c->w->ctr, bytes_out, n);
	if ((size_t)n < c->out.len) {
		memmove(c->out.buf, c->out.buf + n, c->out.len - (size_t)n);
		c->out.len -= (size_t)n;
		ev_io_start(c->w->loop, &c->wio);
		return 0;
	}
	c->out.len = 0;
	ev_io_stop(c->w->loop, &c->wio);
	return 0;
}

/* Starts the lingering close once the last frame left: shut the write
 * side, drain input until EOF or the linger deadline. Returns 0, or -1
 * when c was freed (the peer is already gone). */
static int conn_linger(struct spop_conn *c)
{
	if (c->peer_eof || shutdown(c->fd, SHUT_WR) == -1) {
		conn_free(c);
		return -1;
	}
	c->lingering = true;
	c->in_len = 0;
	resume_reading(c);
	ev_timer_stop(c->w->loop, &c->timer);
	ev_timer_set(&c->timer, SPOP_LINGER_S, 0.);
	ev_timer_start(c->w->loop, &c->timer);
	return 0;
}

/* Runs the buffered input through the protocol engine, sends the replies
 * and decides what comes next (keep reading, pause, close). May free c;
 * returns -1 when it did. */
static int conn_process(struct spop_conn *c)
{
	size_t used = spop_proto_feed(&c->proto, c->in, c->in_len, &c->out);

	if (used) {
		c->in_len -= used;
		if (c->in_len)
			memmove(c->in, c->in + used, c->in_len);
	}
	if (spop_proto_closing(&c->proto))
		c->in_len = 0;          /* nothing after the last frame is read */
	if (conn_flush(c) == -1) {
		conn_free(c);
		return -1;
	}
	if (spop_proto_closing(&c->proto)) {
		if (c->out.len == 0)
			return conn_linger(c);
		pause_reading(c);       /* wait for the flush, then linger */
		return 0;
	}
	if (c->peer_eof) {
		if (c->out.len == 0) {
			conn_free(c);
			return -1;
		}
		pause_reading(c);
		return 0;
	}
	if (c->out.cap - c->out.len < spop_proto_reply_room(&c->proto) || c->in_len == c->in_cap)
		pause_reading(c);
	else
		resume_reading(c);
	return 0;
}

/* One recv() into the input buffer. Returns 1 if bytes arrived, 0 if
 * nothing was there, -1 on EOF or error (c->peer_eof set). */
static int conn_recv(struct spop_conn *c)
{
	ssize_t n;

	do
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
	while (n == -1 && errno == EINTR);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n <= 0) {
		c->peer_eof = true;
		return -1;
	}
	c->in_len += (size_t)n;
	SPOP_CTR_ADD(&c->w->ctr, bytes_in, n);
	c->last_activity = ev_now(c->w->loop);
	return 1;
}

static void conn_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct spop_conn *c = io->data;
	int r;

	CHECK_MAGIC(c, SPOP_CONN_MAGIC);
	if (c->lingering) {
		uint8_t sink[4096];
		ssize_t n = recv(c->fd, sink, sizeof(sink), 0);

		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			conn_free(c);
		return;
	}
	if (c->in_len == c->in_cap) {   /* cannot happen: the engine always makes progress */
		pause_reading(c);
		return;
	}
	r = conn_recv(c);
	if (r == 0)
		return;
	if (r == -1 && c->out.len == 0 && !spop_proto_closing(&c->proto)) {
		conn_free(c);           /* EOF / reset: a normal close */
		return;
	}
	conn_process(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct spop_conn *c = io->data;

	CHECK_MAGIC(c, SPOP_CONN_MAGIC);
	if (conn_flush(c) == -1) {
		conn_free(c);
		return;
	}
	if (c->out.len)
		return;
	/* drained: answer the frames that waited for room, or finish closing */
	conn_process(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct spop_conn *c = t->data;
	ev_tstamp left;

	CHECK_MAGIC(c, SPOP_CONN_MAGIC);
	if (c->lingering || spop_proto_closing(&c->proto)) {
		conn_free(c);
		return;
	}
	left = c->last_activity + c->w->rt->idle_timeout_ms / 1000.0 - ev_now(loop);
	if (left > 0.001) {
		t->repeat = left;
		ev_timer_again(loop, t);
		return;
	}
	spop_proto_disconnect(&c->proto, &c->out, SPOP_ST_TIMEOUT, "idle timeout", false);
	if (!spop_proto_closing(&c->proto))
		c->proto.state = SPOP_PS_CLOSING;
	/* bound the flush by the linger deadline */
	t->repeat = SPOP_LINGER_S;
	ev_timer_again(loop, t);
	conn_process(c);
}

/* Formats the peer address of fd for log lines. */
static void peer_label(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == -1 || ss.ss_family == AF_UNIX) {
		snprintf(buf, len, "unix fd %d", fd);
		return;
	}
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(((struct sockaddr_in *)&ss)->sin_port));
	} else {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	}
}

/* Allocates and starts a connection for the accepted fd. Its buffers are
 * sized once from our max-frame-size (the negotiated size is never
 * larger). Returns 0 or -1 (fd closed). */
static int conn_new(struct spop_worker *w, int fd)
{
	struct spop_runtime *rt = w->rt;
	size_t frame = (size_t)rt->env.our_max + 4;
	size_t in_cap = frame, out_cap = frame * rt->out_frames;
	struct spop_conn *c = malloc(sizeof(*c) + in_cap + out_cap);
	char peer[64];
	int one = 1;

	if (!c) {
		spop_env_log(&rt->env, LOG_ERR, "spop: worker %u: out of memory for a connection", w->index);
		close(fd);
		return -1;
	}
	memset(c, 0, sizeof(*c));
	c->magic = SPOP_CONN_MAGIC;
	c->fd = fd;
	c->w = w;
	c->in = (uint8_t *)(c + 1);
	c->in_cap = in_cap;
	c->out.buf = c->in + in_cap;
	c->out.cap = out_cap;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));   /* fails on unix sockets: fine */
	peer_label(fd, peer, sizeof(peer));
	spop_proto_init(&c->proto, &rt->env, &w->ctr, w->index, peer);
	ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
	ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
	ev_init(&c->timer, conn_timer_cb);
	c->rio.data = c->wio.data = c->timer.data = c;
	c->last_activity = ev_now(w->loop);
	c->timer.repeat = rt->idle_timeout_ms / 1000.0;
	ev_timer_again(w->loop, &c->timer);
	ev_io_start(w->loop, &c->rio);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	SPOP_CTR_ADD(&w->ctr, conns_total, 1);
	SPOP_CTR_ADD(&w->ctr, conns_current, 1);
	return 0;
}

static void listeners_set(struct spop_worker *w, bool on)
{
	for (unsigned i = 0; i < w->nwl; i++) {
		if (on)
			ev_io_start(w->loop, &w->wl[i].io);
		else
			ev_io_stop(w->loop, &w->wl[i].io);
	}
}

void spop_conn_accept_resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct spop_worker *w = t->data;

	CHECK_MAGIC(w, SPOP_WORKER_MAGIC);
	if (!w->stopping)
		listeners_set(w, true);
}

/* Accepts up to a batch of connections on a listening fd. Out of file
 * descriptors, the worker stops accepting for a moment instead of
 * spinning on a readable listener. */
void spop_conn_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct spop_wlisten *wl = io->data;
	struct spop_worker *w;

	CHECK_MAGIC(wl, SPOP_LISTEN_MAGIC);
	w = wl->w;
	CHECK_MAGIC(w, SPOP_WORKER_MAGIC);
	for (int i = 0; i < SPOP_ACCEPT_BATCH && !w->stopping; i++) {
		int fd = accept4(wl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			spop_env_log(&w->rt->env, LOG_ERR, "spop: worker %u: accept: %s", w->index, strerror(errno));
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				listeners_set(w, false);
				ev_timer_set(&w->accept_resume, SPOP_ACCEPT_RETRY_S, 0.);
				ev_timer_start(loop, &w->accept_resume);
			}
			return;
		}
		conn_new(w, fd);
	}
}

/* Graceful stop of every connection of w: answer the frames already
 * received, send AGENT-DISCONNECT status 0 to the connections past their
 * HELLO, flush, then linger-close. */
void spop_conn_stop_all(struct spop_worker *w)
{
	struct spop_conn *c, *next;

	ev_timer_stop(w->loop, &w->accept_resume);
	listeners_set(w, false);
	for (c = w->conns; c; c = next) {
		next = c->next;
		if (c->lingering || spop_proto_closing(&c->proto))
			continue;
		/* frames already in the socket buffer are in flight: answer them */
		if (c->in_len < c->in_cap && conn_recv(c) == 1 && conn_process(c) == -1)
			continue;
		if (c->lingering || spop_proto_closing(&c->proto))
			continue;
		spop_proto_disconnect(&c->proto, &c->out, SPOP_ST_NORMAL, "agent stopping", false);
		c->proto.state = SPOP_PS_CLOSING;
		conn_process(c);
	}
}

/* Tears every connection of w down now (the stop deadline passed). */
void spop_conn_close_all(struct spop_worker *w)
{
	while (w->conns)
		conn_free(w->conns);
}
