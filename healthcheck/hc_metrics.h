/*
 * hc_metrics.h — the /metrics endpoint both daemons serve (route-agent and
 * healthcheckd --stats): a tiny HTTP/1.0 server on the caller's libev loop
 * that answers GET (or HEAD) /metrics with Prometheus text (version 0.0.4).
 *
 * One request per connection, answered with one write and closed; at most
 * HC_METRICS_MAX_CLIENTS at once (more are closed on accept, so a scraper
 * storm cannot eat the daemon's descriptors), each with a 5 s deadline.
 * Other paths get 404, other methods 405. The body comes from the owner's
 * render callback, which appends to a growable text buffer: the server
 * knows nothing of what a daemon counts.
 */
#ifndef SEEDGATE_HC_METRICS_H
#define SEEDGATE_HC_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#define HC_METRICS_MAX_CLIENTS 32

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
/* The bound port (useful with port 0). */
unsigned hc_metrics_server_port(const struct hc_metrics_server *s);
/* Closes every client and the listener, frees, sets *s = NULL. */
void hc_metrics_server_free(struct hc_metrics_server **s);

#endif /* SEEDGATE_HC_METRICS_H */
