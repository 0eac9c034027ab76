/*
 * spop_int.h — libspop internals shared by the runtime's files (and the
 * fuzz target, which drives the protocol engine without sockets). Not part
 * of the public API.
 */
#ifndef SPOP_INT_H
#define SPOP_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "spop.h"
#include "spop_runtime.h"

#define SPOP_MAX_HANDLERS   32
#define SPOP_MAX_LISTENERS  16
#define SPOP_MAX_WORKERS    256
#define SPOP_FRAME_SIZE_CAP (1u << 20)   /* largest max-frame-size we accept to configure */
#define SPOP_REJECT_MAX     16           /* refused connections lingering at once (AGENT-DISCONNECT 13) */
#define SPOP_HELLO_TIMEOUT_S 5.0         /* a connection must finish its HELLO within that */

#define SPOP_CONN_MAGIC     0x5350434eu  /* "SPCN" */
#define SPOP_WORKER_MAGIC   0x5350574bu  /* "SPWK" */
#define SPOP_LISTEN_MAGIC   0x53504c53u  /* "SPLS" */

/* ----- counters: written by one worker (relaxed), summed by stats ------- */
struct spop_counters {
	_Atomic uint64_t conns_total, conns_current, hellos, healthchecks, notifies, acks, messages,
		disconnect_status[100], haproxy_disconnects, bytes_in, bytes_out, conns_refused,
		accept_errors, hello_timeouts;
};

#define SPOP_CTR_ADD(ctr, field, n) \
	atomic_fetch_add_explicit(&(ctr)->field, (uint64_t)(n), memory_order_relaxed)
#define SPOP_CTR_SUB(ctr, field, n) \
	atomic_fetch_sub_explicit(&(ctr)->field, (uint64_t)(n), memory_order_relaxed)

/* ----- rate-limited logging ----------------------------------------------
 * Lines a peer can trigger at will (a DISCONNECT per bad connection, a
 * refusal per connection over the cap, an accept() error per retry) go
 * through one of these: at most `burst` lines per `window` seconds; the
 * next line allowed says how many were left out meanwhile, the metrics
 * count every event, and spop_ratelog_flush() reports a remainder at stop.
 * Cold paths only: a mutex is fine. */
struct spop_ratelog {
	pthread_mutex_t lock;
	unsigned burst;
	double window;
	double window_start;            /* CLOCK_MONOTONIC seconds */
	unsigned lines;                 /* lines logged in the current window */
	uint64_t suppressed;            /* events left out since the last line */
	uint64_t suppressed_total;
};

void spop_ratelog_init(struct spop_ratelog *r, unsigned burst, double window);
void spop_ratelog_destroy(struct spop_ratelog *r);
/* True: log the event now; *skipped = events left out since the previous
 * logged line. False: the event was counted, do not log it. */
bool spop_ratelog_allow(struct spop_ratelog *r, uint64_t *skipped);
/* Events left out since the last logged line (reset), for a final line. */
uint64_t spop_ratelog_flush(struct spop_ratelog *r);
uint64_t spop_ratelog_suppressed_total(struct spop_ratelog *r);

/* ----- handlers and logging: read-only once the runtime started -------- */
struct spop_handler {
	char *name;
	size_t name_len;
	spop_handler_fn fn;
	void *udata;
};

struct spop_env {
	struct spop_handler handlers[SPOP_MAX_HANDLERS];
	unsigned nhandlers;
	uint32_t our_max;                      /* our max-frame-size */
	void (*log)(void *udata, int priority, const char *msg);
	void *log_udata;
	struct spop_ratelog *disc_log;         /* DISCONNECT lines; NULL: log each one */
};

