/*
 * hc_limits.h — living with a descriptor limit (in libhc, for both
 * daemons): raise RLIMIT_NOFILE, log a recurring problem once per period
 * with a count, and a listening socket that neither spins nor floods the
 * log when accept() hits the limit.
 *
 * Running out of descriptors is our own condition, never a peer's fault:
 * the acceptor below keeps one spare descriptor (open on /dev/null); when
 * accept() fails with EMFILE/ENFILE it closes the spare, accepts the
 * waiting connection, closes it at once (the peer sees the connection
 * closed instead of hanging in the backlog) and opens the spare again. When
 * even that fails (or on ENOBUFS/ENOMEM) the listener pauses for
 * HC_ACCEPT_PAUSE_S instead of being woken again and again by the same
 * pending connection. Either way one log line per HC_RATELOG_PERIOD_S says
 * how many connections it concerned.
 */
#ifndef SEEDGATE_HC_LIMITS_H
#define SEEDGATE_HC_LIMITS_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#define HC_RATELOG_PERIOD_S 10.0
#define HC_ACCEPT_PAUSE_S   0.1

/* Raises the soft RLIMIT_NOFILE to the hard limit (best effort) and
 * returns the soft limit in force afterwards. */
unsigned long hc_nofile_raise(void);
/* The soft RLIMIT_NOFILE now (1024 when it cannot be read). */
unsigned long hc_nofile_limit(void);

/* A recurring event logged at most once per period. Zero-initialise. */
struct hc_ratelog {
	double next;          /* ev_now() before which nothing is logged */
	uint64_t pending;     /* events since the last line */
	uint64_t total;       /* every event ever */
};
/* Counts one event at now (seconds, e.g. ev_now()). Returns true when a
 * line should be written now; *n is then the number of events it covers
 * (this one included) and the count restarts. */
bool hc_ratelog_hit(struct hc_ratelog *r, double now, uint64_t *n);

/* Log sink of the shared servers: one message, without newline. */
typedef void (*hc_log_fn)(const char *msg);
/* Writes msg to stderr with a timestamp: the default sink. */
void hc_log_stderr(const char *msg);

/* Called with every accepted descriptor (non-blocking, close-on-exec). */
typedef void (*hc_accept_fn)(void *udata, int fd);

struct hc_acceptor {
	struct ev_loop *loop;
	int lfd;                    /* the listening socket (owned by the caller) */
	int spare;                  /* spare descriptor on /dev/null, -1 if none */
	ev_io io;
	ev_timer pause;
	hc_accept_fn cb;
	void *udata;
	const char *what;           /* "feed", "stats": names it in the log */
	hc_log_fn log;
	struct hc_ratelog limit_log;
	uint64_t shed;              /* connections closed at the descriptor limit */
	uint64_t pauses;            /* times the listener paused */
};

/* Starts accepting on lfd (non-blocking, listening) on loop. log NULL =
 * hc_log_stderr. */
void hc_acceptor_start(struct hc_acceptor *a, struct ev_loop *loop, int lfd, hc_accept_fn cb,
                       void *udata, const char *what, hc_log_fn log);
/* Stops the watchers and closes the spare descriptor (not lfd). */
void hc_acceptor_stop(struct hc_acceptor *a);

#endif /* SEEDGATE_HC_LIMITS_H */
