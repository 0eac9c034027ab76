/*
 * hc_main.c — healthcheckd: command line, signals, what a seed directory
 * reload does (the reloading itself, SIGHUP, inotify and etcd, is
 * sd_source's),
 * logging, and the loop.
 *
 * See healthcheck/README.md for what it does and `healthcheckd --help` for
 * the flags.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "hc_daemon.h"
#include "hc_escape.h"
#include "hc_metrics.h"
#include "hc_sdnotify.h"
#include "sd_source.h"
#include "tls.h"

#define RELOAD_DEBOUNCE_S 0.05

static const char usage_text[] =
"usage: healthcheckd --seed FILE|etcd://... [--feed PATH] [--haproxy-socket PATH]... [--stats HOST:PORT]\n"
"                    [check options] [-c] [-v] [--help]\n"
"\n"
"Checks every hub and node of the seed directory and publishes their health\n"
"to route agents (--feed) and HAProxy (--haproxy-socket).\n"
"\n"
"  --seed FILE             seed directory (reloaded on SIGHUP and when the file changes)\n"
"  --seed etcd://HOST:PORT[,HOST:PORT...]/PREFIX\n"
"                          the seed directory in etcd, followed with a watch\n"
"  --seed-cache PATH       etcd: local copy of the last good directory, used when etcd\n"
"                          is down at start (default /var/lib/seedgate/healthcheckd-<hash>.seed)\n"
"  --feed PATH             unix socket of the health feed (route-agent --health PATH);\n"
"                          a second healthcheckd on the same PATH is refused (PATH.lock)\n"
"  --feed-mode MODE        permissions of the feed socket, octal (0660): connecting\n"
"                          needs write permission, so owner and group may subscribe\n"
"  --feed-group GROUP      group of the feed socket (name or number; default ours)\n"
"  --haproxy-socket PATH   HAProxy stats socket (level admin); repeatable, up to 8\n"
"  --stats HOST:PORT       Prometheus text on GET /metrics\n"
"  --status                print the health table read from --feed and exit\n"
"  -c                      check the seed directory and options, then exit\n"
"  -v, --verbose           log every check result, not only state changes\n"
"\n"
"Check defaults (the seed's check-defaults line and per-target keys override):\n"
"  --check tcp|http|https|none   kind of check (tcp)\n"
"  --check-path PATH        HTTP path (/)\n"
"  --check-method METHOD    HTTP method (GET)\n"
"  --check-host HOST        Host header and SNI (the target's host)\n"
"  --check-status A-B       accepted HTTP status range (200-399)\n"
"  --check-sni HOST         TLS server name for https checks\n"
"  --interval DUR           time between checks (1s)\n"
"  --fast-interval DUR      time between checks while a target changes state (interval/2)\n"
"  --timeout DUR            connect+answer deadline (interval, at most 2s)\n"
"  --rise N / --fall N      results in a row to go up / down (2 / 2)\n"
"  --jitter PCT             spread each interval by +-PCT % (10)\n"
"  --ca-file FILE           CAs for https checks (system store)   --no-verify: accept any cert\n"
"Flap damping (a target that keeps changing is held down, doubling each time):\n"
"  --damp-flaps N           changes within the window that trigger a hold (4; 0 = off)\n"
"  --damp-window DUR        window, and quiet time that resets the count (60s)\n"
"  --damp-hold DUR          first hold (10s), doubling up to --damp-max DUR (5m)\n"
"DNS (hostnames in the seed, through c-ares):\n"
"  --dns-min-ttl DUR / --dns-max-ttl DUR   clamp the record TTL (1s / 5m)\n"
"  --dns-retry DUR          retry after a failed resolution (2s)\n"
"  --dns-servers LIST       ask these servers (ip[:port],...) instead of\n"
"                           /etc/resolv.conf's\n"
"\n"
"DUR: 250ms, 1s, 2m (a bare number is milliseconds).\n";

static struct hcd daemon_state;

/* Wall-clock milliseconds (for "since" in the feed). */
int64_t hcd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic milliseconds (damping windows and holds). */
int64_t hcd_mono_ms(void)
{
	return hcd_mono_us() / 1000;
}

