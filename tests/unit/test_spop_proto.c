/*
 * test_spop_proto.c — the agent's protocol engine (no sockets) and one
 * in-process round trip through the runtime on 127.0.0.1.
 *
 * Engine: HELLO negotiation and every DISCONNECT status it can send, one
 * ACK per NOTIFY with echoed ids, skipped unknown types, back-pressure
 * (the engine stops when the output cannot hold a maximal reply and
 * resumes where it stopped).
 *
 * Runtime: an address another runtime holds is refused with a clear
 * message; the connection cap refuses with AGENT-DISCONNECT 13 and a cap
 * above the open-files limit fails the start; a silent connection is
 * closed at the hello deadline; the log rate limiter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "spop_int.h"

static struct spop_env env;
static struct spop_counters ctr;
static uint8_t obuf[4 * (16380 + 4)];

static void on_echo(void *udata, unsigned worker, const struct spop_args *args, struct spop_ack *ack)
{
	for (unsigned i = 0; i < args->count; i++)
		spop_ack_set_var_n(ack, SPOP_SCOPE_TXN, args->arg[i].name, args->arg[i].name_len, &args->arg[i].value);
	spop_ack_set_str(ack, SPOP_SCOPE_TXN, "agent", "echo", 4);
}

static int setup(void **state)
{
	memset(&env, 0, sizeof(env));
	env.our_max = 16380;
	env.handlers[0] = (struct spop_handler){ .name = "echo", .name_len = 4, .fn = on_echo };
	env.nhandlers = 1;
	memset(&ctr, 0, sizeof(ctr));
	return 0;
}

static size_t hello(uint8_t *buf, size_t room, uint32_t mfs, const char *caps, bool hc)
{
	int n = spop_haproxy_hello_encode(buf, room, mfs, caps, hc, NULL);

	assert_true(n > 0);
	return (size_t)n;
}

static size_t notify(uint8_t *buf, size_t room, uint64_t sid, uint64_t fid, const char *msg, const char *val)
{
	struct spop_arg a = { "x", 1, spop_data_str(val ? val : "", val ? strlen(val) : 0) };
	int n = spop_frame_begin(buf, room, SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN, sid, fid);
	int m;

	assert_true(n > 0);
	m = msg ? spop_message_encode(msg, strlen(msg), &a, 1, buf + n, room - (size_t)n) : 0;
	assert_true(m >= 0);
	assert_int_equal(spop_frame_end(buf, (size_t)(n + m)), 0);
	return (size_t)(n + m);
}

/* Reads the frame at *off of out; returns its type. */
static unsigned next_frame(const struct spop_out *out, size_t *off, struct spop_frame *f)
{
	uint32_t len;

	assert_true(*off + 4 <= out->len);
	assert_int_equal(spop_frame_length(out->buf + *off, out->len - *off, &len), 4);
	assert_true(len > 0 && *off + 4 + len <= out->len);
	assert_int_equal(spop_frame_decode(out->buf + *off + 4, len, f), (int)len);
	*off += 4 + len;
	return f->type;
}

static uint32_t disconnect_status(const struct spop_frame *f)
{
	struct spop_disconnect d;

	assert_int_equal(f->type, SPOP_FRAME_AGENT_DISCONNECT);
	assert_int_equal(spop_disconnect_decode(f->payload, f->payload_len, &d), (int)f->payload_len);
	assert_true(d.has_status && d.message);
	return d.status;
}

/* Feeds in to a fresh engine and returns the status of the DISCONNECT it
 * answers with (after any AGENT-HELLO). */
static uint32_t status_for(const uint8_t *in, size_t len, uint32_t our_max)
{
	struct spop_proto p;
	struct spop_out out = { obuf, 0, sizeof(obuf) };
	struct spop_frame f;
	size_t off = 0;

	env.our_max = our_max;
	spop_proto_init(&p, &env, &ctr, 0, "test");
	spop_proto_feed(&p, in, len, &out);
	env.our_max = 16380;
	assert_true(spop_proto_closing(&p));
	while (next_frame(&out, &off, &f) != SPOP_FRAME_AGENT_DISCONNECT)
		;
	assert_int_equal(off, out.len);
	return disconnect_status(&f);
}