void spop_env_log(const struct spop_env *env, int priority, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same through rate limit r (NULL: every line); the line let through
 * after some were left out says how many `what` were. */
void spop_env_log_limited(const struct spop_env *env, struct spop_ratelog *r, int priority, const char *what,
			  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ----- the ACK being built ---------------------------------------------- */
struct spop_ack {
	uint8_t *frame;         /* start of the ACK frame (length prefix) */
	size_t len;             /* bytes written so far, header included */
	size_t cap;             /* frame_size + 4 (or less if the buffer is shorter) */
};

/* ----- protocol engine: one per connection, no sockets ------------------ */
enum spop_proto_state {
	SPOP_PS_HELLO = 0,      /* waiting for HAPROXY-HELLO */
	SPOP_PS_READY,          /* handshake done: NOTIFY / DISCONNECT */
	SPOP_PS_CLOSING,        /* last frame queued: flush, then close */
};

struct spop_proto {
	const struct spop_env *env;
	struct spop_counters *ctr;
	unsigned worker;
	uint32_t frame_size;    /* our_max until the HELLO, then the negotiated size */
	enum spop_proto_state state;
	char peer[64];          /* for log lines */
};

/* An output buffer: [0, len) holds frames to send. */
struct spop_out {
	uint8_t *buf;
	size_t len;
	size_t cap;
};

void spop_proto_init(struct spop_proto *p, const struct spop_env *env, struct spop_counters *ctr,
		     unsigned worker, const char *peer);
/* Processes the complete frames at the start of in[0, len), appending the
 * replies to out. Stops early when out has less than a maximal frame of
 * room (back-pressure: call again once it drained) or once the connection
 * is closing. Returns the bytes consumed. */
size_t spop_proto_feed(struct spop_proto *p, const uint8_t *in, size_t len, struct spop_out *out);
/* Room in out a single reply may need. */
size_t spop_proto_reply_room(const struct spop_proto *p);
/* Queues an AGENT-DISCONNECT (if the handshake was done or `always`) and
 * moves to CLOSING. Used for stop (status 0) and idle timeout (status 2). */
void spop_proto_disconnect(struct spop_proto *p, struct spop_out *out, enum spop_status st,
			   const char *msg, bool always);
/* Refuses the connection before its HELLO (AGENT-DISCONNECT st/msg, no log
 * line: the caller logs refusals rate-limited) and moves to CLOSING. */
void spop_proto_refuse(struct spop_proto *p, struct spop_out *out, enum spop_status st, const char *msg);
static inline bool spop_proto_closing(const struct spop_proto *p) { return p->state == SPOP_PS_CLOSING; }

/* ----- runtime objects -------------------------------------------------- */
struct spop_worker;

struct spop_listener {
	char addr[256];
	bool is_unix;
	char path[108];
	unsigned port;
	int fd;                             /* one socket, watched by every worker */
};

/* A worker's watcher on one listening fd. */
struct spop_wlisten {
	unsigned magic;
	ev_io io;
	int fd;
	struct spop_worker *w;
};

struct spop_conn;

struct spop_worker {
	unsigned magic;
	unsigned index;
	struct spop_runtime *rt;
	struct ev_loop *loop;
	pthread_t thread;
	bool started;
	ev_async stop_async;
	ev_timer stop_deadline;
	ev_timer accept_resume;             /* after EMFILE or at the cap: retry accepting later */
	bool accept_paused;
	struct spop_wlisten wl[SPOP_MAX_LISTENERS];
	unsigned nwl;
	struct spop_conn *conns;            /* doubly linked list of live connections */
	bool stopping;
	struct spop_counters ctr;
};

struct spop_runtime {
	struct spop_env env;
	unsigned nworkers;
	unsigned idle_timeout_ms;
	size_t out_frames;
	const char *agent_name;             /* for "ADDR is already in use (another NAME?)" */
	unsigned max_conns_cfg;             /* 0: derive from RLIMIT_NOFILE at start */
	unsigned fd_reserve;
	unsigned max_conns;                 /* the cap in force once started */
	_Atomic unsigned conns_open;        /* served connections, every worker */
	_Atomic unsigned rejecting;         /* refused connections still lingering */
	struct spop_ratelog disc_log, accept_log, cap_log;
	void (*worker_init)(void *udata, unsigned worker, struct ev_loop *loop);
	void (*worker_fini)(void *udata, unsigned worker, struct ev_loop *loop);
	void *worker_udata;
	struct spop_listener listeners[SPOP_MAX_LISTENERS];
	unsigned nlisteners;
	struct spop_worker *workers;
	bool started, stopped;
};

/* spop_listen.c */
int spop_listener_open(struct spop_listener *l, const char *addr, const char *agent_name, char *err,
		       size_t errlen);
void spop_listener_close(struct spop_listener *l);

/* spop_conn.c */
void spop_conn_accept_cb(struct ev_loop *loop, ev_io *w, int revents);
void spop_conn_accept_resume_cb(struct ev_loop *loop, ev_timer *t, int revents);
void spop_conn_stop_all(struct spop_worker *w);     /* graceful: DISCONNECT, flush, close */
void spop_conn_close_all(struct spop_worker *w);    /* immediate teardown (deadline passed) */

#endif /* SPOP_INT_H */
