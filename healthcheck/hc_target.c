/*
 * hc_target.c — healthcheckd's table of targets: built from a seed
 * directory snapshot (keeping the state of targets that stay across a
 * reload), fed with check results, and the one place that decides what is
 * published (feed line, HAProxy command, log line) when a verdict changes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hc_backends.h"
#include "hc_daemon.h"

static const double latency_bounds[11] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5, 1.0, 2.5 };

/* Copies s (or def when s is NULL/empty) into a bounded buffer. */
static void set_str(char *dst, size_t room, const char *s, const char *def)
{
	snprintf(dst, room, "%s", s && *s ? s : (def ? def : ""));
}

static const char *const skip_names[HCD_SKIP_N] = { "fd_limit", "memory", "source_port" };

/* The state the outside world sees for t at now_ms (monotonic). */
static enum hc_state target_effective(const struct hcd_target *t, int64_t now_ms)
{
	if (t->ck == ROUTER_CHECK_NONE || hc_sm_effective_up(&t->sm, now_ms))
		return t->drain ? HC_DRAIN : HC_UP;
	return HC_DOWN;
}

/* HAProxy's word for a target's published state. */
const char *hcd_haproxy_state_word(const struct hcd_target *t)
{
	switch (t->state) {
	case HC_UP:    return "ready";
	case HC_DRAIN: return "drain";
	case HC_DOWN:  return "maint";
	}
	return "maint";
}

/* Splits "ip:port" of t->addr into the words HAProxy's "set server addr" wants. */
static void target_haproxy_addr(struct hcd *d, struct hcd_haproxy *h, const struct hcd_target *t)
{
	char ip[HC_FEED_ADDR_MAX + 1];
	const char *colon = strrchr(t->addr, ':');
	size_t len;

	if (!t->have_addr || !colon)
		return;
	len = (size_t)(colon - t->addr);
	if (t->addr[0] == '[' && len >= 2) {
		memcpy(ip, t->addr + 1, len - 2);
		ip[len - 2] = '\0';
	} else {
		memcpy(ip, t->addr, len);
		ip[len] = '\0';
	}
	hcd_haproxy_command(h, "set server %s/%s addr %s port %u", t->backend, t->name, ip, t->port);
}

/* Sends t's T line to the feed subscribers. */
static void target_feed(struct hcd_target *t)
{
	char line[HC_FEED_LINE_MAX + 1];
	int n = hc_feed_encode_target(line, sizeof(line), t->name, t->state,
	                              t->have_addr ? t->addr : NULL, t->since_ms, t->reason);

	if (n > 0 && t->d->feed)
		hcd_feed_publish(t->d->feed, t->index, line, (size_t)n);
}

/* Publishes a new state: feed, HAProxy, one log line. "since" is wall
 * clock time: it is shown, never used to measure anything. */
static void target_publish(struct hcd_target *t, enum hc_state st)
{
	struct hcd *d = t->d;
	bool first = !t->published;
	enum hc_state old = t->state;

	t->published = true;
	t->state = st;
	t->since_ms = hcd_now_ms();
	d->ctr.state_changes++;
	target_feed(t);
	for (unsigned i = 0; i < d->opts.n_haproxy; i++)
		hcd_haproxy_command(d->haproxy[i], "set server %s/%s state %s", t->backend, t->name,
		                    hcd_haproxy_state_word(t));
	hcd_log("%s %s (%s %s %s): %s -> %s: %s", t->kind_str, t->name, t->dc, t->backend,
	        t->have_addr ? t->addr : t->host, first ? "new" : hc_state_str(old), hc_state_str(st),
	        t->reason);
}

/* Re-evaluates what t shows after a result, publishing a change. now_ms is
 * monotonic (hcd_mono_ms): holds must not move with the wall clock. */
