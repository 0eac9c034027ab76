/*
 * hc_escape.h — making untrusted bytes safe to print (in libhc, for both
 * daemons). Seed files, target names, socket paths and peers' answers end
 * up in log lines and /metrics label values; raw control bytes there can
 * forge log lines, break a terminal or make a scrape unparsable.
 *
 *   hc_escape_log()    for log lines: printable ASCII as is, every other
 *                      byte (controls, DEL, >= 0x80) as "\xNN". The result
 *                      is one line of printable ASCII. A backslash stays as
 *                      it is, so that escaping is idempotent: a message
 *                      that quotes an already escaped one (a parse error
 *                      in a log line) is not escaped twice.
 *   hc_escape_label()  for a Prometheus label value (inside "..."): "\\",
 *                      "\"" and "\n" as the exposition format requires,
 *                      every other byte as is.
 *
 * Both write a NUL-terminated string into out (room bytes) and return out.
 * An escape sequence is never cut: when the input does not fit, the output
 * stops before the sequence that would overflow. HC_ESCAPE_ROOM(n) is
 * enough room for any n input bytes.
 */
#ifndef SEEDGATE_HC_ESCAPE_H
#define SEEDGATE_HC_ESCAPE_H

#include <stddef.h>

#define HC_ESCAPE_ROOM(n) ((n) * 4 + 1)

char *hc_escape_log(char *out, size_t room, const char *in);
/* The same for len bytes that may hold NULs. */
char *hc_escape_log_n(char *out, size_t room, const char *in, size_t len);
char *hc_escape_label(char *out, size_t room, const char *in);

#endif /* SEEDGATE_HC_ESCAPE_H */
