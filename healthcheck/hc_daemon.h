/*
 * hc_daemon.h — healthcheckd's private types: the daemon, its targets, and
 * the interfaces between its parts (probes, DNS, feed server, HAProxy
 * runtime API client, stats rendering). Not installed, not in libhc.
 */
#ifndef SEEDGATE_HC_DAEMON_H
#define SEEDGATE_HC_DAEMON_H

#include <ev.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "hc_check.h"
#include "hc_feed.h"
#include "hc_limits.h"
#include "router.h"

#define HCD_MAX_HAPROXY  8
#define HCD_REASON_MAX   256
#define HCD_HOST_MAX     256

/* Descriptor sizing (README.md, "Sizing"): the daemon's own descriptors
 * (stdio, loop, signals, inotify, listeners and their spares, lock file,
 * DNS sockets, seed loads), kept aside before feed subscribers get theirs. */
#define HCD_FD_RESERVE     32
#define HCD_FEED_SUBS_MIN  4
#define HCD_FEED_SUBS_MAX  4096

struct tls_ctx;
struct tls_conn;
struct tls_connect;
struct hcd_dns;
struct hcd_feed;
struct hcd_haproxy;
struct hc_metrics_server;
struct sd_source;
struct hc_text;

/* ------------------------------------------------------------- buffers */

