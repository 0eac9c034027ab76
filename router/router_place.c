/*
 * router_place.c — placement: a consistent-hash ring per datacenter.
 *
 * Each node owns a number of virtual points proportional to its weight
 * (how many: below); point j of node N sits at the top 32 bits of
 * XXH3_64bits(le64(XXH3_64bits(N)) . le64(j)). (Not
 * XXH3_64bits_withSeed(N, j): for inputs under 9 bytes XXH3 mixes the seed
 * in linearly, and short names like "n2" and "n3" then share points.) A
 * project sits at the top 32 bits of XXH3(id) and its replicas in a dc are
 * the first R distinct nodes met walking clockwise from there. Why this
 * shape:
 *
 *  - a point's position depends only on its node's name, so the lists are the
 *    same on every machine and independent of the order of the node lines
 *    (equal positions are ordered by node name, not by file line);
 *  - a node leaving removes only its own points: a list that did not contain
 *    it walks over exactly the same points (exact stability); a list that
 *    did loses it and closes up (its second replica becomes the primary);
 *  - a node joining only inserts points: a primary changes only to the new
 *    node, about 1/(N+1) of them;
 *  - lookup is O(1) in the ring size and reads one cache line: 2^b buckets
 *    on the top b bits of the position (b chosen for 6-13 points per
 *    bucket), bucket i stored inline in 64-byte line i (a "gapped" sorted
 *    array: a bucket too full for its line continues in the next, and the
 *    next bucket then starts after it). The line after is prefetched with
 *    it, for the second replica or a spilled bucket.
 *
 * How many points: a node of weight w owns w x 2^S points (its points
 * 0 .. count-1), S the directory's `ring-scale` (0-8, default 8: 256
 * points per unit of weight, the placement this file always had). S is
 * set by the operator and by nothing else, in particular never by the
 * node count: a ring whose size followed the count would change scale at
 * some join or leave and then move about half of the dc's primaries, and
 * on this platform a project's data lives on its nodes. So the properties
 * above are exact at every size and every scale; changing S is the one
 * change that rescales (lowering it by k keeps the first 2^-k of each
 * node's points, so about 1 - 2^-k of the primaries move), and seedctl
 * stats prints it.
 *
 * Memory is bounded by refusing, not by rescaling: the parser adds up
 * weight x 2^S over the directory before any ring exists and refuses more
 * than ROUTER_RING_POINTS_MAX (2^25) points with the scale that would fit
 * (router_parse.c, check_ring_points), rings or not (seedctl check). A
 * ring of P points over N nodes takes 2^b lines of 64 bytes (plus a few
 * for spills), 2^b the smallest power of two >= 2 and >= N with
 * P / 2^b < ROUTER_LINE_FILL_MAX + 1: 4.6 to 9.2 bytes a point, so 2^25
 * points cost at most 2^25 / 7 lines, 306,783,378 bytes (2^22 lines,
 * 268,435,456 bytes, when they are one dc), plus 64 to 128 bytes a node
 * where points are fewer than nodes. The build needs at most 64 MB more
 * (sort_points' scratch). Why a ring rather than another scheme:
 *
 *  - rendezvous hashing over a bounded table of virtual buckets or a
 *    maglev table would bound memory too, but building the first costs a
 *    score per (bucket, node) pair (10^10 for 2^20 buckets and 10k
 *    nodes), and maglev gives up exact stability (it moves some projects
 *    between nodes that stay) and needs as many slots a node for balance
 *    as a ring needs points;
 *    jump/anchor hashing depend on the order nodes came and went, which a
 *    directory does not record;
 *  - balance is what the scale buys: a node with V points gets a share
 *    with a relative spread of about 1/sqrt(V) (2560 points at the default
 *    scale and weight: 2.0 %, the busiest of 10k nodes 1.07 x the mean;
 *    160 points at ring-scale 4: 1.31 x).
 *
 * Layout (router_int.h): an entry is the position's low 32-b bits above the
 * node's ring index (ibits bits, ring indices in node-name order), so a point
 * costs 4 bytes and comparing entries compares (position, name); 15 entries
 * and a header word a line. Building is a stable radix sort that stays in
 * cache (see sort_points): partitions on the top bits, then an LSD sort
 * inside each partition written straight into the lines; no comparison
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

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

/* Allocates size bytes for a ring table, cache-line aligned; big ones
 * huge-page aligned. Returns NULL when out of memory; free() releases it. */
