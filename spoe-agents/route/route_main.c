/*
 * route_main.c — route-agent: the SPOE agent that tells HAProxy where each
 * request goes (docs/architecture.md §2.3).
 *
 * The main thread owns everything but the decisions: it loads the seed
 * directory at start (a file or etcd), reloads it (SIGHUP, the file changing,
 * an etcd change) through sd_source, follows the health feed, serves /metrics, and publishes
 * (directory, dc, down bytes) views that the SPOP workers pick up. SIGTERM
 * and SIGINT stop gracefully.
 */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "router.h"
#include "spop_runtime.h"
#include "route_agent.h"
#include "route_auth.h"
#include "route_health.h"
#include "route_log.h"
#include "route_map.h"
#include "route_view.h"
#include "hc_sdnotify.h"
#include "hc_feed.h"
#include "hc_metrics.h"
#include "hc_procmetrics.h"
#include "sd_filewatch.h"
#include "sd_source.h"

#define MAX_LISTEN       16
#define WATCH_DEBOUNCE   0.05     /* seconds: merge an editor's burst of events */
/* Descriptors kept out of the SPOP connection cap for what the main thread
 * opens while running: the health feed socket, /metrics clients (libhc
 * serves at most HC_METRICS_MAX_CLIENTS = 32 at once), the seed file while
 * a reload reads it, syslog's socket, with room to spare. */
#define ROUTE_FD_RESERVE 64
#define FEED_LOG_EVERY   30.0     /* seconds between "still not connected" lines */

struct route_options {
	const char *listen[MAX_LISTEN];
	unsigned nlisten;
	const char *seed;
	const char *seed_cache;
	const char *dc;
	unsigned workers;
	const char *health;
	const char *stats;
	uint32_t max_frame_size;
	unsigned idle_timeout_ms;
	unsigned max_connections;
	const char *haproxy_socket;          /* map cache: HAProxy's admin socket */
	const char *map_file;                /* map cache: this agent's map */
	unsigned map_max;
	bool map_admit_first;
	bool check, use_syslog;
	const char *auth_keys;               /* --auth-keys: access control on */
	unsigned auth_cache;
	unsigned auth_from;
};

/* The daemon: what the main thread owns. */
struct route_daemon {
	struct route_options opt;
	struct ev_loop *loop;
	char *dc_name;                       /* the local datacenter, fixed at start */
	struct route_view_holder *holder;
	struct route_view *current;          /* main's ref to the latest published view */
	struct route_agent *agent;
	struct route_auth *auth;             /* NULL without --auth-keys */
	uint64_t auth_reloads_ok, auth_reloads_error;
	bool auth_last_reload_ok;            /* false: the key file in use is older than the file */
	struct sd_filewatch keys_watch;      /* --auth-keys followed: reloaded when it changes */
	struct route_map *map;               /* --map-file: the map publisher */
	struct spop_runtime *rt;
	struct sd_source *seeds;             /* the seed directory: file or etcd */
	struct hc_metrics_server *stats;
	struct route_health *health;
	struct hc_feed_client *feed;
	bool feed_connected;
	bool feed_ever_connected;            /* "not reachable yet" until the first snapshot */
	unsigned feed_failures;              /* failed attempts since the last snapshot */
	double feed_next_log;                /* ev_now() before which retries are not logged */
	unsigned long nofile;                /* the soft open-files limit in force */
	unsigned last_ndown;       /* down, draining not counted */
	unsigned ndrain;           /* draining, per the feed, in the current view */
	uint64_t health_epoch;     /* target health changes applied from the feed */
	uint64_t reloads_ok, reloads_error, seed_generation;
	double last_reload_ok;               /* unix time of the last good load */
	ev_idle republish;                   /* health changed: rebuild the view once */
	ev_signal sig_term, sig_int, sig_hup;
	const char *stop_signal;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: route-agent --listen ADDR [--listen ADDR...] --seed FILE|etcd://... [options]\n"
		"       route-agent -c --seed FILE|etcd://... [--dc NAME]\n"
		"\n"
		"SPOE agent answering HAProxy's `route` message (args path, host, src) with\n"
		"txn vars backend, server, project and why (var-prefix route).\n"
		"\n"
		"  -l, --listen ADDR        SPOP listener: host:port, [v6]:port, *:port or a unix\n"
		"                           socket path (repeatable, at least one)\n"
		"  -s, --seed FILE          seed directory (reloaded on SIGHUP and when it changes)\n"
		"  -s, --seed etcd://HOST:PORT[,HOST:PORT...]/PREFIX\n"
		"                           the seed directory in etcd, followed with a watch\n"
		"      --seed-cache PATH    etcd: local copy of the last good directory, used when\n"
		"                           etcd is down at start (default\n"
		"                           /var/lib/seedgate/route-agent-<hash>.seed)\n"
		"  -d, --dc NAME            local datacenter (default: the first in the file)\n"
		"  -w, --workers N          SPOP worker threads (default 1)\n"
		"  -H, --health PATH        healthcheckd feed socket (default: every node up)\n"
		"  -S, --stats HOST:PORT    Prometheus metrics at GET /metrics\n"
		"      --max-frame-size N   largest SPOP frame we accept (default 16380)\n"
		"      --idle-timeout MS    close SPOP connections idle that long (default %u); must\n"
		"                           exceed HAProxy's idle timeout for the agents (`timeout\n"
		"                           idle` on 2.6, the agents backend's `timeout server` on\n"
		"                           3.x) so that HAProxy always closes an idle one first\n"
		"      --max-connections N  SPOP connections served at once; more are refused with\n"
		"                           AGENT-DISCONNECT 13 (default: what the open-files limit\n"
		"                           allows, less a reserve of %u; the soft limit is raised\n"
		"                           to the hard one at start)\n"
		"      --auth-keys FILE     project access control: the ES256 public keys, one\n"
		"                           'KID PEM-FILE' per line (reloaded on SIGHUP and when\n"
		"                           it changes); the\n"
		"                           `route-auth` message then answers txn.route.auth\n"
		"                           (401/403) or txn.route.user and txn.route.cookie\n"
		"                           (docs/access-control.md)\n"
		"      --auth-from LIST     credentials read: cookie,bearer (default both; a\n"
		"                           Bearer Authorization header wins over the cookie)\n"
		"      --auth-cache N       verified tokens cached per worker (default %u)\n"
		"      --haproxy-socket PATH  map cache: HAProxy's admin socket (runtime API) the\n"
		"                           decisions are published through (with --map-file)\n"
		"      --map-file PATH      map cache: this agent's HAProxy map, named as haproxy.cfg\n"
		"                           names it (SG_ROUTE_MAP=1: ${SG_RUN_DIR}/route-agentN.map);\n"
		"                           the agent owns it: cleared at start, project decisions\n"
		"                           added, changed on health, drain and directory changes\n"
		"      --map-max N          map cache: entries at most (default %u); at the cap the\n"
		"                           most recently used half stays\n"
		"      --map-admit-first    map cache: publish a project on its first miss (default:\n"
		"                           on its second, so never-seen projects cost no map write)\n"
		"      --syslog             log to syslog instead of stderr\n"
		"  -c, --check              check the seed directory (and --dc) and exit 0/1\n"
		"  -h, --help               this text\n",
		SPOP_DEFAULT_IDLE_TIMEOUT_MS, ROUTE_FD_RESERVE, ROUTE_AUTH_CACHE_DEFAULT, ROUTE_MAP_MAX_DEFAULT);
}

