/*
 * spop_runtime.h — SPOA runtime: listeners, HELLO negotiation, NOTIFY
 * dispatch, batched ACKs, graceful stop.
 *
 * N worker threads, each with its own libev loop. Each listener is one
 * socket shared by every worker's loop (accept() on a non-blocking fd; the
 * worker that wins takes the connection); TCP ones are bound without
 * SO_REUSEPORT, so a second agent on the same address fails to start
 * instead of silently taking half the connections (spop_listen.c).
 *
 * Connections are capped (max_connections, by default what the open-files
 * limit allows minus a reserve): at the cap a new connection is accepted
 * and refused with AGENT-DISCONNECT status 13 (resource allocation) and a
 * message naming the cap, so HAProxy logs why at once and fails that
 * request over instead of waiting for its hello timeout. Out of
 * descriptors (EMFILE/ENFILE) the listener pauses briefly. Neither spins,
 * and their log lines are rate-limited (the metrics count every event).
 * Handlers run on the worker threads, concurrently: they must not block and
 * must protect shared state themselves. Workers block every signal, so the
 * process' signals (SIGTERM, SIGHUP ...) are delivered to the main thread,
 * which typically sits in sigwait()/an ev_signal loop and calls
 * spop_runtime_stop(). SIGPIPE is never raised by the runtime (MSG_NOSIGNAL).
 *
 * The library never prints: notable events (a DISCONNECT sent with its
 * status, a listener error) go to cfg.log, from any thread.
 */
#ifndef SPOP_RUNTIME_H
#define SPOP_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spop.h"

struct ev_loop;
struct spop_runtime;

/* The ACK being built for the current NOTIFY. Valid only during the handler
 * call. Each function returns 0, or -1 if the action does not fit in the
 * negotiated frame size (the ACK then keeps the actions added so far). */
struct spop_ack;
int spop_ack_set_str(struct spop_ack *ack, enum spop_scope scope, const char *name, const char *val, size_t len);
int spop_ack_set_var(struct spop_ack *ack, enum spop_scope scope, const char *name, const struct spop_data *v);
int spop_ack_unset_var(struct spop_ack *ack, enum spop_scope scope, const char *name);
int spop_ack_set_int(struct spop_ack *ack, enum spop_scope scope, const char *name, int64_t val);
/* Same with an explicit name length (name need not be NUL-terminated). */
int spop_ack_set_var_n(struct spop_ack *ack, enum spop_scope scope, const char *name, size_t name_len,
		       const struct spop_data *v);

/* The argument called `name`, or NULL. */
const struct spop_arg *spop_args_find(const struct spop_args *args, const char *name);

/* Called for every message whose name was registered with spop_runtime_on();
 * `worker` is the worker index in [0, workers). Several messages of one
 * NOTIFY add their actions to the same ACK. */
typedef void (*spop_handler_fn)(void *udata, unsigned worker, const struct spop_args *args, struct spop_ack *ack);

/* The idle timeout must exceed HAProxy's own (its `timeout idle` on 2.6,
 * the agents backend's `timeout server` on 3.x): then HAProxy always
 * closes an idle connection first and never sends a NOTIFY on one the
 * agent is closing (that request would fail open to the hubs). */
#define SPOP_DEFAULT_IDLE_TIMEOUT_MS 90000u
#define SPOP_DEFAULT_FD_RESERVE      64u

struct spop_runtime_config {
	unsigned workers;              /* 0 -> 1 */
	uint32_t max_frame_size;       /* our limit; 0 -> SPOP_DEFAULT_FRAME_SIZE; clamped to [256, 1 MiB] */
	unsigned idle_timeout_ms;      /* close a connection silent for that long; 0 -> SPOP_DEFAULT_IDLE_TIMEOUT_MS */
	/* Connection cap. 0: derived at start from the soft RLIMIT_NOFILE:
	 * limit - descriptors open at start - fd_reserve - room for the
	 * refusals in flight. A value above that fails the start. */
	unsigned max_connections;
	unsigned fd_reserve;           /* descriptors the program opens later (0 -> SPOP_DEFAULT_FD_RESERVE) */
	const char *agent_name;        /* in "ADDR is already in use (another NAME?)"; NULL -> "agent" */
	void (*log)(void *udata, int priority /* syslog LOG_* */, const char *msg);
	void *log_udata;
	/* Optional: called on each worker thread before its loop runs / after it
	 * ends, e.g. to attach per-worker watchers or state to `loop`. */
	void (*worker_init)(void *udata, unsigned worker, struct ev_loop *loop);
	void (*worker_fini)(void *udata, unsigned worker, struct ev_loop *loop);
	void *worker_udata;
	size_t out_buffer_frames;      /* output buffer, in max-size frames; 0 -> 4 */
};

struct spop_runtime *spop_runtime_new(const struct spop_runtime_config *cfg, char *err, size_t errlen);
/* Registers fn for messages called `message`. Before start only. 0 / -1. */
int spop_runtime_on(struct spop_runtime *rt, const char *message, spop_handler_fn fn, void *udata);
/* "host:port", "[v6]:port", "*:port", "/path" or "unix:/path". Binds now
 * (errors reported here, before start). 0 / -1 with err filled. */
int spop_runtime_listen(struct spop_runtime *rt, const char *addr, char *err, size_t errlen);
int spop_runtime_start(struct spop_runtime *rt, char *err, size_t errlen);  /* spawns the workers */
/* Graceful: stop accepting, answer the frames already read, close every
 * connection, join the workers. Call from one thread (not a handler). */
void spop_runtime_stop(struct spop_runtime *rt);

struct spop_stats {
	uint64_t conns_total, conns_current, hellos, healthchecks, notifies, acks, messages,
		 disconnect_status[100] /* by status sent */, haproxy_disconnects, bytes_in, bytes_out;
	uint64_t conns_max;            /* the connection cap (0 before start) */
	uint64_t conns_refused;        /* refused at the cap (AGENT-DISCONNECT 13) */
	uint64_t accept_errors;        /* accept() failures that paused a listener (EMFILE ...) */
	uint64_t hello_timeouts;       /* connections closed for not finishing their HELLO */
	uint64_t log_suppressed;       /* log lines left out by the rate limits */
	uint64_t idle_timeout_ms;
};
void spop_runtime_stats(struct spop_runtime *rt, struct spop_stats *out);  /* sums the workers' counters */
unsigned spop_runtime_workers(const struct spop_runtime *rt);
/* Port a TCP listener got (useful with ":0"); index in listen order; 0 if none. */
unsigned spop_runtime_listen_port(const struct spop_runtime *rt, unsigned index);
void spop_runtime_free(struct spop_runtime **rt);

#endif /* SPOP_RUNTIME_H */
