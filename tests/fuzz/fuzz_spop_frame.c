/*
 * fuzz_spop_frame.c — libFuzzer target for the SPOP codec and the agent's
 * protocol engine (spop_proto.c, the connection state machine without
 * sockets).
 *
 * The input is a byte stream as HAProxy would send it (corpus files are
 * real frames). It is decoded twice:
 *   1. frame by frame with the public decoders (HELLO, NOTIFY messages,
 *      DISCONNECT, ACK actions), re-encoding what decoded and checking the
 *      re-encoding decodes to the same thing;
 *   2. through the engine, once whole with a 16380-byte frame size, once in
 *      small chunks with a 256-byte frame size and a tight output buffer
 *      (back-pressure). Every reply frame is checked: non-zero length, at
 *      most the frame size, a decodable agent frame.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spop.h"
#include "spop_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); abort(); } } while (0)

static void check_data_roundtrip(const struct spop_data *d)
{
	uint8_t buf[64];
	struct spop_data back;
	int n;

	if (d->type == SPOP_DATA_STR || d->type == SPOP_DATA_BIN)
		return;         /* covered by the message re-encoding */
	n = spop_data_encode(d, buf, sizeof(buf));
	CHECK(n > 0);
	CHECK(spop_data_decode(buf, (size_t)n, &back) == n);
	CHECK(back.type == d->type);
}

static void decode_notify(const uint8_t *p, size_t len)
{
	static uint8_t re[1 << 17];
	size_t off = 0;

	while (off < len) {
		struct spop_args args, back;
		const char *name, *name2;
		size_t nlen, nlen2;
		int n = spop_message_decode(p + off, len - off, &name, &nlen, &args);
		int m;

		if (n == -1)
			return;
		CHECK((size_t)n <= len - off);
		off += (size_t)n;
		for (unsigned i = 0; i < args.count; i++)
			check_data_roundtrip(&args.arg[i].value);
		m = spop_message_encode(name, nlen, args.arg, args.count, re, sizeof(re));
		if (m == -1)
			continue;
		CHECK(spop_message_decode(re, (size_t)m, &name2, &nlen2, &back) == m);
		CHECK(nlen2 == nlen && back.count == args.count);
	}
}

static void decode_frames(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (size - off >= 4) {
		struct spop_frame f;
		struct spop_hello h;
		struct spop_disconnect d;
		struct spop_action act;
		uint32_t flen, fs;

		CHECK(spop_frame_length(data + off, size - off, &flen) == 4);
		if (flen > size - off - 4)
			return;
		if (spop_frame_decode(data + off + 4, flen, &f) == (int)flen) {
			CHECK(f.payload + f.payload_len == data + off + 4 + flen);
			switch ((unsigned)f.type) {
			case SPOP_FRAME_HAPROXY_HELLO:
			case SPOP_FRAME_AGENT_HELLO:
				if (spop_hello_decode(f.payload, f.payload_len, &h) != -1 &&
				    spop_hello_negotiate(&h, 16380, &fs) == SPOP_ST_NORMAL)
					CHECK(fs >= SPOP_MIN_FRAME_SIZE && fs <= 16380 && fs <= h.max_frame_size);
				break;
			case SPOP_FRAME_NOTIFY:
				decode_notify(f.payload, f.payload_len);
				break;
			case SPOP_FRAME_HAPROXY_DISCONNECT:
			case SPOP_FRAME_AGENT_DISCONNECT:
				(void)spop_disconnect_decode(f.payload, f.payload_len, &d);
				break;
			case SPOP_FRAME_ACK:
				for (size_t a = 0; a < f.payload_len;) {
					int n = spop_action_decode(f.payload + a, f.payload_len - a, &act);

					if (n == -1)
						break;
					a += (size_t)n;
				}
				break;
			}
		}
		off += 4 + (size_t)flen;
	}
}