/* Strict unsigned parse: whole string, in [min, max]. */
static bool parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* The value of option `name`, in [min, max]; exits 2 saying what was
 * expected otherwise. */
static unsigned long opt_uint(const char *name, const char *arg, unsigned long min, unsigned long max,
			      const char *expected)
{
	unsigned long v;

	if (!parse_uint(arg, min, max, &v)) {
		fprintf(stderr, "route-agent: %s: expected %s, got '%s'\n", name, expected, arg);
		exit(2);
	}
	return v;
}

/* --auth-from: "cookie", "bearer" or both, comma-separated; exits 2 on
 * anything else. */
static unsigned parse_auth_from(const char *arg)
{
	unsigned from = 0;
	const char *p = arg;

	while (*p) {
		size_t n = strcspn(p, ",");

		if (n == 6 && strncmp(p, "cookie", 6) == 0)
			from |= ROUTE_AUTH_FROM_COOKIE;
		else if (n == 6 && strncmp(p, "bearer", 6) == 0)
			from |= ROUTE_AUTH_FROM_BEARER;
		else {
			fprintf(stderr, "route-agent: --auth-from: expected cookie, bearer or cookie,bearer, got '%s'\n", arg);
			exit(2);
		}
		p += n;
		if (*p == ',')
			p++;
	}
	if (!from) {
		fprintf(stderr, "route-agent: --auth-from: expected cookie, bearer or cookie,bearer, got '%s'\n", arg);
		exit(2);
	}
	return from;
}