static void target_evaluate(struct hcd_target *t, int64_t now_ms)
{
	enum hc_state st = target_effective(t, now_ms);
	bool held = st == HC_DOWN && t->sm.up && hc_sm_held(&t->sm, now_ms);

	if (t->published && st == t->state) {
		if (held && !t->damped_shown) {
			/* recovered but held down: same state, the reason says why */
			t->damped_shown = true;
			snprintf(t->reason, sizeof(t->reason), "damped: %u flaps, held down %lld ms (last: %s)",
			         t->sm.flaps, (long long)(t->sm.held_until_ms - now_ms), t->last_result);
			target_feed(t);
			hcd_log("%s %s: held down: %s", t->kind_str, t->name, t->reason);
		}
		return;
	}
	t->damped_shown = held;
	if (held)
		snprintf(t->reason, sizeof(t->reason), "damped: %u flaps, held down %lld ms (last: %s)",
		         t->sm.flaps, (long long)(t->sm.held_until_ms - now_ms), t->last_result);
	else if (st == HC_DOWN)
		snprintf(t->reason, sizeof(t->reason), "%s (%u failed in a row)", t->last_result, t->sm.fail_run);
	else if (t->ck == ROUTER_CHECK_NONE)
		snprintf(t->reason, sizeof(t->reason), "not checked (check=none)");
	else
		snprintf(t->reason, sizeof(t->reason), "%s (%u passed in a row)", t->last_result, t->sm.ok_run);
	target_publish(t, st);
}

/* Marks the end of the initial round: feed subscribers get their snapshot. */
void hcd_targets_initial_done(struct hcd *d)
{
	if (d->initial_done)
		return;
	d->initial_done = true;
	ev_timer_stop(d->loop, &d->initial_timer);
	if (d->feed)
		hcd_feed_ready(d->feed);
}

/* Records one check result (see hc_daemon.h). */
void hcd_target_result(struct hcd_target *t, bool ok, bool timeout, const char *fmt, ...)
{
	struct hcd *d = t->d;
	int64_t now_ms = hcd_mono_ms();
	double lat = (double)(hcd_mono_us() - t->started_us) / 1e6;
	bool was_known = t->sm.known;
	va_list ap;
	unsigned b;

	va_start(ap, fmt);
	vsnprintf(t->last_result, sizeof(t->last_result), fmt, ap);
	va_end(ap);
	t->last_check_ms = hcd_now_ms();     /* shown in the status table */
	t->latency_us = (uint64_t)(lat * 1e6);
	if (ok) {
		d->ctr.checks_ok++;
	} else {
		t->fails++;
		if (timeout)
			d->ctr.checks_timeout++;
		else
			d->ctr.checks_fail++;
	}
	for (b = 0; b < 11 && lat > latency_bounds[b]; b++)
		;
	d->ctr.latency_buckets[b]++;
	d->ctr.latency_sum_s += lat;
	if (d->opts.verbose)
		hcd_log("check %s: %s %s (%.1f ms)", t->name, ok ? "ok" : "fail", t->last_result, lat * 1e3);

	(void)hc_sm_result(&t->sm, &t->smp, ok, now_ms);
	target_evaluate(t, now_ms);
	if (!was_known && d->pending_initial > 0 && --d->pending_initial == 0)
		hcd_targets_initial_done(d);
}

/* See hc_daemon.h. */
int hcd_skip_reason(int err)
{
	switch (err) {
	case EMFILE:
	case ENFILE:
		return HCD_SKIP_FD_LIMIT;
	case ENOBUFS:
	case ENOMEM:
		return HCD_SKIP_MEMORY;
	case EADDRNOTAVAIL:                /* no local port left to connect from */
	case EAGAIN:
		return HCD_SKIP_SOURCE_PORT;
	default:
		return -1;
	}
}

/* See hc_daemon.h. Exhaustion is our condition, not the target's: a check
 * that could not even start says nothing about it, so there is no result,
 * no rise/fall step and nothing published; the count and one log line per
 * period say it happens. */
void hcd_target_skipped(struct hcd_target *t, enum hcd_skip why, const char *what)
{
	struct hcd *d = t->d;
	uint64_t n;

	d->ctr.checks_skipped[why]++;
	if (hc_ratelog_hit(&d->skip_log, ev_now(d->loop), &n))
		hcd_log("%llu check(s) skipped in the last %.0f s (%s; targets keep their state), last: "
		        "%s %s: %s", (unsigned long long)n, HC_RATELOG_PERIOD_S, skip_names[why],
		        t->kind_str, t->name, what);
}

/* The label value of a skip reason (hc_stats.c). */
const char *hcd_skip_name(enum hcd_skip why)
{
	return skip_names[why];
}

/* DNS gave t a new address: push it like a state change. */
void hcd_target_addr_changed(struct hcd_target *t)
{
	struct hcd *d = t->d;

	hcd_log("%s %s: address %s (from %s)", t->kind_str, t->name, t->addr, t->host);
	/* HAProxy at once, verdict or not: a server added at run time
	 * (hc_servers.c) gets its address from nowhere else */
	for (unsigned i = 0; i < d->opts.n_haproxy; i++)
		target_haproxy_addr(d, d->haproxy[i], t);
	if (!t->published)
		return;
	snprintf(t->reason, sizeof(t->reason), "address changed to %s", t->addr);
	target_feed(t);
}

