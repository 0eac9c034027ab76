/*
 * router_place.c — placement: a consistent-hash ring per datacenter.
 *
 * Each node owns weight x ROUTER_POINTS_PER_WEIGHT virtual points; point j of
 * node N sits at the top 32 bits of XXH3_64bits(le64(XXH3_64bits(N)) .
 * le64(j)). (Not XXH3_64bits_withSeed(N, j): for inputs under 9 bytes XXH3
 * mixes the seed in linearly, and short names like "n2" and "n3" then share
 * points.) A project
 * sits at the top 32 bits of XXH3(id) and its replicas in a dc are the first
 * R distinct nodes met walking clockwise from there. Why this shape:
 *
 *  - a point's position depends only on its node's name, so the lists are the
 *    same on every machine and independent of the order of the node lines
 *    (equal positions are ordered by node name, not by file line);
 *  - a node leaving removes only its own points: a list that did not contain
 *    it walks over exactly the same points (exact stability); a list that
 *    did loses it and closes up (its second replica becomes the primary);
 *  - a node joining only inserts points: a primary changes only to the new
 *    node, about 1/(N+1) of them;
 *  - lookup is O(1) in the ring size: 2^b buckets on the top b bits of the
 *    position (b chosen for 3-6 points per bucket) give the bucket's first
 *    entry, then a few 4-byte entries in one cache line are scanned: one
 *    cache miss for the bucket index, one for the entries.
 *
 * Layout (router_int.h): an entry is the position's low 32-b bits above the
 * node's ring index (ibits bits, ring indices in node-name order), so a point
 * costs 4 bytes and comparing entries compares (position, name). Building
 * is a stable radix sort that stays in cache (see sort_points): partitions
 * on the top bits, then an LSD sort inside each partition; no comparison
 * sort over the points.
 *
 * XXH3 (Debian's libxxhash, inlined) rather than a home-made mix: its output
 * is fixed by a published specification and is endian-independent, and it
 * hashes 16 bytes in a few nanoseconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "router_int.h"

/* Rings at least this big get 2 MB-aligned memory advised for transparent
 * huge pages: a lookup then pays cache misses, not TLB misses too. */
#define RING_HUGE (2u << 20)

/* Little-endian store, so point positions are the same on every host. */
static inline void put_le64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, sizeof(v));
}

/* Ring position of point j of the node whose name hashes to nh: the
 * definition above, which the golden test pins down. */
static inline uint32_t point_pos(uint64_t nh, uint32_t j)
{
	uint8_t buf[16];

	put_le64(buf, nh);
	put_le64(buf + 8, j);
	return (uint32_t)(XXH3_64bits(buf, sizeof(buf)) >> 32);
}

/* Allocates size bytes for a ring table; big ones huge-page aligned.
 * Returns NULL when out of memory; free() releases either kind. */
static void *ring_alloc(size_t size)
{
	void *p;

	if (size < RING_HUGE)
		return malloc(size ? size : 1);
	if (posix_memalign(&p, RING_HUGE, size) != 0)
		return NULL;
	(void)madvise(p, size, MADV_HUGEPAGE);   /* a hint: failing it only costs speed */
	return p;
}

struct named {
	const char *name;
	uint32_t target;
};