/* Monotonic microseconds (for latencies). */
int64_t hcd_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One log line on stderr: UTC timestamp with ms, then the message. The
 * message quotes seed files, target names, DNS and peers' answers: it is
 * escaped as a whole (hc_escape_log: printable ASCII, "\\xNN" for the rest)
 * so that no byte from outside can forge a line or reach a terminal raw
 * (already escaped text, such as a parse error, passes unchanged). */
void hcd_log(const char *fmt, ...)
{
	char ts[32], msg[1024], safe[HC_ESCAPE_ROOM(1024)];
	struct timespec now;
	struct tm tm;
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s.%03ldZ healthcheckd[%d]: %s\n", ts, now.tv_nsec / 1000000, (int)getpid(),
	        hc_escape_log(safe, sizeof(safe), msg));
}

/* Parses a duration ("250ms", "1s", "2m", bare ms) into *ms; -1 if invalid. */
static int parse_duration(const char *s, unsigned *ms)
{
	char *end;
	unsigned long long v;
	unsigned long long mul = 1;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (end == s || errno)
		return -1;
	if (strcmp(end, "ms") == 0 || *end == '\0')
		mul = 1;
	else if (strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else
		return -1;
	if (v * mul > 86400000ULL)
		return -1;
	*ms = (unsigned)(v * mul);
	return 0;
}

/* Parses an unsigned integer within [min, max]; -1 if invalid. */
static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (end == s || errno || (*end && strcmp(end, "%") != 0) || v < min || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* A finished reload (sd_source, on the loop): swap the target table, or
 * keep the old one. Reloads are counted by result; the log says why the
 * load ran ("SIGHUP", "file changed", "changed during a reload", "etcd
 * revision N"). 0 when the new directory is in use. */
static int on_reload(void *udata, struct router_dir *dir, const char *load_err, const char *why)
{
	struct hcd *d = udata;
	char err[512];

	if (!dir) {
		d->ctr.reloads_error++;
		hcd_log("reload (%s) failed, keeping the previous seed directory (%s): %s", why,
		        sd_source_describe(d->seeds), load_err);
		return -1;
	}
	if (hcd_targets_load(d, dir, err, sizeof(err)) == -1) {
		router_dir_release(&dir);
		d->ctr.reloads_error++;
		hcd_log("reload (%s) failed, keeping the previous seed directory: %s", why, err);
		return -1;
	}
	d->ctr.reloads_ok++;
	hcd_log("reloaded the seed directory (%s)", why);
	return 0;
}

/* sd_source's own lines (etcd unreachable, back, the local copy). */
static void on_seed_log(void *udata, int prio, const char *msg)
{
	(void)udata;
	(void)prio;
	hcd_log("%s", msg);
}

/* The /metrics server's log lines (accept at the descriptor limit). */
static void stats_log(const char *msg)
{
	hcd_log("%s", msg);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	if (w->signum == SIGHUP) {
		sd_source_request(daemon_state.seeds, "SIGHUP");
		return;
	}
	hcd_log("signal %d: exiting", w->signum);
	ev_break(loop, EVBREAK_ALL);
}

/* The initial round took too long (a check hangs): publish anyway. */
static void on_initial_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	hcd_log("initial checks not all done; publishing the snapshot now");
	hcd_targets_initial_done(&daemon_state);
}

enum {
	OPT_SEED = 256, OPT_FEED, OPT_HAPROXY, OPT_STATS, OPT_STATUS, OPT_CHECK, OPT_PATH, OPT_METHOD,
	OPT_HOST, OPT_STATUS_RANGE, OPT_SNI, OPT_INTERVAL, OPT_FAST, OPT_TIMEOUT, OPT_RISE, OPT_FALL,
	OPT_JITTER, OPT_CA, OPT_NOVERIFY, OPT_DFLAPS, OPT_DWINDOW, OPT_DHOLD, OPT_DMAX, OPT_DNSMIN,
	OPT_DNSMAX, OPT_DNSRETRY, OPT_DNSSERVERS, OPT_FEEDMODE, OPT_FEEDGROUP, OPT_HELP, OPT_SEED_CACHE,
};

static const struct option long_opts[] = {
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "feed", required_argument, NULL, OPT_FEED },
	{ "haproxy-socket", required_argument, NULL, OPT_HAPROXY },
	{ "stats", required_argument, NULL, OPT_STATS },
	{ "status", no_argument, NULL, OPT_STATUS },
	{ "check", required_argument, NULL, OPT_CHECK },
	{ "check-path", required_argument, NULL, OPT_PATH },
	{ "check-method", required_argument, NULL, OPT_METHOD },
	{ "check-host", required_argument, NULL, OPT_HOST },
	{ "check-status", required_argument, NULL, OPT_STATUS_RANGE },
	{ "check-sni", required_argument, NULL, OPT_SNI },
	{ "interval", required_argument, NULL, OPT_INTERVAL },
	{ "fast-interval", required_argument, NULL, OPT_FAST },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "rise", required_argument, NULL, OPT_RISE },
	{ "fall", required_argument, NULL, OPT_FALL },
	{ "jitter", required_argument, NULL, OPT_JITTER },
	{ "ca-file", required_argument, NULL, OPT_CA },
	{ "no-verify", no_argument, NULL, OPT_NOVERIFY },
	{ "damp-flaps", required_argument, NULL, OPT_DFLAPS },
	{ "damp-window", required_argument, NULL, OPT_DWINDOW },
	{ "damp-hold", required_argument, NULL, OPT_DHOLD },
	{ "damp-max", required_argument, NULL, OPT_DMAX },
	{ "dns-min-ttl", required_argument, NULL, OPT_DNSMIN },
	{ "dns-max-ttl", required_argument, NULL, OPT_DNSMAX },
	{ "dns-retry", required_argument, NULL, OPT_DNSRETRY },
	{ "dns-servers", required_argument, NULL, OPT_DNSSERVERS },
	{ "feed-mode", required_argument, NULL, OPT_FEEDMODE },
	{ "feed-group", required_argument, NULL, OPT_FEEDGROUP },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "seed-cache", required_argument, NULL, OPT_SEED_CACHE },
	{ NULL, 0, NULL, 0 },
};

