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
 *
 * Exhaustion: every buffer is allocated once with its connection and
 * bounded; a peer that never reads stops our reading (and is closed by the
 * idle timeout); a peer that never finishes its HELLO is closed after
 * SPOP_HELLO_TIMEOUT_S; connections over the runtime's cap are refused
 * with AGENT-DISCONNECT 13 (a small, lingering connection, at most
 * SPOP_REJECT_MAX at once; beyond that the listeners pause); accept()
 * errors pause the listeners. Log lines of those paths are rate-limited.
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
#define SPOP_ACCEPT_RETRY_S  0.1     /* pause after an accept() error */
#define SPOP_CAP_RETRY_S     0.1     /* pause at the cap with every refusal slot taken */
#define SPOP_REFUSE_OUT      128     /* output room of a refused connection: one DISCONNECT */

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
	ev_tstamp created;
	bool read_paused;       /* back-pressure: rio stopped until out drains */
	bool lingering;         /* write side shut, draining input until EOF */
	bool peer_eof;
	bool refused;           /* over the cap: only a DISCONNECT, then close */
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
	if (c->refused) {
		atomic_fetch_sub_explicit(&w->rt->rejecting, 1, memory_order_relaxed);
	} else {
		atomic_fetch_sub_explicit(&w->rt->conns_open, 1, memory_order_relaxed);
		SPOP_CTR_SUB(&w->ctr, conns_current, 1);
	}
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
	/* watch for the peer's EOF whatever the read state was (a refused
	 * connection never started reading; libev ignores a second start) */
	c->read_paused = false;
	ev_io_start(c->w->loop, &c->rio);
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

/* Seconds a new connection has to finish its HELLO: HAProxy sends it at
 * once (and gives up after its own `timeout hello`), so only a peer that
 * holds connections open without speaking waits that long. Never more than
 * the idle timeout. */
