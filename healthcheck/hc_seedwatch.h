/*
 * hc_seedwatch.h — reloading the seed directory, as both daemons do it
 * (route-agent and healthcheckd): on request (the daemon's SIGHUP) and when
 * the file changes on disk.
 *
 * Loads run router_dir_load() on a thread of its own: a 100k-line directory
 * takes a while to parse and place, and the daemon's loop must keep
 * answering meanwhile (health checks, the feed, /metrics). The result comes
 * back ON THE LOOP'S THREAD through the `done` callback, once per load:
 * either a new snapshot, or NULL with "file:line: message". The watcher
 * never hands out a broken directory, so a daemon that ignores a NULL keeps
 * its last good one; what to log and count is the daemon's business.
 *
 * One load at a time: requests that arrive while a load runs are merged
 * into ONE more load after it, reported with the reason
 * HC_SEEDWATCH_AGAIN.
 *
 * File changes: inotify watches the file's DIRECTORY (a watch on the file
 * itself would follow the old inode after an editor or a deployment tool
 * renames a new file over it) and keeps the events that name the file.
 * Bursts (truncate + writes + close, or write then rename) are merged: one
 * load, `debounce` seconds after the last event, so one edit is one reload.
 */
#ifndef SEEDGATE_HC_SEEDWATCH_H
#define SEEDGATE_HC_SEEDWATCH_H

#include <stddef.h>

#include "router.h"

/* Reasons passed to `done` (besides what the daemon passes to request). */
#define HC_SEEDWATCH_FILE_CHANGED "file changed"
#define HC_SEEDWATCH_AGAIN        "changed during a reload"

struct ev_loop;
struct hc_seedwatch;

/* One finished load. dir: a new snapshot whose reference the callee takes
 * over, or NULL with err = "file:line: message". reason: what asked for the
 * load. Must not free the watcher. */
typedef void (*hc_seedwatch_fn)(void *udata, struct router_dir *dir, const char *err, const char *reason);

/* Starts the loader thread (every signal blocked in it) for the file at
 * path. No file watching yet (see hc_seedwatch_follow). NULL + err on
 * failure. */
struct hc_seedwatch *hc_seedwatch_new(struct ev_loop *loop, const char *path, hc_seedwatch_fn done,
                                      void *udata, char *err, size_t errlen);
/* Also reloads when the file changes, `debounce` seconds after the last
 * event of a burst. 0, or -1 with err ("inotify on DIR: why"): the daemon
 * decides whether SIGHUP alone is enough. */
int hc_seedwatch_follow(struct hc_seedwatch *sw, double debounce, char *err, size_t errlen);
/* Asks for a load (from the loop's thread); reason is copied (up to 31
 * characters) and handed back to `done`. Cheap; merged when a load runs. */
void hc_seedwatch_request(struct hc_seedwatch *sw, const char *reason);
/* Stops watching, stops and joins the thread (a load in progress finishes
 * first and its result is dropped), frees, sets *sw = NULL. */
void hc_seedwatch_free(struct hc_seedwatch **sw);

#endif /* SEEDGATE_HC_SEEDWATCH_H */
