/*
 * route_log.h — route-agent's logger: one line per notable event, to stderr
 * with a timestamp, or to syslog (--syslog).
 *
 * Daemon code only (libraries never log: they hand lines to a callback).
 * Safe from any thread: each line goes out in one write(2).
 */
#ifndef ROUTE_LOG_H
#define ROUTE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

/* Chooses the destination. `ident` is the program name shown in lines. */
void route_log_open(bool use_syslog, const char *ident);
void route_log_close(void);

/* Logs one line at a syslog priority (LOG_ERR, LOG_WARNING, LOG_NOTICE,
 * LOG_INFO). The message should not end with a newline. */
void route_log(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copies the NUL-terminated `in` to out (at most outlen bytes with the NUL)
 * with every control byte (< 0x20, 0x7f) written as \xNN and a backslash
 * as is (hc_escape_log), so text from files and peers cannot forge or
 * garble a log line.
 * Cut at a whole character or escape. Returns the length written. Every
 * line route_log() writes goes through it. */
size_t route_log_escape(const char *in, char *out, size_t outlen);

/* Adapter with the signature the SPOP runtime and other libraries expect
 * for their log callbacks; udata is unused. */
void route_log_cb(void *udata, int priority, const char *msg);

#endif /* ROUTE_LOG_H */
