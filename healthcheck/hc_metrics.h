/*
 * hc_metrics.h — the /metrics endpoint both daemons serve (route-agent and
 * healthcheckd --stats): a tiny HTTP/1.0 server on the caller's libev loop
 * that answers GET (or HEAD) /metrics with Prometheus text (version 0.0.4).
 *
 * One request per connection, answered with one write and closed, each
 * with a 5 s deadline to ask and read. At most hc_metrics_client_cap()
 * connections at once (1/16 of the open-files limit, between 4 and
 * HC_METRICS_MAX_CLIENTS), so that a scraper storm cannot eat the daemon's
 * descriptors; when a new connection finds the server full, the oldest one
 * that has not finished asking is closed to make room (idle connections
 * cannot lock scrapers out). accept() at the descriptor limit neither spins
 * nor floods the log (hc_acceptor, hc_limits.h).
 * Other paths get 404, other methods 405. The body comes from the owner's
 * render callback, which appends to a growable text buffer: the server
 * knows nothing of what a daemon counts.
 */
#ifndef SEEDGATE_HC_METRICS_H
#define SEEDGATE_HC_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "hc_limits.h"

#define HC_METRICS_MAX_CLIENTS 256
#define HC_METRICS_MIN_CLIENTS 4

struct ev_loop;
struct hc_metrics_server;

/* A growable text buffer. Zero-initialise it; release with hc_text_free(). */
struct hc_text {
	char *p;
	size_t len, cap;
	bool failed;       /* an allocation failed: the text is incomplete */
};

/* Appends formatted text. On allocation failure the buffer keeps what it
 * had and `failed` is set (later calls do nothing), so that a renderer can
 * print freely and the server answers 500 rather than half a text. */
void hc_text_printf(struct hc_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees the memory and empties the buffer (it can be used again). */
void hc_text_free(struct hc_text *t);

/* Appends the whole metrics text to out; called on the loop's thread. */
typedef void (*hc_metrics_render_fn)(void *udata, struct hc_text *out);

/* Binds addr and starts serving on loop. addr is "host:port", "[v6]:port",
 * "*:port" or ":port" (any address); host may be a name, resolved once here.
 * Returns NULL with err ("stats address ADDR: why") on failure. */
struct hc_metrics_server *hc_metrics_server_new(struct ev_loop *loop, const char *addr,
                                                hc_metrics_render_fn render, void *udata,
                                                char *err, size_t errlen);
/* Where the server logs accept() trouble at the descriptor limit (once
 * per period, with a count); stderr (hc_log_stderr) until set. */
void hc_metrics_server_set_log(struct hc_metrics_server *s, hc_log_fn log);
/* The connection cap for an open-files limit of nofile (see above). */
unsigned hc_metrics_client_cap(unsigned long nofile);
/* Connections closed to make room for newer ones. */
unsigned long long hc_metrics_server_evictions(const struct hc_metrics_server *s);
/* The bound port (useful with port 0). */
unsigned hc_metrics_server_port(const struct hc_metrics_server *s);
/* Closes every client and the listener, frees, sets *s = NULL. */
void hc_metrics_server_free(struct hc_metrics_server **s);

#endif /* SEEDGATE_HC_METRICS_H */
