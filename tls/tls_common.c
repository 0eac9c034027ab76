/*
 * tls/tls_common.c — back-end independent helpers: status names, error
 * formatting, IP literal detection, UTC time conversion.
 */
#include <arpa/inet.h>
#include <stdio.h>
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