/* Fills opt from argv; exits 0 on --help, 2 on a usage error. */
static void parse_options(int argc, char **argv, struct route_options *opt)
{
	enum { OPT_MFS = 256, OPT_IDLE, OPT_SYSLOG, OPT_MAXCONN, OPT_SEED_CACHE, OPT_AUTH_KEYS, OPT_AUTH_FROM,
	       OPT_AUTH_CACHE, OPT_HSOCK, OPT_MAPFILE, OPT_MAPMAX, OPT_MAPFIRST };
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "seed", required_argument, NULL, 's' },
		{ "seed-cache", required_argument, NULL, OPT_SEED_CACHE },
		{ "dc", required_argument, NULL, 'd' },
		{ "workers", required_argument, NULL, 'w' },
		{ "health", required_argument, NULL, 'H' },
		{ "stats", required_argument, NULL, 'S' },
		{ "max-frame-size", required_argument, NULL, OPT_MFS },
		{ "idle-timeout", required_argument, NULL, OPT_IDLE },
		{ "max-connections", required_argument, NULL, OPT_MAXCONN },
		{ "haproxy-socket", required_argument, NULL, OPT_HSOCK },
		{ "map-file", required_argument, NULL, OPT_MAPFILE },
		{ "map-max", required_argument, NULL, OPT_MAPMAX },
		{ "map-admit-first", no_argument, NULL, OPT_MAPFIRST },
		{ "syslog", no_argument, NULL, OPT_SYSLOG },
		{ "auth-keys", required_argument, NULL, OPT_AUTH_KEYS },
		{ "auth-from", required_argument, NULL, OPT_AUTH_FROM },
		{ "auth-cache", required_argument, NULL, OPT_AUTH_CACHE },
		{ "check", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(opt, 0, sizeof(*opt));
	opt->workers = 1;
	opt->auth_cache = ROUTE_AUTH_CACHE_DEFAULT;
	opt->map_max = ROUTE_MAP_MAX_DEFAULT;
	while ((c = getopt_long(argc, argv, "l:s:d:w:H:S:ch", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (opt->nlisten == MAX_LISTEN) {
				fprintf(stderr, "route-agent: at most %d --listen\n", MAX_LISTEN);
				exit(2);
			}
			opt->listen[opt->nlisten++] = optarg;
			break;
		case 's': opt->seed = optarg; break;
		case OPT_SEED_CACHE: opt->seed_cache = optarg; break;
		case 'd': opt->dc = optarg; break;
		case 'H': opt->health = optarg; break;
		case 'S': opt->stats = optarg; break;
		case 'c': opt->check = true; break;
		case OPT_SYSLOG: opt->use_syslog = true; break;
		case OPT_AUTH_KEYS: opt->auth_keys = optarg; break;
		case OPT_AUTH_FROM: opt->auth_from = parse_auth_from(optarg); break;
		case OPT_AUTH_CACHE:
			opt->auth_cache = (unsigned)opt_uint("--auth-cache", optarg, 4, 1u << 24, "4..16777216");
			break;
		case OPT_HSOCK: opt->haproxy_socket = optarg; break;
		case OPT_MAPFILE: opt->map_file = optarg; break;
		case OPT_MAPFIRST: opt->map_admit_first = true; break;
		case OPT_MAPMAX:
			opt->map_max = (unsigned)opt_uint("--map-max", optarg, 2, ROUTE_MAP_MAX_LIMIT, "2..1000000");
			break;
		case 'w': opt->workers = (unsigned)opt_uint("--workers", optarg, 1, 256, "1..256"); break;
		case OPT_MFS:
			opt->max_frame_size = (uint32_t)opt_uint("--max-frame-size", optarg, 256, 1u << 20, "256..1048576");
			break;
		case OPT_IDLE:
			opt->idle_timeout_ms = (unsigned)opt_uint("--idle-timeout", optarg, 1, 86400000, "milliseconds");
			break;
		case OPT_MAXCONN:
			opt->max_connections = (unsigned)opt_uint("--max-connections", optarg, 1, 1u << 30, "a count >= 1");
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "route-agent: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		exit(2);
	}
	if (!opt->seed) {
		fprintf(stderr, "route-agent: --seed FILE|etcd://... is required\n");
		usage(stderr);
		exit(2);
	}
	if (!opt->haproxy_socket != !opt->map_file) {
		fprintf(stderr, "route-agent: --haproxy-socket and --map-file go together (the map cache)\n");
		exit(2);
	}
	if (!opt->check && opt->nlisten == 0) {
		fprintf(stderr, "route-agent: at least one --listen ADDR is required\n");
		usage(stderr);
		exit(2);
	}
}

/* The local dc's index in dir: --dc's name (or the name chosen at start), or
 * the first datacenter when none was chosen yet. -1 with err when the
 * directory does not define it. */
static int resolve_dc(const struct router_dir *dir, const char *name, const char *file, char *err, size_t errlen)
{
	int dc;

	if (router_dir_dc_count(dir) == 0) {
		snprintf(err, errlen, "%s: no datacenter defined", file);
		return -1;
	}
	if (!name)
		return 0;
	dc = router_dir_dc_find(dir, name);
	if (dc < 0)
		snprintf(err, errlen, "%s: datacenter '%s' (--dc) is not defined", file, name);
	return dc;
}

/* One line describing a directory, for the start and reload logs. */
static void describe_dir(const struct router_dir *dir, char *out, size_t len)
{
	unsigned hubs = 0, nodes = 0, ndc = router_dir_dc_count(dir);

	for (unsigned i = 0; i < ndc; i++) {
		hubs += router_dir_hub_count(dir, i);
		nodes += router_dir_node_count(dir, i);
	}
	snprintf(out, len, "%u datacenters, %u hubs, %u nodes, %u pins, replicas %u", ndc, hubs, nodes,
		 router_dir_pin_count(dir), router_dir_replicas(dir));
}

/* Builds a view of dir (takes over the caller's reference) with the health
 * table's down bytes, publishes it to the workers and keeps main's own ref.
 * -1 on allocation failure (nothing published). */
static int publish_view(struct route_daemon *d, struct router_dir *dir, unsigned dc)
{
	unsigned n = router_dir_target_count(dir), ndown = 0, ndrain = 0;
	uint8_t *down = NULL;
	struct route_view *v;

	if (route_health_down_count(d->health)) {
		down = malloc(n ? n : 1);
		if (!down) {
			router_dir_release(&dir);
			return -1;
		}
		ndown = route_health_fill_down(d->health, dir, down, &ndrain);
	}
	v = route_view_new(dir, dc, ndown ? down : NULL);
	free(down);
	if (!v)
		return -1;
	route_view_release(&d->current);
	d->current = route_view_ref(v);
	route_view_holder_publish(d->holder, v);
	if (d->map)
		route_map_view(d->map, v, route_view_holder_generation(d->holder));
	/* the view marks drained targets too (no new requests); the log and
	 * the gauge count failures only */
	if (ndown - ndrain != d->last_ndown || ndrain != d->ndrain)
		route_log(LOG_NOTICE, "health: %u of %u targets down (was %u), %u draining", ndown - ndrain, n,
			  d->last_ndown, ndrain);
	d->last_ndown = ndown - ndrain;
	d->ndrain = ndrain;
	return 0;
}

/* A finished reload, on the main thread: a good directory is published; a
 * bad one is logged with its file:line (etcd: its key) and changes
 * nothing. 0 when dir is in use (sd_source then reports its revision). */
static int on_loaded(void *udata, struct router_dir *dir, const char *err, const char *reason)
{
	struct route_daemon *d = udata;
	char why[600], desc[200];
	int dc;

	if (strcmp(reason, SD_REASON_FILE_CHANGED) == 0)
		route_log(LOG_INFO, "seed file %s changed, reloading", d->opt.seed);
	if (!dir) {
		d->reloads_error++;
		route_log(LOG_ERR, "seed reload failed, keeping generation %llu (%s): %s",
			  (unsigned long long)d->seed_generation, sd_source_describe(d->seeds), err);
		return -1;
	}
	dc = resolve_dc(dir, d->dc_name, d->opt.seed, why, sizeof(why));
	if (dc < 0) {
		d->reloads_error++;
		router_dir_release(&dir);
		route_log(LOG_ERR, "seed reload failed, keeping generation %llu: %s",
			  (unsigned long long)d->seed_generation, why);
		return -1;
	}
	describe_dir(dir, desc, sizeof(desc));
	if (publish_view(d, dir, (unsigned)dc) == -1) {
		d->reloads_error++;
		route_log(LOG_ERR, "seed reload failed, keeping generation %llu: out of memory",
			  (unsigned long long)d->seed_generation);
		return -1;
	}
	d->reloads_ok++;
	d->seed_generation++;
	d->last_reload_ok = (double)time(NULL);
	route_log(LOG_NOTICE, "seed reloaded: %s generation %llu (%s; %s)", d->opt.seed,
		  (unsigned long long)d->seed_generation, desc, reason);
	return 0;
}

/* Health changed: rebuild the current view with the new down bytes, once
 * per loop iteration however many feed lines arrived. */
static void republish_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct route_daemon *d = w->data;
	struct router_dir *dir;

	(void)revents;
	ev_idle_stop(loop, w);
	dir = router_dir_ref(d->current->dir);
	if (publish_view(d, dir, d->current->local_dc) == -1)
		route_log(LOG_ERR, "health: out of memory, keeping the previous health view");
}

/* Feed: one target's state. Drain counts as down for routing: a draining
 * node takes no new projects. */
/* The /metrics server's own messages (descriptor limit, evictions) go
 * through the agent's log like every other line. */
static void metrics_log(const char *msg)
{
	route_log(LOG_WARNING, "metrics: %s", msg);
}

static void on_feed_target(void *udata, const char *name, enum hc_state st, const char *addr)
{
	struct route_daemon *d = udata;

	(void)addr;
	int rc = route_health_set(d->health, name, st == HC_DOWN ? ROUTE_H_DOWN :
				  st == HC_DRAIN ? ROUTE_H_DRAIN : ROUTE_H_UP);
	if (rc == -1)
		route_log(LOG_ERR, "health: out of memory recording %s", name);
	else if (rc == 1) {
		d->health_epoch++;
		ev_idle_start(d->loop, &d->republish);
	}
}

/* Feed: link lost or restored (the client reports each loss once, and
 * "connected" only once a full snapshot arrived). Losing it keeps the last
 * known state. A fresh snapshot is complete: targets it no longer lists as
 * down are up again. Before the first snapshot (healthcheckd not up yet)
 * nothing was lost: that is "not reachable yet". */
static void on_feed_link(void *udata, bool connected, const char *why)
{
	struct route_daemon *d = udata;

	d->feed_connected = connected;
	if (connected) {
		unsigned back_up = route_health_end_snapshot(d->health);

		if (back_up > 0) {
			d->health_epoch += back_up;
			ev_idle_start(d->loop, &d->republish);
		}
		if (d->feed_ever_connected && d->feed_failures > 1)
			route_log(LOG_NOTICE, "health feed %s connected again after %u attempts%s%s", d->opt.health,
				  d->feed_failures, why ? ": " : "", why ? why : "");
		else
			route_log(LOG_NOTICE, "health feed %s connected%s%s", d->opt.health, why ? ": " : "",
				  why ? why : "");
		d->feed_ever_connected = true;
		d->feed_failures = 0;
		return;
	}
	d->feed_next_log = ev_now(d->loop) + FEED_LOG_EVERY;
	if (!d->feed_ever_connected) {
		route_log(LOG_WARNING, "health feed %s not reachable yet%s%s (every target counts as up until "
			  "its first snapshot; retrying)", d->opt.health, why ? ": " : "", why ? why : "");
		return;
	}
	route_health_begin_snapshot(d->health);
	route_log(LOG_WARNING, "health feed %s lost, keeping the last known state%s%s", d->opt.health,
		  why ? ": " : "", why ? why : "");
}

/* Feed: one failed attempt (the first is the loss on_feed_link reported).
 * The client retries every 2 s at most; one line per FEED_LOG_EVERY says
 * it goes on without filling the log. */
static void on_feed_retry(void *udata, unsigned failures, const char *why, double retry_in)
{
	struct route_daemon *d = udata;

	d->feed_failures = failures;
	if (failures <= 1 || ev_now(d->loop) < d->feed_next_log)
		return;
	d->feed_next_log = ev_now(d->loop) + FEED_LOG_EVERY;
	route_log(LOG_WARNING, "health feed %s still %s after %u attempts: %s (next in %.1f s)", d->opt.health,
		  d->feed_ever_connected ? "lost" : "not reachable", failures, why, retry_in);
}

/* Access control counters (only with --auth-keys). */
static void render_auth_metrics(struct route_daemon *d, struct hc_text *t)
{
	struct route_auth_counts a;

	if (!d->auth)
		return;
	route_auth_counts(d->auth, &a);
	hc_text_printf(t, "# HELP seedgate_auth_results_total Project access checks by outcome (ok; 401: missing, expired, bad_signature, bad_alg, unknown_kid, malformed; 403: forbidden).\n"
			  "# TYPE seedgate_auth_results_total counter\n");
	for (unsigned k = 0; k < SG_JWT_RESULT_COUNT; k++)
		hc_text_printf(t, "seedgate_auth_results_total{result=\"%s\"} %llu\n",
			       sg_jwt_result_str((enum sg_jwt_result)k), (unsigned long long)a.results[k]);
	hc_text_printf(t, "# HELP seedgate_auth_cache_hits_total Tokens found in a worker's verified-token cache.\n"
			  "# TYPE seedgate_auth_cache_hits_total counter\n"
			  "seedgate_auth_cache_hits_total %llu\n"
			  "# HELP seedgate_auth_cache_misses_total Tokens verified (ECDSA) because no cache entry held them.\n"
			  "# TYPE seedgate_auth_cache_misses_total counter\n"
			  "seedgate_auth_cache_misses_total %llu\n"
			  "# HELP seedgate_auth_cache_entries Verified tokens held by the workers' caches.\n"
			  "# TYPE seedgate_auth_cache_entries gauge\n"
			  "seedgate_auth_cache_entries %llu\n"
			  "# HELP seedgate_auth_cache_flushes_total Worker caches emptied because a new key set was loaded.\n"
			  "# TYPE seedgate_auth_cache_flushes_total counter\n"
			  "seedgate_auth_cache_flushes_total %llu\n"
			  "# HELP seedgate_auth_keys Public keys in the key set in use.\n"
			  "# TYPE seedgate_auth_keys gauge\n"
			  "seedgate_auth_keys %u\n"
			  "# HELP seedgate_auth_key_reloads_total Key file loads by result.\n"
			  "# TYPE seedgate_auth_key_reloads_total counter\n"
			  "seedgate_auth_key_reloads_total{result=\"ok\"} %llu\n"
			  "seedgate_auth_key_reloads_total{result=\"error\"} %llu\n"
			  "# HELP seedgate_auth_keys_last_reload_successful 1 if the last load of the key file succeeded; 0: it failed and the keys in use are older (a revoked key may still verify).\n"
			  "# TYPE seedgate_auth_keys_last_reload_successful gauge\n"
			  "seedgate_auth_keys_last_reload_successful %d\n",
		       (unsigned long long)a.cache_hits, (unsigned long long)a.cache_misses,
		       (unsigned long long)a.cache_entries, (unsigned long long)a.cache_flushes,
		       route_auth_key_count(d->auth), (unsigned long long)d->auth_reloads_ok,
		       (unsigned long long)d->auth_reloads_error, d->auth_last_reload_ok ? 1 : 0);
}

/* Prometheus text for GET /metrics. */
static void render_metrics(void *udata, struct hc_text *t)
{
	struct route_daemon *d = udata;
	struct route_agent_counts c;
	struct spop_stats s;

	route_agent_counts(d->agent, &c);
	spop_runtime_stats(d->rt, &s);

	hc_text_printf(t, "# HELP seedgate_route_decisions_total Routing decisions by reason.\n"
			  "# TYPE seedgate_route_decisions_total counter\n");
	for (unsigned k = 0; k < ROUTER_WHY_COUNT; k++)
		hc_text_printf(t, "seedgate_route_decisions_total{why=\"%s\"} %llu\n",
			       router_why_str((enum router_why)k), (unsigned long long)c.decisions[k]);
	hc_text_printf(t, "# HELP seedgate_route_missing_path_total Messages without a usable path argument (routed to the hubs).\n"
			  "# TYPE seedgate_route_missing_path_total counter\n"
			  "seedgate_route_missing_path_total %llu\n", (unsigned long long)c.no_path);
	hc_text_printf(t, "# HELP seedgate_route_errors_total Messages answered with an empty ACK.\n"
			  "# TYPE seedgate_route_errors_total counter\n"
			  "seedgate_route_errors_total %llu\n", (unsigned long long)c.errors);

	render_auth_metrics(d, t);

	hc_text_printf(t, "# HELP seedgate_spop_disconnects_total AGENT-DISCONNECT frames sent, by status.\n"
			  "# TYPE seedgate_spop_disconnects_total counter\n");
	for (unsigned k = 0; k < 100; k++) {
		if (k > 13 && k != 99 && s.disconnect_status[k] == 0)
			continue;
		hc_text_printf(t, "seedgate_spop_disconnects_total{status=\"%u\",reason=\"%s\"} %llu\n", k,
			       spop_status_str((enum spop_status)k), (unsigned long long)s.disconnect_status[k]);
	}
	hc_text_printf(t, "# HELP seedgate_spop_connections_total SPOP connections accepted.\n"
			  "# TYPE seedgate_spop_connections_total counter\n"
			  "seedgate_spop_connections_total %llu\n"
			  "# HELP seedgate_spop_connections SPOP connections open now.\n"
			  "# TYPE seedgate_spop_connections gauge\n"
			  "seedgate_spop_connections %llu\n"
			  "# HELP seedgate_spop_connections_max Connection cap: more are refused with AGENT-DISCONNECT 13.\n"
			  "# TYPE seedgate_spop_connections_max gauge\n"
			  "seedgate_spop_connections_max %llu\n"
			  "# HELP seedgate_spop_connections_refused_total Connections refused at the cap.\n"
			  "# TYPE seedgate_spop_connections_refused_total counter\n"
			  "seedgate_spop_connections_refused_total %llu\n"
			  "# HELP seedgate_spop_accept_errors_total accept() failures (out of descriptors ...); each pauses accepting for 100 ms.\n"
			  "# TYPE seedgate_spop_accept_errors_total counter\n"
			  "seedgate_spop_accept_errors_total %llu\n"
			  "# HELP seedgate_spop_hello_timeouts_total Connections closed for not sending their HAPROXY-HELLO in time.\n"
			  "# TYPE seedgate_spop_hello_timeouts_total counter\n"
			  "seedgate_spop_hello_timeouts_total %llu\n"
			  "# HELP seedgate_spop_idle_timeout_seconds Idle SPOP connections are closed after this (must exceed HAProxy's).\n"
			  "# TYPE seedgate_spop_idle_timeout_seconds gauge\n"
			  "seedgate_spop_idle_timeout_seconds %.3f\n"
			  "# HELP seedgate_open_files_limit The soft RLIMIT_NOFILE in force.\n"
			  "# TYPE seedgate_open_files_limit gauge\n"
			  "seedgate_open_files_limit %lu\n"
			  "# HELP seedgate_log_lines_suppressed_total Log lines left out by the rate limits (the counters above keep every event).\n"
			  "# TYPE seedgate_log_lines_suppressed_total counter\n"
			  "seedgate_log_lines_suppressed_total %llu\n",
		       (unsigned long long)s.conns_total, (unsigned long long)s.conns_current,
		       (unsigned long long)s.conns_max, (unsigned long long)s.conns_refused,
		       (unsigned long long)s.accept_errors, (unsigned long long)s.hello_timeouts,
		       s.idle_timeout_ms / 1000.0, d->nofile, (unsigned long long)s.log_suppressed);
	hc_text_printf(t, "# HELP seedgate_spop_hellos_total HAPROXY-HELLO frames received.\n"
			  "# TYPE seedgate_spop_hellos_total counter\nseedgate_spop_hellos_total %llu\n"
			  "# HELP seedgate_spop_healthchecks_total HAPROXY-HELLO frames that were health checks (option spop-check).\n"
			  "# TYPE seedgate_spop_healthchecks_total counter\nseedgate_spop_healthchecks_total %llu\n"
			  "# HELP seedgate_spop_notifies_total NOTIFY frames received.\n"
			  "# TYPE seedgate_spop_notifies_total counter\nseedgate_spop_notifies_total %llu\n"
			  "# HELP seedgate_spop_acks_total ACK frames sent.\n"
			  "# TYPE seedgate_spop_acks_total counter\nseedgate_spop_acks_total %llu\n"
			  "# HELP seedgate_spop_messages_total SPOE messages received (a NOTIFY may carry several).\n"
			  "# TYPE seedgate_spop_messages_total counter\nseedgate_spop_messages_total %llu\n"
			  "# HELP seedgate_spop_haproxy_disconnects_total HAPROXY-DISCONNECT frames received.\n"
			  "# TYPE seedgate_spop_haproxy_disconnects_total counter\nseedgate_spop_haproxy_disconnects_total %llu\n"
			  "# HELP seedgate_spop_received_bytes_total Bytes read from SPOP connections.\n"
			  "# TYPE seedgate_spop_received_bytes_total counter\nseedgate_spop_received_bytes_total %llu\n"
			  "# HELP seedgate_spop_sent_bytes_total Bytes written to SPOP connections.\n"
			  "# TYPE seedgate_spop_sent_bytes_total counter\nseedgate_spop_sent_bytes_total %llu\n",
		       (unsigned long long)s.hellos, (unsigned long long)s.healthchecks,
		       (unsigned long long)s.notifies, (unsigned long long)s.acks,
		       (unsigned long long)s.messages, (unsigned long long)s.haproxy_disconnects,
		       (unsigned long long)s.bytes_in, (unsigned long long)s.bytes_out);

	hc_text_printf(t, "# HELP seedgate_seed_reloads_total Seed directory reloads by result.\n"
			  "# TYPE seedgate_seed_reloads_total counter\n"
			  "seedgate_seed_reloads_total{result=\"ok\"} %llu\n"
			  "seedgate_seed_reloads_total{result=\"error\"} %llu\n"
			  "# HELP seedgate_seed_generation Good seed directories loaded since start (1 = the initial one).\n"
			  "# TYPE seedgate_seed_generation gauge\n"
			  "seedgate_seed_generation %llu\n"
			  "# HELP seedgate_seed_last_reload_success_timestamp_seconds When the directory in use was loaded (unix time).\n"
			  "# TYPE seedgate_seed_last_reload_success_timestamp_seconds gauge\n"
			  "seedgate_seed_last_reload_success_timestamp_seconds %.0f\n"
			  "# HELP seedgate_seed_targets Hubs and nodes in the directory in use.\n"
			  "# TYPE seedgate_seed_targets gauge\n"
			  "seedgate_seed_targets %u\n",
		       (unsigned long long)d->reloads_ok, (unsigned long long)d->reloads_error,
		       (unsigned long long)d->seed_generation, d->last_reload_ok,
		       router_dir_target_count(d->current->dir));
	sd_source_metrics(d->seeds, t);
	hc_text_printf(t, "# HELP seedgate_health_feed_connected 1 when the health feed is connected.\n"
			  "# TYPE seedgate_health_feed_connected gauge\n"
			  "seedgate_health_feed_connected %d\n"
			  "# HELP seedgate_health_epoch Target health changes applied from the feed since start.\n"
			  "# TYPE seedgate_health_epoch gauge\n"
			  "seedgate_health_epoch %llu\n"
			  "# HELP seedgate_health_targets_down Targets of the current directory marked down.\n"
			  "# TYPE seedgate_health_targets_down gauge\n"
			  "seedgate_health_targets_down %u\n"
			  "# HELP seedgate_health_targets_drain Targets of the current directory the feed reports draining.\n"
			  "# TYPE seedgate_health_targets_drain gauge\n"
			  "seedgate_health_targets_drain %u\n"
			  "# HELP seedgate_route_workers SPOP worker threads (--workers).\n"
			  "# TYPE seedgate_route_workers gauge\n"
			  "seedgate_route_workers %u\n",
		       d->feed_connected ? 1 : 0, (unsigned long long)d->health_epoch, d->current->ndown - d->ndrain, d->ndrain, d->opt.workers);
	if (d->map)
		route_map_metrics(d->map, t);
	hc_metrics_process(t, "route-agent");
}

/* SIGTERM / SIGINT: leave the main loop; main() stops the runtime. */
static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct route_daemon *d = w->data;

	(void)revents;
	d->stop_signal = w->signum == SIGTERM ? "SIGTERM" : "SIGINT";
	ev_break(loop, EVBREAK_ALL);
}