/* Parses "tcp|http|https|none". */
static int parse_kind(const char *s, enum router_check_kind *k)
{
	if (strcmp(s, "tcp") == 0) *k = ROUTER_CHECK_TCP;
	else if (strcmp(s, "http") == 0) *k = ROUTER_CHECK_HTTP;
	else if (strcmp(s, "https") == 0) *k = ROUTER_CHECK_HTTPS;
	else if (strcmp(s, "none") == 0) *k = ROUTER_CHECK_NONE;
	else return -1;
	return 0;
}

/* Parses "200-399" or "200". */
static int parse_status_range(const char *s, unsigned *lo, unsigned *hi)
{
	unsigned a, b;
	char tail;
	int n = sscanf(s, "%u-%u%c", &a, &b, &tail);

	if (n == 1)
		b = a;
	else if (n != 2)
		return -1;
	if (a < 100 || b > 999 || a > b)
		return -1;
	*lo = a;
	*hi = b;
	return 0;
}

/* Parses an octal file mode (0660, 660); -1 if invalid. */
static int parse_mode(const char *s, unsigned *mode)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 8);
	if (end == s || *end || errno || v > 0777)
		return -1;
	*mode = (unsigned)v;
	return 0;
}

/* Parses a group name or number into *gid; -1 if unknown. */
static int parse_group(const char *s, gid_t *gid)
{
	struct group *gr = getgrnam(s);
	char *end;
	unsigned long v;

	if (gr) {
		*gid = gr->gr_gid;
		return 0;
	}
	errno = 0;
	v = strtoul(s, &end, 10);
	if (end == s || *end || errno || v >= (unsigned long)(gid_t)-1)
		return -1;
	*gid = (gid_t)v;
	return 0;
}

/* Fills opts from argv. Returns 0, 1 for --help, -1 on a bad option
 * (message printed). */