static void test_hello_and_ack(void **state)
{
	uint8_t in[512];
	struct spop_proto p;
	struct spop_out out = { obuf, 0, sizeof(obuf) };
	struct spop_frame f;
	struct spop_hello h;
	struct spop_action act;
	size_t len = 0, off = 0;

	spop_proto_init(&p, &env, &ctr, 3, "test");
	len += hello(in, sizeof(in), 1000, "pipelining,async", false);
	len += notify(in + len, sizeof(in) - len, 0x7FFFFFF0, 1, "echo", "v1");
	len += notify(in + len, sizeof(in) - len, 0x7FFFFFF0, 2, "nope", "v2");
	len += notify(in + len, sizeof(in) - len, 9, 1, NULL, NULL);
	assert_int_equal(spop_proto_feed(&p, in, len, &out), len);
	assert_false(spop_proto_closing(&p));
	assert_int_equal(p.frame_size, 1000);

	assert_int_equal(next_frame(&out, &off, &f), SPOP_FRAME_AGENT_HELLO);
	assert_int_equal(spop_hello_decode(f.payload, f.payload_len, &h), (int)f.payload_len);
	assert_int_equal(h.max_frame_size, 1000);
	assert_int_equal(h.capabilities_len, strlen("pipelining"));   /* never async */
	assert_memory_equal(h.capabilities, "pipelining", h.capabilities_len);

	assert_int_equal(next_frame(&out, &off, &f), SPOP_FRAME_ACK);
	assert_true(f.stream_id == 0x7FFFFFF0 && f.frame_id == 1);
	assert_true(spop_action_decode(f.payload, f.payload_len, &act) > 0);
	assert_int_equal(act.name_len, 1);
	assert_memory_equal(act.value.v.str.ptr, "v1", 2);
	/* unhandled message and empty NOTIFY: empty ACKs with their ids */
	assert_int_equal(next_frame(&out, &off, &f), SPOP_FRAME_ACK);
	assert_true(f.frame_id == 2 && f.payload_len == 0);
	assert_int_equal(next_frame(&out, &off, &f), SPOP_FRAME_ACK);
	assert_true(f.stream_id == 9 && f.payload_len == 0);
	assert_int_equal(off, out.len);
	assert_int_equal(ctr.acks, 3);
	assert_int_equal(ctr.notifies, 3);
}

static void test_partial_frames_wait(void **state)
{
	uint8_t in[512];
	struct spop_proto p;
	struct spop_out out = { obuf, 0, sizeof(obuf) };
	size_t len = hello(in, sizeof(in), 16380, "pipelining", false);

	spop_proto_init(&p, &env, &ctr, 0, "test");
	for (size_t cut = 0; cut < len; cut++)
		assert_int_equal(spop_proto_feed(&p, in, cut, &out), 0);
	assert_int_equal(out.len, 0);
	assert_int_equal(spop_proto_feed(&p, in, len, &out), len);
	assert_true(out.len > 0);
}

static void test_healthcheck_closes(void **state)
{
	uint8_t in[256];
	struct spop_proto p;
	struct spop_out out = { obuf, 0, sizeof(obuf) };
	struct spop_frame f;
	size_t off = 0, len = hello(in, sizeof(in), 16380, "", true);

	spop_proto_init(&p, &env, &ctr, 0, "test");
	assert_int_equal(spop_proto_feed(&p, in, len, &out), len);
	assert_true(spop_proto_closing(&p));
	assert_int_equal(next_frame(&out, &off, &f), SPOP_FRAME_AGENT_HELLO);
	assert_int_equal(off, out.len);   /* no DISCONNECT after a health check */
}

