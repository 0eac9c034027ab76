/*
 * sd_http.c — libcurl multi on libev (see sd_http.h).
 *
 * The glue is curl's documented "multi_socket" pattern: CURLMOPT_SOCKETFUNCTION
 * says which fd to watch for what (one ev_io per fd, kept in curl's socket
 * pointer), CURLMOPT_TIMERFUNCTION asks for one timer; both events call
 * curl_multi_socket_action(), after which finished transfers are collected
 * with curl_multi_info_read() and reported OUTSIDE curl's callbacks, so a
 * done callback may start the next request right away.
 */
#include "sd_http.h"

#include <curl/curl.h>
#include <ev.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SD_HTTP_BODY_MAX (1u << 30)     /* a range page never comes close */

struct sd_http {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timer;
	struct sd_http_req *reqs;       /* every request in flight, for free */
};

struct sd_http_req {
	struct sd_http *h;
	struct sd_http_req *next, **pprev;
	CURL *easy;
	struct curl_slist *headers;
	char *body_out;                 /* what we POST (curl does not copy it) */
	char *buf;                      /* buffered answer */
	size_t len, cap;
	bool too_big;
	sd_http_data_fn data;
	sd_http_done_fn done;
	void *udata;
	char errbuf[CURL_ERROR_SIZE];
};

/* One watched socket. */
struct sd_http_sock {
	ev_io io;
	struct sd_http *h;
};

static void check_done(struct sd_http *h);

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Both loop events end here: let curl progress, then collect results. */
static void socket_action(struct sd_http *h, curl_socket_t fd, int ev_bitmask)
{
	int running;

	curl_multi_socket_action(h->multi, fd, ev_bitmask, &running);
	check_done(h);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sd_http_sock *s = (struct sd_http_sock *)w;
	int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);

	(void)loop;
	socket_action(s->h, w->fd, action);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	socket_action(w->data, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching one fd. */
static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct sd_http *h = userp;
	struct sd_http_sock *s = socketp;
	int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			ev_io_stop(h->loop, &s->io);
			curl_multi_assign(h->multi, fd, NULL);
			free(s);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;      /* curl fails the transfer: reported as an error */
		s->h = h;
		ev_io_init(&s->io, io_cb, fd, events);
		curl_multi_assign(h->multi, fd, s);
	} else {
		ev_io_stop(h->loop, &s->io);
		ev_io_set(&s->io, fd, events);
	}
	ev_io_start(h->loop, &s->io);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 stops the timer, 0 means "as soon as possible"
 * (the next loop iteration: never call back into curl from here). */
static int multi_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct sd_http *h = userp;

	(void)multi;
	ev_timer_stop(h->loop, &h->timer);
	if (timeout_ms >= 0) {
		ev_timer_set(&h->timer, (double)timeout_ms / 1000.0, 0.0);
		ev_timer_start(h->loop, &h->timer);
	}
	return 0;
}

static void req_free(struct sd_http_req *r)
{
	if (r->easy) {
		curl_multi_remove_handle(r->h->multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	*r->pprev = r->next;
	if (r->next)
		r->next->pprev = r->pprev;
	curl_slist_free_all(r->headers);
	free(r->body_out);
	free(r->buf);
	free(r);
}

/* Collects finished transfers; each is unlinked before its callback runs,
 * so the callback may cancel or start any other request. */
static void check_done(struct sd_http *h)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(h->multi, &left))) {
		struct sd_http_req *r = NULL;
		CURLcode rc = msg->data.result;
		long status = 0;
		char err[CURL_ERROR_SIZE + 64];

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
		if (rc != CURLE_OK)
			snprintf(err, sizeof(err), "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
		else if (r->too_big)
			snprintf(err, sizeof(err), "answer larger than %u bytes", SD_HTTP_BODY_MAX);
		r->done(r->udata, status, rc != CURLE_OK || r->too_big ? err : NULL, r->buf ? r->buf : "", r->len);
		req_free(r);
	}
}

/* CURLOPT_WRITEFUNCTION: buffered answers (and error bodies of streams)
 * are kept, a 200 stream goes to `data`. */
static size_t write_cb(char *p, size_t size, size_t n, void *userp)
{
	struct sd_http_req *r = userp;
	size_t len = size * n;
	long status = 0;

	if (r->data) {
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		if (status == 200)
			return r->data(r->udata, p, len) == 0 ? len : 0;
	}
	if (r->len + len + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		char *nb;

		while (cap < r->len + len + 1)
			cap *= 2;
		if (cap > SD_HTTP_BODY_MAX) {
			r->too_big = true;
			return 0;
		}
		nb = realloc(r->buf, cap);
		if (!nb)
			return 0;       /* curl reports a write error: the request fails */
		r->buf = nb;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, p, len);
	r->len += len;
	r->buf[r->len] = '\0';
	return len;
}

/* See sd_http.h. */
struct sd_http *sd_http_new(struct ev_loop *loop, char *err, size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct sd_http *h;

	pthread_once(&once, curl_init_once);
	h = calloc(1, sizeof(*h));
	if (!h || !(h->multi = curl_multi_init())) {
		free(h);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = loop;
	ev_init(&h->timer, timer_cb);
	h->timer.data = h;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return h;
}

/* See sd_http.h. */
void sd_http_free(struct sd_http **hp)
{
	struct sd_http *h = *hp;

	*hp = NULL;
	if (!h)
		return;
	while (h->reqs)
		req_free(h->reqs);
	ev_timer_stop(h->loop, &h->timer);
	curl_multi_cleanup(h->multi);    /* CURL_POLL_REMOVE for every fd left */
	free(h);
}

/* See sd_http.h. */
struct sd_http_req *sd_http_post(struct sd_http *h, const char *url, const char *body,
                                 const struct sd_http_opts *o, sd_http_done_fn done, void *udata,
                                 char *err, size_t errlen)
{
	struct sd_http_req *r = calloc(1, sizeof(*r));

	if (!r)
		goto oom;
	r->h = h;
	r->data = o->data;
	r->done = done;
	r->udata = udata;
	r->next = h->reqs;
	r->pprev = &h->reqs;
	if (h->reqs)
		h->reqs->pprev = &r->next;
	h->reqs = r;
	r->body_out = strdup(body);
	r->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (r->headers && o->require_leader) {
		/* The gateway passes Grpc-Metadata-* on as gRPC metadata: etcd
		 * then cancels the watch when this member loses its leader,
		 * rather than leaving a partitioned member's stream silent. */
		struct curl_slist *l = curl_slist_append(r->headers, "Grpc-Metadata-hasleader: true");
		if (!l)
			goto oom_free;
		r->headers = l;
	}
	r->easy = curl_easy_init();
	if (!r->body_out || !r->headers || !r->easy)
		goto oom_free;
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body_out);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->connect_timeout * 1000));
	if (o->timeout > 0)
		curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)(o->timeout * 1000));
	/* a dead peer on an idle watch is noticed by TCP keepalive too */
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPIDLE, 10L);
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPINTVL, 5L);
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK)
		goto oom_free;
	return r;

oom_free:
	if (r->easy) {
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
	}
	req_free(r);
oom:
	snprintf(err, errlen, "out of memory");
	return NULL;
}

/* See sd_http.h. */
void sd_http_cancel(struct sd_http_req **rp)
{
	if (*rp)
		req_free(*rp);
	*rp = NULL;
}