/* (Re)loads --auth-keys and publishes the set; a bad file keeps the keys
 * in use and is logged with file:line. Workers take the new set (and
 * forget the tokens they verified) at their next message. */
static int reload_auth_keys(struct route_daemon *d, const char *reason)
{
	char err[600], kids[400];

	if (route_auth_load(d->auth, d->opt.auth_keys, err, sizeof(err)) == -1) {
		d->auth_reloads_error++;
		d->auth_last_reload_ok = false;
		route_log(LOG_ERR, "auth keys reload failed, keeping the keys in use: %s", err);
		return -1;
	}
	d->auth_reloads_ok++;
	d->auth_last_reload_ok = true;
	route_auth_describe(d->auth, kids, sizeof(kids));
	route_log(LOG_NOTICE, "auth keys loaded from %s: %u key%s (%s)%s%s", d->opt.auth_keys,
		  route_auth_key_count(d->auth), route_auth_key_count(d->auth) == 1 ? "" : "s", kids,
		  reason ? "; " : "", reason ? reason : "");
	return 0;
}

/* The --auth-keys file changed (and has been quiet for a moment): a key
 * added or revoked by editing the file takes effect without SIGHUP. */
static void on_keys_changed(struct sd_filewatch *w, void *arg)
{
	(void)w;
	reload_auth_keys(arg, "the key file changed");
}

