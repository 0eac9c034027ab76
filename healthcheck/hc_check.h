/*
 * hc_check.h — the pure parts of a health check, shared by healthcheckd and
 * its unit tests (in build/libhc.a): the verdict state machine (rise, fall,
 * flap damping) and the HTTP request/status-line code. No I/O here.
 */
#ifndef SEEDGATE_HC_CHECK_H
#define SEEDGATE_HC_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------- state machine */

/* Flap damping (documented in healthcheck/README.md): every debounced state
 * change within damp_window_ms of the previous change counts as a flap; the
 * first change (after the first verdict, or after a window without changes)
 * is not one and starts the count at 0. When a change to "up" is the
 * damp_flaps-th flap or later, the target is held down for damp_hold_ms,
 * doubling with every further hold (capped at damp_max_ms); a window
 * without changes resets the doubling. damp_flaps == 0 disables damping.
 * Times are monotonic milliseconds (a wall clock step must not start or
 * end a hold). */
struct hc_sm_params {
	unsigned rise, fall;             /* consecutive results to go up / down (>= 1) */
	unsigned damp_flaps;
	unsigned damp_window_ms, damp_hold_ms, damp_max_ms;
};

struct hc_sm {
	bool known;              /* at least one result seen */
	bool up;                 /* debounced verdict */
	bool changed;            /* a debounced change happened (flaps counted from it) */
	unsigned ok_run, fail_run;
	unsigned flaps, holds;
	int64_t last_flip_ms;    /* time of the last debounced change */
	int64_t held_until_ms;   /* held down (damped) until then */
};

enum hc_sm_change { HC_SM_SAME, HC_SM_WENT_UP, HC_SM_WENT_DOWN };

void hc_sm_init(struct hc_sm *sm);
/* Feeds one check result at now_ms. The first result sets the verdict at
 * once; later ones need rise successes / fall failures in a row. Returns the
 * debounced change (a change to up may still be held down by damping: see
 * hc_sm_held()). */
enum hc_sm_change hc_sm_result(struct hc_sm *sm, const struct hc_sm_params *p, bool ok,
                               int64_t now_ms);
/* True while damping holds the target down at now_ms. */
bool hc_sm_held(const struct hc_sm *sm, int64_t now_ms);
/* What the outside world sees: up and not held. */
bool hc_sm_effective_up(const struct hc_sm *sm, int64_t now_ms);
/* True while the last results disagree with the verdict (a change is under
 * way): the checker then uses its faster interval. */
bool hc_sm_changing(const struct hc_sm *sm);

/* ---------------------------------------------------------------- HTTP */

#define HC_HTTP_STATUS_MAX_LINE 512   /* a status line longer than this is invalid */

/* Builds "METHOD PATH HTTP/1.1" with Host and User-Agent (no Connection:
 * close: the check resets the connection once it has the status line).
 * Returns the length (without NUL) or -1 if it does not fit in room or a
 * field holds CR/LF/space where it must not. */
int hc_http_request(char *buf, size_t room, const char *method, const char *path,
                    const char *host);

/* A target's check request and how much of it was written: a seed reload
 * may replace the request of a target whose check is half-way through
 * writing it, so the write offset lives with the request and is reset
 * whenever the request is. */
#define HC_HTTP_REQ_MAX 640
struct hc_http_req {
	char buf[HC_HTTP_REQ_MAX];
	size_t len, woff;
};
/* Builds the request (as hc_http_request) and resets the write offset;
 * on -1 r is left as it was. */
int hc_http_req_set(struct hc_http_req *r, const char *method, const char *path, const char *host);
/* What is left to write (*n bytes; 0 when done, never past the end). */
const char *hc_http_req_rest(const struct hc_http_req *r, size_t *n);
/* n more bytes were written; true once the whole request is. */
bool hc_http_req_wrote(struct hc_http_req *r, size_t n);
/* A new connection: write from the start again. */
void hc_http_req_rewind(struct hc_http_req *r);

/* Parses the status line at the start of buf (len bytes received so far).
 * Returns 1 with *status set once "HTTP/x.y NNN" and the byte after it
 * arrived, 0 when more bytes are needed, -1 when it is not HTTP. */
int hc_http_status(const char *buf, size_t len, unsigned *status);

#endif /* SEEDGATE_HC_CHECK_H */
