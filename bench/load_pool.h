/*
 * load_pool.h — the SPOP load generator's pre-encoded requests.
 *
 * Every NOTIFY payload the generator sends is encoded once, before the run,
 * into one packed arena (a sparse array of maximum-size slots would cost a
 * cache and TLB miss per NOTIFY). A request is then a random pick and a
 * memcpy: nothing is formatted or allocated while the load runs.
 */
#ifndef LOAD_POOL_H
#define LOAD_POOL_H

#include <stddef.h>
#include <stdint.h>

#define LOAD_POOL_MAX_PAYLOAD 1024      /* largest encoded request */

struct load_pool_config {
	const char *message;        /* SPOE message name, e.g. "route" */
	const char *host;           /* `host` argument, unless the mix file names one */
	const char *mix_file;       /* NULL = built-in mix; else one "path [host]" per line */
	unsigned size;              /* requests to encode (built-in mix) */
	unsigned project_pct;       /* % of paths /<uuid>/...; the rest is /other */
	unsigned id_set;            /* draw ids from this many; 0 = a random id per request */
	unsigned seed;
};

struct load_payload {
	uint32_t off;
	uint16_t len;
};

struct load_pool {
	struct load_payload *entry;
	uint8_t *arena;
	size_t arena_len;
	size_t max_len;             /* longest payload */
	unsigned size;
	unsigned mask;              /* size - 1 when size is a power of two, else 0 */
};

/* xorshift64: the generator's cheap, per-thread random numbers. */
static inline uint64_t load_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Builds the pool: from cfg->mix_file (lines "path [host]", '#' comments)
 * or the built-in mix (message with args path, host, src). Returns 0, or -1
 * with err filled ("file:line: ..." for mix file errors). */
int load_pool_build(struct load_pool *p, const struct load_pool_config *cfg, char *err, size_t errlen);
void load_pool_free(struct load_pool *p);

/* A random request's payload, for the random value r. */
static inline const uint8_t *load_pool_pick(const struct load_pool *p, uint64_t r, size_t *len)
{
	const struct load_payload *e = &p->entry[p->mask ? (r & p->mask) : r % p->size];
	*len = e->len;
	return p->arena + e->off;
}

#endif /* LOAD_POOL_H */