/* DNS failed for t (it keeps its last address): report it. */
void hcd_target_dns_status(struct hcd_target *t)
{
	if (t->published) {
		snprintf(t->reason, sizeof(t->reason), "dns: %s%s%s", t->dns_error,
		         t->have_addr ? ", keeping " : "", t->have_addr ? t->addr : "");
		target_feed(t);
	}
	hcd_log("%s %s: resolving %s failed: %s%s%s", t->kind_str, t->name, t->host, t->dns_error,
	        t->have_addr ? ", keeping " : "", t->have_addr ? t->addr : "");
}

/* Queues the complete state on a HAProxy client that just (re)connected. */
void hcd_haproxy_full_state(struct hcd *d, struct hcd_haproxy *h)
{
	for (unsigned i = 0; i < d->ntargets; i++) {
		struct hcd_target *t = d->targets[i];

		if (!t->published)
			continue;
		if (t->hostname)
			target_haproxy_addr(d, h, t);
		hcd_haproxy_command(h, "set server %s/%s state %s", t->backend, t->name,
		                    hcd_haproxy_state_word(t));
	}
}

/* Appends one target's T and S lines (snapshot). */
static int snapshot_target(const struct hcd_target *t, struct hcd_buf *out)
{
	char line[HC_FEED_LINE_MAX + 1];
	int n;

	if (t->published)
		n = hc_feed_encode_target(line, sizeof(line), t->name, t->state,
		                          t->have_addr ? t->addr : NULL, t->since_ms, t->reason);
	else
		n = hc_feed_encode_target(line, sizeof(line), t->name, t->drain ? HC_DRAIN : HC_UP,
		                          t->have_addr ? t->addr : NULL, 0, "no verdict yet");
	if (n < 0 || hcd_buf_append(out, line, (size_t)n) == -1)
		return -1;
	n = hc_feed_encode_detail(line, sizeof(line), t->name, t->kind_str, t->dc,
	                          t->last_check_ms, t->latency_us, t->checks, t->fails);
	if (n > 0 && hcd_buf_append(out, line, (size_t)n) == -1)
		return -1;
	return 0;
}

/* See hc_daemon.h. Positions: 0 = H, 1..n = target pos-1, n+1 = E. */
int hcd_snapshot_part(struct hcd *d, struct hcd_buf *out, unsigned *pos, size_t upto)
{
	char line[HC_FEED_LINE_MAX + 1];
	int n;

	while (hcd_buf_pending(out) < upto) {
		unsigned p = *pos;

		if (p == 0) {
			n = hc_feed_encode_hello(line, sizeof(line));
			if (n < 0 || hcd_buf_append(out, line, (size_t)n) == -1)
				return -1;
		} else if (p <= d->ntargets) {
			if (snapshot_target(d->targets[p - 1], out) == -1)
				return -1;
		} else {
			n = hc_feed_encode_end(line, sizeof(line), d->ntargets);
			if (n < 0 || hcd_buf_append(out, line, (size_t)n) == -1)
				return -1;
			*pos = p + 1;
			return 1;
		}
		*pos = p + 1;
	}
	return 0;
}

/* See hc_daemon.h. */
bool hcd_snapshot_passed(unsigned pos, unsigned index)
{
	return index + 1 < pos;
}

