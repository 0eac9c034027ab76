/*
 * route_stats.h — a tiny HTTP/1.0 server on the main loop that answers
 * GET /metrics with Prometheus text (version 0.0.4).
 *
 * One request per connection, answered then closed; at most
 * STATS_MAX_CLIENTS at once, each with a 5 s deadline. The body comes from a
 * render callback that appends to a growable text buffer.
 */
#ifndef ROUTE_STATS_H
#define ROUTE_STATS_H

#include <stddef.h>

struct ev_loop;
struct route_stats_server;

/* A growable text buffer the render callback appends to. */
struct route_text {
	char *p;
	size_t len, cap;
	int failed;        /* an allocation failed: the text is incomplete */
};
void route_text_printf(struct route_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef void (*route_stats_render_fn)(void *udata, struct route_text *out);

/* Binds "host:port" (IPv4 literal, "*"/"" for any, or [v6]) and starts
 * serving. NULL + err on failure. */
struct route_stats_server *route_stats_server_new(struct ev_loop *loop, const char *addr,
                                                  route_stats_render_fn render, void *udata,
                                                  char *err, size_t errlen);
/* The bound port (useful with ":0"). */
unsigned route_stats_server_port(const struct route_stats_server *s);
void route_stats_server_free(struct route_stats_server **s);

#endif /* ROUTE_STATS_H */