static int cmp_named(const void *a, const void *b)
{
	return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

/* Sorts the m records of a[] by position (their high 32 bits) with a
 * stable LSD radix sort on the rb low bits of the position (the others are
 * the same for every record of a partition); tmp has room for m records,
 * count for 2^12. Stable: records equal in position keep their order.
 * Returns whichever of a and tmp holds the result. */
static uint64_t *sort_partition(uint64_t *a, uint64_t *tmp, uint32_t m, unsigned rb, uint32_t *count)
{
	unsigned np = (rb + 11) / 12, w = np ? (rb + np - 1) / np : 0;
	uint32_t nd = 1u << w;

	for (unsigned pass = 0, shift = 32; pass < np; pass++, shift += w) {
		uint64_t *t;

		memset(count, 0, nd * sizeof(uint32_t));
		for (uint32_t i = 0; i < m; i++)
			count[(a[i] >> shift) & (nd - 1)]++;
		for (uint32_t v = 0, sum = 0; v < nd; v++) {
			uint32_t n = count[v];

			count[v] = sum;
			sum += n;
		}
		for (uint32_t i = 0; i < m; i++)
			tmp[count[(a[i] >> shift) & (nd - 1)]++] = a[i];
		t = a;
		a = tmp;
		tmp = t;
	}
	return a;
}

/* Fills r->entry and r->bucket (allocated, r->bits/ibits/npoints/node set)
 * with the points of the ring's nodes; nh[k] is the name hash of ring index
 * k. A radix sort that stays in cache: the points are hashed once to count
 * the top COARSE_BITS of their positions, hashed again and scattered as
 * 8-byte (position, ring index) records into 2^COARSE_BITS partitions (few
 * enough write streams for L1), then each partition, a few hundred KB at
 * most in practice, is radix-sorted in L2 and written out as final 4-byte
 * entries with its part of the bucket index. Every step is stable and the
 * records start in ring-index (name) order, so equal positions end up in
 * name order. Returns 0, or -1 when out of memory. */
#define COARSE_BITS 9
static int sort_points(const struct router_dir *d, struct router_ring *r, const uint64_t *nh)
{
	unsigned cbits = r->bits < COARSE_BITS ? r->bits : COARSE_BITS, fbits = r->bits - cbits;
	uint32_t ncoarse = 1u << cbits, nfine = 1u << fbits, rmask = UINT32_MAX >> r->bits, big = 0;
	uint32_t *cstart = calloc((size_t)ncoarse + 1, sizeof(uint32_t));
	uint32_t *cursor = malloc((size_t)(ncoarse > 4096 ? ncoarse : 4096) * sizeof(uint32_t));
	uint64_t *rec = ring_alloc((size_t)r->npoints * sizeof(uint64_t)), *tmp = NULL;
	int ret = -1;

	if (!cstart || !cursor || !rec)
		goto out_free;
	for (uint32_t k = 0; k < r->distinct; k++) {
		uint32_t pts = d->targets[r->node[k]].weight * ROUTER_POINTS_PER_WEIGHT;

		for (uint32_t j = 0; j < pts; j++)
			cstart[point_pos(nh[k], j) >> (32 - cbits)]++;
	}
	for (uint32_t c = 0, sum = 0; c <= ncoarse; c++) {
		uint32_t n = cstart[c];

		if (c < ncoarse && n > big)
			big = n;
		cstart[c] = sum;
		sum += n;
	}
	memcpy(cursor, cstart, ncoarse * sizeof(uint32_t));
	for (uint32_t k = 0; k < r->distinct; k++) {
		uint32_t pts = d->targets[r->node[k]].weight * ROUTER_POINTS_PER_WEIGHT;

		for (uint32_t j = 0; j < pts; j++) {
			uint32_t p = point_pos(nh[k], j);

			rec[cursor[p >> (32 - cbits)]++] = (uint64_t)p << 32 | k;
		}
	}
	tmp = malloc(((size_t)big + 1) * sizeof(*tmp));
	if (!tmp)
		goto out_free;
	for (uint32_t c = 0; c < ncoarse; c++) {
		uint32_t lo = cstart[c], hi = cstart[c + 1], next = 0, *bucket = r->bucket + ((size_t)c << fbits);
		const uint64_t *s = sort_partition(rec + lo, tmp, hi - lo, 32 - cbits, cursor);

		for (uint32_t i = 0; i < hi - lo; i++) {
			uint32_t p = (uint32_t)(s[i] >> 32), f = p >> (32 - r->bits) & (nfine - 1);

			while (next <= f)
				bucket[next++] = lo + i;
			r->entry[lo + i] = (p & rmask) << r->ibits | (uint32_t)s[i];
		}
		while (next < nfine)
			bucket[next++] = hi;
	}
	r->bucket[ncoarse << fbits] = r->npoints;
	ret = 0;
out_free:
	free(cstart);
	free(cursor);
	free(rec);
	free(tmp);
	return ret;
}

/* Builds the ring of datacenter dc. Returns 0, or -1 with err set. */
static int build_ring(struct router_dir *d, unsigned dc, char *err, size_t errlen)
{
	struct router_ring *r = &d->dcs[dc].ring;
	unsigned nn = d->dcs[dc].nnodes, k = 0;
	struct named *nodes = NULL;
	uint64_t *nh = NULL, total = 0;
	uint32_t nb;
	int ret = -1;

	if (nn == 0)
		return 0;
	if (nn > ROUTER_DC_NODES_MAX) {
		snprintf(err, errlen, "dc '%s' has more than %u nodes", d->dcs[dc].name, ROUTER_DC_NODES_MAX);
		return -1;
	}
	nodes = malloc(nn * sizeof(*nodes));
	nh = malloc(nn * sizeof(*nh));
	r->node = malloc(nn * sizeof(*r->node));
	if (!nodes || !nh || !r->node)
		goto out_oom;
	for (unsigned t = 0; t < d->ntargets; t++)
		if (d->targets[t].dc == dc && d->targets[t].kind == ROUTER_NODE) {
			nodes[k].name = d->targets[t].name;
			nodes[k++].target = t;
			total += (uint64_t)d->targets[t].weight * ROUTER_POINTS_PER_WEIGHT;
		}
	if (total > UINT32_MAX / 2) {
		snprintf(err, errlen, "dc '%s' has too much weight for one ring", d->dcs[dc].name);
		goto out_free;
	}
	/* Ring index = rank of the name: ties on a position order by name. */
	qsort(nodes, nn, sizeof(*nodes), cmp_named);
	for (k = 0; k < nn; k++) {
		r->node[k] = nodes[k].target;
		nh[k] = XXH3_64bits(nodes[k].name, strlen(nodes[k].name));
	}
	r->distinct = nn;
	r->npoints = (uint32_t)total;
	while ((1u << r->ibits) < nn)
		r->ibits++;
	r->bits = 1;
	while (r->bits < 24 && (1u << (r->bits + 1)) <= r->npoints / 3)
		r->bits++;
	if (r->bits < r->ibits)
		r->bits = r->ibits;
	nb = 1u << r->bits;
	r->bucket = ring_alloc(((size_t)nb + 1) * sizeof(uint32_t));
	r->entry = ring_alloc((size_t)r->npoints * sizeof(uint32_t));
	if (!r->bucket || !r->entry)
		goto out_oom;

	if (sort_points(d, r, nh) == -1)
		goto out_oom;
	d->memory += (size_t)r->npoints * sizeof(uint32_t) + ((size_t)nb + 1) * sizeof(uint32_t) +
	             nn * sizeof(uint32_t);
	ret = 0;
	goto out_free;
out_oom:
	snprintf(err, errlen, "out of memory building the ring of dc '%s'", d->dcs[dc].name);
out_free:
	free(nodes);
	free(nh);
	return ret;
}

/* Builds every datacenter's ring into the snapshot; -1 with err set. */
int router_place_build(struct router_dir *d, char *err, size_t errlen)
{
	for (unsigned dc = 0; dc < d->ndcs; dc++)
		if (build_ring(d, dc, err, errlen) == -1)
			return -1;
	return 0;
}

void router_place_free(struct router_dir *d)
{
	for (unsigned dc = 0; d->dcs && dc < d->ndcs; dc++) {
		free(d->dcs[dc].ring.entry);
		free(d->dcs[dc].ring.bucket);
		free(d->dcs[dc].ring.node);
	}
}

/* Index of the first entry at or after position key (wrapping), on a
 * non-empty ring. */
static inline uint32_t ring_first(const struct router_ring *r, uint32_t key)
{
	uint32_t b = key >> (32 - r->bits);
	uint32_t i = r->bucket[b], e = r->bucket[b + 1];
	uint32_t want = (key & (UINT32_MAX >> r->bits)) << r->ibits;

	while (i < e && r->entry[i] < want)
		i++;
	return i == r->npoints ? 0 : i;
}

/* Writes the first min(R, nodes, max) distinct nodes clockwise from the
 * project's position on dc's ring into out; returns how many. */
size_t router_place_dc(const struct router_dir *d, unsigned dc, uint64_t h, unsigned *out, size_t max)
{
	const struct router_ring *r = &d->dcs[dc].ring;
	uint32_t imask, i, first, seen[ROUTER_MAX_REPLICAS];
	size_t want = d->replicas, n = 1;

	if (r->npoints == 0)
		return 0;
	if (want > r->distinct)
		want = r->distinct;
	if (want > max)
		want = max;
	if (want == 0)
		return 0;
	imask = (1u << r->ibits) - 1;
	i = ring_first(r, (uint32_t)(h >> 32));
	first = r->entry[i] & imask;
	out[0] = r->node[first];
	if (want == 2) {
		/* The common case: the next point of another node. */
		for (;;) {
			uint32_t k;

			if (++i == r->npoints)
				i = 0;
			k = r->entry[i] & imask;
			if (k != first) {
				out[1] = r->node[k];
				return 2;
			}
		}
	}
	seen[0] = first;
	while (n < want) {
		uint32_t k;
		size_t s = 0;

		if (++i == r->npoints)
			i = 0;
		k = r->entry[i] & imask;
		while (s < n && seen[s] != k)
			s++;
		if (s == n) {
			seen[n] = k;
			out[n++] = r->node[k];
		}
	}
	return n;
}

/* The pin of a project (h = router_project_hash(id)), or NULL. */
const struct router_pin *router_pin_find(const struct router_dir *d, const uint8_t id[16], uint64_t h)
{
	uint32_t slot;

	if (d->npins == 0)
		return NULL;
	for (slot = (uint32_t)h & d->pin_mask; d->pins[slot].count; slot = (slot + 1) & d->pin_mask)
		if (!memcmp(d->pins[slot].id, id, 16))
			return &d->pins[slot];
	return NULL;
}

/* The preference list (see router.h). A pin replaces the computed list
 * everywhere: its nodes of local_dc first, in the pin's order, then its
 * nodes of other datacenters in the pin's order; nothing else, so a project
 * whose pinned nodes are all down goes to the hubs rather than to nodes
 * that do not hold it. Without a pin: R of local_dc, then R of each other
 * dc in file order. */
size_t router_preference(const struct router_dir *d, const uint8_t id[16], unsigned local_dc,
                         unsigned *targets, size_t max, bool *pinned)
{
	uint64_t h = router_project_hash(id);
	const struct router_pin *pin = router_pin_find(d, id, h);
	size_t n = 0;

	if (pinned)
		*pinned = pin != NULL;
	if (local_dc >= d->ndcs)
		return 0;
	if (pin) {
		for (int pass = 0; pass < 2; pass++)
			for (uint32_t k = 0; k < pin->count && n < max; k++) {
				unsigned t = d->pin_nodes[pin->first + k];

				if ((d->targets[t].dc == local_dc) == (pass == 0))
					targets[n++] = t;
			}
		return n;
	}
	n = router_place_dc(d, local_dc, h, targets, max);
	for (unsigned dc = 0; dc < d->ndcs; dc++)
		if (dc != local_dc)
			n += router_place_dc(d, dc, h, targets + n, max - n);
	return n;
}
