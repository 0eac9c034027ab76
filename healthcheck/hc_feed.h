/*
 * hc_feed.h — the health feed of seedgate: wire format and subscriber client.
 *
 * healthcheckd publishes the health of every hub and node on a unix stream
 * socket (`healthcheckd --feed PATH`). A subscriber (route-agent --health
 * PATH, seedctl health) connects and receives text lines, one record each,
 * terminated by '\n' and at most HC_FEED_LINE_MAX bytes long including it:
 *
 *   H seedgate-health 1                      greeting, first line (version 1)
 *   T <name> <state> <addr> <since-ms> <reason...>
 *                                            one target: state is up|down|drain,
 *                                            addr is "ip:port" ("[v6]:port") of the
 *                                            address checked, or "-" while unknown;
 *                                            since-ms is the unix time in ms of the
 *                                            last state change; reason is free text
 *                                            to the end of the line (may be empty)
 *   S <name> <kind> <dc> <last-check-ms> <latency-us> <checks> <fails>
 *                                            details for `seedctl health` (snapshot
 *                                            only; subscribers may ignore them)
 *   E <count>                                end of the snapshot: count T lines sent
 *
 * On connect the subscriber gets H, then a full snapshot (one T line per
 * target, S lines interleaved), then E. Every later T line is a delta: the
 * target changed state, address or reason. The snapshot is sent as the
 * subscriber reads, so a change to a target it already went past comes at
 * once, before E: a target may have two T lines in a snapshot, and T lines
 * apply in order. A target absent from a later
 * snapshot was removed from the seed directory. Lines of an unknown type are
 * ignored (forward compatibility); a malformed or over-long line is skipped.
 * The subscriber never writes; healthcheckd drops subscribers that do not
 * read (output queue over 1 MB + 256 bytes per target).
 *
 * The codec half (hc_feed_encode_*, hc_feed_decode) is pure; the client half
 * runs on the caller's libev loop, never blocks, and reconnects by itself
 * with an exponential back-off (50 ms doubling to 2 s).
 *
 * Link with build/libhc.a and -lev.
 */
#ifndef SEEDGATE_HC_FEED_H
#define SEEDGATE_HC_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct ev_loop;

#define HC_FEED_LINE_MAX    1024   /* longest line including '\n' */
#define HC_FEED_NAME_MAX    32     /* target names as in the seed directory */
#define HC_FEED_ADDR_MAX    64     /* "[v6]:port" fits */
#define HC_FEED_REASON_MAX  256    /* longer reasons are truncated by the encoder */
#define HC_FEED_VERSION     1

enum hc_state { HC_UP, HC_DOWN, HC_DRAIN };

/* "up", "down", "drain"; "?" for anything else. */
const char *hc_state_str(enum hc_state st);
/* Parses "up"/"down"/"drain" of len bytes; 0 ok, -1 otherwise. */
int hc_state_parse(const char *s, size_t len, enum hc_state *st);

/* ---------------------------------------------------------------- codec */

enum hc_feed_rec_type { HC_FEED_HELLO = 'H', HC_FEED_TARGET = 'T', HC_FEED_DETAIL = 'S',
                        HC_FEED_END = 'E' };

/* One decoded line. Strings are NUL-terminated copies (no pointer into the
 * input survives the call). */
struct hc_feed_rec {
	enum hc_feed_rec_type type;
	char name[HC_FEED_NAME_MAX + 1];
	enum hc_state state;                /* T */
	char addr[HC_FEED_ADDR_MAX + 1];    /* T: "" when "-" */
	int64_t since_ms;                   /* T */
	char reason[HC_FEED_REASON_MAX + 1];/* T */
	char kind[8];                       /* S: "hub" / "node" / "server" */
	char dc[HC_FEED_NAME_MAX + 1];      /* S */
	int64_t last_check_ms;              /* S: 0 = never */
	uint64_t latency_us;                /* S */
	uint64_t checks, fails;             /* S */
	uint64_t count;                     /* E */
	unsigned version;                   /* H */
};

/* Decodes one line of len bytes (with or without its trailing '\n').
 * Returns 1 when rec holds a record, 0 for a line to ignore (unknown type,
 * empty), -1 for a malformed line of a known type. */
int hc_feed_decode(const char *line, size_t len, struct hc_feed_rec *rec);

