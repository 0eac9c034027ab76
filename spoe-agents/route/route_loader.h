/*
 * route_loader.h — loads the seed directory on a thread of its own, so that
 * a large file (100k lines) never stalls the main loop (stats, health feed)
 * and never touches the workers.
 *
 * route_loader_request() is cheap and idempotent: requests that arrive while
 * a load runs are merged into one more load after it. Each finished load is
 * handed back ON THE LOOP'S THREAD through the `done` callback.
 */
#ifndef ROUTE_LOADER_H
#define ROUTE_LOADER_H

#include <stddef.h>

#include "router.h"

struct ev_loop;
struct route_loader;

/* dir: a new snapshot (the callee owns its reference), or NULL with err set
 * to "file:line: message". */
typedef void (*route_loader_done_fn)(void *udata, struct router_dir *dir, const char *err);

/* Starts the thread (with every signal blocked). NULL + err on failure. */
struct route_loader *route_loader_new(struct ev_loop *loop, const char *path, route_loader_done_fn done,
                                      void *udata, char *err, size_t errlen);
/* Asks for a load of the file (from the loop's thread). */
void route_loader_request(struct route_loader *l);
/* Stops and joins the thread; a load in progress finishes first and its
 * result is dropped. */
void route_loader_free(struct route_loader **l);

#endif /* ROUTE_LOADER_H */
