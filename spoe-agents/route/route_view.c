/*
 * route_view.c — refcounted (directory, dc, down bytes) views and their
 * holder.
 */
#include "route_view.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* The public part first, so that a struct route_view * is also a pointer to
 * the whole allocation. */
struct view_impl {
	struct route_view pub;
	atomic_uint refs;
	uint8_t down[];           /* target_count bytes when pub.down != NULL */
};

struct route_view_holder {
	_Alignas(64) atomic_uint_fast64_t generation;   /* read by every worker, written on publish */
	_Alignas(64) pthread_mutex_t lock;             /* guards current against acquire/publish races */
	struct route_view *current;
};

/* See route_view.h. The copy of `down` is skipped when no target is down,
 * so the decision code sees NULL (its fastest path). */
struct route_view *route_view_new(struct router_dir *dir, unsigned local_dc, const uint8_t *down)
{
	unsigned n = router_dir_target_count(dir), ndown = 0;
	struct view_impl *v;

	if (down)
		for (unsigned i = 0; i < n; i++)
			ndown += down[i] != 0;
	v = malloc(sizeof(*v) + (ndown ? n : 0));
	if (!v) {
		router_dir_release(&dir);
		return NULL;
	}
	v->pub.dir = dir;
	v->pub.local_dc = local_dc;
	v->pub.ndown = ndown;
	v->pub.down = NULL;
	if (ndown) {
		for (unsigned i = 0; i < n; i++)
			v->down[i] = down[i] != 0;
		v->pub.down = v->down;
	}
	atomic_init(&v->refs, 1);
	return &v->pub;
}

/* Adds a reference; returns v for chaining. */
struct route_view *route_view_ref(struct route_view *v)
{
	struct view_impl *impl = (struct view_impl *)v;

	atomic_fetch_add_explicit(&impl->refs, 1, memory_order_relaxed);
	return v;
}

/* Drops a reference; the last one releases the directory and frees. */
void route_view_release(struct route_view **vp)
{
	struct view_impl *impl = (struct view_impl *)*vp;

	*vp = NULL;
	if (!impl)
		return;
	if (atomic_fetch_sub_explicit(&impl->refs, 1, memory_order_acq_rel) != 1)
		return;
	router_dir_release(&impl->pub.dir);
	free(impl);
}

/* An empty holder (generation 0, no view). NULL on allocation failure. */
struct route_view_holder *route_view_holder_new(void)
{
	struct route_view_holder *h = aligned_alloc(64, sizeof(*h));

	if (!h)
		return NULL;
	memset(h, 0, sizeof(*h));
	atomic_init(&h->generation, 0);
	if (pthread_mutex_init(&h->lock, NULL) != 0) {
		free(h);
		return NULL;
	}
	return h;
}

/* Frees the holder and drops its view; workers must hold their own refs. */
void route_view_holder_free(struct route_view_holder **hp)
{
	struct route_view_holder *h = *hp;

	*hp = NULL;
	if (!h)
		return;
	route_view_release(&h->current);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/* Swaps in v under the lock, bumps the generation, and releases the old view
 * outside the lock (its last reference may be ours). */
void route_view_holder_publish(struct route_view_holder *h, struct route_view *v)
{
	struct route_view *old;

	pthread_mutex_lock(&h->lock);
	old = h->current;
	h->current = v;
	atomic_fetch_add_explicit(&h->generation, 1, memory_order_release);
	pthread_mutex_unlock(&h->lock);
	route_view_release(&old);
}

/* Takes a reference to the current view and reports its generation. */
struct route_view *route_view_holder_acquire(struct route_view_holder *h, uint64_t *gen)
{
	struct route_view *v;

	pthread_mutex_lock(&h->lock);
	v = h->current ? route_view_ref(h->current) : NULL;
	*gen = atomic_load_explicit(&h->generation, memory_order_relaxed);
	pthread_mutex_unlock(&h->lock);
	return v;
}

/* One acquire load of the generation counter. */
uint64_t route_view_holder_generation(const struct route_view_holder *h)
{
	return atomic_load_explicit(&((struct route_view_holder *)h)->generation, memory_order_acquire);
}