/* SIGHUP: reload the seed directory and the auth keys. */
static void on_hup_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct route_daemon *d = w->data;

	(void)loop;
	(void)revents;
	route_log(LOG_INFO, "SIGHUP: reloading %s", d->opt.seed);
	if (d->seeds)
		sd_source_request(d->seeds, "SIGHUP");
	if (d->auth)
		reload_auth_keys(d, "SIGHUP");
}

/* The seed source of --seed (file or etcd) on loop. check: no local copy
 * (-c judges what the source holds, not an old copy). */
static struct sd_source *open_seed(struct ev_loop *loop, const struct route_options *opt, bool check,
                                   struct route_daemon *d, char *err, size_t errlen)
{
	struct sd_source_config cfg = {
		.spec = opt->seed,
		.cache_path = check ? "" : opt->seed_cache,
		.daemon = "route-agent",
		.debounce = WATCH_DEBOUNCE,
		.done = on_loaded,
		.log = route_log_cb,
		.udata = d,
	};

	return sd_source_new(loop, &cfg, err, errlen);
}

/* One line of text that may quote a file's bytes, escaped like the log. */
static void print_escaped(FILE *out, const char *text)
{
	char buf[2400];

	route_log_escape(text, buf, sizeof(buf));
	fprintf(out, "%s\n", buf);
}

