/*
 * hc_stats.c — what healthcheckd shows on --stats HOST:PORT: its counters,
 * per-target state and check latency histogram as Prometheus text. The
 * HTTP side is the /metrics server both daemons share (hc_metrics.c).
 */
#include <stdio.h>

#include "hc_daemon.h"
#include "hc_escape.h"
#include "hc_metrics.h"
#include "hc_procmetrics.h"
#include "sd_source.h"

static const char *const latency_le[12] = { "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                                            "0.1", "0.25", "0.5", "1", "2.5", "+Inf" };

/* See hc_daemon.h: healthcheckd's metrics, rendered for the shared
 * /metrics server (hc_metrics.c) on every scrape. */
void hcd_stats_render(void *udata, struct hc_text *o)
{
	const struct hcd *d = udata;
	const struct hcd_counters *k = &d->ctr;
	uint64_t cum = 0, up = 0, drain = 0;

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
	/* the same count under the name route agents use: ops compare one
	 * proxy's healthcheckd and agents, and proxies, on one series */
	hc_text_printf(o, "# HELP seedgate_health_epoch Target health changes published since start.\n"
	               "# TYPE seedgate_health_epoch gauge\nseedgate_health_epoch %llu\n",
	               (unsigned long long)k->state_changes);
	/* the same family as route-agent's: one name for one meaning */
	hc_text_printf(o, "# HELP seedgate_seed_reloads_total Seed directory reloads by result.\n"
	               "# TYPE seedgate_seed_reloads_total counter\n"
	               "seedgate_seed_reloads_total{result=\"ok\"} %llu\n"
	               "seedgate_seed_reloads_total{result=\"error\"} %llu\n",
	               (unsigned long long)k->reloads_ok, (unsigned long long)k->reloads_error);
	if (d->seeds)       /* revision, last sync, sync errors, etcd connected */
		sd_source_metrics(d->seeds, o);
	hc_text_printf(o, "# HELP seedgate_hc_dns_resolutions_total Host name resolutions of targets, by result.\n"
	               "# TYPE seedgate_hc_dns_resolutions_total counter\n"
	               "seedgate_hc_dns_resolutions_total{result=\"ok\"} %llu\n"
	               "seedgate_hc_dns_resolutions_total{result=\"error\"} %llu\n",
	               (unsigned long long)k->dns_ok, (unsigned long long)k->dns_fail);
	hc_text_printf(o, "# HELP seedgate_hc_checks_skipped_total Checks that could not run for a "
	               "reason of ours (no verdict: the target kept its state).\n"
	               "# TYPE seedgate_hc_checks_skipped_total counter\n");
	for (unsigned r = 0; r < HCD_SKIP_N; r++)
		hc_text_printf(o, "seedgate_hc_checks_skipped_total{reason=\"%s\"} %llu\n",
		               hcd_skip_name((enum hcd_skip)r), (unsigned long long)k->checks_skipped[r]);
	hc_text_printf(o, "# HELP seedgate_hc_feed_subscribers Health feed subscribers connected now.\n"
	               "# TYPE seedgate_hc_feed_subscribers gauge\nseedgate_hc_feed_subscribers %u\n"
	               "# HELP seedgate_hc_feed_subscribers_max Subscribers the open-files limit leaves room for.\n"
	               "# TYPE seedgate_hc_feed_subscribers_max gauge\nseedgate_hc_feed_subscribers_max %u\n"
	               "# HELP seedgate_hc_feed_refused_total Feed subscribers refused at the open-files cap.\n"
	               "# TYPE seedgate_hc_feed_refused_total counter\nseedgate_hc_feed_refused_total %llu\n",
	               d->feed ? hcd_feed_subscribers(d->feed) : 0, hcd_feed_cap(d),
	               (unsigned long long)k->feed_refused);
	/* one family at a time: the text format wants each family's samples
	 * together, after its HELP and TYPE */
	static const struct {
		const char *name, *type, *help;
	} hap[] = {
		{ "seedgate_hc_haproxy_connected", "gauge", "1 while the HAProxy runtime API socket is connected." },
		{ "seedgate_hc_haproxy_commands_total", "counter", "Runtime API commands sent to HAProxy." },
		{ "seedgate_hc_haproxy_connects_total", "counter", "Connections made to the HAProxy runtime API socket." },
		{ "seedgate_hc_haproxy_messages_total", "counter", "Runtime API answers that were not a success (refused commands)." },
	};
	for (unsigned f = 0; f < sizeof(hap) / sizeof(hap[0]); f++) {
		hc_text_printf(o, "# HELP %s %s\n# TYPE %s %s\n", hap[f].name, hap[f].help, hap[f].name, hap[f].type);
		for (unsigned i = 0; i < d->opts.n_haproxy; i++) {
			/* a socket path is any bytes: escaped as a label value must be */
			char sock[HC_ESCAPE_ROOM(256)];
			const struct hcd_haproxy *h = d->haproxy[i];
			unsigned long long v = f == 0 ? (unsigned long long)hcd_haproxy_connected(h)
			                     : f == 1 ? (unsigned long long)hcd_haproxy_commands(h)
			                     : f == 2 ? (unsigned long long)hcd_haproxy_connects(h)
			                     : (unsigned long long)hcd_haproxy_errors(h);

			hc_escape_label(sock, sizeof(sock), hcd_haproxy_path(h));
			hc_text_printf(o, "%s{socket=\"%s\"} %llu\n", hap[f].name, sock, v);
		}
	}
	hcd_haproxy_stats(d, o);
	hc_text_printf(o, "# HELP seedgate_hc_target_up 1 when the target is up (or draining), 0 when down.\n"
	               "# TYPE seedgate_hc_target_up gauge\n");
	for (unsigned i = 0; i < d->ntargets; i++) {
		const struct hcd_target *t = d->targets[i];
		bool is_up = !t->published || t->state != HC_DOWN;
		char name[HC_ESCAPE_ROOM(sizeof(t->name))], kind[HC_ESCAPE_ROOM(sizeof(t->kind_str))],
		     dc[HC_ESCAPE_ROOM(sizeof(t->dc))];

		/* a drained target passes its checks: not down, but not in
		 * service either, so it has its own count */
		if (t->published && t->state == HC_DRAIN)
			drain++;
		else
			up += is_up;
		hc_text_printf(o, "seedgate_hc_target_up{target=\"%s\",kind=\"%s\",dc=\"%s\"} %d\n",
		               hc_escape_label(name, sizeof(name), t->name),
		               hc_escape_label(kind, sizeof(kind), t->kind_str),
		               hc_escape_label(dc, sizeof(dc), t->dc), is_up);
	}
	hc_text_printf(o, "# HELP seedgate_hc_targets Targets by published state.\n"
	               "# TYPE seedgate_hc_targets gauge\nseedgate_hc_targets{state=\"up\"} %llu\n"
	               "seedgate_hc_targets{state=\"drain\"} %llu\n"
	               "seedgate_hc_targets{state=\"down\"} %llu\n", (unsigned long long)up,
	               (unsigned long long)drain, (unsigned long long)(d->ntargets - up - drain));
	hc_metrics_process(o, "healthcheckd");
}