static int parse_args(int argc, char **argv, struct hcd_opts *o, bool *check_only, bool *status)
{
	int c;

	*o = (struct hcd_opts){
		.kind = ROUTER_CHECK_TCP, .path = "/", .method = "GET", .status_min = 200, .status_max = 399,
		.interval_ms = 1000, .rise = 2, .fall = 2, .jitter_pct = 10, .tls_verify = true,
		.damp_flaps = 4, .damp_window_ms = 60000, .damp_hold_ms = 10000, .damp_max_ms = 300000,
		.dns_min_ttl_ms = 1000, .dns_max_ttl_ms = 300000, .dns_retry_ms = 2000,
		.feed_mode = 0660, .feed_gid = (gid_t)-1,
	};
	while ((c = getopt_long(argc, argv, "cv", long_opts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'c': *check_only = true; break;
		case 'v': o->verbose = true; break;
		case OPT_SEED: o->seed = optarg; break;
		case OPT_SEED_CACHE: o->seed_cache = optarg; break;
		case OPT_FEED: o->feed_path = optarg; break;
		case OPT_HAPROXY:
			if (o->n_haproxy == HCD_MAX_HAPROXY) {
				fprintf(stderr, "healthcheckd: at most %d --haproxy-socket\n", HCD_MAX_HAPROXY);
				return -1;
			}
			o->haproxy[o->n_haproxy++] = optarg;
			break;
		case OPT_STATS: o->stats_addr = optarg; break;
		case OPT_STATUS: *status = true; break;
		case OPT_CHECK: bad = parse_kind(optarg, &o->kind); break;
		case OPT_PATH: o->path = optarg; bad = optarg[0] != '/'; break;
		case OPT_METHOD: o->method = optarg; break;
		case OPT_HOST: o->host = optarg; break;
		case OPT_STATUS_RANGE: bad = parse_status_range(optarg, &o->status_min, &o->status_max); break;
		case OPT_SNI: o->sni = optarg; break;
		case OPT_INTERVAL: bad = parse_duration(optarg, &o->interval_ms) || o->interval_ms < 10; break;
		case OPT_FAST: bad = parse_duration(optarg, &o->fast_interval_ms); break;
		case OPT_TIMEOUT: bad = parse_duration(optarg, &o->timeout_ms) || o->timeout_ms < 1; break;
		case OPT_RISE: bad = parse_uint(optarg, 1, 100, &o->rise); break;
		case OPT_FALL: bad = parse_uint(optarg, 1, 100, &o->fall); break;
		case OPT_JITTER: bad = parse_uint(optarg, 0, 50, &o->jitter_pct); break;
		case OPT_CA: o->ca_file = optarg; break;
		case OPT_NOVERIFY: o->tls_verify = false; break;
		case OPT_DFLAPS: bad = parse_uint(optarg, 0, 1000, &o->damp_flaps); break;
		case OPT_DWINDOW: bad = parse_duration(optarg, &o->damp_window_ms); break;
		case OPT_DHOLD: bad = parse_duration(optarg, &o->damp_hold_ms); break;
		case OPT_DMAX: bad = parse_duration(optarg, &o->damp_max_ms); break;
		case OPT_DNSMIN: bad = parse_duration(optarg, &o->dns_min_ttl_ms); break;
		case OPT_DNSMAX: bad = parse_duration(optarg, &o->dns_max_ttl_ms); break;
		case OPT_DNSRETRY: bad = parse_duration(optarg, &o->dns_retry_ms) || o->dns_retry_ms < 10; break;
		case OPT_DNSSERVERS: o->dns_servers = optarg; break;
		case OPT_FEEDMODE: bad = parse_mode(optarg, &o->feed_mode); break;
		case OPT_FEEDGROUP: o->feed_group = optarg; bad = parse_group(optarg, &o->feed_gid); break;
		case OPT_HELP: return 1;
		default:
			fputs(usage_text, stderr);
			return -1;
		}
		if (bad) {
			fprintf(stderr, "healthcheckd: invalid value '%s' for --%s\n", optarg,
			        long_opts[c - OPT_SEED].name);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "healthcheckd: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (o->damp_max_ms < o->damp_hold_ms)
		o->damp_max_ms = o->damp_hold_ms;
	if (o->dns_max_ttl_ms < o->dns_min_ttl_ms)
		o->dns_max_ttl_ms = o->dns_min_ttl_ms;
	return 0;
}

/* Largest interval + timeout over the targets: the initial round's bound. */
static double initial_deadline_s(const struct hcd *d)
{
	unsigned worst = 0;

	for (unsigned i = 0; i < d->ntargets; i++) {
		unsigned v = d->targets[i]->interval_ms + d->targets[i]->timeout_ms;
		if (v > worst)
			worst = v;
	}
	return worst / 1000.0 + 0.2;
}

int main(int argc, char **argv)
{
	struct hcd *d = &daemon_state;
	bool check_only = false, status = false;
	char err[512];
	struct router_dir *dir;
	ev_signal sig_hup, sig_term, sig_int;
	sigset_t early_sigs;
	int rc, exit_code = 1;

	rc = parse_args(argc, argv, &d->opts, &check_only, &status);
	if (rc == 1) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (rc == -1)
		return 2;
	if (status) {
		if (!d->opts.feed_path) {
			fprintf(stderr, "healthcheckd: --status needs --feed PATH\n");
			return 2;
		}
		rc = hc_status_print(d->opts.feed_path, stdout, 3000, err, sizeof(err));
		if (rc == -1) {
			fprintf(stderr, "healthcheckd: %s\n", err);
			return 1;
		}
		return 0;
	}
	if (!d->opts.seed) {
		fprintf(stderr, "healthcheckd: --seed FILE|etcd://... is required (see --help)\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* Hold SIGHUP/SIGTERM/SIGINT until their watchers exist: the feed and
	 * stats sockets open (and a big seed loads) before that, and a signal
	 * sent as soon as the feed answers must not kill us by default action.
	 * They are unblocked once the watchers are started, and a pending one
	 * is then handled by the first loop iteration. */
	sigemptyset(&early_sigs);
	sigaddset(&early_sigs, SIGHUP);
	sigaddset(&early_sigs, SIGTERM);
	sigaddset(&early_sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &early_sigs, NULL);
	srandom((unsigned)hcd_mono_us() ^ (unsigned)getpid());
	/* thousands of targets: one socket each at most, plus subscribers
	 * (README.md, "Sizing") */
	d->nofile = hc_nofile_raise();

	d->loop = EV_DEFAULT;
	/* healthcheckd never routes: its directories skip the rings */
	d->seeds = sd_source_new(d->loop, &(struct sd_source_config){
		.spec = d->opts.seed, .flags = ROUTER_LOAD_NO_RINGS,
		.cache_path = check_only ? "" : d->opts.seed_cache, .daemon = "healthcheckd",
		.debounce = RELOAD_DEBOUNCE_S, .done = on_reload, .log = on_seed_log, .udata = d,
	}, err, sizeof(err));
	dir = d->seeds ? sd_source_initial(d->seeds, err, sizeof(err)) : NULL;
	if (!dir) {
		fprintf(stderr, "healthcheckd: %s\n", err);
		sd_source_free(&d->seeds);
		return 1;
	}
	/* always made: seed lines may ask for https at any reload */
	d->tls = tls_ctx_new(d->opts.ca_file, d->opts.tls_verify, err, sizeof(err));
	if (!d->tls && (d->opts.kind == ROUTER_CHECK_HTTPS || d->opts.ca_file)) {
		fprintf(stderr, "healthcheckd: TLS: %s\n", err);
		goto out_release_dir;
	}
	d->dns = hcd_dns_new(d, err, sizeof(err));
	if (!d->dns) {
		fprintf(stderr, "healthcheckd: %s\n", err);
		goto out_free_tls;
	}
	if (check_only) {
		if (hcd_targets_load(d, dir, err, sizeof(err)) == -1) {
			fprintf(stderr, "healthcheckd: %s\n", err);
			goto out_free_dns;
		}
		dir = NULL;     /* the table holds it now */
		printf("healthcheckd: %s OK: %u targets\n", d->opts.seed, d->ntargets);
		exit_code = 0;
		goto out_free_targets;
	}

	for (unsigned i = 0; i < d->opts.n_haproxy; i++) {
		d->haproxy[i] = hcd_haproxy_new(d, d->opts.haproxy[i], err, sizeof(err));
		if (!d->haproxy[i]) {
			fprintf(stderr, "healthcheckd: %s\n", err);
			goto out_free_clients;
		}
	}
	if (d->opts.feed_path) {
		d->feed = hcd_feed_new(d, d->opts.feed_path, err, sizeof(err));
		if (!d->feed) {
			fprintf(stderr, "healthcheckd: %s\n", err);
			goto out_free_clients;
		}
	}
	if (d->opts.stats_addr) {
		d->stats = hc_metrics_server_new(d->loop, d->opts.stats_addr, hcd_stats_render, d,
		                                 err, sizeof(err));
		if (!d->stats) {
			fprintf(stderr, "healthcheckd: %s\n", err);
			goto out_free_clients;
		}
		hc_metrics_server_set_log(d->stats, stats_log);
	}
	if (hcd_targets_load(d, dir, err, sizeof(err)) == -1) {
		fprintf(stderr, "healthcheckd: %s\n", err);
		goto out_free_clients;
	}
	dir = NULL;         /* the table holds it now */
	hcd_log("checking %u targets; feed %s, %u HAProxy socket(s), stats %s", d->ntargets,
	        d->opts.feed_path ? d->opts.feed_path : "-", d->opts.n_haproxy,
	        d->opts.stats_addr ? d->opts.stats_addr : "-");
	hcd_log("open-files limit %lu: up to %u feed subscribers, %u stats connections, "
	        "%u descriptors for checks", d->nofile, hcd_feed_cap(d),
	        d->opts.stats_addr ? hc_metrics_client_cap(d->nofile) : 0, d->ntargets);
	ev_timer_init(&d->initial_timer, on_initial_timer, initial_deadline_s(d), 0.0);
	if (!d->initial_done)
		ev_timer_start(d->loop, &d->initial_timer);
	for (unsigned i = 0; i < d->opts.n_haproxy; i++)
		hcd_haproxy_start(d->haproxy[i]);

	/* without inotify, SIGHUP still reloads: log, carry on */
	if (sd_source_start(d->seeds, err, sizeof(err)) == -1)
		hcd_log("%s (reload with SIGHUP)", err);
	ev_signal_init(&sig_hup, on_signal, SIGHUP);
	ev_signal_init(&sig_term, on_signal, SIGTERM);
	ev_signal_init(&sig_int, on_signal, SIGINT);
	ev_signal_start(d->loop, &sig_hup);
	ev_signal_start(d->loop, &sig_term);
	ev_signal_start(d->loop, &sig_int);
	/* libev (without EVFLAG_NOSIGMASK) leaves the mask alone: unblock. */
	sigprocmask(SIG_UNBLOCK, &early_sigs, NULL);

	/* feed listening, directory loaded: what Type=notify units wait for */
	if (hc_sd_notify("READY=1") == -1)
		hcd_log("sd_notify READY: %s", strerror(errno));
	ev_run(d->loop, 0);
	hc_sd_notify("STOPPING=1");
	exit_code = 0;

	ev_timer_stop(d->loop, &d->initial_timer);
	ev_signal_stop(d->loop, &sig_hup);
	ev_signal_stop(d->loop, &sig_term);
	ev_signal_stop(d->loop, &sig_int);
out_free_clients:
	hc_metrics_server_free(&d->stats);
	hcd_feed_free(&d->feed);
	for (unsigned i = 0; i < d->opts.n_haproxy; i++)
		hcd_haproxy_free(&d->haproxy[i]);
out_free_targets:
	hcd_targets_free(d);
out_free_dns:
	hcd_dns_free(&d->dns);
out_free_tls:
	tls_ctx_free(&d->tls);
out_release_dir:
	if (dir)
		router_dir_release(&dir);
	sd_source_free(&d->seeds);     /* a load in flight is waited for, dropped */
	return exit_code;
}
