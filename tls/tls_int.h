/*
 * tls/tls_int.h — what the two back ends (tls_openssl.c, tls_wolfssl.c)
 * share with the back-end independent code (tls_common.c, tls_connect.c).
 * Not installed, not seen by consumers.
 */
#ifndef SEEDGATE_TLS_INT_H
#define SEEDGATE_TLS_INT_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "tls.h"

/* Magic numbers checked on every pointer that came back through a void *
 * (libev w->data, the TLS library's app data). */
#define TLS_CTX_MAGIC     0x544c5343u /* "TLSC" */
#define TLS_CONN_MAGIC    0x544c534eu /* "TLSN" */
#define TLS_CONNECT_MAGIC 0x544c5350u /* "TLSP" */

#define TLS_ERR_TEXT 256

/* The two public types, shared by both back ends: what differs between
 * them is only the library object behind `lib`. */
struct tls_ctx {
	unsigned magic;
	atomic_uint refs;
	bool verify;
	void *lib;               /* SSL_CTX * or WOLFSSL_CTX * */
};

struct tls_conn {
	unsigned magic;
	struct tls_ctx *ctx;     /* one reference held */
	void *lib;               /* SSL * or WOLFSSL * */
	int fd;                  /* the caller's, never closed here */
	int64_t not_after;       /* leaf notAfter seen by the verify callback, -1 unknown */
	int verify_error;        /* back end's first verification error, 0 none */
	char err[TLS_ERR_TEXT];
};

/* Allocate the shared part (one reference, lib NULL); NULL + err when out
 * of memory. Back ends fill lib and, on failure, release with
 * tls_ctx_free() / tls_conn_free(), which accept lib == NULL. */
struct tls_ctx *tls_ctx_alloc(bool verify, char *err, size_t errlen);
struct tls_conn *tls_conn_alloc(struct tls_ctx *ctx, int fd, char *err, size_t errlen);

/* Back-end hooks: free the library object (NULL is a no-op). */
void tls_lib_ctx_free(void *lib);
void tls_lib_conn_free(void *lib);

/* snprintf into err (if non-NULL and errlen > 0); never overflows. */
void tls_fmt(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* True when name is an IPv4 or IPv6 literal (then it is checked against IP
 * SANs and not sent as SNI, RFC 6066 section 3). */
bool tls_is_ip_literal(const char *name);

/* Unix seconds for a broken-down UTC time, -1 when out of range. */
int64_t tls_tm_to_unix(const struct tm *tm);

#endif /* SEEDGATE_TLS_INT_H */