static double hello_timeout_s(const struct spop_runtime *rt)
{
	double idle = rt->idle_timeout_ms / 1000.0;

	return idle < SPOP_HELLO_TIMEOUT_S ? idle : SPOP_HELLO_TIMEOUT_S;
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
	if (c->proto.state == SPOP_PS_HELLO) {
		/* the hello deadline runs from the accept, bytes or not: a
		 * peer trickling a HELLO does not hold a slot longer */
		left = c->created + hello_timeout_s(c->w->rt) - ev_now(loop);
		if (left > 0.001) {
			t->repeat = left;
			ev_timer_again(loop, t);
			return;
		}
		SPOP_CTR_ADD(&c->w->ctr, hello_timeouts, 1);
		spop_proto_disconnect(&c->proto, &c->out, SPOP_ST_TIMEOUT, "no HAPROXY-HELLO in time", true);
		t->repeat = SPOP_LINGER_S;
		ev_timer_again(loop, t);
		conn_process(c);
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

/* Allocates a connection for the accepted fd with in_cap / out_cap bytes
 * of buffers (one allocation), links it and initialises its watchers
 * (none started). NULL when out of memory (fd left open). */
static struct spop_conn *conn_alloc(struct spop_worker *w, int fd, size_t in_cap, size_t out_cap)
{
	struct spop_runtime *rt = w->rt;
	struct spop_conn *c = malloc(sizeof(*c) + in_cap + out_cap);
	char peer[64];

	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->magic = SPOP_CONN_MAGIC;
	c->fd = fd;
	c->w = w;
	c->in = (uint8_t *)(c + 1);
	c->in_cap = in_cap;
	c->out.buf = c->in + in_cap;
	c->out.cap = out_cap;
	peer_label(fd, peer, sizeof(peer));
	spop_proto_init(&c->proto, &rt->env, &w->ctr, w->index, peer);
	ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
	ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
	ev_init(&c->timer, conn_timer_cb);
	c->rio.data = c->wio.data = c->timer.data = c;
	c->created = c->last_activity = ev_now(w->loop);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	return c;
}

/* Starts serving an accepted fd; its slot in rt->conns_open is taken. The
 * buffers are sized once from our max-frame-size (the negotiated size is
 * never larger). Returns 0 or -1 (fd closed, slot given back). */
static int conn_new(struct spop_worker *w, int fd)
{
	struct spop_runtime *rt = w->rt;
	size_t frame = (size_t)rt->env.our_max + 4;
	struct spop_conn *c = conn_alloc(w, fd, frame, frame * rt->out_frames);
	int one = 1;

	if (!c) {
		spop_env_log_limited(&rt->env, &rt->accept_log, LOG_ERR, "failures",
				     "spop: worker %u: out of memory for a connection", w->index);
		close(fd);
		atomic_fetch_sub_explicit(&rt->conns_open, 1, memory_order_relaxed);
		return -1;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));   /* fails on unix sockets: fine */
	c->timer.repeat = hello_timeout_s(rt);
	ev_timer_again(w->loop, &c->timer);
	ev_io_start(w->loop, &c->rio);
	SPOP_CTR_ADD(&w->ctr, conns_total, 1);
	SPOP_CTR_ADD(&w->ctr, conns_current, 1);
	return 0;
}

/* Refuses an accepted fd over the cap: AGENT-DISCONNECT 13 naming the cap,
 * then the usual lingering close, so HAProxy reads the reason instead of a
 * reset (its hello was probably sent already). A refused connection holds
 * a descriptor for at most SPOP_LINGER_S and a few hundred bytes; its slot
 * in rt->rejecting is taken. */
static void conn_refuse(struct spop_worker *w, int fd)
{
	struct spop_runtime *rt = w->rt;
	struct spop_conn *c = conn_alloc(w, fd, 0, SPOP_REFUSE_OUT);
	char msg[96];

	SPOP_CTR_ADD(&w->ctr, conns_refused, 1);
	spop_env_log_limited(&rt->env, &rt->cap_log, LOG_WARNING, "refusals",
			     "spop: at the connection cap (%u): refusing new connections with AGENT-DISCONNECT status 13",
			     rt->max_conns);
	if (!c) {
		close(fd);
		atomic_fetch_sub_explicit(&rt->rejecting, 1, memory_order_relaxed);
		return;
	}
	c->refused = true;
	snprintf(msg, sizeof(msg), "agent at its connection cap (%u connections)", rt->max_conns);
	spop_proto_refuse(&c->proto, &c->out, SPOP_ST_RES_ALLOC, msg);
	conn_process(c);        /* sends it, then lingers (or frees c) */
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
	w->accept_paused = false;
	if (!w->stopping)
		listeners_set(w, true);
}

/* Stops watching the listeners for `delay` seconds: a listener that stays
 * readable while we cannot take its connections must not be polled in a
 * loop. The connections wait in the kernel's backlog meanwhile. */
static void accept_pause(struct spop_worker *w, double delay)
{
	if (w->accept_paused)
		return;
	w->accept_paused = true;
	listeners_set(w, false);
	ev_timer_set(&w->accept_resume, delay, 0.);
	ev_timer_start(w->loop, &w->accept_resume);
}

/* Accepts connections on a listening fd: up to a batch with one worker;
 * one per wake-up with several, since every worker watches the same
 * socket and each should get its share. At the cap a connection is
 * refused with AGENT-DISCONNECT (conn_refuse); with every refusal slot
 * taken too, or when accept() fails (out of descriptors ...), the worker
 * stops accepting for a moment instead of spinning on a readable
 * listener. */
void spop_conn_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct spop_wlisten *wl = io->data;
	struct spop_runtime *rt;
	struct spop_worker *w;
	int batch;

	CHECK_MAGIC(wl, SPOP_LISTEN_MAGIC);
	w = wl->w;
	CHECK_MAGIC(w, SPOP_WORKER_MAGIC);
	rt = w->rt;
	batch = rt->nworkers > 1 ? 1 : SPOP_ACCEPT_BATCH;
	for (int i = 0; i < batch && !w->stopping; i++) {
		int fd;

		if (atomic_load_explicit(&rt->conns_open, memory_order_relaxed) >= rt->max_conns &&
		    atomic_load_explicit(&rt->rejecting, memory_order_relaxed) >= SPOP_REJECT_MAX) {
			accept_pause(w, SPOP_CAP_RETRY_S);
			return;
		}
		fd = accept4(wl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* EMFILE, ENFILE, ENOBUFS, ENOMEM, or anything unexpected:
			 * retrying at once would fail the same way */
			SPOP_CTR_ADD(&w->ctr, accept_errors, 1);
			spop_env_log_limited(&rt->env, &rt->accept_log, LOG_ERR, "accept errors",
					     "spop: worker %u: accept: %s: not accepting for %.0f ms", w->index,
					     strerror(errno), SPOP_ACCEPT_RETRY_S * 1000);
			accept_pause(w, SPOP_ACCEPT_RETRY_S);
			return;
		}
		if (atomic_fetch_add_explicit(&rt->conns_open, 1, memory_order_relaxed) < rt->max_conns) {
			conn_new(w, fd);
		} else {
			atomic_fetch_sub_explicit(&rt->conns_open, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&rt->rejecting, 1, memory_order_relaxed);
			conn_refuse(w, fd);
		}
	}
}

/* Graceful stop of every connection of w: answer the frames already
 * received, send AGENT-DISCONNECT status 0 to the connections past their
 * HELLO, flush, then linger-close. */
void spop_conn_stop_all(struct spop_worker *w)
{
	struct spop_conn *c, *next;

	ev_timer_stop(w->loop, &w->accept_resume);
	w->accept_paused = false;
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