static void *ring_alloc(size_t size)
{
	size_t align = size < RING_HUGE ? 64 : RING_HUGE;
	void *p;

	if (posix_memalign(&p, align, size ? size : 1) != 0)
		return NULL;
	if (size >= RING_HUGE)
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

/* Sorts the m records of a[] by the rb low bits of their position (their
 * high 32 bits) with a stable LSD radix sort; tmp has room for m records,
 * count for 2^12. Stable: records equal in those bits keep their order.
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

/* Scattering 8-byte records into partitions of a big array: written one at
 * a time, each record would cost a read of its destination cache line from
 * memory (a write miss) before the write, which is most of a build's time.
 * Instead records gather in a cache-line buffer per partition (the buffers
 * stay in L1) and go out a whole line at a time with non-temporal stores,
 * which skip that read. Lines a partition shares with its neighbour are
 * written with ordinary stores. */
#define WC_RECS 8                      /* records in 64 bytes */

/* Copies one full, 64-byte aligned line of records to dst. */
static inline void wc_stream(uint64_t *dst, const uint64_t *src)
{
#if defined(__SSE2__)
	for (int i = 0; i < WC_RECS; i += 2)
		_mm_stream_si128((__m128i *)(void *)(dst + i), _mm_load_si128((const __m128i *)(const void *)(src + i)));
#else
	memcpy(dst, src, WC_RECS * sizeof(*dst));
#endif
}

/* Adds record v to partition c: cursor[c] is its next index in out,
 * start[c] its first; buf holds WC_RECS records per partition, slot i
 * of a partition's buffer for out index i modulo WC_RECS. */
static inline void wc_put(uint64_t *out, uint64_t *buf, uint32_t *cursor, const uint32_t *start, uint32_t c,
                          uint64_t v)
{
	uint32_t i = cursor[c]++, slot = i % WC_RECS;
	uint64_t *b = buf + (size_t)c * WC_RECS;

	b[slot] = v;
	if (slot == WC_RECS - 1) {
		uint32_t line = i - slot;

		if (line >= start[c]) {
			wc_stream(out + line, b);
		} else {
			for (uint32_t k = start[c] - line; k < WC_RECS; k++)
				out[line + k] = b[k];
		}
	}
}

/* Writes out what the buffers of ncoarse partitions still hold (a partial
 * line each) and orders the non-temporal stores before later reads. */
static void wc_flush(uint64_t *out, const uint64_t *buf, const uint32_t *cursor, const uint32_t *start,
                     uint32_t ncoarse)
{
	for (uint32_t c = 0; c < ncoarse; c++) {
		uint32_t end = cursor[c], line = end - end % WC_RECS;

		for (uint32_t i = line > start[c] ? line : start[c]; i < end; i++)
			out[i] = buf[(size_t)c * WC_RECS + i % WC_RECS];
	}
#if defined(__SSE2__)
	_mm_sfence();
#endif
}

/* Where a ring's lines are filled up to (router_int.h): buckets are laid
 * out in order, each at its own line or right after the spill of the ones
 * before it. */
struct line_writer {
	uint32_t *line;
	size_t cap;                    /* lines allocated */
	size_t cl;                     /* line and slot of the next entry */
	uint32_t cs;
};

/* Lays out nfine buckets from bucket first on, count[f] entries each:
 * writes their headers and sets addr[f] to the word of each one's first
 * entry. Returns false when they do not fit in the lines allocated or a
 * header field overflows (the caller then retries with more buckets). */
static bool lay_out(struct line_writer *lw, size_t first, uint32_t nfine, const uint32_t *count, size_t *addr)
{
	for (uint32_t f = 0; f < nfine; f++) {
		size_t b = first + f, skip;

		if (lw->cl < b) {
			lw->cl = b;
			lw->cs = 0;
		}
		skip = (lw->cl - b) * ROUTER_LINE_SLOTS + lw->cs;
		if (skip > 0xffff || count[f] > 0xffff)
			return false;
		lw->line[b * ROUTER_LINE_WORDS] = (uint32_t)skip | count[f] << 16;
		addr[f] = lw->cl * ROUTER_LINE_WORDS + 1 + lw->cs;
		lw->cs += count[f];
		lw->cl += lw->cs / ROUTER_LINE_SLOTS;
		lw->cs %= ROUTER_LINE_SLOTS;
		if (lw->cl > lw->cap || (lw->cl == lw->cap && lw->cs))
			return false;
	}
	return true;
}

#define COARSE_BITS 9

/* The records array of sort_points, kept from one ring to the next (a
 * fresh one costs its page faults again). */
struct place_scratch {
	uint64_t *rec;
	size_t room;
};

/* Room for n records in sc, or NULL when out of memory. */
static uint64_t *scratch_recs(struct place_scratch *sc, size_t n)
{
	if (n > sc->room) {
		free(sc->rec);
		sc->rec = ring_alloc(n * sizeof(uint64_t));
		sc->room = sc->rec ? n : 0;
	}
	return sc->rec;
}

/* Most 8-byte records sort_points holds at once (64 MB): a bigger ring
 * (above 8 M points, dcs of more than about 33k nodes) is scattered in
 * several passes over its points, each keeping the partitions that fit,
 * so building a 100k-node ring costs this much besides the ring itself,
 * not 8 bytes a point (205 MB), at the price of hashing the points again
 * in each pass. A variable so that the ring test can make it tiny and
 * run every ring through the multi-pass path. */
size_t router_place_scratch_max = (size_t)1 << 23;

/* Hashes every point of the ring and scatters those of partitions g0..g1-1
 * (all of them when whole: the one-group case, which then skips the range
 * test, about 20 instructions a point in all) into their line buffers. */
static inline __attribute__((always_inline)) void scatter(const struct router_dir *d,
                                                          const struct router_ring *r, const uint64_t *nh,
                                                          unsigned cbits, uint32_t g0, uint32_t g1, bool whole,
                                                          uint64_t *rec, uint64_t *wcbuf, uint32_t *cursor,
                                                          const uint32_t *gstart)
{
	for (uint32_t k = 0; k < r->distinct; k++) {
		uint32_t pts = router_ring_points(d->targets[r->node[k]].weight, d->ring_scale);

		for (uint32_t j = 0; j < pts; j++) {
			uint32_t p = point_pos(nh[k], j), c = p >> (32 - cbits);

			if (whole || (c >= g0 && c < g1))
				wc_put(rec, wcbuf, cursor, gstart, c, (uint64_t)p << 32 | k);
		}
	}
}

/* Fills r->line (allocated with cap lines, r->bits/ibits/npoints/node set)
 * with the points of the ring's nodes and sets r->nlines; nh[k] is the
 * name hash of ring index k. A radix sort that stays in cache: the points
 * are hashed once to count the top COARSE_BITS of their positions, hashed
 * again and scattered as 8-byte (position, ring index) records into
 * 2^COARSE_BITS partitions (a line buffer each in L1, see wc_put), then each
 * partition, a few hundred KB at most in practice, is radix-sorted in L2
 * on the position bits under the bucket's, then scattered on the bucket
 * bits as final 4-byte entries straight into its lines. Partitions are
 * scattered in groups of at most router_place_scratch_max records (one
 * pass over the points each), in order, so the lines fill in ring order
 * as with one group. Every step is stable and the records start in
 * ring-index (name) order, so equal positions end up in name order. The
 * records live in sc (reused by the next ring). Returns 0, -1 when out of
 * memory, 1 when the lines did not fit in cap (or a header field
 * overflowed): the caller retries with more buckets. */
static int sort_points(const struct router_dir *d, struct router_ring *r, const uint64_t *nh, size_t cap,
                       struct place_scratch *sc)
{
	unsigned cbits = r->bits < COARSE_BITS ? r->bits : COARSE_BITS;
	uint32_t ncoarse = 1u << cbits, nb = 1u << r->bits, rmask = UINT32_MAX >> r->bits, big = 0;
	uint32_t nfine = nb >> cbits, fshift = 32 - r->bits, *count = NULL;
	size_t *addr = NULL, room;
	bool full = false;
	uint32_t *cstart = calloc((size_t)ncoarse + 1, sizeof(uint32_t));
	uint32_t *gstart = malloc(((size_t)ncoarse + 1) * sizeof(uint32_t));
	uint32_t *cursor = malloc((size_t)(ncoarse > 4096 ? ncoarse : 4096) * sizeof(uint32_t));
	uint64_t *rec = NULL, *tmp = NULL;
	uint64_t *wcbuf = ring_alloc((size_t)ncoarse * WC_RECS * sizeof(uint64_t));
	struct line_writer lw = { .line = r->line, .cap = cap };
	int ret = -1;

	if (!cstart || !gstart || !cursor || !wcbuf)
		goto out_free;
	for (uint32_t k = 0; k < r->distinct; k++) {
		uint32_t pts = router_ring_points(d->targets[r->node[k]].weight, d->ring_scale);

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
	/* Room for a group: the cap, or one partition bigger than it, plus
	 * the 7 records a group may start into its first line (below). */
	room = r->npoints < router_place_scratch_max ? r->npoints : router_place_scratch_max;
	room = (room > big ? room : big) + WC_RECS;
	rec = scratch_recs(sc, room);
	tmp = malloc(((size_t)big + 1) * sizeof(*tmp));
	count = malloc((size_t)nfine * sizeof(*count));
	addr = malloc((size_t)nfine * sizeof(*addr));
	if (!rec || !tmp || !count || !addr)
		goto out_free;
	for (uint32_t g0 = 0, g1; g0 < ncoarse && !full; g0 = g1) {
		/* Partitions g0..g1-1, their records at rec[cstart[c] - base]:
		 * base keeps record indices 64-byte aligned as in one group. */
		uint32_t base = cstart[g0] & ~(uint32_t)(WC_RECS - 1);

		for (g1 = g0 + 1; g1 < ncoarse && cstart[g1 + 1] - base + WC_RECS <= room; g1++)
			;
		for (uint32_t c = g0; c <= g1; c++)
			gstart[c] = cstart[c] - base;
		memcpy(cursor + g0, gstart + g0, (g1 - g0) * sizeof(uint32_t));
		if (g0 == 0 && g1 == ncoarse)
			scatter(d, r, nh, cbits, 0, ncoarse, true, rec, wcbuf, cursor, gstart);
		else
			scatter(d, r, nh, cbits, g0, g1, false, rec, wcbuf, cursor, gstart);
		wc_flush(rec, wcbuf + (size_t)g0 * WC_RECS, cursor + g0, gstart + g0, g1 - g0);
		for (uint32_t c = g0; c < g1 && !full; c++) {
			uint32_t lo = gstart[c], m = gstart[c + 1] - lo;
			/* (cursor, done with for this group, is the sort's count
			 * array: the next group sets its own entries again) */
			const uint64_t *srt = sort_partition(rec + lo, tmp, m, 32 - r->bits, cursor);

			/* srt is in (low bits, ring index) order: a stable counting
			 * scatter on the bucket bits puts it in ring order, straight
			 * into the lines. */
			memset(count, 0, (size_t)nfine * sizeof(*count));
			for (uint32_t i = 0; i < m; i++)
				count[(uint32_t)(srt[i] >> 32) >> fshift & (nfine - 1)]++;
			if (!lay_out(&lw, (size_t)c * nfine, nfine, count, addr)) {
				full = true;
				break;
			}
			for (uint32_t i = 0; i < m; i++) {
				uint32_t p = (uint32_t)(srt[i] >> 32), f = p >> fshift & (nfine - 1);
				size_t a = addr[f];

				r->line[a++] = (p & rmask) << r->ibits | (uint32_t)srt[i];
				addr[f] = a + (a % ROUTER_LINE_WORDS == 0);
			}
		}
	}
	/* Lines past the last bucket: the end of a spill chain, then at least
	 * one empty line (a lookup prefetches the line after its own). */
	r->nlines = nb + 1;
	if (lw.cl + (lw.cs > 0) > r->nlines)
		r->nlines = (uint32_t)(lw.cl + (lw.cs > 0));
	if (r->nlines > cap)
		full = true;
	for (size_t l = nb; !full && l < r->nlines; l++) {
		size_t spill = l < lw.cl ? (lw.cl - l) * ROUTER_LINE_SLOTS + lw.cs : l == lw.cl ? lw.cs : 0;

		if (spill > 0xffff)
			full = true;
		else
			r->line[l * ROUTER_LINE_WORDS] = (uint32_t)spill;
	}
	ret = full ? 1 : 0;
out_free:
	free(cstart);
	free(gstart);
	free(cursor);
	free(wcbuf);
	free(tmp);
	free(count);
	free(addr);
	return ret;
}

/* The directory's ring-scale and a dc's ring points (router.h): set by
 * the parser whether or not the rings are built. */
int router_dir_ring_scale(const struct router_dir *d)
{
	return d->ring_scale;
}

uint64_t router_dir_ring_points(const struct router_dir *d, unsigned dc)
{
	return dc < d->ndcs ? d->dcs[dc].points : 0;
}

/* Builds the ring of datacenter dc. Returns 0, or -1 with err set. */
static int build_ring(struct router_dir *d, unsigned dc, struct place_scratch *sc, char *err, size_t errlen)
{
	struct router_ring *r = &d->dcs[dc].ring;
	unsigned nn = d->dcs[dc].nnodes, k = 0;
	struct named *nodes = NULL;
	uint64_t *nh = NULL, total = 0;
	int ret = -1, rc;

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
			total += router_ring_points(d->targets[t].weight, d->ring_scale);
		}
	/* The parser refused more than ROUTER_RING_POINTS_MAX points; this
	 * only guards the 32-bit point count should that limit ever grow. */
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
	while ((r->npoints >> r->bits) > ROUTER_LINE_FILL_MAX)
		r->bits++;
	if (r->bits < r->ibits)
		r->bits = r->ibits;
	/* Room for a spill chain past the last bucket; in the (never seen)
	 * case that it is not enough, twice the buckets. */
	for (;;) {
		size_t nb = (size_t)1 << r->bits, cap = nb + nb / 16 + 16;

		r->line = ring_alloc(cap * ROUTER_LINE_WORDS * sizeof(uint32_t));
		if (!r->line)
			goto out_oom;
		rc = sort_points(d, r, nh, cap, sc);
		if (rc == -1)
			goto out_oom;
		if (rc == 0)
			break;
		free(r->line);
		r->line = NULL;
		r->bits++;
	}
	d->memory += (size_t)r->nlines * ROUTER_LINE_WORDS * sizeof(uint32_t) + nn * sizeof(uint32_t);
	ret = 0;
	goto out_free;
out_oom:
	snprintf(err, errlen, "out of memory building the ring of dc '%s'", d->dcs[dc].name);
out_free:
	free(nodes);
	free(nh);
	return ret;
}

/* Builds every datacenter's ring into the snapshot; -1 with err set.
 * With ROUTER_LOAD_NO_RINGS builds nothing: a process that never routes
 * (healthcheckd, seedctl check) then pays neither the time nor the memory,
 * and d->rings stays false so placement calls refuse the snapshot. */
int router_place_build(struct router_dir *d, unsigned flags, char *err, size_t errlen)
{
	struct place_scratch sc = { 0 };
	int ret = 0;

	if (flags & ROUTER_LOAD_NO_RINGS)
		return 0;
	for (unsigned dc = 0; dc < d->ndcs && ret == 0; dc++)
		ret = build_ring(d, dc, &sc, err, errlen);
	free(sc.rec);
	d->rings = ret == 0;
	return ret;
}

void router_place_free(struct router_dir *d)
{
	for (unsigned dc = 0; d->dcs && dc < d->ndcs; dc++) {
		free(d->dcs[dc].ring.line);
		free(d->dcs[dc].ring.node);
	}
}

/* Entries a line holds, from its header. */
static inline uint32_t line_fill(uint32_t head)
{
	uint32_t n = (head & 0xffff) + (head >> 16);

	return n < ROUTER_LINE_SLOTS ? n : ROUTER_LINE_SLOTS;
}

/* Word index of the first entry at or after word a of r->line, in ring
 * order: skips headers and the free end of lines, wraps past the last
 * line. a is an entry's word, a header's, or one past a line. On a
 * non-empty ring. */
static inline size_t ring_at(const struct router_ring *r, size_t a)
{
	for (;;) {
		size_t l = a / ROUTER_LINE_WORDS;

		if (l >= r->nlines) {
			l = 0;
			a = 1;
		} else if (a % ROUTER_LINE_WORDS == 0) {
			a++;
		}
		if (a % ROUTER_LINE_WORDS <= line_fill(r->line[l * ROUTER_LINE_WORDS]))
			return a;
		a = (l + 1) * ROUTER_LINE_WORDS + 1;
	}
}

/* Word index of the entry after the one at word a, in ring order: the
 * next word when the line holds it (its header is in the same cache line
 * as the entry), else ring_at over the following lines. */
static inline size_t ring_next(const struct router_ring *r, size_t a)
{
	size_t l = a / ROUTER_LINE_WORDS;

	if (a % ROUTER_LINE_WORDS < line_fill(r->line[l * ROUTER_LINE_WORDS]))
		return a + 1;
	return ring_at(r, (l + 1) * ROUTER_LINE_WORDS + 1);
}

/* Word index of the first entry at or after position key (wrapping), on
 * a non-empty ring: the scan of key's bucket, which starts skip entries
 * into the bucket's own line and holds count entries in a row (usually
 * all in that line). */
static inline size_t ring_first(const struct router_ring *r, uint32_t key)
{
	uint32_t b = key >> (32 - r->bits);
	const uint32_t *w = r->line + (size_t)b * ROUTER_LINE_WORDS;
	uint32_t skip = w[0] & 0xffff, n = w[0] >> 16, end = skip + n;
	uint32_t want = (key & (UINT32_MAX >> r->bits)) << r->ibits;
	size_t a;

	if (end <= ROUTER_LINE_SLOTS) {
		for (uint32_t j = skip + 1; j <= end; j++)
			if (w[j] >= want)
				return (size_t)b * ROUTER_LINE_WORDS + j;
		return ring_at(r, (size_t)b * ROUTER_LINE_WORDS + end + 1);
	}
	a = ((size_t)b + skip / ROUTER_LINE_SLOTS) * ROUTER_LINE_WORDS + 1 + skip % ROUTER_LINE_SLOTS;
	for (; n; n--) {
		if (r->line[a] >= want)
			return a;
		a++;
		a += a % ROUTER_LINE_WORDS == 0;
	}
	return ring_at(r, a);
}

/* Writes the first min(R, nodes, max) distinct nodes clockwise from the
 * project's position on dc's ring into out; returns how many. */
size_t router_place_dc(const struct router_dir *d, unsigned dc, uint64_t h, unsigned *out, size_t max)
{
	const struct router_ring *r = &d->dcs[dc].ring;
	uint32_t imask, first, seen[ROUTER_MAX_REPLICAS];
	size_t want = d->replicas, n = 1, i;

	if (r->npoints == 0)
		return 0;
	if (want > r->distinct)
		want = r->distinct;
	if (want > max)
		want = max;
	if (want == 0)
		return 0;
	router_ring_prefetch(r, (uint32_t)(h >> 32));
	imask = (1u << r->ibits) - 1;
	i = ring_first(r, (uint32_t)(h >> 32));
	first = r->line[i] & imask;
	out[0] = r->node[first];
	if (want == 2) {
		/* The common case: the next point of another node. */
		for (;;) {
			uint32_t k;

			i = ring_next(r, i);
			k = r->line[i] & imask;
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

		i = ring_next(r, i);
		k = r->line[i] & imask;
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
	const struct router_pin *pin = d->rings ? router_pin_find(d, id, h) : NULL;
	size_t n = 0;

	if (pinned)
		*pinned = pin != NULL;
	if (local_dc >= d->ndcs || !d->rings)
		return 0;       /* loaded without rings: no placement at all, pins included */
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
