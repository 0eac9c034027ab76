/*
 * route_health.c — an open-addressing hash table of target name -> state.
 *
 * Entries are never removed (a target that leaves the seed directory costs a
 * few bytes until exit); the table doubles when it is half full. Linear
 * probing over FNV-1a hashes: names are short and the table is touched on
 * the main thread only, on feed updates and reloads.
 */
#include "route_health.h"

#include <stdlib.h>
#include <string.h>

struct health_entry {
	char *name;        /* NULL = empty slot */
	uint64_t hash;
	unsigned epoch;    /* snapshot that last mentioned it */
	uint8_t st;        /* enum route_hstate */
};

struct route_health {
	struct health_entry *slots;
	size_t cap;        /* power of two */
	size_t used;
	unsigned ndown;    /* entries not up (down or draining) */
	unsigned epoch;    /* current snapshot */
};

/* FNV-1a over a NUL-terminated name. */
static uint64_t health_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

/* The slot holding `name`, or the empty slot where it would go. */
static struct health_entry *health_slot(const struct route_health *h, const char *name, uint64_t hash)
{
	size_t mask = h->cap - 1, i = hash & mask;

	while (h->slots[i].name) {
		if (h->slots[i].hash == hash && strcmp(h->slots[i].name, name) == 0)
			break;
		i = (i + 1) & mask;
	}
	return &h->slots[i];
}

/* Doubles the table and rehashes; -1 on allocation failure (unchanged). */
static int health_grow(struct route_health *h)
{
	struct route_health bigger = { .cap = h->cap * 2, .used = h->used, .ndown = h->ndown,
				       .epoch = h->epoch };

	bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
	if (!bigger.slots)
		return -1;
	for (size_t i = 0; i < h->cap; i++)
		if (h->slots[i].name)
			*health_slot(&bigger, h->slots[i].name, h->slots[i].hash) = h->slots[i];
	free(h->slots);
	*h = bigger;
	return 0;
}

/* An empty table of 64 slots; NULL on allocation failure. */
struct route_health *route_health_new(void)
{
	struct route_health *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->cap = 64;
	h->slots = calloc(h->cap, sizeof(*h->slots));
	if (!h->slots) {
		free(h);
		return NULL;
	}
	return h;
}

/* Frees every name and the table; clears the caller's pointer. */
void route_health_free(struct route_health **hp)
{
	struct route_health *h = *hp;

	*hp = NULL;
	if (!h)
		return;
	for (size_t i = 0; i < h->cap; i++)
		free(h->slots[i].name);
	free(h->slots);
	free(h);
}

/* See route_health.h. */
int route_health_set(struct route_health *h, const char *name, enum route_hstate st)
{
	uint64_t hash = health_hash(name);
	struct health_entry *e = health_slot(h, name, hash);

	if (e->name) {
		e->epoch = h->epoch;
		if (e->st == st)
			return 0;
		if (e->st == ROUTE_H_UP)
			h->ndown++;
		else if (st == ROUTE_H_UP)
			h->ndown--;
		e->st = (uint8_t)st;
		return 1;
	}
	if (st == ROUTE_H_UP)
		return 0;          /* unknown means up already: nothing to record */
	if ((h->used + 1) * 2 > h->cap) {
		if (health_grow(h) == -1)
			return -1;
		e = health_slot(h, name, hash);
	}
	e->name = strdup(name);
	if (!e->name)
		return -1;
	e->hash = hash;
	e->epoch = h->epoch;
	e->st = (uint8_t)st;
	h->used++;
	h->ndown++;
	return 1;
}

/* See route_health.h. With nothing down the scan is skipped entirely. */
unsigned route_health_fill_down(const struct route_health *h, const struct router_dir *d, uint8_t *down,
                                unsigned *ndrain)
{
	unsigned n = router_dir_target_count(d), ndown = 0, drained = 0;

	memset(down, 0, n);
	if (ndrain)
		*ndrain = 0;
	if (h->ndown == 0)
		return 0;
	for (unsigned i = 0; i < n; i++) {
		const char *name = router_dir_target(d, i)->name;
		const struct health_entry *e = health_slot(h, name, health_hash(name));

		if (e->name && e->st != ROUTE_H_UP) {
			down[i] = 1;
			ndown++;
			drained += e->st == ROUTE_H_DRAIN;
		}
	}
	if (ndrain)
		*ndrain = drained;
	return ndown;
}

/* See route_health.h. */
void route_health_begin_snapshot(struct route_health *h)
{
	h->epoch++;
}

/* See route_health.h. */
unsigned route_health_end_snapshot(struct route_health *h)
{
	unsigned changed = 0;

	for (size_t i = 0; i < h->cap; i++) {
		struct health_entry *e = &h->slots[i];

		if (e->name && e->st != ROUTE_H_UP && e->epoch != h->epoch) {
			e->st = ROUTE_H_UP;
			h->ndown--;
			changed++;
		}
	}
	return changed;
}

/* See route_health.h. */
unsigned route_health_down_count(const struct route_health *h)
{
	return h->ndown;
}
