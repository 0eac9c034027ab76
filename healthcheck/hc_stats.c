/*
 * hc_stats.c — what healthcheckd shows on --stats HOST:PORT: its counters,
 * per-target state and check latency histogram as Prometheus text. The
 * HTTP side is the /metrics server both daemons share (hc_metrics.c).
 */
#include <stdio.h>

#include "hc_daemon.h"
#include "hc_metrics.h"
#include "sd_source.h"

static const char *const latency_le[12] = { "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                                            "0.1", "0.25", "0.5", "1", "2.5", "+Inf" };

/* See hc_daemon.h: healthcheckd's metrics, rendered for the shared
 * /metrics server (hc_metrics.c) on every scrape. */
void hcd_stats_render(void *udata, struct hc_text *o)
{
	const struct hcd *d = udata;
	const struct hcd_counters *k = &d->ctr;
	uint64_t cum = 0, up = 0;

	hc_text_printf(o, "# HELP seedgate_hc_checks_total Health checks run, by result.\n"
	               "# TYPE seedgate_hc_checks_total counter\n"
	               "seedgate_hc_checks_total{result=\"ok\"} %llu\n"
	               "seedgate_hc_checks_total{result=\"fail\"} %llu\n"
	               "seedgate_hc_checks_total{result=\"timeout\"} %llu\n",
	               (unsigned long long)k->checks_ok, (unsigned long long)k->checks_fail,
	               (unsigned long long)k->checks_timeout);
	hc_text_printf(o, "# HELP seedgate_hc_check_latency_seconds Time from connect to verdict.\n"
	               "# TYPE seedgate_hc_check_latency_seconds histogram\n");
	for (unsigned b = 0; b < 12; b++) {
		cum += k->latency_buckets[b];
		hc_text_printf(o, "seedgate_hc_check_latency_seconds_bucket{le=\"%s\"} %llu\n", latency_le[b],
		               (unsigned long long)cum);
	}
	hc_text_printf(o, "seedgate_hc_check_latency_seconds_sum %.6f\nseedgate_hc_check_latency_seconds_count %llu\n",
	               k->latency_sum_s, (unsigned long long)cum);
	hc_text_printf(o, "# HELP seedgate_hc_state_changes_total Published state changes.\n"
	               "# TYPE seedgate_hc_state_changes_total counter\nseedgate_hc_state_changes_total %llu\n",
	               (unsigned long long)k->state_changes);
	hc_text_printf(o, "# TYPE seedgate_hc_seed_reloads_total counter\n"
	               "seedgate_hc_seed_reloads_total{result=\"ok\"} %llu\n"
	               "seedgate_hc_seed_reloads_total{result=\"error\"} %llu\n",
	               (unsigned long long)k->reloads_ok, (unsigned long long)k->reloads_error);
	if (d->seeds)       /* revision, last sync, sync errors, etcd connected */
		sd_source_metrics(d->seeds, o);
	hc_text_printf(o, "# TYPE seedgate_hc_dns_resolutions_total counter\n"
	               "seedgate_hc_dns_resolutions_total{result=\"ok\"} %llu\n"
	               "seedgate_hc_dns_resolutions_total{result=\"error\"} %llu\n",
	               (unsigned long long)k->dns_ok, (unsigned long long)k->dns_fail);
	hc_text_printf(o, "# TYPE seedgate_hc_feed_subscribers gauge\nseedgate_hc_feed_subscribers %u\n",
	               d->feed ? hcd_feed_subscribers(d->feed) : 0);
	hc_text_printf(o, "# TYPE seedgate_hc_haproxy_connected gauge\n");
	for (unsigned i = 0; i < d->opts.n_haproxy; i++)
		hc_text_printf(o, "seedgate_hc_haproxy_connected{socket=\"%s\"} %d\n"
		               "seedgate_hc_haproxy_commands_total{socket=\"%s\"} %llu\n"
		               "seedgate_hc_haproxy_connects_total{socket=\"%s\"} %llu\n"
		               "seedgate_hc_haproxy_messages_total{socket=\"%s\"} %llu\n",
		               hcd_haproxy_path(d->haproxy[i]), hcd_haproxy_connected(d->haproxy[i]),
		               hcd_haproxy_path(d->haproxy[i]), (unsigned long long)hcd_haproxy_commands(d->haproxy[i]),
		               hcd_haproxy_path(d->haproxy[i]), (unsigned long long)hcd_haproxy_connects(d->haproxy[i]),
		               hcd_haproxy_path(d->haproxy[i]), (unsigned long long)hcd_haproxy_errors(d->haproxy[i]));
	hc_text_printf(o, "# HELP seedgate_hc_target_up 1 when the target is up (or draining), 0 when down.\n"
	               "# TYPE seedgate_hc_target_up gauge\n");
	for (unsigned i = 0; i < d->ntargets; i++) {
		const struct hcd_target *t = d->targets[i];
		bool is_up = !t->published || t->state != HC_DOWN;

		up += is_up;
		hc_text_printf(o, "seedgate_hc_target_up{target=\"%s\",kind=\"%s\",dc=\"%s\"} %d\n", t->name,
		               t->kind_str, t->dc, is_up);
	}
	hc_text_printf(o, "# TYPE seedgate_hc_targets gauge\nseedgate_hc_targets{state=\"up\"} %llu\n"
	               "seedgate_hc_targets{state=\"down\"} %llu\n", (unsigned long long)up,
	               (unsigned long long)(d->ntargets - up));
}
