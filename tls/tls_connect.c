/*
 * tls/tls_connect.c — libev helper: non-blocking TCP connect, then the TLS
 * handshake, driven to completion on the caller's loop, one callback at the
 * end. Back-end independent: it only uses the public tls.h calls, so the
 * same object goes into both libsgtls-openssl.a and libsgtls-wolfssl.a.
 *
 * One deadline covers both phases. The callback is never called from
 * inside tls_connect_start(): an immediate failure (connect() refusing at
 * once) is reported from a zero-delay timer, so callers never see their
 * callback re-entered while they are still setting up.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "tls_int.h"

enum connect_phase { PHASE_CONNECT, PHASE_HANDSHAKE, PHASE_FAILED };

struct tls_connect {
	unsigned magic;
	struct ev_loop *loop;
	ev_io io;               /* fd readiness in the direction the phase needs */
	ev_timer deadline;      /* connect + handshake timeout */
	ev_timer defer;         /* reports a failure found inside tls_connect_start() */
	int fd;
	enum connect_phase phase;
	enum tls_status fail_status;
	unsigned timeout_ms;
	struct tls_ctx *ctx;    /* one reference held until the end */
	struct tls_conn *conn;  /* made once the TCP connection is up */
	char *sni;
	tls_connect_cb cb;
	void *udata;
	char err[TLS_ERR_TEXT];
};

/* Stops every watcher and frees what is still owned: the connection and the
 * fd unless they were handed to the callback (then they are NULL / -1). */
static void connect_free(struct tls_connect *op)
{
	ev_io_stop(op->loop, &op->io);
	ev_timer_stop(op->loop, &op->deadline);
	ev_timer_stop(op->loop, &op->defer);
	tls_conn_free(&op->conn);
	if (op->fd != -1)
		close(op->fd);
	tls_ctx_free(&op->ctx);
	free(op->sni);
	op->magic = 0;
	free(op);
}

/* Ends the operation with success: the callback takes over conn and fd. */
static void connect_succeed(struct tls_connect *op)
{
	struct tls_conn *conn = op->conn;
	int fd = op->fd;
	int64_t not_after = tls_conn_peer_not_after(conn);

	op->conn = NULL;
	op->fd = -1;
	ev_io_stop(op->loop, &op->io);
	ev_timer_stop(op->loop, &op->deadline);
	op->cb(op->udata, TLS_OK, conn, fd, not_after, "");
	connect_free(op);
}

/* Ends the operation with status st and the text in op->err; the socket
 * is closed before the callback runs so a caller may retry at once. */
static void connect_fail(struct tls_connect *op, enum tls_status st)
{
	int64_t not_after = op->conn ? tls_conn_peer_not_after(op->conn) : -1;

	ev_io_stop(op->loop, &op->io);
	ev_timer_stop(op->loop, &op->deadline);
	tls_conn_free(&op->conn);
	if (op->fd != -1) {
		close(op->fd);
		op->fd = -1;
	}
	op->cb(op->udata, st, NULL, -1, not_after, op->err);
	connect_free(op);
}

/* Waits for fd readiness in the direction st asks for. */
static void connect_wait(struct tls_connect *op, enum tls_status st)
{
	ev_io_stop(op->loop, &op->io);
	ev_io_set(&op->io, op->fd, st == TLS_WANT_READ ? EV_READ : EV_WRITE);
	ev_io_start(op->loop, &op->io);
}

/* One handshake step: finish, fail or wait again. */
static void connect_handshake_step(struct tls_connect *op)
{
	enum tls_status st = tls_conn_handshake(op->conn);

	switch (st) {
	case TLS_OK:
		connect_succeed(op);
		return;
	case TLS_WANT_READ:
	case TLS_WANT_WRITE:
		connect_wait(op, st);
		return;
	default:
		tls_fmt(op->err, sizeof(op->err), "%s", tls_conn_error(op->conn));
		connect_fail(op, st);
		return;
	}
}