/* -c: load, resolve --dc, print a summary; 0 when good, 1 with file:line. */
static int check_only(const struct route_options *opt)
{
	char err[600], desc[200];
	struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
	struct sd_source *src = loop ? open_seed(loop, opt, true, NULL, err, sizeof(err)) : NULL;
	struct router_dir *dir = src ? sd_source_initial(src, err, sizeof(err)) : NULL;
	int dc;

	sd_source_free(&src);
	if (!dir) {
		print_escaped(stderr, loop ? err : "cannot initialise libev");
		return 1;
	}
	dc = resolve_dc(dir, opt->dc, opt->seed, err, sizeof(err));
	if (dc < 0) {
		print_escaped(stderr, err);
		router_dir_release(&dir);
		return 1;
	}
	describe_dir(dir, desc, sizeof(desc));
	printf("%s: ok (%s; local datacenter %s)\n", opt->seed, desc, router_dir_dc_name(dir, (unsigned)dc));
	router_dir_release(&dir);
	if (opt->auth_keys) {
		struct sg_jwt_keys *keys = sg_jwt_keys_load(opt->auth_keys, err, sizeof(err));

		if (!keys) {
			print_escaped(stderr, err);
			return 1;
		}
		printf("%s: ok (%u keys)\n", opt->auth_keys, sg_jwt_keys_count(keys));
		sg_jwt_keys_release(&keys);
	}
	return 0;
}

