/*
 * tls/tls_common.c — back-end independent parts: the lifecycle of the
 * shared tls_ctx / tls_conn structs and their accessors, status names,
 * error formatting, IP literal detection, UTC time conversion.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tls_int.h"

/* Returns a short, constant, log-friendly name for st. */
const char *tls_status_str(enum tls_status st)
{
	switch (st) {
	case TLS_OK:                    return "ok";
	case TLS_WANT_READ:             return "want-read";
	case TLS_WANT_WRITE:            return "want-write";
	case TLS_ERR_VERIFY_EXPIRED:    return "cert-expired";
	case TLS_ERR_VERIFY_NAME:       return "name-mismatch";
	case TLS_ERR_VERIFY_UNKNOWN_CA: return "unknown-ca";
	case TLS_ERR_VERIFY_OTHER:      return "verify-failed";
	case TLS_ERR_HANDSHAKE:         return "handshake-failed";
	case TLS_ERR_IO:                return "io-error";
	case TLS_ERR_CLOSED:            return "closed";
	case TLS_ERR_TIMEOUT:           return "timeout";
	}
	return "unknown";
}

/* Formats into a caller-owned buffer; tolerates err == NULL or errlen == 0
 * so that callers may pass "no error wanted". */
void tls_fmt(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Accepts any string; true only for a complete IPv4 or IPv6 literal. */
bool tls_is_ip_literal(const char *name)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* Converts a UTC struct tm without touching the process time zone
 * (timegm is a GNU/BSD extension, available with _GNU_SOURCE). */
int64_t tls_tm_to_unix(const struct tm *tm)
{
	struct tm copy = *tm;
	time_t t = timegm(&copy);

	return t == (time_t)-1 ? -1 : (int64_t)t;
}

/* Allocates a context with one reference; the back end sets lib. */
struct tls_ctx *tls_ctx_alloc(bool verify, char *err, size_t errlen)
{
	struct tls_ctx *ctx = calloc(1, sizeof(*ctx));

	if (ctx == NULL) {
		tls_fmt(err, errlen, "out of memory");
		return NULL;
	}
	ctx->magic = TLS_CTX_MAGIC;
	atomic_init(&ctx->refs, 1);
	ctx->verify = verify;
	return ctx;
}

/* Adds a reference; a context is immutable once made, so sharing is safe. */
struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx)
{
	atomic_fetch_add(&ctx->refs, 1);
	return ctx;
}

/* Drops the caller's reference, frees on the last one, clears *pctx. */
void tls_ctx_free(struct tls_ctx **pctx)
{
	struct tls_ctx *ctx = pctx ? *pctx : NULL;

	if (ctx == NULL)
		return;
	*pctx = NULL;
	if (atomic_fetch_sub(&ctx->refs, 1) != 1)
		return;
	tls_lib_ctx_free(ctx->lib);
	ctx->magic = 0;
	free(ctx);
}

/* Allocates a connection on fd holding a reference on ctx; lib is set by
 * the back end. */
struct tls_conn *tls_conn_alloc(struct tls_ctx *ctx, int fd, char *err, size_t errlen)
{
	struct tls_conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		tls_fmt(err, errlen, "out of memory");
		return NULL;
	}
	c->magic = TLS_CONN_MAGIC;
	c->ctx = tls_ctx_ref(ctx);
	c->fd = fd;
	c->not_after = -1;
	return c;
}

/* Frees the library object and drops the context reference; the fd stays
 * open (it is the caller's). */
void tls_conn_free(struct tls_conn **pc)
{
	struct tls_conn *c = pc ? *pc : NULL;

	if (c == NULL)
		return;
	*pc = NULL;
	tls_lib_conn_free(c->lib);
	tls_ctx_free(&c->ctx);
	c->magic = 0;
	free(c);
}

/* Leaf notAfter (unix seconds) recorded during the handshake, -1 unknown. */
int64_t tls_conn_peer_not_after(const struct tls_conn *c)
{
	return c->not_after;
}

/* The caller's fd, as given to tls_conn_new(). */
int tls_conn_fd(const struct tls_conn *c)
{
	return c->fd;
}

/* Text of the last failure on c, "" when none; owned by c. */
const char *tls_conn_error(const struct tls_conn *c)
{
	return c->err;
}
