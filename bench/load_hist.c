/*
 * load_hist.c — the cold half of the load generator's latency histogram:
 * merging and quantiles (see load_hist.h for the bucket layout).
 */
#include "bench/load_hist.h"

/* Lowest value of bucket i: rows past the first hold LOAD_HIST_SUB values
 * sharing one exponent, shifted back into place. */
uint64_t load_hist_bucket_low(unsigned i)
{
	if (i < LOAD_HIST_SUB)
		return i;
	unsigned shift = i / LOAD_HIST_SUB - 1;
	return ((uint64_t)LOAD_HIST_SUB | (i % LOAD_HIST_SUB)) << shift;
}

/* Sums two histograms (per-thread ones into the report's). */
void load_hist_merge(struct load_hist *into, const struct load_hist *from)
{
	for (unsigned i = 0; i < LOAD_HIST_BUCKETS; i++)
		into->count[i] += from->count[i];
	into->total += from->total;
	if (from->max > into->max)
		into->max = from->max;
}

/* Walks the buckets to the one holding rank q * total; returns its
 * midpoint, never above the largest value recorded. */
uint64_t load_hist_quantile(const struct load_hist *h, double q)
{
	if (h->total == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->total);
	if (rank >= h->total)
		rank = h->total - 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < LOAD_HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen > rank) {
			uint64_t lo = load_hist_bucket_low(i), hi = load_hist_bucket_low(i + 1);
			uint64_t mid = lo + (hi - lo) / 2;
			return mid > h->max ? h->max : mid;
		}
	}
	return h->max;
}