/* Loads the initial directory (a file, etcd, or etcd's local copy when
 * etcd is down) and publishes the first view. */
static int daemon_load_initial(struct route_daemon *d, char *err, size_t errlen)
{
	struct router_dir *dir;
	char desc[200];
	int dc;

	d->seeds = open_seed(d->loop, &d->opt, false, d, err, errlen);
	if (!d->seeds)
		return -1;
	dir = sd_source_initial(d->seeds, err, errlen);
	if (!dir)
		return -1;
	dc = resolve_dc(dir, d->opt.dc, d->opt.seed, err, errlen);
	if (dc < 0) {
		router_dir_release(&dir);
		return -1;
	}
	d->dc_name = strdup(router_dir_dc_name(dir, (unsigned)dc));
	if (!d->dc_name) {
		router_dir_release(&dir);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	describe_dir(dir, desc, sizeof(desc));
	if (publish_view(d, dir, (unsigned)dc) == -1) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	d->seed_generation = 1;
	d->last_reload_ok = (double)time(NULL);
	route_log(LOG_INFO, "seed %s loaded (%s; %s)", d->opt.seed, desc, sd_source_describe(d->seeds));
	return 0;
}

/* Everything that may fail before the workers run; errors end up in err. */
static int daemon_setup(struct route_daemon *d, char *err, size_t errlen)
{
	struct spop_runtime_config cfg = {
		.workers = d->opt.workers,
		.max_frame_size = d->opt.max_frame_size,
		.idle_timeout_ms = d->opt.idle_timeout_ms,
		.max_connections = d->opt.max_connections,
		.fd_reserve = ROUTE_FD_RESERVE,
		.agent_name = "route-agent",
		.log = route_log_cb,
	};

	d->loop = ev_default_loop(EVFLAG_AUTO);
	if (!d->loop) {
		snprintf(err, errlen, "cannot initialise libev");
		return -1;
	}
	/* Signals first: once a listener is open a supervisor (or a test)
	 * may send SIGTERM at any moment, and before ev_signal_start the
	 * default action would kill us without a graceful stop. A signal
	 * caught before ev_run() is delivered by the first loop iteration. */
	ev_signal_init(&d->sig_term, on_stop_signal, SIGTERM);
	ev_signal_init(&d->sig_int, on_stop_signal, SIGINT);
	ev_signal_init(&d->sig_hup, on_hup_signal, SIGHUP);
	d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
	ev_signal_start(d->loop, &d->sig_term);
	ev_signal_start(d->loop, &d->sig_int);
	ev_signal_start(d->loop, &d->sig_hup);
	d->holder = route_view_holder_new();
	d->health = route_health_new();
	if (!d->holder || !d->health) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (daemon_load_initial(d, err, errlen) == -1)
		return -1;
	d->agent = route_agent_new(d->holder, d->opt.workers);
	if (!d->agent) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	route_agent_configure(d->agent, &cfg);
	if (d->opt.auth_keys) {
		d->auth = route_auth_new(d->opt.workers, d->opt.auth_cache, d->opt.auth_from);
		if (!d->auth) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		sd_filewatch_init(&d->keys_watch);
		if (route_auth_load(d->auth, d->opt.auth_keys, err, errlen) == -1 ||
		    sd_filewatch_start(&d->keys_watch, d->loop, d->opt.auth_keys, WATCH_DEBOUNCE, on_keys_changed, d,
		                       err, errlen) == -1)
			return -1;
		d->auth_reloads_ok = 1;
		d->auth_last_reload_ok = true;
		route_agent_set_auth(d->agent, d->auth);
		{
			char kids[400];

			route_auth_describe(d->auth, kids, sizeof(kids));
			route_log(LOG_NOTICE, "access control on: %u key%s from %s (%s); %u cached tokens per worker",
				  route_auth_key_count(d->auth), route_auth_key_count(d->auth) == 1 ? "" : "s",
				  d->opt.auth_keys, kids, d->opt.auth_cache);
		}
	}
	d->rt = spop_runtime_new(&cfg, err, errlen);
	if (!d->rt)
		return -1;
	if (route_agent_attach(d->agent, d->rt) == -1) {
		snprintf(err, errlen, "cannot register the route message");
		return -1;
	}
	if (d->opt.map_file) {
		struct route_map_config mc = {
			.loop = d->loop, .socket = d->opt.haproxy_socket, .map_file = d->opt.map_file,
			.max = d->opt.map_max, .workers = d->opt.workers, .admit_first = d->opt.map_admit_first,
		};

		d->map = route_map_new(&mc, err, errlen);
		if (!d->map)
			return -1;
		if (route_map_attach(d->map, d->rt) == -1) {
			snprintf(err, errlen, "cannot register the route-touch message");
			return -1;
		}
		route_map_view(d->map, d->current, route_view_holder_generation(d->holder));
		route_agent_set_map(d->agent, d->map);
	}
	for (unsigned i = 0; i < d->opt.nlisten; i++)
		if (spop_runtime_listen(d->rt, d->opt.listen[i], err, errlen) == -1)
			return -1;
	if (d->opt.stats) {
		d->stats = hc_metrics_server_new(d->loop, d->opt.stats, render_metrics, d, err, errlen);
		if (!d->stats)
			return -1;
		hc_metrics_server_set_log(d->stats, metrics_log);
	}
	if (sd_source_start(d->seeds, err, errlen) == -1)
		return -1;
	ev_idle_init(&d->republish, republish_cb);
	d->republish.data = d;
	if (d->opt.health) {
		d->feed = hc_feed_client_new(d->loop, d->opt.health, on_feed_target, on_feed_link, d, err, errlen);
		if (!d->feed)
			return -1;
		hc_feed_client_set_retry_cb(d->feed, on_feed_retry);
	}
	if (spop_runtime_start(d->rt, err, errlen) == -1)
		return -1;
	if (d->map)
		route_map_start(d->map);
	return 0;
}

/* Releases everything in reverse order; safe on a partial setup. */
static void daemon_teardown(struct route_daemon *d)
{
	if (d->rt)
		spop_runtime_stop(d->rt);
	spop_runtime_free(&d->rt);
	hc_feed_client_free(&d->feed);
	sd_source_free(&d->seeds);
	hc_metrics_server_free(&d->stats);
	if (d->loop) {
		ev_idle_stop(d->loop, &d->republish);
		ev_signal_stop(d->loop, &d->sig_term);
		ev_signal_stop(d->loop, &d->sig_int);
		ev_signal_stop(d->loop, &d->sig_hup);
	}
	route_agent_free(&d->agent);
	if (d->auth)
		sd_filewatch_stop(&d->keys_watch);
	route_auth_free(&d->auth);
	route_map_free(&d->map);
	route_view_release(&d->current);
	route_view_holder_free(&d->holder);
	route_health_free(&d->health);
	free(d->dc_name);
}

/* Raises the soft open-files limit to the hard one. Every SPOP connection
 * holds a descriptor, and the usual soft default (1024) is below what
 * HAProxy may open to an agent (README: sizing); the hard limit is what the
 * administrator allows. Returns the soft limit in force; `note` says what
 * happened, for the start log. */
static unsigned long raise_nofile(char *note, size_t len)
{
	struct rlimit rl;
	rlim_t before;

	note[0] = 0;
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		snprintf(note, len, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return 0;
	}
	before = rl.rlim_cur;
	if (rl.rlim_cur != rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
			snprintf(note, len, "cannot raise the open-files limit from %llu to %llu: %s",
				 (unsigned long long)before, (unsigned long long)rl.rlim_max, strerror(errno));
			rl.rlim_cur = before;
		} else {
			snprintf(note, len, "open-files limit raised from %llu to %llu",
				 (unsigned long long)before, (unsigned long long)rl.rlim_cur);
		}
	}
	return rl.rlim_cur == RLIM_INFINITY ? (unsigned long)-1 : (unsigned long)rl.rlim_cur;
}