/* A growable byte queue: appended at the end, consumed from off. */
struct hcd_buf {
	char *p;
	size_t off, len, cap;
};
int hcd_buf_append(struct hcd_buf *b, const void *data, size_t len);   /* 0 / -1 (ENOMEM) */
int hcd_buf_printf(struct hcd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t hcd_buf_pending(const struct hcd_buf *b);
/* Writes what it can to fd; returns 0 (maybe partial), -1 on a socket error. */
int hcd_buf_flush(struct hcd_buf *b, int fd);
void hcd_buf_reset(struct hcd_buf *b);
void hcd_buf_free(struct hcd_buf *b);

/* ------------------------------------------------------------- options */

struct hcd_opts {
	const char *seed;
	const char *seed_cache;          /* --seed-cache: etcd's local copy */
	const char *feed_path;
	unsigned feed_mode;          /* --feed-mode (0660) */
	const char *feed_group;      /* --feed-group, NULL = ours */
	gid_t feed_gid;              /* its gid, (gid_t)-1 = unchanged */
	const char *stats_addr;
	const char *haproxy[HCD_MAX_HAPROXY];
	unsigned n_haproxy;
	const char *ca_file;
	bool tls_verify;
	/* check defaults (seed check-defaults and per-target keys override) */
	enum router_check_kind kind;
	const char *path, *host, *method, *sni;
	unsigned status_min, status_max, interval_ms, fast_interval_ms, timeout_ms, rise, fall, jitter_pct;
	/* flap damping (hc_check.h) */
	unsigned damp_flaps, damp_window_ms, damp_hold_ms, damp_max_ms;
	/* DNS: re-resolve after the record's TTL clamped to [min, max] */
	unsigned dns_min_ttl_ms, dns_max_ttl_ms, dns_retry_ms;
	const char *dns_servers;     /* --dns-servers "ip[:port],...", NULL = resolv.conf */
	bool verbose;
};

/* ------------------------------------------------------------- targets */

enum hcd_phase { HCD_IDLE, HCD_CONNECTING, HCD_TLS, HCD_SENDING, HCD_READING };

struct hcd_target {
	unsigned magic;
	struct hcd *d;
	unsigned index;                  /* in the current snapshot */
	char name[ROUTER_NAME_MAX + 1];
	char kind_str[8];                /* "hub" / "node" / "server" */
	char dc[ROUTER_NAME_MAX + 1];
	char backend[2 * ROUTER_NAME_MAX + 8];    /* hubs_<dc>, nodes_<dc>, pool_<pool>_<dc> */
	bool drain;
	char host[HCD_HOST_MAX];         /* as written */
	uint16_t port;
	bool hostname;                   /* needs DNS */

	/* effective check settings (flags < check-defaults < target keys) */
	enum router_check_kind ck;
	char path[256], hosthdr[HCD_HOST_MAX], method[16], sni[HCD_HOST_MAX];
	unsigned status_min, status_max, interval_ms, fast_ms, timeout_ms, jitter_pct;
	struct hc_sm_params smp;
	struct hc_sm sm;

	/* address checked */
	struct sockaddr_storage sa;
	socklen_t salen;
	bool have_addr;
	char addr[HC_FEED_ADDR_MAX + 1];  /* "ip:port" */
	char dns_error[96];               /* last resolution failure, "" if none */
	ev_timer dns_timer;               /* next resolution (TTL) */
	bool dns_pending;
	void *dns_query;                  /* the query in flight (hc_dns.c) */

	/* the probe in flight */
	enum hcd_phase phase;
	ev_timer timer;                   /* next check, or the probe's deadline */
	ev_io io;
	int fd;
	struct tls_connect *tls_op;
	struct tls_conn *tls;
	struct hc_http_req req;           /* HTTP request (built at load) and how much is written */
	char rbuf[128];
	size_t rlen;
	int64_t started_us;

	/* what was published */
	bool published;
	bool damped_shown;                /* the reason already says "damped" */
	enum hc_state state;
	int64_t since_ms;
	char reason[HCD_REASON_MAX];
	char last_result[128];            /* text of the last check result */
	int64_t last_check_ms;
	uint64_t latency_us, checks, fails;
	bool removed;
};

/* Why a check could not run: our own shortage, never a verdict. */
enum hcd_skip { HCD_SKIP_FD_LIMIT, HCD_SKIP_MEMORY, HCD_SKIP_SOURCE_PORT, HCD_SKIP_N };

struct hcd_counters {
	uint64_t checks_skipped[HCD_SKIP_N];
	uint64_t feed_refused;            /* subscribers closed over the cap */
	uint64_t checks_ok, checks_fail, checks_timeout, state_changes, reloads_ok, reloads_error,
	         dns_ok, dns_fail;
	uint64_t latency_buckets[12];     /* <= 1,2.5,5,10,25,50,100,250,500,1000,2500 ms, +Inf */
	double latency_sum_s;
};

struct hcd {
	struct ev_loop *loop;
	struct hcd_opts opts;
	struct router_dir *dir;
	struct hcd_target **targets;      /* one per target of dir, same index */
	unsigned ntargets;
	unsigned pending_initial;         /* targets without a first verdict */
	bool initial_done;
	ev_timer initial_timer;           /* publishes the snapshot even if checks hang */
	struct tls_ctx *tls;
	struct hcd_dns *dns;
	struct hcd_feed *feed;
	struct hcd_haproxy *haproxy[HCD_MAX_HAPROXY];
	struct hc_metrics_server *stats;  /* --stats: the shared /metrics server */
	struct sd_source *seeds;          /* the seed directory: file or etcd (sd_source.h) */
	struct hcd_counters ctr;
	struct hc_ratelog skip_log;       /* checks skipped, logged once per period */
	unsigned long nofile;             /* soft RLIMIT_NOFILE after raising it */
	char http_req_host[8];
};

/* logging (hc_main.c): one line to stderr with a timestamp */
void hcd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t hcd_now_ms(void);
int64_t hcd_mono_us(void);
int64_t hcd_mono_ms(void);   /* monotonic: damping and holds (wall clock only for display) */

/* hc_target.c */
int hcd_targets_load(struct hcd *d, struct router_dir *dir, char *err, size_t errlen);
void hcd_targets_free(struct hcd *d);
void hcd_targets_initial_done(struct hcd *d);   /* snapshot may go out */
void hcd_target_result(struct hcd_target *t, bool ok, bool timeout, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void hcd_target_addr_changed(struct hcd_target *t);
void hcd_target_dns_status(struct hcd_target *t);
/* Appends the next lines of a feed snapshot (H, T+S per target, E) to out
 * from position *pos (0 at the start) until out holds upto bytes. Returns
 * 1 once E is appended, 0 when more is to come, -1 on allocation failure. */
int hcd_snapshot_part(struct hcd *d, struct hcd_buf *out, unsigned *pos, size_t upto);
/* True when a snapshot at pos already holds the line of target index. */
bool hcd_snapshot_passed(unsigned pos, unsigned index);
/* A check of t could not run for a local reason (what: "socket: ..."):
 * counted and logged (rate-limited), the target keeps its state. */
void hcd_target_skipped(struct hcd_target *t, enum hcd_skip why, const char *what);
/* errno of a failed socket()/connect() -> the local shortage it means, or
 * -1 when it says something about the target. */
int hcd_skip_reason(int err);
const char *hcd_skip_name(enum hcd_skip why);   /* "fd_limit", "memory", "source_port" */
/* Called by HAProxy clients after (re)connecting: queue the full state. */
void hcd_haproxy_full_state(struct hcd *d, struct hcd_haproxy *h);
const char *hcd_haproxy_state_word(const struct hcd_target *t);

/* hc_probe.c */
void hcd_probe_start(struct hcd_target *t);
void hcd_probe_abort(struct hcd_target *t);
void hcd_probe_init(struct hcd_target *t);

/* hc_dns.c */
struct hcd_dns *hcd_dns_new(struct hcd *d, char *err, size_t errlen);
void hcd_dns_free(struct hcd_dns **dns);
void hcd_dns_resolve(struct hcd_dns *dns, struct hcd_target *t);
void hcd_dns_forget(struct hcd_dns *dns, struct hcd_target *t);

/* hc_feed_server.c */
struct hcd_feed *hcd_feed_new(struct hcd *d, const char *path, char *err, size_t errlen);
void hcd_feed_free(struct hcd_feed **f);
void hcd_feed_publish(struct hcd_feed *f, unsigned index, const char *line, size_t len);
void hcd_feed_reloaded(struct hcd_feed *f);    /* the target table was replaced */
unsigned hcd_feed_cap(const struct hcd *d);    /* subscribers the fd limit leaves room for */
void hcd_feed_ready(struct hcd_feed *f);       /* initial verdicts in: send snapshots */
unsigned hcd_feed_subscribers(const struct hcd_feed *f);

/* hc_haproxy.c */
struct hcd_haproxy *hcd_haproxy_new(struct hcd *d, const char *path, char *err, size_t errlen);
void hcd_haproxy_start(struct hcd_haproxy *h);
void hcd_haproxy_free(struct hcd_haproxy **h);
void hcd_haproxy_command(struct hcd_haproxy *h, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The same for a command whose failure may be expected: flags
 * HCD_CMD_EXISTS_OK ("add server" of a server that may still exist). */
#define HCD_CMD_EXISTS_OK 0x1u
void hcd_haproxy_command_flags(struct hcd_haproxy *h, unsigned flags, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Connected and in sync with HAProxy's servers: takes commands. */
bool hcd_haproxy_ready(const struct hcd_haproxy *h);
/* Removes backend/name: maintenance, then "del server" until HAProxy agrees
 * (it refuses while connections remain; after a grace period their
 * sessions are shut down). */
void hcd_haproxy_remove_server(struct hcd_haproxy *h, const char *backend, const char *name);
/* The server is wanted again: forgets its pending removal. true if there
 * was one (the server may still exist, in maintenance). */
bool hcd_haproxy_forget_removal(struct hcd_haproxy *h, const char *backend, const char *name);
/* Appends the client's own metrics (failed commands by command, ...). */
void hcd_haproxy_stats(const struct hcd *d, struct hc_text *out);
bool hcd_haproxy_connected(const struct hcd_haproxy *h);
uint64_t hcd_haproxy_commands(const struct hcd_haproxy *h);
uint64_t hcd_haproxy_errors(const struct hcd_haproxy *h);
uint64_t hcd_haproxy_connects(const struct hcd_haproxy *h);
const char *hcd_haproxy_path(const struct hcd_haproxy *h);

/* hc_servers.c: HAProxy's servers follow the seed directory.
 * Applies every difference between two directories (servers added, removed,
 * re-weighted, moved, re-addressed) to every HAProxy in sync. Depends on the
 * two snapshots only (wherever they came from). hcd_targets_load() calls it
 * once the new directory is accepted, before it queues any verdict, so that
 * servers exist before verdicts name them. */
void hcd_servers_apply(struct hcd *d, const struct router_dir *old, const struct router_dir *new_dir);
/* Makes one HAProxy's servers those of d->dir, from its "show servers state"
 * answer (after a (re)connect: its configuration file may be older). */
void hcd_servers_sync(struct hcd *d, struct hcd_haproxy *h, const char *state, size_t len);

/* hc_stats.c: appends healthcheckd's Prometheus text; udata is the
 * struct hcd. The render callback of hc_metrics_server_new(). */
void hcd_stats_render(void *udata, struct hc_text *out);

/* address helpers (hc_probe.c) */
int hcd_addr_parse_ip(const char *host, uint16_t port, struct sockaddr_storage *sa, socklen_t *salen);
void hcd_addr_format(const struct sockaddr *sa, char *out, size_t room);

#endif /* SEEDGATE_HC_DAEMON_H */
