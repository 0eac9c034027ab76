/*
 * hc_dns.c — asynchronous resolution of hostname targets with c-ares on
 * healthcheckd's libev loop.
 *
 * Each hostname target is resolved at load and again when its record's TTL
 * runs out (clamped to --dns-min-ttl..--dns-max-ttl). A failed resolution
 * keeps the last address, is logged and shown in the target's reason, and
 * is retried after --dns-retry. A new address is pushed like a state change
 * (feed line and HAProxy "set server ... addr").
 */
#include <ares.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hc_daemon.h"

#define DNS_MAGIC     0x48434453u   /* "HCDS" */
#define DNS_MAX_FDS   16

/* One query in flight. Its target may go away before c-ares answers:
 * hcd_dns_forget() then clears t and the answer is dropped. */
struct dns_query {
	struct hcd_dns *dns;
	struct hcd_target *t;
};

struct dns_fd {
	struct hcd_dns *dns;
	int fd;
	ev_io io;
};

struct hcd_dns {
	unsigned magic;
	struct hcd *d;
	ares_channel ch;
	ev_timer tick;                    /* c-ares retransmission timeouts */
	struct dns_fd fds[DNS_MAX_FDS];
	unsigned nfds;
};

static struct hcd_dns *dns_from(void *data)
{
	struct hcd_dns *dns = data;

	if (!dns || dns->magic != DNS_MAGIC)
		abort();
	return dns;
}

/* Re-arms the retransmission timer from ares_timeout(). */
static void dns_update_timer(struct hcd_dns *dns)
{
	struct timeval tv, *tvp;

	ev_timer_stop(dns->d->loop, &dns->tick);
	tvp = ares_timeout(dns->ch, NULL, &tv);
	if (!tvp)
		return;
	ev_timer_set(&dns->tick, (double)tvp->tv_sec + tvp->tv_usec / 1e6 + 0.001, 0.0);
	ev_timer_start(dns->d->loop, &dns->tick);
}

/* A c-ares socket is ready. */
static void dns_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dns_fd *f = w->data;
	struct hcd_dns *dns = dns_from(f->dns);

	ares_process_fd(dns->ch, (revents & EV_READ) ? f->fd : ARES_SOCKET_BAD,
	                (revents & EV_WRITE) ? f->fd : ARES_SOCKET_BAD);
	dns_update_timer(dns);
}

/* c-ares timeouts. */
static void dns_on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hcd_dns *dns = dns_from(w->data);

	ares_process_fd(dns->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_update_timer(dns);
}

/* c-ares tells which of its sockets to watch. */
static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct hcd_dns *dns = dns_from(data);
	unsigned i;

	for (i = 0; i < dns->nfds && dns->fds[i].fd != fd; i++)
		;
	if (i < dns->nfds)
		ev_io_stop(dns->d->loop, &dns->fds[i].io);
	if (!readable && !writable) {
		if (i < dns->nfds) {
			unsigned last = dns->nfds - 1;

			if (i != last) {
				/* an active watcher must not move: stop, copy, restart */
				ev_io_stop(dns->d->loop, &dns->fds[last].io);
				dns->fds[i] = dns->fds[last];
				dns->fds[i].io.data = &dns->fds[i];
				ev_io_start(dns->d->loop, &dns->fds[i].io);
			}
			dns->nfds--;
		}
		return;
	}
	if (i == dns->nfds) {
		if (dns->nfds == DNS_MAX_FDS)
			return;           /* c-ares opens a handful at most */
		dns->nfds++;
	}
	dns->fds[i].dns = dns;
	dns->fds[i].fd = fd;
	ev_io_init(&dns->fds[i].io, dns_on_io, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
	dns->fds[i].io.data = &dns->fds[i];
	ev_io_start(dns->d->loop, &dns->fds[i].io);
}

/* Creates the resolver. */
struct hcd_dns *hcd_dns_new(struct hcd *d, char *err, size_t errlen)
{
	struct hcd_dns *dns = calloc(1, sizeof(*dns));
	struct ares_options ao = { 0 };
	int rc;

	if (!dns) {
		snprintf(err, errlen, "dns: out of memory");
		return NULL;
	}
	rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "dns: %s", ares_strerror(rc));
		goto out_free;
	}
	dns->magic = DNS_MAGIC;
	dns->d = d;
	ao.sock_state_cb = dns_sock_state;
	ao.sock_state_cb_data = dns;
	ao.timeout = 1000;
	ao.tries = 2;
	rc = ares_init_options(&dns->ch, &ao, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "dns: %s", ares_strerror(rc));
		goto out_cleanup;
	}
	/* --dns-servers: a site resolver other than resolv.conf's (and the
	 * tests' own DNS server on a loopback port). */
	if (d->opts.dns_servers) {
		rc = ares_set_servers_ports_csv(dns->ch, d->opts.dns_servers);
		if (rc != ARES_SUCCESS) {
			snprintf(err, errlen, "dns: --dns-servers '%s': %s", d->opts.dns_servers, ares_strerror(rc));
			ares_destroy(dns->ch);
			goto out_cleanup;
		}
	}
	ev_timer_init(&dns->tick, dns_on_tick, 0.0, 0.0);
	dns->tick.data = dns;
	return dns;

