/*
 * sd_http.h — HTTP POSTs on a libev loop, for the etcd v3 JSON gateway.
 *
 * libcurl's multi interface, driven by the daemon's own loop: curl tells us
 * which sockets to watch and when its next timeout is (ev_io / ev_timer),
 * we call curl_multi_socket_action() when they fire. Nothing here blocks
 * and no thread is started, so a watch stream costs one socket and no
 * thread. Name resolution of an endpoint host uses curl's resolver (the
 * threaded one on Debian), never the loop's thread.
 *
 * A request is either buffered (the whole body handed to `done`) or
 * streamed (every chunk handed to `data` as it arrives, then `done`).
 */
#ifndef SEEDGATE_SD_HTTP_H
#define SEEDGATE_SD_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct ev_loop;
struct sd_http;
struct sd_http_req;

/* A chunk of a streamed answer (status already known to be 200). Return 0
 * to go on, -1 to abort the transfer (done then reports an error). Runs
 * inside curl: it must not start or cancel requests. */
typedef int (*sd_http_data_fn)(void *udata, const char *buf, size_t len);
/* End of a request: status is the HTTP status (0 when no answer came), err
 * a message when the transfer failed (connection refused, timeout, aborted
 * by `data`), else NULL. body/len: the buffered answer (empty when
 * streamed). The request is freed after this returns. */
typedef void (*sd_http_done_fn)(void *udata, long status, const char *err, const char *body, size_t len);

struct sd_http *sd_http_new(struct ev_loop *loop, char *err, size_t errlen);
/* Cancels every request (no callback), frees, sets *h = NULL. */
void sd_http_free(struct sd_http **h);

struct sd_http_opts {
	double connect_timeout;     /* seconds */
	double timeout;             /* whole transfer; 0 = none (watch streams) */
	bool require_leader;        /* etcd: refuse (cancel) when the member has no leader */
	sd_http_data_fn data;       /* NULL: buffered */
};

/* POSTs the JSON body to url. NULL + err when the request cannot be made
 * (out of memory); otherwise done is called exactly once, later, from the
 * loop, unless the request is cancelled first. */
struct sd_http_req *sd_http_post(struct sd_http *h, const char *url, const char *body,
                                 const struct sd_http_opts *o, sd_http_done_fn done, void *udata,
                                 char *err, size_t errlen);
/* Stops a request; its done is not called. Never from a `data` callback. */
void sd_http_cancel(struct sd_http_req **r);

#endif /* SEEDGATE_SD_HTTP_H */
