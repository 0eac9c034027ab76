/*
 * spop_ratelog.c — rate limits for the log lines a peer can trigger at will.
 *
 * A flood of bad connections, of connections over the cap or of accept()
 * errors must not turn into a flood of log lines (a full disk is a second
 * outage). Each limiter allows `burst` lines per `window` seconds; the
 * first line allowed after a quiet spell carries the count of the lines
 * left out, so the log still says how much happened.
 */
#include <time.h>

#include "spop_int.h"

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void spop_ratelog_init(struct spop_ratelog *r, unsigned burst, double window)
{
	pthread_mutex_init(&r->lock, NULL);
	r->burst = burst ? burst : 1;
	r->window = window;
	r->window_start = -1e9;
	r->lines = 0;
	r->suppressed = 0;
	r->suppressed_total = 0;
}

void spop_ratelog_destroy(struct spop_ratelog *r)
{
	pthread_mutex_destroy(&r->lock);
}

bool spop_ratelog_allow(struct spop_ratelog *r, uint64_t *skipped)
{
	double now = mono_now();
	bool ok;

	pthread_mutex_lock(&r->lock);
	if (now - r->window_start >= r->window) {
		r->window_start = now;
		r->lines = 0;
	}
	ok = r->lines < r->burst;
	if (ok) {
		r->lines++;
		*skipped = r->suppressed;
		r->suppressed = 0;
	} else {
		r->suppressed++;
		r->suppressed_total++;
	}
	pthread_mutex_unlock(&r->lock);
	return ok;
}

uint64_t spop_ratelog_flush(struct spop_ratelog *r)
{
	uint64_t n;

	pthread_mutex_lock(&r->lock);
	n = r->suppressed;
	r->suppressed = 0;
	pthread_mutex_unlock(&r->lock);
	return n;
}

uint64_t spop_ratelog_suppressed_total(struct spop_ratelog *r)
{
	uint64_t n;

	pthread_mutex_lock(&r->lock);
	n = r->suppressed_total;
	pthread_mutex_unlock(&r->lock);
	return n;
}
