/*
 * route_health.h — the last known health of every target, by name, as the
 * health feed reported it. Lives on the main thread only (no locking).
 *
 * Names, not indices: the feed speaks names, and a seed reload renumbers
 * targets. route_health_fill_down() maps the table onto one snapshot's
 * indices when a view is built. A target the feed never mentioned is up
 * (fail open: without --health every node is up).
 */
#ifndef ROUTE_HEALTH_H
#define ROUTE_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router.h"

struct route_health;

struct route_health *route_health_new(void);
void route_health_free(struct route_health **h);

/* What the feed says of a target. DOWN and DRAIN both keep new requests
 * off it; they are told apart only for counting (a drained target is not a
 * failure and must not show in the down gauge or the "targets down" log). */
enum route_hstate { ROUTE_H_UP = 0, ROUTE_H_DOWN = 1, ROUTE_H_DRAIN = 2 };

/* Records the state of `name` (false/true read as up/down). Returns 1 if
 * that changed what the table said, 0 if not, -1 on allocation failure (the
 * table is unchanged then). */
int route_health_set(struct route_health *h, const char *name, enum route_hstate st);

/* Fills down[i] (router_dir_target_count(d) bytes) for every target of d:
 * 1 if the table says it is down or draining, else 0. Returns how many are
 * marked; *ndrain (may be NULL) gets how many of those are draining. */
unsigned route_health_fill_down(const struct route_health *h, const struct router_dir *d, uint8_t *down,
                                unsigned *ndrain);

/* Snapshot bookkeeping for a feed that reconnects: begin when the link is
 * lost (what follows is a fresh full snapshot), end once it is complete.
 * end marks up every target recorded down that the new snapshot did not
 * mention, and returns how many changed. */
void route_health_begin_snapshot(struct route_health *h);
unsigned route_health_end_snapshot(struct route_health *h);

/* Names recorded down or draining (non-zero: a view needs down bytes). */
unsigned route_health_down_count(const struct route_health *h);

#endif /* ROUTE_HEALTH_H */
