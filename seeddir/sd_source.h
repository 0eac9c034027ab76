/*
 * sd_source.h — the seed directory of a running daemon, from a file or
 * from etcd, kept current: what route-agent and healthcheckd both use.
 *
 * A spec (seeddir.h) names the source: a path, or
 * "etcd://HOST:PORT[,HOST:PORT...]/PREFIX". Either way the daemon sees the
 * same thing: a first directory at start (sd_source_initial), then, on the
 * loop's thread, one `done` call per new directory or per failed attempt
 * (NULL + "KEY: message" / "file:line: message"). A source never hands out
 * a broken directory, so a daemon that ignores a NULL keeps its last good
 * one.
 *
 * File: reloads on request (the daemon's SIGHUP) and when the file changes
 * (inotify on its directory, debounced). A reload that fails for a
 * transient reason (EMFILE, ENFILE, ENOMEM, EIO, EAGAIN) is retried with a
 * capped back-off; a deleted file is reported as such and the last good
 * directory stays in use.
 *
 * etcd: synced on the daemon's own loop (sd_http: libcurl multi, no thread
 * per watch, no blocking call): the layout of seeddir.h is read AT ONE
 * REVISION, built beside the directory in use, handed over, then watched
 * from that revision + 1. Unreachable: the last good directory stays in
 * use, the log says so (rate-limited), /metrics too. Each accepted
 * directory is written to a local copy (--seed-cache) that a daemon started
 * while etcd is down starts from. docs/etcd-sync.md tells the whole story.
 *
 * Building a directory (parse, place, rings) runs on the source's loader
 * thread: a 100k-line directory takes a while and the loop must keep
 * answering meanwhile. Requests that arrive during a load are merged into
 * ONE more load after it (reason SD_REASON_AGAIN).
 */
#ifndef SEEDGATE_SD_SOURCE_H
#define SEEDGATE_SD_SOURCE_H

#include <stdbool.h>
#include <stddef.h>

#include "router.h"

/* Reasons passed to `done` (besides what the daemon passes to request). */
#define SD_REASON_FILE_CHANGED "file changed"
#define SD_REASON_AGAIN        "changed during a reload"
#define SD_REASON_RETRY        "retry"
#define SD_REASON_ETCD         "etcd change"

struct ev_loop;
struct hc_text;
struct sd_source;

/* One finished load, on the loop's thread. dir: a new snapshot whose
 * reference the callee takes over, or NULL with err. reason: what asked for
 * the load. Returns 0 when the daemon put dir in use, -1 when it refused it
 * (it released it; e.g. its --dc is gone): the source then keeps reporting
 * the revision in use and does not write the refused one to the local
 * copy. Must not free the source. */
typedef int (*sd_source_fn)(void *udata, struct router_dir *dir, const char *err, const char *reason);
/* The source's own log lines (etcd unreachable, back again, started from
 * the local copy...). prio: syslog's LOG_ERR, LOG_WARNING, LOG_NOTICE,
 * LOG_INFO. */
typedef void (*sd_log_fn)(void *udata, int prio, const char *msg);

struct sd_source_config {
	const char *spec;            /* file path or etcd://... */
	unsigned flags;              /* ROUTER_LOAD_* (healthcheckd: ROUTER_LOAD_NO_RINGS) */
	const char *cache_path;      /* etcd's local copy; NULL = sd_source_default_cache() */
	const char *daemon;          /* "route-agent": names the default local copy */
	double debounce;             /* seconds: merge a burst of file events / etcd writes */
	sd_source_fn done;
	sd_log_fn log;
	void *udata;
};

/* Checks the spec (an etcd spec must parse) and starts the loader thread.
 * Nothing is read yet. NULL + err. */
struct sd_source *sd_source_new(struct ev_loop *loop, const struct sd_source_config *cfg,
                                char *err, size_t errlen);
/* The first directory, synchronously (the daemon's loop is run meanwhile
 * for etcd, with nothing else of ours on it). etcd unreachable (every
 * endpoint failed once, or 10 s without a complete listing and 2.5 s
 * without a page of it), or holding an invalid directory: the local
 * copy, said so in the log. NULL + err when
 * neither gives a good directory. */
struct router_dir *sd_source_initial(struct sd_source *s, char *err, size_t errlen);
/* The daemon put the initial directory in use: from now on follow the
 * source (inotify / the etcd watch) and call `done`. A file that cannot be
 * watched is logged and reloads on request only. */
int sd_source_start(struct sd_source *s, char *err, size_t errlen);
/* Asks for a load (file) or a re-list (etcd), from the loop's thread;
 * reason is copied (up to 31 characters) and handed back to `done`. */
void sd_source_request(struct sd_source *s, const char *reason);
/* The seedgate_seed_* lines of /metrics: revision, last sync age, sync
 * errors, etcd connected, last error, local copy in use. */
void sd_source_metrics(struct sd_source *s, struct hc_text *t);
/* "etcd revision 1234" / "generation 3": what is in use, for log lines. */
const char *sd_source_describe(struct sd_source *s);
/* Stops following, joins the thread (a load in progress finishes first
 * and its result is dropped), frees, sets *s = NULL. */
void sd_source_free(struct sd_source **s);

/* /var/lib/seedgate/<daemon>-<hash of spec>.seed ($STATE_DIRECTORY instead
 * of /var/lib/seedgate when systemd sets it). */
void sd_source_default_cache(const char *daemon, const char *spec, char *out, size_t len);

#endif /* SEEDGATE_SD_SOURCE_H */
