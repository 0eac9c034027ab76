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
 *    position (b chosen for ~2-4 points per bucket) give the first candidate
 *    point, then a few 8-byte points in one cache line are scanned.
 *
 * XXH3 (Debian's libxxhash) rather than a home-made mix: its output is fixed
 * by a published specification and is endian-independent, it is what
 * route-agent and seedctl link anyway, and it hashes 16 bytes in a few
 * nanoseconds, which keeps building 10k nodes x 2560 points under 1 s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "router_int.h"

/* Little-endian store, so point positions are the same on every host. */
static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Stable LSD radix sort of points by hash (two 16-bit passes). */
static int sort_points(struct router_point *pts, uint32_t n)
{
	struct router_point *tmp = malloc((size_t)n * sizeof(*tmp));
	uint32_t *count = calloc(65536, sizeof(uint32_t));
	int ret = -1;

	if (!tmp || !count)
		goto out_free;
	for (unsigned pass = 0; pass < 2; pass++) {
		unsigned shift = pass * 16;
		struct router_point *src = pass ? tmp : pts, *dst = pass ? pts : tmp;
		uint32_t sum = 0;

		memset(count, 0, 65536 * sizeof(uint32_t));
		for (uint32_t i = 0; i < n; i++)
			count[(src[i].hash >> shift) & 0xffff]++;
		for (uint32_t k = 0; k < 65536; k++) {
			uint32_t c = count[k];

			count[k] = sum;
			sum += c;
		}
		for (uint32_t i = 0; i < n; i++)
			dst[count[(src[i].hash >> shift) & 0xffff]++] = src[i];
	}
	ret = 0;
out_free:
	free(tmp);
	free(count);
	return ret;
}

/* Orders runs of equal hashes by node name (insertion sort: runs are of
 * length 1 or 2 in practice), so file order never shows in placement. */
static void order_ties(const struct router_dir *d, struct router_point *pts, uint32_t n)
{
	for (uint32_t i = 1; i < n; i++) {
		struct router_point p = pts[i];
		uint32_t j = i;

		while (j > 0 && pts[j - 1].hash == p.hash &&
		       strcmp(d->targets[pts[j - 1].target].name, d->targets[p.target].name) > 0) {
			pts[j] = pts[j - 1];
			j--;
		}
		pts[j] = p;
	}
}

/* Builds the ring of datacenter dc. Returns 0 or -1 (out of memory). */
static int build_ring(struct router_dir *d, unsigned dc)
{
	struct router_ring *r = &d->dcs[dc].ring;
	uint64_t total = 0;
	uint32_t n = 0, nb;
	uint8_t buf[16];

	for (unsigned t = 0; t < d->ntargets; t++)
		if (d->targets[t].dc == dc && d->targets[t].kind == ROUTER_NODE) {
			total += (uint64_t)d->targets[t].weight * ROUTER_POINTS_PER_WEIGHT;
			r->distinct++;
		}
	if (total == 0)
		return 0;
	if (total > UINT32_MAX / 2)
		return -1;
	r->points = malloc((size_t)total * sizeof(*r->points));
	if (!r->points)
		return -1;
	for (unsigned t = 0; t < d->ntargets; t++) {
		const struct router_target *tg = &d->targets[t];
		size_t len;
		uint32_t pts;

		if (tg->dc != dc || tg->kind != ROUTER_NODE)
			continue;
		len = strlen(tg->name);
		pts = tg->weight * ROUTER_POINTS_PER_WEIGHT;
		put_le64(buf, XXH3_64bits(tg->name, len));
		for (uint32_t j = 0; j < pts; j++) {
			put_le64(buf + 8, j);
			r->points[n].hash = (uint32_t)(XXH3_64bits(buf, sizeof(buf)) >> 32);
			r->points[n].target = t;
			n++;
		}
	}
	r->npoints = n;
	if (sort_points(r->points, n) == -1)
		return -1;
	order_ties(d, r->points, n);

	r->bucket_bits = 1;
	while (r->bucket_bits < 24 && (1u << (r->bucket_bits + 1)) <= n / 3)
		r->bucket_bits++;
	nb = 1u << r->bucket_bits;
	r->bucket = malloc(((size_t)nb + 1) * sizeof(uint32_t));
	if (!r->bucket)
		return -1;
	for (uint32_t b = 0, i = 0; b <= nb; b++) {
		while (i < n && (r->points[i].hash >> (32 - r->bucket_bits)) < b)
			i++;
		r->bucket[b] = i;
	}
	r->bucket[nb] = n;
	d->memory += (size_t)n * sizeof(*r->points) + ((size_t)nb + 1) * sizeof(uint32_t);
	return 0;
}

/* Builds every datacenter's ring into the snapshot; -1 with err set. */
int router_place_build(struct router_dir *d, char *err, size_t errlen)
{
	for (unsigned dc = 0; dc < d->ndcs; dc++)
		if (build_ring(d, dc) == -1) {
			snprintf(err, errlen, "out of memory building the ring of dc '%s'", d->dcs[dc].name);
			return -1;
		}
	return 0;
}

void router_place_free(struct router_dir *d)
{
	for (unsigned dc = 0; d->dcs && dc < d->ndcs; dc++) {
		free(d->dcs[dc].ring.points);
		free(d->dcs[dc].ring.bucket);
	}
}

/* Writes the first min(R, nodes, max) distinct nodes clockwise from the
 * project's position on dc's ring into out; returns how many. */
size_t router_place_dc(const struct router_dir *d, unsigned dc, uint64_t h, unsigned *out, size_t max)
{
	const struct router_ring *r = &d->dcs[dc].ring;
	uint32_t key = (uint32_t)(h >> 32), b, i, e;
	size_t want = d->replicas, n = 0;

	if (r->npoints == 0)
		return 0;
	if (want > r->distinct)
		want = r->distinct;
	if (want > max)
		want = max;
	b = key >> (32 - r->bucket_bits);
	i = r->bucket[b];
	e = r->bucket[b + 1];
	while (i < e && r->points[i].hash < key)
		i++;
	if (i == r->npoints)
		i = 0;
	while (n < want) {
		unsigned t = r->points[i].target;
		size_t k = 0;

		while (k < n && out[k] != t)
			k++;
		if (k == n)
			out[n++] = t;
		if (++i == r->npoints)
			i = 0;
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
