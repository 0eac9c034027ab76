/*
 * sd_int.h — between the source (sd_source.c) and the etcd sync engine
 * (sd_sync.c). Not installed, not for the daemons.
 */
#ifndef SEEDGATE_SD_INT_H
#define SEEDGATE_SD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "seeddir.h"

struct ev_loop;

/* The records of one listing: keys and values in one pool (offsets while
 * it grows, pointers once sd_recs_finish() ran). */
struct sd_recs {
	struct sd_record *rec;
	size_t n, cap;
	size_t *off;                 /* 2 per record: key, value offsets in pool */
	char *pool;
	size_t plen, pcap;
};

int sd_recs_add(struct sd_recs *r, const char *key, size_t klen, const char *val, size_t vlen);
void sd_recs_finish(struct sd_recs *r);      /* offsets -> pointers */
void sd_recs_free(struct sd_recs *r);
int sd_recs_copy(struct sd_recs *dst, const struct sd_recs *src);   /* finished copy; -1 oom */
uint64_t sd_recs_hash(const struct sd_recs *r, const char *gen);

/* What the engine tells the source. */
struct sd_sync_ops {
	/* A complete listing at revision rev of generation gen; the source
	 * takes over recs (and frees them) and must answer sd_sync_built()
	 * once the directory was built (or refused). */
	void (*listed)(void *udata, int64_t rev, const char *gen, struct sd_recs *recs);
	/* A listing identical to the last one: nothing to build; rev is
	 * still the one the directory is now known to be current at. */
	void (*unchanged)(void *udata, int64_t rev);
	/* A failed sync step (etcd unreachable, an error answer...), or the
	 * directory's layout being wrong (PREFIX/current missing): counted
	 * and logged by the source. */
	void (*failed)(void *udata, const char *msg, bool connectivity);
	/* The watch was established (true) or lost (false). */
	void (*connected)(void *udata, bool up, const char *endpoint);
};

struct sd_sync;

struct sd_sync *sd_sync_new(struct ev_loop *loop, const struct sd_etcd_spec *spec, double debounce,
                            const struct sd_sync_ops *ops, void *udata, char *err, size_t errlen);
void sd_sync_start(struct sd_sync *y);                /* the first list (then the watch) */
void sd_sync_built(struct sd_sync *y);                /* the listed directory was handled */
void sd_sync_relist(struct sd_sync *y, bool force);   /* list again (SIGHUP: force a build) */
void sd_sync_free(struct sd_sync **y);
/* Range answers received so far: the first sync waits on while they come. */
uint64_t sd_sync_pages(const struct sd_sync *y);

/* The fuzz target's way in (tests/fuzz/fuzz_sd_watch.c): bytes of a watch
 * stream as if etcd sent them (-1: the watch would end), and one range
 * answer of a listing step (0 PREFIX/current, 1..20 a slice of the
 * generation or live/). */
int sd_sync_feed_watch(struct sd_sync *y, const char *buf, size_t len);
void sd_sync_feed_list(struct sd_sync *y, int step, const char *body, size_t len);

#include "sd_b64.h"

#endif /* SEEDGATE_SD_INT_H */
