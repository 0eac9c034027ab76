/*
 * load_hist.h — latency histogram of the SPOP load generator.
 *
 * Log-linear buckets (HdrHistogram's idea, kept tiny): 64 powers of two,
 * each cut into 32 linear sub-buckets, so any value is recorded with about
 * 3 % relative error in a fixed 16 KiB array. Adding is a few instructions
 * and never allocates; one histogram per generator thread, merged at the end.
 */
#ifndef LOAD_HIST_H
#define LOAD_HIST_H

#include <stdint.h>

#define LOAD_HIST_SUB_BITS 5
#define LOAD_HIST_SUB      (1u << LOAD_HIST_SUB_BITS)
#define LOAD_HIST_BUCKETS  (64 * LOAD_HIST_SUB)

struct load_hist {
	uint64_t count[LOAD_HIST_BUCKETS];
	uint64_t total, max;
};

/* Bucket of a value: values below LOAD_HIST_SUB are exact; above, the
 * exponent picks the row and the next LOAD_HIST_SUB_BITS bits the column. */
static inline unsigned load_hist_index(uint64_t v)
{
	if (v < LOAD_HIST_SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - LOAD_HIST_SUB_BITS;
	return (shift + 1) * LOAD_HIST_SUB + (unsigned)((v >> shift) & (LOAD_HIST_SUB - 1));
}

/* Records one value (the hot path: inline). */
static inline void load_hist_add(struct load_hist *h, uint64_t v)
{
	h->count[load_hist_index(v)]++;
	h->total++;
	if (v > h->max)
		h->max = v;
}

/* Lowest value that falls into bucket i (the inverse of load_hist_index). */
uint64_t load_hist_bucket_low(unsigned i);
/* Adds every count of `from` to `into`. */
void load_hist_merge(struct load_hist *into, const struct load_hist *from);
/* Value at quantile q in [0, 1] (midpoint of its bucket, capped at the
 * maximum seen); 0 for an empty histogram. */
uint64_t load_hist_quantile(const struct load_hist *h, double q);

#endif /* LOAD_HIST_H */