out_cleanup:
	ares_library_cleanup();
out_free:
	free(dns);
	return NULL;
}

/* Destroys the resolver; pending queries are dropped. */
void hcd_dns_free(struct hcd_dns **pdns)
{
	struct hcd_dns *dns = pdns ? *pdns : NULL;

	if (!dns)
		return;
	ev_timer_stop(dns->d->loop, &dns->tick);
	ares_destroy(dns->ch);       /* calls pending callbacks with ARES_EDESTRUCTION */
	for (unsigned i = 0; i < dns->nfds; i++)
		ev_io_stop(dns->d->loop, &dns->fds[i].io);
	ares_library_cleanup();
	dns->magic = 0;
	free(dns);
	*pdns = NULL;
}

/* The TTL timer of a target ran out: resolve again. */
static void dns_on_ttl(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hcd_target *t = w->data;

	hcd_dns_resolve(t->d->dns, t);
}

/* Arms t's re-resolution timer. */
static void dns_schedule(struct hcd_target *t, unsigned ms)
{
	ev_timer_stop(t->d->loop, &t->dns_timer);
	ev_timer_init(&t->dns_timer, dns_on_ttl, ms / 1000.0, 0.0);
	t->dns_timer.data = t;
	ev_timer_start(t->d->loop, &t->dns_timer);
}

/* Answer for one target. */
static void dns_on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct dns_query *q = arg;
	struct hcd_target *t = q->t;
	const struct hcd_opts *o;
	struct ares_addrinfo_node *pick = NULL;

	free(q);
	if (!t || status == ARES_EDESTRUCTION)
		goto out_free_res;
	o = &t->d->opts;
	t->dns_query = NULL;
	t->dns_pending = false;
	for (struct ares_addrinfo_node *n = res ? res->nodes : NULL; n; n = n->ai_next)
		if (!pick || (pick->ai_family != AF_INET && n->ai_family == AF_INET))
			pick = n;
	if (status == ARES_SUCCESS && pick && pick->ai_addrlen <= sizeof(t->sa)) {
		struct sockaddr_storage sa;
		char addr[HC_FEED_ADDR_MAX + 1];
		uint64_t ttl_ms = (uint64_t)(pick->ai_ttl > 0 ? pick->ai_ttl : 0) * 1000;

		memset(&sa, 0, sizeof(sa));
		memcpy(&sa, pick->ai_addr, pick->ai_addrlen);
		if (sa.ss_family == AF_INET)
			((struct sockaddr_in *)&sa)->sin_port = htons(t->port);
		else
			((struct sockaddr_in6 *)&sa)->sin6_port = htons(t->port);
		hcd_addr_format((struct sockaddr *)&sa, addr, sizeof(addr));
		t->d->ctr.dns_ok++;
		t->dns_error[0] = '\0';
		if (!t->have_addr || strcmp(addr, t->addr) != 0) {
			t->sa = sa;
			t->salen = pick->ai_addrlen;
			t->have_addr = true;
			snprintf(t->addr, sizeof(t->addr), "%s", addr);
			hcd_target_addr_changed(t);
		}
		if (ttl_ms < o->dns_min_ttl_ms)
			ttl_ms = o->dns_min_ttl_ms;
		if (ttl_ms > o->dns_max_ttl_ms)
			ttl_ms = o->dns_max_ttl_ms;
		dns_schedule(t, (unsigned)ttl_ms);
	} else {
		const char *why = status == ARES_SUCCESS ? "no usable address" : ares_strerror(status);
		bool news = strcmp(why, t->dns_error) != 0;

		t->d->ctr.dns_fail++;
		snprintf(t->dns_error, sizeof(t->dns_error), "%s", why);
		if (news)
			hcd_target_dns_status(t);
		dns_schedule(t, o->dns_retry_ms);
	}
out_free_res:
	if (res)
		ares_freeaddrinfo(res);
}

/* Starts resolving t->host (no-op while a query is in flight). */
void hcd_dns_resolve(struct hcd_dns *dns, struct hcd_target *t)
{
	struct ares_addrinfo_hints hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct dns_query *q;

	if (t->dns_pending)
		return;
	q = calloc(1, sizeof(*q));
	if (!q) {
		dns_schedule(t, t->d->opts.dns_retry_ms);
		return;
	}
	q->dns = dns;
	q->t = t;
	t->dns_query = q;
	t->dns_pending = true;
	ares_getaddrinfo(dns->ch, t->host, NULL, &hints, dns_on_answer, q);  /* may answer at once */
	dns_update_timer(dns);
}

/* Detaches t from DNS: stops its timer, orphans its query. */
void hcd_dns_forget(struct hcd_dns *dns, struct hcd_target *t)
{
	struct dns_query *q = t->dns_query;

	ev_timer_stop(t->d->loop, &t->dns_timer);
	if (q)
		q->t = NULL;
	t->dns_query = NULL;
	t->dns_pending = false;
}
