/*
 * tls/tls.h — seedgate's small TLS client library.
 *
 * What healthcheckd needs for HTTPS checks and nothing more: a client
 * context (CA file, verification on or off), one non-blocking connection
 * per check, SNI, verification with a reason a human can act on, read and
 * write, the peer certificate's expiry time, and errors as text.
 *
 * Two back ends share this header and are chosen at link time:
 * build/libsgtls-openssl.a (OpenSSL 3, default) and build/libsgtls-wolfssl.a
 * (wolfSSL 5.5, native API). `make TLS=wolfssl` links the daemons with the
 * latter. The library never logs and never exits: functions return a
 * status and fill either a caller-owned error buffer or the connection's own
 * error text (tls_conn_error()).
 *
 * Signals: the back ends write to the socket with write(2), so a peer that
 * hangs up raises SIGPIPE; programs using this library ignore SIGPIPE.
 *
 * Threads: a tls_ctx may be shared by several threads (it is refcounted and
 * read-only after creation); a tls_conn belongs to one thread at a time.
 */
#ifndef SEEDGATE_TLS_H
#define SEEDGATE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>

struct ev_loop;

struct tls_ctx;   /* client context: CA file, verification; refcounted */
struct tls_conn;  /* one non-blocking client connection */

enum tls_status {
	TLS_OK = 0,
	TLS_WANT_READ,             /* wait until the fd is readable, call again */
	TLS_WANT_WRITE,            /* wait until the fd is writable, call again */
	TLS_ERR_VERIFY_EXPIRED,    /* peer certificate (or one in its chain) expired or not yet valid */
	TLS_ERR_VERIFY_NAME,       /* certificate does not match the expected name / IP */
	TLS_ERR_VERIFY_UNKNOWN_CA, /* chain does not lead to a CA of the CA file */
	TLS_ERR_VERIFY_OTHER,      /* any other verification failure */
	TLS_ERR_HANDSHAKE,         /* protocol failure: alert, no shared cipher/version... */
	TLS_ERR_IO,                /* socket error (errno text in tls_conn_error()) */
	TLS_ERR_CLOSED,            /* the peer closed the connection */
	TLS_ERR_TIMEOUT,           /* addition: tls_connect_start()'s deadline passed */
};

/* "openssl" or "wolfssl": which back end this library was built with. */
const char *tls_backend_name(void);

/* Library version string of the back end, e.g. "OpenSSL 3.0.22 ..." or
 * "wolfSSL 5.5.4" (for logs and bench reports). */
const char *tls_backend_version(void);

/* Short constant text for a status: "ok", "want-read", "cert-expired",
 * "name-mismatch", "unknown-ca", "verify-failed", "handshake-failed",
 * "io-error", "closed", "timeout". */
const char *tls_status_str(enum tls_status st);

/* Creates a client context. ca_file: PEM file of trusted CAs, or NULL for
 * the system store. verify=false accepts any certificate (the peer's expiry
 * is still reported). Returns NULL and fills err on failure. TLS 1.2 is the
 * minimum version. The caller owns one reference. */
struct tls_ctx *tls_ctx_new(const char *ca_file, bool verify, char *err, size_t errlen);

/* Takes one more reference on ctx and returns it. */
struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx);

/* Drops the caller's reference (frees on the last one) and sets *ctx = NULL.
 * Connections hold their own reference: a context may be released while
 * connections made from it are still open. NULL / *ctx == NULL is a no-op. */
void tls_ctx_free(struct tls_ctx **ctx);

/* Wraps a connected (or connecting) non-blocking socket fd. sni: the name
 * sent in SNI AND verified against the certificate's SANs; an IP literal is
 * verified against IP SANs and not sent as SNI; NULL sends no SNI and checks
 * only the chain. The fd stays owned by the caller: tls_conn_free() does not
 * close it. Returns NULL and fills err on failure. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, const char *sni, char *err, size_t errlen);

/* Advances the handshake. Call when the fd is ready in the direction of the
 * last WANT_* status, until it returns something else: TLS_OK, or an error
 * whose text is in tls_conn_error(). */
enum tls_status tls_conn_handshake(struct tls_conn *c);

/* Reads up to len bytes of application data. Returns > 0 bytes read (*st =
 * TLS_OK); 0 when the peer closed (*st = TLS_ERR_CLOSED); -1 with *st set to
 * TLS_WANT_READ / TLS_WANT_WRITE (retry on readiness) or an error. */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len, enum tls_status *st);

/* Writes up to len bytes. Returns bytes written (> 0) or -1 with *st as for
 * tls_conn_read(). After a WANT_*, retry with the same buffer and length. */
ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len, enum tls_status *st);

/* Sends close_notify, best effort, never blocks. Returns 0 sent, -1 not. */
int tls_conn_shutdown(struct tls_conn *c);

/* The peer certificate's notAfter as unix seconds, -1 when unknown (no
 * certificate yet). Valid after a successful handshake, and also after a
 * verification failure when the certificate was received. */
int64_t tls_conn_peer_not_after(const struct tls_conn *c);

/* Negotiated protocol ("TLSv1.3") and cipher suite, or "" before the
 * handshake completes. Owned by the connection. */
const char *tls_conn_version(const struct tls_conn *c);
const char *tls_conn_cipher(const struct tls_conn *c);

/* The fd passed to tls_conn_new(). */
int tls_conn_fd(const struct tls_conn *c);

/* Text of the last error on this connection ("" if none). Owned by the
 * connection, valid until the next call on it. */
const char *tls_conn_error(const struct tls_conn *c);

/* Frees the connection (no close_notify, fd left open) and sets *c = NULL. */
void tls_conn_free(struct tls_conn **c);

/* ---------------------------------------------------------------------------
 * libev helper: non-blocking connect + handshake driven to completion.
 *
 * tls_connect_start() creates a non-blocking socket, connects it to addr,
 * runs the TLS handshake on `loop`, and calls cb exactly once (never from
 * inside tls_connect_start()) with:
 *   st == TLS_OK: conn is a ready connection, fd its socket; the callback
 *                 owns both (tls_conn_free() then close(fd)).
 *   otherwise:    conn == NULL, fd == -1 (closed already), err describes the
 *                 failure ("connect: Connection refused", "certificate has
 *                 expired", "timeout after 2000 ms in handshake").
 *                 not_after is the peer certificate's expiry when one was
 *                 received (e.g. a verification failure), else -1.
 * timeout_ms bounds connect + handshake together (0 = no deadline).
 * Returns a handle usable with tls_connect_cancel() until cb runs (the
 * helper frees itself after calling cb), or NULL with err filled when it
 * could not start (bad address family, socket() failure...).
 */
struct tls_connect;
typedef void (*tls_connect_cb)(void *udata, enum tls_status st, struct tls_conn *conn, int fd,
                               int64_t not_after, const char *err);

struct tls_connect *tls_connect_start(struct ev_loop *loop, struct tls_ctx *ctx,
                                      const struct sockaddr *addr, socklen_t addrlen,
                                      const char *sni, unsigned timeout_ms,
                                      tls_connect_cb cb, void *udata, char *err, size_t errlen);

/* Stops a pending connect: no callback, socket closed, *op = NULL.
 * NULL / *op == NULL is a no-op. Must not be called after cb ran. */
void tls_connect_cancel(struct tls_connect **op);

#endif /* SEEDGATE_TLS_H */