/* The echo agent's handler: every argument back as a txn variable. */
static void echo(void *udata, unsigned worker, const struct spop_args *args, struct spop_ack *ack)
{
	for (unsigned i = 0; i < args->count; i++)
		spop_ack_set_var_n(ack, SPOP_SCOPE_TXN, args->arg[i].name, args->arg[i].name_len, &args->arg[i].value);
	spop_ack_set_str(ack, SPOP_SCOPE_TXN, "agent", "echo", 4);
	spop_ack_unset_var(ack, SPOP_SCOPE_SESS, "gone");
}

/* Checks the reply frames in out and empties it (the peer "read" them). */
static void drain(const struct spop_proto *p, struct spop_out *out, uint32_t max_frame)
{
	size_t off = 0;

	while (off < out->len) {
		struct spop_frame f;
		uint32_t flen;

		CHECK(spop_frame_length(out->buf + off, out->len - off, &flen) == 4);
		CHECK(flen > 0 && flen <= max_frame);
		CHECK(flen <= out->len - off - 4);
		CHECK(spop_frame_decode(out->buf + off + 4, flen, &f) == (int)flen);
		CHECK(f.type == SPOP_FRAME_AGENT_HELLO || f.type == SPOP_FRAME_ACK ||
		      f.type == SPOP_FRAME_AGENT_DISCONNECT);
		CHECK(f.flags == SPOP_FLAG_FIN);
		if (f.type == SPOP_FRAME_AGENT_DISCONNECT) {
			struct spop_disconnect d;

			CHECK(spop_disconnect_decode(f.payload, f.payload_len, &d) == (int)f.payload_len);
			CHECK(d.has_status && d.message && d.message_len <= SPOP_DISCONNECT_MSG_MAX);
			CHECK(off + 4 + flen == out->len);         /* nothing after a DISCONNECT */
		}
		off += 4 + (size_t)flen;
	}
	out->len = 0;
	(void)p;
}

static void run_engine(const uint8_t *data, size_t size, uint32_t our_max, size_t out_frames, size_t chunk_seed)
{
	static struct spop_env env;
	static struct spop_counters ctr;
	struct spop_proto p;
	struct spop_out out;
	uint8_t *in, *obuf;
	size_t in_cap = (size_t)our_max + 4, in_len = 0, fed = 0;

	memset(&env, 0, sizeof(env));
	env.our_max = our_max;
	env.handlers[0] = (struct spop_handler){ .name = "echo", .name_len = 4, .fn = echo };
	env.handlers[1] = (struct spop_handler){ .name = "route", .name_len = 5, .fn = echo };
	env.nhandlers = 2;
	in = malloc(in_cap);
	out.cap = ((size_t)our_max + 4) * out_frames;
	obuf = malloc(out.cap);
	CHECK(in && obuf);
	out.buf = obuf;
	out.len = 0;
	spop_proto_init(&p, &env, &ctr, 0, "fuzz");
	while (!spop_proto_closing(&p)) {
		size_t step = chunk_seed ? 1 + (fed * 7 + chunk_seed) % 13 : size;
		size_t used;

		if (step > size - fed)
			step = size - fed;
		if (step > in_cap - in_len)
			step = in_cap - in_len;
		memcpy(in + in_len, data + fed, step);
		in_len += step;
		fed += step;
		used = spop_proto_feed(&p, in, in_len, &out);
		CHECK(used <= in_len);
		memmove(in, in + used, in_len - used);
		in_len -= used;
		drain(&p, &out, p.frame_size > our_max ? p.frame_size : our_max);
		CHECK(p.frame_size <= our_max);
		if (fed == size && used == 0)
			break;  /* no more input and no progress: a partial frame */
	}
	free(in);
	free(obuf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t scratch[16];
	uint64_t v;
	struct spop_data d;

	(void)spop_varint_decode(data, size, &v);
	(void)spop_data_decode(data, size, &d);
	if (spop_varint_decode(data, size, &v) > 0)
		CHECK(spop_varint_encode(v, scratch, sizeof(scratch)) == spop_varint_size(v));
	decode_frames(data, size);
	run_engine(data, size, 16380, 4, 0);
	run_engine(data, size, 256, 1, size);
	return 0;
}
