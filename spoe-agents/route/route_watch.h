/*
 * route_watch.h — calls back when a file changes, including when an editor
 * or a deployment tool replaces it by renaming a new file over it.
 *
 * inotify watches the file's DIRECTORY (a watch on the file itself would
 * follow the old inode after a rename-replace) and keeps the events that
 * name the file. Bursts (truncate + several writes + close, or a write then
 * a rename) are merged: the callback runs once, `debounce` seconds after the
 * last event.
 */
#ifndef ROUTE_WATCH_H
#define ROUTE_WATCH_H

#include <stddef.h>

struct ev_loop;
struct route_watch;

typedef void (*route_watch_fn)(void *udata);

struct route_watch *route_watch_new(struct ev_loop *loop, const char *file, double debounce,
                                    route_watch_fn changed, void *udata, char *err, size_t errlen);
void route_watch_free(struct route_watch **w);

#endif /* ROUTE_WATCH_H */
