/*
 * test_router_util.h — helpers shared by the router unit tests: building
 * seed directories in memory and generating project ids.
 */
#ifndef SEEDGATE_TEST_ROUTER_UTIL_H
#define SEEDGATE_TEST_ROUTER_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

/* splitmix64: fixed pseudo-random sequence (same ids on every run). */
static inline uint64_t tr_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline void tr_id(uint64_t *s, uint8_t id[16])
{
	uint64_t a = tr_rand(s), b = tr_rand(s);

	for (int k = 0; k < 8; k++) {
		id[k] = (uint8_t)(a >> (8 * k));
		id[8 + k] = (uint8_t)(b >> (8 * k));
	}
}

/* A growing text buffer. */
struct tr_buf {
	char *p;
	size_t len, room;
};

static inline void tr_printf(struct tr_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->room - b->len : 0, fmt, ap);
		va_end(ap);
		if (b->p && b->len + (size_t)n < b->room)
			break;
		b->room = (b->room + (size_t)n + 1) * 2;
		b->p = realloc(b->p, b->room);
		if (!b->p)
			abort();
	}
	b->len += (size_t)n;
}

static inline struct router_dir *tr_parse(const struct tr_buf *b)
{
	char err[512];
	struct router_dir *d = router_dir_parse(b->p, b->len, "t.conf", err, sizeof(err));

	if (!d)
		fprintf(stderr, "parse failed: %s\n", err);
	return d;
}

/* One dc "a", replicas R, nodes n000..n(N-1) of weight 10 except those
 * listed in skip (a node index to leave out, -1 for none); order: 0 file
 * order, 1 reversed. */
static inline struct router_dir *tr_ring_dir(unsigned replicas, unsigned nodes, int skip, int order)
{
	struct tr_buf b = { 0 };
	struct router_dir *d;

	tr_printf(&b, "replicas %u\ndc a\nhub h1 127.0.0.1:5001 dc=a\n", replicas);
	for (unsigned k = 0; k < nodes; k++) {
		unsigned i = order ? nodes - 1 - k : k;

		if ((int)i != skip)
			tr_printf(&b, "node n%03u 10.0.%u.%u:6000 dc=a\n", i, i / 250, i % 250 + 1);
	}
	d = tr_parse(&b);
	free(b.p);
	return d;
}

#endif /* SEEDGATE_TEST_ROUTER_UTIL_H */