int main(int argc, char **argv)
{
	struct route_daemon d = { 0 };
	struct spop_stats st;
	char err[600], listeners[512] = "";
	size_t off = 0;
	int status = 0;

	parse_options(argc, argv, &d.opt);
	if (d.opt.check)
		return check_only(&d.opt);

	route_log_open(d.opt.use_syslog, "route-agent");
	signal(SIGPIPE, SIG_IGN);
	d.nofile = raise_nofile(err, sizeof(err));
	if (err[0])
		route_log(strncmp(err, "open-files limit raised", 23) == 0 ? LOG_INFO : LOG_WARNING, "%s", err);
	if (daemon_setup(&d, err, sizeof(err)) == -1) {
		route_log(LOG_ERR, "cannot start: %s", err);
		status = 1;
		goto out;
	}
	for (unsigned i = 0; i < d.opt.nlisten && off < sizeof(listeners); i++)
		off += (size_t)snprintf(listeners + off, sizeof(listeners) - off, "%s%s", i ? ", " : "", d.opt.listen[i]);
	spop_runtime_stats(d.rt, &st);
	route_log(LOG_NOTICE, "started: listening on %s; datacenter %s; %u worker%s; up to %llu connections "
		  "(open-files limit %lu); idle timeout %.3g s%s%s%s%s", listeners,
		  d.dc_name, d.opt.workers, d.opt.workers == 1 ? "" : "s", (unsigned long long)st.conns_max,
		  d.nofile, st.idle_timeout_ms / 1000.0,
		  d.opt.stats ? "; stats on " : "", d.opt.stats ? d.opt.stats : "",
		  d.opt.health ? "; health feed " : "", d.opt.health ? d.opt.health : "");
	/* A SIGTERM that came while the first etcd sync ran the loop is
	 * already recorded: honour it rather than run on. */
	if (!d.stop_signal) {
		/* listening with a directory loaded: what Type=notify units wait for */
		if (hc_sd_notify("READY=1") == -1)
			route_log(LOG_WARNING, "sd_notify READY: %s", strerror(errno));
		ev_run(d.loop, 0);
	}
	hc_sd_notify("STOPPING=1");
	route_log(LOG_NOTICE, "stopping (%s)", d.stop_signal ? d.stop_signal : "loop ended");
out:
	daemon_teardown(&d);
	if (status == 0)
		route_log(LOG_NOTICE, "stopped");
	route_log_close();
	return status;
}