/* Applies the seed's settings for one target, over healthcheckd's flags. */
static int target_configure(struct hcd *d, struct hcd_target *t, const struct router_dir *dir,
                            const struct router_target *rt, char *err, size_t errlen)
{
	const struct hcd_opts *o = &d->opts;
	const struct router_check *c = &rt->check;

	set_str(t->name, sizeof(t->name), rt->name, NULL);
	set_str(t->kind_str, sizeof(t->kind_str), hc_kind_name(rt->kind), NULL);
	set_str(t->dc, sizeof(t->dc), router_dir_dc_name(dir, rt->dc), NULL);
	set_str(t->backend, sizeof(t->backend), hc_backend_of(dir, rt), NULL);
	t->drain = rt->drain;
	t->ck = c->kind != ROUTER_CHECK_DEFAULT ? c->kind : o->kind;
	set_str(t->path, sizeof(t->path), c->path, o->path);
	set_str(t->method, sizeof(t->method), c->method, o->method);
	set_str(t->hosthdr, sizeof(t->hosthdr), c->host, o->host ? o->host : rt->host);
	set_str(t->sni, sizeof(t->sni), c->sni, o->sni ? o->sni : (t->hosthdr[0] ? t->hosthdr : NULL));
	t->status_min = c->status_min ? c->status_min : o->status_min;
	t->status_max = c->status_max ? c->status_max : (c->status_min ? c->status_min : o->status_max);
	t->interval_ms = c->interval_ms ? c->interval_ms : o->interval_ms;
	t->timeout_ms = c->timeout_ms ? c->timeout_ms : o->timeout_ms;
	if (t->timeout_ms > t->interval_ms && !c->timeout_ms && !o->timeout_ms)
		t->timeout_ms = t->interval_ms;
	if (t->timeout_ms == 0)
		t->timeout_ms = t->interval_ms < 2000 ? t->interval_ms : 2000;
	t->fast_ms = o->fast_interval_ms ? o->fast_interval_ms : t->interval_ms / 2;
	if (t->fast_ms > t->interval_ms)
		t->fast_ms = t->interval_ms;
	if (t->fast_ms == 0)
		t->fast_ms = 1;
	t->jitter_pct = c->jitter_pct ? c->jitter_pct : o->jitter_pct;
	t->smp.rise = c->rise ? c->rise : o->rise;
	t->smp.fall = c->fall ? c->fall : o->fall;
	t->smp.damp_flaps = o->damp_flaps;
	t->smp.damp_window_ms = o->damp_window_ms;
	t->smp.damp_hold_ms = o->damp_hold_ms;
	t->smp.damp_max_ms = o->damp_max_ms;
	if (t->ck == ROUTER_CHECK_HTTP || t->ck == ROUTER_CHECK_HTTPS) {
		int n = hc_http_req_set(&t->req, t->method, t->path, t->hosthdr);
		if (n == -1) {
			snprintf(err, errlen, "%s: cannot build the HTTP check request (method '%s', path '%s', host '%s')",
			         t->name, t->method, t->path, t->hosthdr);
			return -1;
		}
	}
	if (t->ck == ROUTER_CHECK_HTTPS && !d->tls) {
		snprintf(err, errlen, "%s: check=https but healthcheckd has no TLS context", t->name);
		return -1;
	}
	return 0;
}

/* Points t at rt's address: IP literals at once, hostnames through DNS. */
static void target_address(struct hcd *d, struct hcd_target *t, const struct router_target *rt)
{
	bool same = strcmp(t->host, rt->host) == 0 && t->port == rt->port;

	if (same && (t->have_addr || t->dns_pending))
		return;
	if (t->hostname)
		hcd_dns_forget(d->dns, t);
	set_str(t->host, sizeof(t->host), rt->host, NULL);
	t->port = rt->port;
	t->have_addr = false;
	t->dns_error[0] = '\0';
	if (hcd_addr_parse_ip(t->host, t->port, &t->sa, &t->salen) == 0) {
		t->hostname = false;
		t->have_addr = true;
		hcd_addr_format((struct sockaddr *)&t->sa, t->addr, sizeof(t->addr));
	} else {
		t->hostname = true;
		t->addr[0] = '\0';
		hcd_dns_resolve(d->dns, t);
	}
}

/* Frees one target after stopping its probe and DNS. */
static void target_free(struct hcd *d, struct hcd_target *t)
{
	hcd_probe_abort(t);
	if (t->hostname)
		hcd_dns_forget(d->dns, t);
	t->magic = 0;
	free(t);
}

/* Builds the target table of dir; see hc_daemon.h. Targets whose name is in
 * both the old and the new directory keep their verdict and counters. On
 * error nothing changes. Takes over the caller's reference on dir. */
