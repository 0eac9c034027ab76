/*
 * route_view.h — what a worker decides from: one seed directory snapshot,
 * the local datacenter's index in it, and the health "down" bytes indexed
 * by THAT snapshot's target indices. Health and directory therefore change
 * together, atomically: a worker never applies one snapshot's down bytes to
 * another snapshot's targets.
 *
 * A view is immutable and reference-counted. The main thread publishes new
 * views into a route_view_holder (a reload, a health change); each worker
 * keeps its own reference and re-acquires only when the holder's
 * generation moved, which it checks with one atomic load per message. The
 * acquire itself takes a mutex, but only after a publish, never per
 * message.
 */
#ifndef ROUTE_VIEW_H
#define ROUTE_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "router.h"

struct route_view {
	struct router_dir *dir;   /* one reference, held by the view */
	unsigned local_dc;        /* index of --dc in dir */
	unsigned ndown;           /* targets marked down */
	const uint8_t *down;      /* router_dir_target_count(dir) bytes, or NULL = all up */
};

/* Makes a view holding `dir` (takes over the caller's reference). `down`,
 * when non-NULL, is copied (router_dir_target_count(dir) bytes); NULL or an
 * all-zero array both mean every target is up. NULL on allocation failure
 * (the dir reference is released then). */
struct route_view *route_view_new(struct router_dir *dir, unsigned local_dc, const uint8_t *down);
struct route_view *route_view_ref(struct route_view *v);
void route_view_release(struct route_view **v);   /* drops a ref, sets *v = NULL */

struct route_view_holder;
struct route_view_holder *route_view_holder_new(void);
void route_view_holder_free(struct route_view_holder **h);   /* drops the held view */
/* Replaces the current view (takes over the caller's reference) and bumps
 * the generation. */
void route_view_holder_publish(struct route_view_holder *h, struct route_view *v);
/* A new reference to the current view (NULL if none yet); *gen gets the
 * generation that view was published with. */
struct route_view *route_view_holder_acquire(struct route_view_holder *h, uint64_t *gen);
/* Atomic load; cheap enough for every message. */
uint64_t route_view_holder_generation(const struct route_view_holder *h);

#endif /* ROUTE_VIEW_H */