static void test_statuses(void **state)
{
	uint8_t in[512], big[64];
	size_t len;

	/* HELLO field errors come from spop_hello_negotiate (codec tests);
	 * here: that the engine sends them. */
	len = hello(in, sizeof(in), 255, "", false);
	assert_int_equal(status_for(in, len, 16380), SPOP_ST_BAD_FRAME_SIZE);
	/* NOTIFY before HELLO: invalid frame */
	len = notify(in, sizeof(in), 1, 1, "echo", "x");
	assert_int_equal(status_for(in, len, 16380), SPOP_ST_INVALID);
	/* a length prefix above our max, before anything else arrives */
	memcpy(big, "\x7f\xff\xff\xf0", 4);
	assert_int_equal(status_for(big, 4, 16380), SPOP_ST_TOO_BIG);
	/* a frame too short to hold a header */
	memcpy(big, "\x00\x00\x00\x03\x01\x00\x00", 7);
	assert_int_equal(status_for(big, 7, 16380), SPOP_ST_INVALID);
	/* after HELLO(256): a 257-byte frame is too big */
	len = hello(in, sizeof(in), 256, "pipelining", false);
	memcpy(in + len, "\x00\x00\x01\x01", 4);
	assert_int_equal(status_for(in, len + 4, 16380), SPOP_ST_TOO_BIG);
	/* NOTIFY without FIN: fragmentation not supported */
	len = hello(in, sizeof(in), 16380, "pipelining", false);
	{
		size_t n = notify(in + len, sizeof(in) - len, 1, 1, "echo", "x");

		in[len + 8] = 0;        /* clear FIN (flags are bytes 5..8) */
		assert_int_equal(status_for(in, len + n, 16380), SPOP_ST_FRAG_NOT_SUPPORTED);
	}
	/* second HELLO */
	len = hello(in, sizeof(in), 16380, "pipelining", false);
	len += hello(in + len, sizeof(in) - len, 16380, "pipelining", false);
	assert_int_equal(status_for(in, len, 16380), SPOP_ST_INVALID);
	/* HAPROXY-DISCONNECT: answered with status 0 */
	len = hello(in, sizeof(in), 16380, "pipelining", false);
	len += (size_t)spop_disconnect_encode(in + len, sizeof(in) - len, SPOP_FRAME_HAPROXY_DISCONNECT,
					      SPOP_ST_NORMAL, "bye");
	assert_int_equal(status_for(in, len, 16380), SPOP_ST_NORMAL);
	/* a payload whose message name runs past the frame */
	len = hello(in, sizeof(in), 16380, "pipelining", false);
	{
		int n = spop_frame_begin(in + len, sizeof(in) - len, SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN, 1, 1);

		memcpy(in + len + n, "\x32" "abc", 4);
		spop_frame_end(in + len, (size_t)n + 4);
		assert_int_equal(status_for(in, len + (size_t)n + 4, 16380), SPOP_ST_INVALID);
	}
}

static void test_unknown_type_skipped(void **state)
{
	uint8_t in[512];
	struct spop_proto p;
	struct spop_out out = { obuf, 0, sizeof(obuf) };
	struct spop_frame f;
	size_t off = 0, len = hello(in, sizeof(in), 16380, "pipelining", false);
	int n = spop_frame_begin(in + len, sizeof(in) - len, (enum spop_frame_type)42, 0, 0, 0);

	spop_frame_end(in + len, (size_t)n);
	len += (size_t)n;
	len += notify(in + len, sizeof(in) - len, 5, 1, "echo", "x");
	spop_proto_init(&p, &env, &ctr, 0, "test");
	assert_int_equal(spop_proto_feed(&p, in, len, &out), len);
	assert_int_equal(next_frame(&out, &off, &f), SPOP_FRAME_AGENT_HELLO);
	assert_int_equal(next_frame(&out, &off, &f), SPOP_FRAME_ACK);
	assert_int_equal(off, out.len);
}

static void test_back_pressure(void **state)
{
	static uint8_t in[64 * 1024];
	uint8_t small[2 * 260];
	struct spop_proto p;
	struct spop_out out = { small, 0, sizeof(small) };
	size_t len = hello(in, sizeof(in), 256, "pipelining", false), used = 0;
	unsigned acks = 0, frames = 100;

	for (unsigned i = 0; i < frames; i++)
		len += notify(in + len, sizeof(in) - len, i, 1, "echo", "value");
	env.our_max = 256;      /* bounds replies before the HELLO too */
	spop_proto_init(&p, &env, &ctr, 0, "test");
	/* the output holds two maximal replies: the engine stops, we "send",
	 * it resumes exactly where it stopped */
	while (used < len) {
		size_t n = spop_proto_feed(&p, in + used, len - used, &out);
		size_t off = 0;
		struct spop_frame f;

		assert_true(n > 0);
		used += n;
		while (off < out.len)
			if (next_frame(&out, &off, &f) == SPOP_FRAME_ACK)
				assert_int_equal(f.stream_id, acks++);
		out.len = 0;
	}
	assert_int_equal(acks, frames);
	assert_false(spop_proto_closing(&p));
}