/* The TCP connect finished (writable): check its result, start TLS. */
static void connect_tcp_done(struct tls_connect *op)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	char err[TLS_ERR_TEXT];

	if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
		soerr = errno;
	if (soerr != 0) {
		tls_fmt(op->err, sizeof(op->err), "connect: %s", strerror(soerr));
		connect_fail(op, TLS_ERR_IO);
		return;
	}
	op->conn = tls_conn_new(op->ctx, op->fd, op->sni, err, sizeof(err));
	if (op->conn == NULL) {
		tls_fmt(op->err, sizeof(op->err), "%s", err);
		connect_fail(op, TLS_ERR_HANDSHAKE);
		return;
	}
	op->phase = PHASE_HANDSHAKE;
	connect_handshake_step(op);
}

/* libev: the fd is ready in the direction the current phase waits for. */
static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct tls_connect *op = w->data;

	if (op == NULL || op->magic != TLS_CONNECT_MAGIC)
		abort();
	if (op->phase == PHASE_CONNECT)
		connect_tcp_done(op);
	else
		connect_handshake_step(op);
}

/* libev: connect + handshake took longer than timeout_ms. */
static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tls_connect *op = w->data;

	if (op == NULL || op->magic != TLS_CONNECT_MAGIC)
		abort();
	tls_fmt(op->err, sizeof(op->err), "timeout after %u ms in %s", op->timeout_ms,
	        op->phase == PHASE_CONNECT ? "connect" : "handshake");
	connect_fail(op, TLS_ERR_TIMEOUT);
}

/* libev: reports a failure found inside tls_connect_start() (next loop turn). */
static void on_defer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tls_connect *op = w->data;

	if (op == NULL || op->magic != TLS_CONNECT_MAGIC)
		abort();
	connect_fail(op, op->fail_status);
}

/* Starts connect + handshake; see tls.h for the callback's contract.
 * Returns NULL with err filled only when nothing was started. */
struct tls_connect *tls_connect_start(struct ev_loop *loop, struct tls_ctx *ctx,
                                      const struct sockaddr *addr, socklen_t addrlen,
                                      const char *sni, unsigned timeout_ms,
                                      tls_connect_cb cb, void *udata, char *err, size_t errlen)
{
	struct tls_connect *op;
	int one = 1;

	if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) {
		tls_fmt(err, errlen, "unsupported address family %d", addr->sa_family);
		return NULL;
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL) {
		tls_fmt(err, errlen, "out of memory");
		return NULL;
	}
	op->magic = TLS_CONNECT_MAGIC;
	op->loop = loop;
	op->cb = cb;
	op->udata = udata;
	op->timeout_ms = timeout_ms;
	op->phase = PHASE_CONNECT;
	if (sni != NULL && (op->sni = strdup(sni)) == NULL) {
		tls_fmt(err, errlen, "out of memory");
		goto out_free_op;
	}
	op->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (op->fd == -1) {
		tls_fmt(err, errlen, "socket: %s", strerror(errno));
		goto out_free_sni;
	}
	/* Small request/response exchanges: do not wait for Nagle. */
	if (setsockopt(op->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1) {
		tls_fmt(err, errlen, "setsockopt(TCP_NODELAY): %s", strerror(errno));
		goto out_close_fd;
	}
	op->ctx = tls_ctx_ref(ctx);

	ev_io_init(&op->io, on_io, op->fd, EV_WRITE);
	op->io.data = op;
	ev_timer_init(&op->deadline, on_deadline, timeout_ms / 1000.0, 0.);
	op->deadline.data = op;
	ev_timer_init(&op->defer, on_defer, 0., 0.);
	op->defer.data = op;

	if (connect(op->fd, addr, addrlen) == -1 && errno != EINPROGRESS) {
		tls_fmt(op->err, sizeof(op->err), "connect: %s", strerror(errno));
		op->phase = PHASE_FAILED;
		op->fail_status = TLS_ERR_IO;
		ev_timer_start(loop, &op->defer);
		return op;
	}
	/* Connected or in progress: either way, writability says it is done. */
	ev_io_start(loop, &op->io);
	if (timeout_ms > 0)
		ev_timer_start(loop, &op->deadline);
	return op;

out_close_fd:
	close(op->fd);
out_free_sni:
	free(op->sni);
out_free_op:
	free(op);
	return NULL;
}

/* Abandons a pending operation without calling back. */
void tls_connect_cancel(struct tls_connect **pop)
{
	struct tls_connect *op = pop ? *pop : NULL;

	if (op == NULL)
		return;
	*pop = NULL;
	if (op->magic != TLS_CONNECT_MAGIC)
		abort();
	connect_free(op);
}
