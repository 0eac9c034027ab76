/*
 * tls/tls_int.h — what the two back ends (tls_openssl.c, tls_wolfssl.c)
 * share with the back-end independent code (tls_common.c, tls_connect.c).
 * Not installed, not seen by consumers.
 */
#ifndef SEEDGATE_TLS_INT_H
#define SEEDGATE_TLS_INT_H

#include <stdarg.h>
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

/* snprintf into err (if non-NULL and errlen > 0); never overflows. */
void tls_fmt(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* True when name is an IPv4 or IPv6 literal (then it is checked against IP
 * SANs and not sent as SNI, RFC 6066 section 3). */
bool tls_is_ip_literal(const char *name);

/* Unix seconds for a broken-down UTC time, -1 when out of range. */
int64_t tls_tm_to_unix(const struct tm *tm);

#endif /* SEEDGATE_TLS_INT_H */