/* In-process runtime round trip on an ephemeral port. */
static void test_runtime_round_trip(void **state)
{
	struct spop_runtime_config cfg = { .workers = 2 };
	struct spop_runtime *rt;
	struct spop_stats st;
	struct sockaddr_in sa;
	uint8_t buf[1024], rbuf[4096];
	char err[128];
	size_t len, got = 0;
	int fd;
	unsigned hdr_seen = 0;

	rt = spop_runtime_new(&cfg, err, sizeof(err));
	assert_non_null(rt);
	assert_int_equal(spop_runtime_on(rt, "echo", on_echo, NULL), 0);
	assert_int_equal(spop_runtime_on(rt, "echo", on_echo, NULL), -1);
	assert_int_equal(spop_runtime_listen(rt, "bogus", err, sizeof(err)), -1);
	assert_int_equal(spop_runtime_listen(rt, "127.0.0.1:0", err, sizeof(err)), 0);
	assert_true(spop_runtime_listen_port(rt, 0) > 0);
	assert_int_equal(spop_runtime_start(rt, err, sizeof(err)), 0);

	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd != -1);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)spop_runtime_listen_port(rt, 0));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	len = hello(buf, sizeof(buf), 16380, "pipelining", false);
	len += notify(buf + len, sizeof(buf) - len, 7, 1, "echo", "hi");
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	/* AGENT-HELLO then the ACK */
	while (hdr_seen < 2) {
		ssize_t n = read(fd, rbuf + got, sizeof(rbuf) - got);
		size_t off = 0;

		assert_true(n > 0);
		got += (size_t)n;
		hdr_seen = 0;
		while (got - off >= 4) {
			uint32_t flen;

			spop_frame_length(rbuf + off, got - off, &flen);
			if (got - off - 4 < flen)
				break;
			off += 4 + flen;
			hdr_seen++;
		}
	}
	close(fd);
	spop_runtime_stop(rt);
	spop_runtime_stats(rt, &st);
	assert_int_equal(st.hellos, 1);
	assert_int_equal(st.acks, 1);
	assert_int_equal(st.conns_total, 1);
	assert_int_equal(st.conns_current, 0);
	spop_runtime_free(&rt);
	assert_null(rt);
}

/* A client socket connected to the runtime's first listener, with a 5 s
 * receive timeout (a test never hangs). */
static int client(struct spop_runtime *rt)
{
	struct timeval tv = { .tv_sec = 5 };
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd != -1);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)spop_runtime_listen_port(rt, 0));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Reads one whole frame from fd into buf; returns its type (f points into buf). */
static unsigned read_frame(int fd, uint8_t *buf, size_t room, struct spop_frame *f)
{
	size_t got = 0;
	uint32_t flen = 0;

	for (;;) {
		ssize_t n;

		if (got >= 4) {
			spop_frame_length(buf, got, &flen);
			assert_true(flen + 4 <= room);
			if (got >= 4 + flen)
				break;
		}
		n = read(fd, buf + got, (got >= 4 ? 4 + flen : 4) - got);
		assert_true(n > 0);
		got += (size_t)n;
	}
	assert_int_equal(spop_frame_decode(buf + 4, flen, f), (int)flen);
	return f->type;
}

static struct spop_runtime *start_runtime(const struct spop_runtime_config *cfg)
{
	char err[256];
	struct spop_runtime *rt = spop_runtime_new(cfg, err, sizeof(err));

	assert_non_null(rt);
	assert_int_equal(spop_runtime_on(rt, "echo", on_echo, NULL), 0);
	assert_int_equal(spop_runtime_listen(rt, "127.0.0.1:0", err, sizeof(err)), 0);
	assert_int_equal(spop_runtime_start(rt, err, sizeof(err)), 0);
	return rt;
}