int hcd_targets_load(struct hcd *d, struct router_dir *dir, char *err, size_t errlen)
{
	unsigned n = router_dir_target_count(dir), kept = 0, added = 0, removed = 0;
	struct hcd_target **nt = calloc(n ? n : 1, sizeof(*nt));
	bool *taken = calloc(d->ntargets ? d->ntargets : 1, sizeof(*taken));
	int64_t now_ms = hcd_mono_ms();

	if (!nt || !taken) {
		snprintf(err, errlen, "out of memory for %u targets", n);
		goto out_free_tables;
	}
	for (unsigned i = 0; i < n; i++) {
		const struct router_target *rt = router_dir_target(dir, i);
		int j = d->dir ? router_dir_target_find(d->dir, rt->name) : -1;
		struct hcd_target tmp;

		if (j >= 0 && (unsigned)j < d->ntargets) {
			nt[i] = d->targets[j];
			/* validate on a copy so a bad setting leaves the old one intact */
			tmp = *nt[i];
			if (target_configure(d, &tmp, dir, rt, err, errlen) == -1)
				goto out_free_new;
			continue;
		}
		nt[i] = calloc(1, sizeof(**nt));
		if (!nt[i]) {
			snprintf(err, errlen, "out of memory");
			goto out_free_new;
		}
		nt[i]->d = d;
		if (target_configure(d, nt[i], dir, rt, err, errlen) == -1) {
			free(nt[i]);
			nt[i] = NULL;
			goto out_free_new;
		}
	}
	/* committed: from here on nothing fails. HAProxy's servers follow the
	 * directory first (hc_servers.c): the verdicts queued below and later
	 * must find the servers added */
	hcd_servers_apply(d, d->dir, dir);
	for (unsigned i = 0; i < n; i++) {
		const struct router_target *rt = router_dir_target(dir, i);
		struct hcd_target *t = nt[i];
		int j = d->dir ? router_dir_target_find(d->dir, rt->name) : -1;

		if (j >= 0 && (unsigned)j < d->ntargets && d->targets[j] == t) {
			bool was_drain = t->drain;
			enum router_check_kind was_ck = t->ck;
			struct hc_http_req was_req = t->req;

			taken[j] = true;
			kept++;
			(void)target_configure(d, t, dir, rt, err, errlen);
			t->index = i;
			target_address(d, t, rt);
			/* configure reset the request's write offset. The same
			 * request: the check in flight goes on where it was. A new
			 * one must not finish a write the old one started (nor
			 * compute what is left from the old offset): that check
			 * starts over. */
			if (was_req.len == t->req.len && memcmp(was_req.buf, t->req.buf, t->req.len) == 0) {
				t->req.woff = was_req.woff;
			} else if (was_ck == t->ck && t->phase != HCD_IDLE) {
				hcd_probe_abort(t);
				hcd_probe_start(t);
			}
			if (was_ck != t->ck) {
				hcd_probe_abort(t);
				hc_sm_init(&t->sm);
				hcd_probe_start(t);
			}
			if (t->published && (was_drain != t->drain || t->ck == ROUTER_CHECK_NONE))
				target_evaluate(t, now_ms);
			continue;
		}
		added++;
		t->index = i;
		hcd_probe_init(t);
		hc_sm_init(&t->sm);
		target_address(d, t, rt);
		if (t->ck == ROUTER_CHECK_NONE)
			target_evaluate(t, now_ms);
		else
			hcd_probe_start(t);
	}
	for (unsigned j = 0; j < d->ntargets; j++) {
		if (!taken[j]) {
			hcd_log("%s %s: removed from the seed directory", d->targets[j]->kind_str, d->targets[j]->name);
			target_free(d, d->targets[j]);
			removed++;
		}
	}
	free(d->targets);
	free(taken);
	d->targets = nt;
	d->ntargets = n;
	if (d->feed)
		hcd_feed_reloaded(d->feed);
	router_dir_release(&d->dir);
	d->dir = dir;
	d->pending_initial = 0;
	for (unsigned i = 0; i < n; i++)
		if (nt[i]->ck != ROUTER_CHECK_NONE && !nt[i]->sm.known)
			d->pending_initial++;
	if (d->pending_initial == 0)
		hcd_targets_initial_done(d);
	hcd_log("seed directory: %u targets (%u kept, %u new, %u removed)", n, kept, added, removed);
	return 0;

out_free_new:
	for (unsigned i = 0; i < n; i++) {
		int j = d->dir && nt[i] ? router_dir_target_find(d->dir, nt[i]->name) : -1;
		if (nt[i] && !(j >= 0 && (unsigned)j < d->ntargets && d->targets[j] == nt[i]))
			free(nt[i]);
	}
out_free_tables:
	free(nt);
	free(taken);
	return -1;
}

/* Frees every target (daemon exit). */
void hcd_targets_free(struct hcd *d)
{
	for (unsigned i = 0; i < d->ntargets; i++)
		target_free(d, d->targets[i]);
	free(d->targets);
	d->targets = NULL;
	d->ntargets = 0;
	router_dir_release(&d->dir);
}
