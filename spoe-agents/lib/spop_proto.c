/*
 * spop_proto.c — the agent's protocol engine for one connection.
 *
 * Socket-free: it consumes complete frames from an input buffer and appends
 * the replies (AGENT-HELLO, ACKs, AGENT-DISCONNECT) to an output buffer, so
 * the libev connection code (spop_conn.c) and the fuzz target drive the
 * same state machine. Frames are decoded in place; nothing is allocated.
 *
 *   HELLO  --HAPROXY-HELLO ok-->  READY  --NOTIFY--> ACK (one per NOTIFY)
 *     |  healthcheck: AGENT-HELLO, CLOSING        |  HAPROXY-DISCONNECT:
 *     |  error: AGENT-DISCONNECT <status>, CLOSING   AGENT-DISCONNECT 0, CLOSING
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "spop_int.h"

/* Formats one log line and hands it to the configured callback. */
void spop_env_log(const struct spop_env *env, int priority, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (!env->log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	env->log(env->log_udata, priority, line);
}

/* spop_env_log through the rate limit r (NULL: every line): for lines a
 * peer can trigger at will (a DISCONNECT per bad connection, a refusal per
 * connection over the cap). `what` names the events in the remark that
 * says how many were left out; the counters keep every event. */
void spop_env_log_limited(const struct spop_env *env, struct spop_ratelog *r, int priority, const char *what,
			  const char *fmt, ...)
{
	uint64_t skipped = 0;
	char line[400];
	va_list ap;

	if (!env->log || (r && !spop_ratelog_allow(r, &skipped)))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (skipped)
		spop_env_log(env, priority, "%s (and %llu more %s left out by the log rate limit)", line,
			     (unsigned long long)skipped, what);
	else
		spop_env_log(env, priority, "%s", line);
}

/* Prepares p for a new connection; peer is a label for log lines. */
void spop_proto_init(struct spop_proto *p, const struct spop_env *env, struct spop_counters *ctr,
		     unsigned worker, const char *peer)
{
	memset(p, 0, sizeof(*p));
	p->env = env;
	p->ctr = ctr;
	p->worker = worker;
	p->frame_size = env->our_max;
	p->state = SPOP_PS_HELLO;
	snprintf(p->peer, sizeof(p->peer), "%s", peer ? peer : "?");
}

/* Room one reply may take in the output buffer: a maximal frame. */
size_t spop_proto_reply_room(const struct spop_proto *p)
{
	return (size_t)p->frame_size + 4;
}

/* Room for the next reply frame in out, bounded by the frame size so no
 * frame we write exceeds what the peer accepts. */
static size_t reply_room(const struct spop_proto *p, const struct spop_out *out)
{
	size_t room = out->cap - out->len;
	size_t max = spop_proto_reply_room(p);

	return room < max ? room : max;
}

/* Appends AGENT-DISCONNECT with status st to out and counts it. Returns
 * the bytes written, or -1 when out has no room for it. */
static int disconnect_frame(struct spop_proto *p, struct spop_out *out, enum spop_status st, const char *msg)
{
	int n = spop_disconnect_encode(out->buf + out->len, reply_room(p, out), SPOP_FRAME_AGENT_DISCONNECT,
				       st, msg);

	if (n > 0) {
		out->len += (size_t)n;
		SPOP_CTR_ADD(p->ctr, disconnect_status[(unsigned)st < 100 ? (unsigned)st : 99], 1);
	}
	return n;
}

/* Queues AGENT-DISCONNECT with status st (and msg, or the status text),
 * counts and logs it (rate-limited), and moves to CLOSING. `always` also
 * sends it before the handshake (protocol errors do; a stop does not need
 * to). */
void spop_proto_disconnect(struct spop_proto *p, struct spop_out *out, enum spop_status st,
			   const char *msg, bool always)
{
	int n;

	if (p->state == SPOP_PS_CLOSING)
		return;
	if (always || p->state == SPOP_PS_READY) {
		n = disconnect_frame(p, out, st, msg);
		spop_env_log_limited(p->env, p->env->disc_log, st == SPOP_ST_NORMAL ? LOG_INFO : LOG_NOTICE,
				     "DISCONNECT lines", "spop: worker %u: %s: AGENT-DISCONNECT status %d (%s)%s",
				     p->worker, p->peer, (int)st, msg ? msg : spop_status_str(st),
				     n > 0 ? "" : " [not sent: no room]");
	}
	p->state = SPOP_PS_CLOSING;
}

/* Refuses a connection before reading anything: queues AGENT-DISCONNECT
 * st/msg and moves to CLOSING, without a log line of its own (the caller
 * logs the refusals together). */
void spop_proto_refuse(struct spop_proto *p, struct spop_out *out, enum spop_status st, const char *msg)
{
	if (p->state == SPOP_PS_CLOSING)
		return;
	(void)disconnect_frame(p, out, st, msg);
	p->state = SPOP_PS_CLOSING;
}

/* True if the comma-separated list caps names capability `cap`. */
static bool has_capability(const char *caps, size_t len, const char *cap)
{
	size_t clen = strlen(cap), i = 0;

	while (i < len) {
		size_t s, e;

		while (i < len && (caps[i] == ' ' || caps[i] == '\t'))
			i++;
		s = i;
		while (i < len && caps[i] != ',')
			i++;
		e = i;
		while (e > s && (caps[e - 1] == ' ' || caps[e - 1] == '\t'))
			e--;
		if (e - s == clen && memcmp(caps + s, cap, clen) == 0)
			return true;
		i++;
	}
	return false;
}

/* Handles HAPROXY-HELLO in state HELLO. */
static void on_hello(struct spop_proto *p, const struct spop_frame *f, struct spop_out *out)
{
	struct spop_hello h;
	enum spop_status st;
	uint32_t fs = 0;
	int n;

	if (f->stream_id != 0 || f->frame_id != 0 ||
	    spop_hello_decode(f->payload, f->payload_len, &h) == -1) {
		spop_proto_disconnect(p, out, SPOP_ST_INVALID, "invalid HAPROXY-HELLO frame", true);
		return;
	}
	st = spop_hello_negotiate(&h, p->env->our_max, &fs);
	if (st != SPOP_ST_NORMAL) {
		spop_proto_disconnect(p, out, st, NULL, true);
		return;
	}
	/* Announce only what HAProxy offered and we do: pipelining, never
	 * async (2.6 loses ACKs with it) nor fragmentation. */
	n = spop_agent_hello_encode(out->buf + out->len, reply_room(p, out), fs,
				    has_capability(h.capabilities, h.capabilities_len, "pipelining") ? "pipelining" : "");
	if (n == -1) {
		spop_proto_disconnect(p, out, SPOP_ST_RES_ALLOC, NULL, true);
		return;
	}
	out->len += (size_t)n;
	p->frame_size = fs;
	if (h.healthcheck) {
		SPOP_CTR_ADD(p->ctr, healthchecks, 1);
		p->state = SPOP_PS_CLOSING;     /* AGENT-HELLO, then close: no DISCONNECT */
		return;
	}
	SPOP_CTR_ADD(p->ctr, hellos, 1);
	p->state = SPOP_PS_READY;
}

/* Finds the handler registered for name, or NULL. */
static const struct spop_handler *find_handler(const struct spop_env *env, const char *name, size_t len)
{
	for (unsigned i = 0; i < env->nhandlers; i++)
		if (env->handlers[i].name_len == len && memcmp(env->handlers[i].name, name, len) == 0)
			return &env->handlers[i];
	return NULL;
}

/* Handles NOTIFY in state READY: runs the handlers of its messages, which
 * add actions to the ACK built in place in out, then commits the ACK. A
 * malformed payload discards the partial ACK and disconnects (status 4). */
static void on_notify(struct spop_proto *p, const struct spop_frame *f, struct spop_out *out)
{
	struct spop_ack ack;
	struct spop_args args;
	size_t off = 0;
	unsigned nmsg = 0;
	int n;

	ack.frame = out->buf + out->len;
	ack.cap = reply_room(p, out);
	n = spop_frame_begin(ack.frame, ack.cap, SPOP_FRAME_ACK, SPOP_FLAG_FIN, f->stream_id, f->frame_id);
	if (n == -1) {
		spop_proto_disconnect(p, out, SPOP_ST_RES_ALLOC, NULL, true);
		return;
	}
	ack.len = (size_t)n;
	SPOP_CTR_ADD(p->ctr, notifies, 1);
	while (off < f->payload_len) {
		const struct spop_handler *hd;
		const char *name;
		size_t name_len;

		n = spop_message_decode(f->payload + off, f->payload_len - off, &name, &name_len, &args);
		if (n == -1) {
			spop_proto_disconnect(p, out, SPOP_ST_INVALID, "invalid NOTIFY payload", true);
			return;
		}
		off += (size_t)n;
		nmsg++;
		hd = find_handler(p->env, name, name_len);
		if (hd)
			hd->fn(hd->udata, p->worker, &args, &ack);
	}
	SPOP_CTR_ADD(p->ctr, messages, nmsg);
	spop_frame_end(ack.frame, ack.len);
	out->len += ack.len;
	SPOP_CTR_ADD(p->ctr, acks, 1);
}

/* Handles HAPROXY-DISCONNECT: log HAProxy's status, answer status 0. */
static void on_haproxy_disconnect(struct spop_proto *p, const struct spop_frame *f, struct spop_out *out)
{
	struct spop_disconnect d;

	SPOP_CTR_ADD(p->ctr, haproxy_disconnects, 1);
	if (spop_disconnect_decode(f->payload, f->payload_len, &d) != -1 && d.has_status && d.status != 0)
		spop_env_log_limited(p->env, p->env->disc_log, LOG_NOTICE, "DISCONNECT lines",
				     "spop: worker %u: %s: HAPROXY-DISCONNECT status %u (%.*s)", p->worker, p->peer,
				     (unsigned)d.status, d.message ? (int)d.message_len : 0, d.message ? d.message : "");
	spop_proto_disconnect(p, out, SPOP_ST_NORMAL, NULL, true);
}

/* Dispatches one complete frame body. */
static void on_frame(struct spop_proto *p, const uint8_t *body, size_t len, struct spop_out *out)
{
	struct spop_frame f;

	if (spop_frame_decode(body, len, &f) == -1) {
		spop_proto_disconnect(p, out, SPOP_ST_INVALID, "invalid frame header", true);
		return;
	}
	switch ((unsigned)f.type) {
	case SPOP_FRAME_HAPROXY_HELLO:
	case SPOP_FRAME_HAPROXY_DISCONNECT:
	case SPOP_FRAME_NOTIFY:
		break;
	case SPOP_FRAME_UNSET:
		/* a continuation fragment: we never accept fragmentation */
		spop_proto_disconnect(p, out, SPOP_ST_FRAG_NOT_SUPPORTED, NULL, true);
		return;
	case SPOP_FRAME_AGENT_HELLO:
	case SPOP_FRAME_AGENT_DISCONNECT:
	case SPOP_FRAME_ACK:
		spop_proto_disconnect(p, out, SPOP_ST_INVALID, "agent frame received from HAProxy", true);
		return;
	default:
		return;         /* unknown frame types are skipped */
	}
	if (!(f.flags & SPOP_FLAG_FIN)) {
		spop_proto_disconnect(p, out, SPOP_ST_FRAG_NOT_SUPPORTED, NULL, true);
		return;
	}
	if (f.type == SPOP_FRAME_HAPROXY_DISCONNECT) {
		on_haproxy_disconnect(p, &f, out);
		return;
	}
	if (p->state == SPOP_PS_HELLO) {
		if (f.type == SPOP_FRAME_HAPROXY_HELLO)
			on_hello(p, &f, out);
		else    /* doc/SPOE.txt: the HELLO handshake comes first */
			spop_proto_disconnect(p, out, SPOP_ST_INVALID, "NOTIFY before HELLO", true);
		return;
	}
	if (f.type == SPOP_FRAME_HAPROXY_HELLO) {
		spop_proto_disconnect(p, out, SPOP_ST_INVALID, "second HAPROXY-HELLO", true);
		return;
	}
	if (f.flags & SPOP_FLAG_ABORT)
		return;         /* an aborted NOTIFY expects no ACK */
	on_notify(p, &f, out);
}

/* Processes the complete frames at the start of in. A length prefix above
 * the frame size is refused (status 3) as soon as its 4 bytes are there,
 * before any payload is waited for; a prefix too short to hold a header is
 * invalid (status 4). Stops when out lacks room for a maximal reply or the
 * connection is closing. Returns the bytes consumed. */
size_t spop_proto_feed(struct spop_proto *p, const uint8_t *in, size_t len, struct spop_out *out)
{
	size_t off = 0;

	while (p->state != SPOP_PS_CLOSING && out->cap - out->len >= spop_proto_reply_room(p)) {
		uint32_t flen;

		if (spop_frame_length(in + off, len - off, &flen) == -1)
			break;
		if (flen > p->frame_size) {
			spop_proto_disconnect(p, out, SPOP_ST_TOO_BIG, NULL, true);
			break;
		}
		if (flen < 7) {
			spop_proto_disconnect(p, out, SPOP_ST_INVALID, "frame too short", true);
			break;
		}
		if (len - off - 4 < flen)
			break;
		on_frame(p, in + off + 4, flen, out);
		off += 4 + (size_t)flen;
	}
	return off;
}