/* A second runtime on a held address fails at listen time, by name. */
static void test_runtime_port_in_use(void **state)
{
	struct spop_runtime_config cfg = { .workers = 2 };
	struct spop_runtime *rt = start_runtime(&cfg), *rt2;
	char addr[64], err[256], want[128];

	snprintf(addr, sizeof(addr), "127.0.0.1:%u", spop_runtime_listen_port(rt, 0));
	rt2 = spop_runtime_new(&cfg, err, sizeof(err));
	assert_non_null(rt2);
	assert_int_equal(spop_runtime_listen(rt2, addr, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s is already in use (another agent?)", addr);
	assert_string_equal(err, want);
	spop_runtime_free(&rt2);
	spop_runtime_free(&rt);
}

/* Over the cap: AGENT-DISCONNECT 13 naming it; the first connection is
 * served. A cap the open-files limit cannot hold fails the start. */
static void test_runtime_connection_cap(void **state)
{
	struct spop_runtime_config cfg = { .workers = 1, .max_connections = 1 };
	struct spop_runtime *rt = start_runtime(&cfg);
	struct spop_disconnect d;
	struct spop_frame f;
	struct spop_stats st;
	uint8_t buf[512], rbuf[16384 + 4];
	size_t len = hello(buf, sizeof(buf), 16380, "pipelining", false);
	int a = client(rt), b;
	char err[256];

	assert_int_equal(write(a, buf, len), (ssize_t)len);
	assert_int_equal(read_frame(a, rbuf, sizeof(rbuf), &f), SPOP_FRAME_AGENT_HELLO);
	b = client(rt);
	assert_int_equal(write(b, buf, len), (ssize_t)len);
	assert_int_equal(read_frame(b, rbuf, sizeof(rbuf), &f), SPOP_FRAME_AGENT_DISCONNECT);
	assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), (int)f.payload_len);
	assert_int_equal(d.status, SPOP_ST_RES_ALLOC);
	assert_non_null(d.message);
	assert_non_null(memmem(d.message, d.message_len, "connection cap (1 connections)", 30));
	/* the refusal's slot is given back when the peer closes, not at the
	 * 1 s linger deadline: polled for 0.9 s, it takes a few ms */
	close(b);
	for (int i = 0; i < 90 && atomic_load(&rt->rejecting) != 0; i++)
		nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	assert_int_equal(atomic_load(&rt->rejecting), 0);
	close(a);
	spop_runtime_stop(rt);
	spop_runtime_stats(rt, &st);
	assert_int_equal(st.conns_max, 1);
	assert_int_equal(st.conns_refused, 1);
	assert_int_equal(st.conns_total, 1);
	spop_runtime_free(&rt);

	cfg.max_connections = 1u << 30;
	rt = spop_runtime_new(&cfg, err, sizeof(err));
	assert_non_null(rt);
	assert_int_equal(spop_runtime_listen(rt, "127.0.0.1:0", err, sizeof(err)), 0);
	assert_int_equal(spop_runtime_start(rt, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is more than the open-files limit allows"));
	spop_runtime_free(&rt);
}

/* A connection that never sends its HELLO is closed at the hello deadline
 * (here the idle timeout, 200 ms, being shorter than 5 s). */
static void test_runtime_hello_timeout(void **state)
{
	struct spop_runtime_config cfg = { .workers = 1, .idle_timeout_ms = 200 };
	struct spop_runtime *rt = start_runtime(&cfg);
	struct spop_disconnect d;
	struct spop_frame f;
	struct spop_stats st;
	uint8_t rbuf[1024];
	int a = client(rt);

	assert_int_equal(read_frame(a, rbuf, sizeof(rbuf), &f), SPOP_FRAME_AGENT_DISCONNECT);
	assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), (int)f.payload_len);
	assert_int_equal(d.status, SPOP_ST_TIMEOUT);
	close(a);
	spop_runtime_stop(rt);
	spop_runtime_stats(rt, &st);
	assert_int_equal(st.hello_timeouts, 1);
	assert_int_equal(st.idle_timeout_ms, 200);
	spop_runtime_free(&rt);
}

/* burst lines per window; the next window's first line reports the rest. */
static void test_ratelog(void **state)
{
	struct spop_ratelog r;
	struct timespec ts = { 0, 80 * 1000 * 1000 };
	uint64_t skipped = 99;

	spop_ratelog_init(&r, 2, 0.05);
	assert_true(spop_ratelog_allow(&r, &skipped));
	assert_int_equal(skipped, 0);
	assert_true(spop_ratelog_allow(&r, &skipped));
	assert_false(spop_ratelog_allow(&r, &skipped));
	assert_false(spop_ratelog_allow(&r, &skipped));
	assert_false(spop_ratelog_allow(&r, &skipped));
	nanosleep(&ts, NULL);            /* past the 50 ms window */
	assert_true(spop_ratelog_allow(&r, &skipped));
	assert_int_equal(skipped, 3);
	assert_false(spop_ratelog_allow(&r, &skipped) && spop_ratelog_allow(&r, &skipped));
	assert_int_equal(spop_ratelog_flush(&r), 1);
	assert_int_equal(spop_ratelog_flush(&r), 0);
	assert_int_equal(spop_ratelog_suppressed_total(&r), 4);
	spop_ratelog_destroy(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_hello_and_ack, setup),
		cmocka_unit_test_setup(test_partial_frames_wait, setup),
		cmocka_unit_test_setup(test_healthcheck_closes, setup),
		cmocka_unit_test_setup(test_statuses, setup),
		cmocka_unit_test_setup(test_unknown_type_skipped, setup),
		cmocka_unit_test_setup(test_back_pressure, setup),
		cmocka_unit_test_setup(test_runtime_round_trip, setup),
		cmocka_unit_test_setup(test_runtime_port_in_use, setup),
		cmocka_unit_test_setup(test_runtime_connection_cap, setup),
		cmocka_unit_test_setup(test_runtime_hello_timeout, setup),
		cmocka_unit_test(test_ratelog),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