/* Encoders: write one complete line (with '\n', NUL-terminated) into buf of
 * room bytes. Return the line length without the NUL, or -1 when it does not
 * fit or an argument is invalid (name not a seed name). Control characters
 * in reason become spaces; reason is cut at HC_FEED_REASON_MAX bytes. */
int hc_feed_encode_hello(char *buf, size_t room);
int hc_feed_encode_target(char *buf, size_t room, const char *name, enum hc_state st,
                          const char *addr, int64_t since_ms, const char *reason);
int hc_feed_encode_detail(char *buf, size_t room, const char *name, const char *kind,
                          const char *dc, int64_t last_check_ms, uint64_t latency_us,
                          uint64_t checks, uint64_t fails);
int hc_feed_encode_end(char *buf, size_t room, uint64_t count);

/* Bounded line splitter: feed it bytes as they arrive, it calls line_cb for
 * every complete line (without '\n'). A line longer than HC_FEED_LINE_MAX is
 * dropped whole (counted in *overlong). Never allocates. */
struct hc_line_buf {
	char buf[HC_FEED_LINE_MAX];
	size_t len;
	bool skipping;         /* inside an over-long line: drop up to '\n' */
	uint64_t overlong;     /* lines dropped for length */
};
typedef void (*hc_line_cb)(void *udata, const char *line, size_t len);
void hc_line_buf_init(struct hc_line_buf *lb);
void hc_line_buf_feed(struct hc_line_buf *lb, const char *data, size_t len,
                      hc_line_cb cb, void *udata);

/* --------------------------------------------------------------- client */

struct hc_feed_client;

/* Called for every T line, snapshot and deltas. addr is NULL when unknown.
 * name and addr are valid during the call only. */
typedef void (*hc_feed_target_cb)(void *udata, const char *name, enum hc_state st,
                                  const char *addr);
/* connected=true once a complete snapshot arrived (fresh state in hand);
 * connected=false when the link is lost or the first attempt fails (called
 * once per loss, not per retry). why is a short text, valid during the call. */
typedef void (*hc_feed_link_cb)(void *udata, bool connected, const char *why);

/* Starts a client on loop for the unix socket path; it connects from the
 * loop's next iteration (then retries with back-off). Callbacks run on the
 * loop, never from inside hc_feed_client_new(). link_cb may be NULL.
 * Returns NULL with a message in err on bad arguments or allocation failure
 * (an absent socket is not an error: it is retried). */
struct hc_feed_client *hc_feed_client_new(struct ev_loop *loop, const char *path,
                                          hc_feed_target_cb target_cb,
                                          hc_feed_link_cb link_cb, void *udata,
                                          char *err, size_t errlen);
/* Stops every watcher, closes the socket, frees, sets *c = NULL. NULL-safe.
 * Must not be called from inside a callback of the same client. */
void hc_feed_client_free(struct hc_feed_client **c);

/* Optional extras (additions to CONTRACTS.md). */
/* Called for every E line with the snapshot's target count. */
typedef void (*hc_feed_snapshot_cb)(void *udata, uint64_t count);
void hc_feed_client_set_snapshot_cb(struct hc_feed_client *c, hc_feed_snapshot_cb cb);
bool hc_feed_client_connected(const struct hc_feed_client *c);  /* snapshot received, link up */
/* Optional: called after every failed attempt, the first one (the loss, or
 * the first connect that failed) included. failures counts them since the
 * last complete snapshot; why as for link_cb; retry_in is the delay before
 * the next attempt, in seconds. For rate-limited "still trying" logs. */
typedef void (*hc_feed_retry_cb)(void *udata, unsigned failures, const char *why, double retry_in);
void hc_feed_client_set_retry_cb(struct hc_feed_client *c, hc_feed_retry_cb cb);

struct hc_feed_client_stats { uint64_t connects, disconnects, lines, bad_lines, overlong; };
void hc_feed_client_stats(const struct hc_feed_client *c, struct hc_feed_client_stats *out);

/* ---------------------------------------------------------- status table */

/* `seedctl health`: connects to the feed at path (blocking, at most
 * timeout_ms), reads the snapshot and prints one row per target to out:
 * target, kind, dc, state, since, last check, latency, reason.
 * Returns the number of targets printed, or -1 with a message in err. */
int hc_status_print(const char *path, FILE *out, unsigned timeout_ms,
                    char *err, size_t errlen);

#endif /* SEEDGATE_HC_FEED_H */
