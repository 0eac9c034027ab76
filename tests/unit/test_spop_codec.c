/*
 * test_spop_codec.c — SPOP codec, byte-exact against known vectors
 * (varints, an example ACK, HAProxy 2.6's health-check HELLO), plus
 * truncation: every strict prefix of a valid encoding must be refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "spop.h"

struct varint_vec { uint64_t v; uint8_t bytes[10]; size_t len; };

static const struct varint_vec varints[] = {
	{ 0, { 0x00 }, 1 },
	{ 239, { 0xEF }, 1 },
	{ 240, { 0xF0, 0x00 }, 2 },
	{ 300, { 0xFC, 0x03 }, 2 },
	{ 2287, { 0xFF, 0x7F }, 2 },
	{ 2288, { 0xF0, 0x80, 0x00 }, 3 },
	{ 16380, { 0xFC, 0xF0, 0x06 }, 3 },
	{ 4294967295u, { 0xFF, 0xF0, 0xFE, 0xFE, 0x7E }, 5 },
};

static void test_varint_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(varints) / sizeof(varints[0]); i++) {
		uint8_t out[16];
		uint64_t v = 12345;
		int n = spop_varint_encode(varints[i].v, out, sizeof(out));

		assert_int_equal(n, (int)varints[i].len);
		assert_memory_equal(out, varints[i].bytes, varints[i].len);
		assert_int_equal(spop_varint_size(varints[i].v), n);
		assert_int_equal(spop_varint_decode(varints[i].bytes, varints[i].len, &v), n);
		assert_true(v == varints[i].v);
		/* not enough room / truncated input */
		assert_int_equal(spop_varint_encode(varints[i].v, out, varints[i].len - 1), -1);
		v = 777;
		assert_int_equal(spop_varint_decode(varints[i].bytes, varints[i].len - 1, &v), -1);
		assert_true(v == 777);
	}
}

static void test_varint_limits(void **state)
{
	uint8_t out[16], bad[11];
	uint64_t v;
	int n;

	(void)state;
	/* -1 as uint64 takes the full 10 bytes and round-trips */
	n = spop_varint_encode(UINT64_MAX, out, sizeof(out));
	assert_int_equal(n, 10);
	assert_int_equal(spop_varint_decode(out, 10, &v), 10);
	assert_true(v == UINT64_MAX);
	assert_int_equal(spop_varint_decode(out, 9, &v), -1);
	/* every value of a sweep round-trips */
	for (uint64_t x = 0; x < 300000; x += 7) {
		n = spop_varint_encode(x, out, sizeof(out));
		assert_true(n > 0);
		assert_int_equal(spop_varint_decode(out, (size_t)n, &v), n);
		assert_true(v == x);
	}
	for (int shift = 0; shift < 64; shift++) {
		uint64_t x = (uint64_t)1 << shift;

		n = spop_varint_encode(x - 1, out, sizeof(out));
		assert_int_equal(spop_varint_decode(out, (size_t)n, &v), n);
		assert_true(v == x - 1);
	}
	/* an 11-byte varint is refused even when the bytes are there */
	memset(bad, 0xFF, sizeof(bad));
	bad[10] = 0;
	assert_int_equal(spop_varint_decode(bad, sizeof(bad), &v), -1);
	assert_int_equal(spop_varint_decode(bad, 0, &v), -1);
	assert_int_equal(spop_varint_encode(1, out, 0), -1);
}

/* An ACK, stream 5 frame 1, set txn "backend" = "be_blue". */
static const uint8_t example_ack[] = {
	0x00, 0x00, 0x00, 0x1b, 0x67, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01,
	0x01, 0x03, 0x02, 0x07, 'b', 'a', 'c', 'k', 'e', 'n', 'd',
	0x08, 0x07, 'b', 'e', '_', 'b', 'l', 'u', 'e',
};

static void test_example_ack(void **state)
{
	uint8_t buf[64];
	struct spop_data v = spop_data_str("be_blue", 7);
	struct spop_frame f;
	struct spop_action act;
	uint32_t len;
	int n, m;

	(void)state;
	n = spop_frame_begin(buf, sizeof(buf), SPOP_FRAME_ACK, SPOP_FLAG_FIN, 5, 1);
	assert_int_equal(n, 11);
	m = spop_action_set_var_encode(SPOP_SCOPE_TXN, "backend", 7, &v, buf + n, sizeof(buf) - (size_t)n);
	assert_true(m > 0);
	assert_int_equal(spop_frame_end(buf, (size_t)(n + m)), 0);
	assert_int_equal(n + m, (int)sizeof(example_ack));
	assert_memory_equal(buf, example_ack, sizeof(example_ack));

	/* and decode it back */
	assert_int_equal(spop_frame_length(example_ack, sizeof(example_ack), &len), 4);
	assert_int_equal(len, 0x1b);
	assert_int_equal(spop_frame_decode(example_ack + 4, len, &f), (int)len);
	assert_int_equal(f.type, SPOP_FRAME_ACK);
	assert_int_equal(f.flags, SPOP_FLAG_FIN);
	assert_true(f.stream_id == 5 && f.frame_id == 1);
	n = spop_action_decode(f.payload, f.payload_len, &act);
	assert_int_equal(n, (int)f.payload_len);
	assert_int_equal(act.type, SPOP_ACT_SET_VAR);
	assert_int_equal(act.scope, SPOP_SCOPE_TXN);
	assert_int_equal(act.name_len, 7);
	assert_memory_equal(act.name, "backend", 7);
	assert_int_equal(act.value.type, SPOP_DATA_STR);
	assert_memory_equal(act.value.v.str.ptr, "be_blue", 7);
	for (size_t cut = 0; cut < f.payload_len; cut++)
		assert_int_equal(spop_action_decode(f.payload, cut, &act), -1);
}

/* HAProxy 2.6's health-check HELLO, as sent on the wire. */
static const uint8_t hc_hello[] = {
	0x00, 0x00, 0x00, 0x4e, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
	0x12, 's', 'u', 'p', 'p', 'o', 'r', 't', 'e', 'd', '-', 'v', 'e', 'r', 's', 'i', 'o', 'n', 's',
	0x08, 0x03, '2', '.', '0',
	0x0e, 'm', 'a', 'x', '-', 'f', 'r', 'a', 'm', 'e', '-', 's', 'i', 'z', 'e',
	0x03, 0xfc, 0xf0, 0x06,
	0x0c, 'c', 'a', 'p', 'a', 'b', 'i', 'l', 'i', 't', 'i', 'e', 's',
	0x08, 0x00,
	0x0b, 'h', 'e', 'a', 'l', 't', 'h', 'c', 'h', 'e', 'c', 'k',
	0x11,
};

static void test_healthcheck_hello(void **state)
{
	uint8_t buf[128];
	struct spop_frame f;
	struct spop_hello h;
	uint32_t len, fs = 0;
	int n;

	(void)state;
	n = spop_haproxy_hello_encode(buf, sizeof(buf), 16380, "", true, NULL);
	assert_int_equal(n, (int)sizeof(hc_hello));
	assert_memory_equal(buf, hc_hello, sizeof(hc_hello));
	assert_int_equal(spop_haproxy_hello_encode(buf, sizeof(hc_hello) - 1, 16380, "", true, NULL), -1);

	assert_int_equal(spop_frame_length(hc_hello, sizeof(hc_hello), &len), 4);
	assert_int_equal(len, sizeof(hc_hello) - 4);
	assert_int_equal(spop_frame_decode(hc_hello + 4, len, &f), (int)len);
	assert_int_equal(f.type, SPOP_FRAME_HAPROXY_HELLO);
	assert_true(f.stream_id == 0 && f.frame_id == 0);
	assert_int_equal(spop_hello_decode(f.payload, f.payload_len, &h), (int)f.payload_len);
	assert_true(h.has_version && h.has_max_frame_size && h.has_capabilities && h.healthcheck);
	assert_int_equal(h.max_frame_size, 16380);
	assert_int_equal(h.capabilities_len, 0);
	assert_int_equal(spop_hello_negotiate(&h, 16380, &fs), SPOP_ST_NORMAL);
	assert_int_equal(fs, 16380);
	assert_int_equal(spop_hello_negotiate(&h, 1024, &fs), SPOP_ST_NORMAL);
	assert_int_equal(fs, 1024);
	for (size_t cut = 0; cut < f.payload_len; cut++) {
		/* a prefix is refused, or (cut between items) lacks the healthcheck flag */
		if (spop_hello_decode(f.payload, cut, &h) != -1)
			assert_false(h.healthcheck);
	}
	assert_int_equal(spop_frame_decode(hc_hello + 4, 6, &f), -1);
}

static void test_hello_negotiate(void **state)
{
	struct spop_hello h;
	uint32_t fs;

	(void)state;
	memset(&h, 0, sizeof(h));
	assert_int_equal(spop_hello_negotiate(&h, 16380, &fs), SPOP_ST_NO_VSN);
	h.has_version = true;
	h.version = "1.0";
	h.version_len = 3;
	assert_int_equal(spop_hello_negotiate(&h, 16380, &fs), SPOP_ST_BAD_VSN);
	h.version = " 1.0 , 2.0";
	h.version_len = strlen(h.version);
	assert_int_equal(spop_hello_negotiate(&h, 16380, &fs), SPOP_ST_NO_FRAME_SIZE);
	h.has_max_frame_size = true;
	h.max_frame_size = 255;
	assert_int_equal(spop_hello_negotiate(&h, 16380, &fs), SPOP_ST_NO_CAP);
	h.has_capabilities = true;
	h.capabilities = "pipelining,async";
	h.capabilities_len = strlen(h.capabilities);
	assert_int_equal(spop_hello_negotiate(&h, 16380, &fs), SPOP_ST_BAD_FRAME_SIZE);
	h.max_frame_size = 256;
	assert_int_equal(spop_hello_negotiate(&h, 16380, &fs), SPOP_ST_NORMAL);
	assert_int_equal(fs, 256);
	assert_true(spop_version_supported("2.0", 3));
	assert_true(spop_version_supported("2.1,3.0", 7));
	assert_false(spop_version_supported("2.", 2));
	assert_false(spop_version_supported("20", 2));
	assert_false(spop_version_supported("", 0));
	assert_false(spop_version_supported("2.0x", 4));
}

static void test_agent_hello_roundtrip(void **state)
{
	uint8_t buf[128];
	struct spop_frame f;
	struct spop_hello h;
	uint32_t len;
	int n;

	(void)state;
	n = spop_agent_hello_encode(buf, sizeof(buf), 1000, "pipelining");
	assert_true(n > 0);
	assert_int_equal(spop_frame_length(buf, (size_t)n, &len), 4);
	assert_int_equal(len + 4, (uint32_t)n);
	assert_int_equal(spop_frame_decode(buf + 4, len, &f), (int)len);
	assert_int_equal(f.type, SPOP_FRAME_AGENT_HELLO);
	assert_int_equal(f.flags, SPOP_FLAG_FIN);
	assert_int_equal(spop_hello_decode(f.payload, f.payload_len, &h), (int)f.payload_len);
	assert_true(h.has_version && h.version_len == 3 && memcmp(h.version, "2.0", 3) == 0);
	assert_int_equal(h.max_frame_size, 1000);
	assert_int_equal(h.capabilities_len, 10);
	assert_false(h.healthcheck);
	/* empty capabilities are still sent */
	n = spop_agent_hello_encode(buf, sizeof(buf), 1000, "");
	assert_int_equal(spop_frame_decode(buf + 4, (size_t)n - 4, &f), n - 4);
	assert_int_equal(spop_hello_decode(f.payload, f.payload_len, &h), (int)f.payload_len);
	assert_true(h.has_capabilities && h.capabilities_len == 0);
}

static void test_disconnect_roundtrip(void **state)
{
	uint8_t buf[512];
	char longmsg[400];
	struct spop_frame f;
	struct spop_disconnect d;
	int n;

	(void)state;
	n = spop_disconnect_encode(buf, sizeof(buf), SPOP_FRAME_AGENT_DISCONNECT, SPOP_ST_TOO_BIG, NULL);
	assert_true(n > 0);
	assert_int_equal(spop_frame_decode(buf + 4, (size_t)n - 4, &f), n - 4);
	assert_int_equal(f.type, SPOP_FRAME_AGENT_DISCONNECT);
	assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), (int)f.payload_len);
	assert_true(d.has_status);
	assert_int_equal(d.status, 3);
	assert_int_equal(d.message_len, strlen(spop_status_str(SPOP_ST_TOO_BIG)));
	memset(longmsg, 'x', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = 0;
	n = spop_disconnect_encode(buf, sizeof(buf), SPOP_FRAME_HAPROXY_DISCONNECT, SPOP_ST_NORMAL, longmsg);
	assert_int_equal(spop_frame_decode(buf + 4, (size_t)n - 4, &f), n - 4);
	assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), (int)f.payload_len);
	assert_int_equal(d.status, 0);
	assert_int_equal(d.message_len, SPOP_DISCONNECT_MSG_MAX);
	assert_string_equal(spop_status_str(SPOP_ST_BAD_FRAME_SIZE), "max-frame-size too big or too small");
	assert_string_equal(spop_status_str((enum spop_status)42), "an unknown error occurred");
}

static void test_typed_data(void **state)
{
	uint8_t buf[64];
	struct spop_data d, back;
	int n;

	(void)state;
	/* BOOL: type in the low nibble, value in the high nibble */
	d = spop_data_bool(true);
	assert_int_equal(spop_data_encode(&d, buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 0x11);
	d = spop_data_bool(false);
	assert_int_equal(spop_data_encode(&d, buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 0x01);
	assert_int_equal(spop_data_decode((const uint8_t *)"\x11", 1, &back), 1);
	assert_true(back.type == SPOP_DATA_BOOL && back.v.b);
	assert_int_equal(spop_data_decode((const uint8_t *)"\x01", 1, &back), 1);
	assert_true(back.type == SPOP_DATA_BOOL && !back.v.b);
	assert_int_equal(spop_data_decode((const uint8_t *)"\x00", 1, &back), 1);
	assert_int_equal(back.type, SPOP_DATA_NULL);
	/* unknown type 10..15 refused */
	assert_int_equal(spop_data_decode((const uint8_t *)"\x0a", 1, &back), -1);
	assert_int_equal(spop_data_decode((const uint8_t *)"\x0f", 1, &back), -1);
	/* INT64 -1: type byte + 10 varint bytes */
	d = spop_data_int64(-1);
	n = spop_data_encode(&d, buf, sizeof(buf));
	assert_int_equal(n, 11);
	assert_int_equal(buf[0], 0x04);
	assert_int_equal(spop_data_decode(buf, (size_t)n, &back), n);
	assert_true(back.type == SPOP_DATA_INT64 && back.v.i == -1);
	/* IPv4 / IPv6 */
	d.type = SPOP_DATA_IPV4;
	memcpy(d.v.ipv4, "\x7f\x00\x00\x01", 4);
	n = spop_data_encode(&d, buf, sizeof(buf));
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "\x06\x7f\x00\x00\x01", 5);
	assert_int_equal(spop_data_decode(buf, 5, &back), 5);
	assert_memory_equal(back.v.ipv4, "\x7f\x00\x00\x01", 4);
	assert_int_equal(spop_data_decode(buf, 4, &back), -1);
	d.type = SPOP_DATA_IPV6;
	memset(d.v.ipv6, 0, 16);
	d.v.ipv6[15] = 1;
	n = spop_data_encode(&d, buf, sizeof(buf));
	assert_int_equal(n, 17);
	assert_int_equal(buf[0], 0x07);
	assert_int_equal(spop_data_decode(buf, 17, &back), 17);
	assert_int_equal(back.v.ipv6[15], 1);
	assert_int_equal(spop_data_decode(buf, 16, &back), -1);
	/* UINT32 and BIN */
	d = spop_data_uint32(16380);
	n = spop_data_encode(&d, buf, sizeof(buf));
	assert_int_equal(n, 4);
	assert_memory_equal(buf, "\x03\xfc\xf0\x06", 4);
	d.type = SPOP_DATA_BIN;
	d.v.str.ptr = "\x00\x01\x02";
	d.v.str.len = 3;
	n = spop_data_encode(&d, buf, sizeof(buf));
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "\x09\x03\x00\x01\x02", 5);
	assert_int_equal(spop_data_decode(buf, 5, &back), 5);
	assert_true(back.type == SPOP_DATA_BIN && back.v.str.len == 3 && back.v.str.ptr == (const char *)buf + 2);
	/* a string whose length runs past the input */
	assert_int_equal(spop_data_decode((const uint8_t *)"\x08\x05" "abcd", 6, &back), -1);
	assert_int_equal(spop_data_decode((const uint8_t *)"\x08\xf0", 2, &back), -1);
	assert_int_equal(spop_data_encode(&d, buf, 4), -1);
}

static void test_names_have_no_type_byte(void **state)
{
	uint8_t buf[32];
	struct spop_data v = spop_data_bool(true);
	struct spop_arg kv;

	(void)state;
	assert_int_equal(spop_name_encode("ip", 2, buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "\x02ip", 3);
	assert_int_equal(spop_kv_encode("ok", 2, &v, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "\x02ok\x11", 4);
	assert_int_equal(spop_kv_decode(buf, 4, &kv), 4);
	assert_int_equal(kv.name_len, 2);
	assert_true(kv.value.type == SPOP_DATA_BOOL && kv.value.v.b);
	assert_int_equal(spop_kv_decode(buf, 3, &kv), -1);
	/* empty name (argument declared without name=) */
	assert_int_equal(spop_kv_encode("", 0, &v, buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "\x00\x11", 2);
}

static void test_message_roundtrip(void **state)
{
	uint8_t buf[256];
	struct spop_arg in[3] = {
		{ "path", 4, spop_data_str("/abc", 4) },
		{ "host", 4, spop_data_str("example.org", 11) },
		{ "", 0, { .type = SPOP_DATA_NULL } },
	};
	struct spop_args args;
	const char *name;
	size_t nlen;
	int n;

	(void)state;
	n = spop_message_encode("route", 5, in, 3, buf, sizeof(buf));
	assert_true(n > 0);
	assert_memory_equal(buf, "\x05route\x03\x04path\x08\x04/abc", 17);
	assert_int_equal(spop_message_decode(buf, (size_t)n, &name, &nlen, &args), n);
	assert_int_equal(nlen, 5);
	assert_memory_equal(name, "route", 5);
	assert_int_equal(args.count, 3);
	assert_int_equal(args.total, 3);
	assert_int_equal(args.arg[1].value.v.str.len, 11);
	assert_int_equal(args.arg[2].name_len, 0);
	assert_int_equal(args.arg[2].value.type, SPOP_DATA_NULL);
	for (int cut = 0; cut < n; cut++)
		assert_int_equal(spop_message_decode(buf, (size_t)cut, &name, &nlen, &args), -1);
	assert_int_equal(spop_message_encode("route", 5, in, 3, buf, (size_t)n - 1), -1);
}

static void test_message_many_args(void **state)
{
	uint8_t buf[1024];
	struct spop_arg in[40];
	struct spop_args args;
	const char *name;
	size_t nlen;
	int n;

	(void)state;
	for (unsigned i = 0; i < 40; i++) {
		in[i].name = "a";
		in[i].name_len = 1;
		in[i].value = spop_data_int64(i);
	}
	n = spop_message_encode("m", 1, in, 40, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(spop_message_decode(buf, (size_t)n, &name, &nlen, &args), n);
	assert_int_equal(args.count, SPOP_MAX_ARGS);
	assert_int_equal(args.total, 40);
	assert_true(args.arg[15].value.v.i == 15);
}

static void test_unset_var(void **state)
{
	uint8_t buf[32];
	struct spop_action act;
	int n;

	(void)state;
	n = spop_action_unset_var_encode(SPOP_SCOPE_SESS, "x", 1, buf, sizeof(buf));
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "\x02\x02\x01\x01x", 5);
	assert_int_equal(spop_action_decode(buf, 5, &act), 5);
	assert_int_equal(act.type, SPOP_ACT_UNSET_VAR);
	assert_int_equal(act.scope, SPOP_SCOPE_SESS);
	buf[2] = 5;     /* scope out of range */
	assert_int_equal(spop_action_decode(buf, 5, &act), -1);
	buf[2] = 1;
	buf[1] = 3;     /* wrong arg count */
	assert_int_equal(spop_action_decode(buf, 5, &act), -1);
}

static void test_frame_header(void **state)
{
	uint8_t buf[64];
	struct spop_frame f;
	uint32_t len;
	int n;

	(void)state;
	n = spop_frame_begin(buf, sizeof(buf), SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN, UINT64_MAX, 4294967295u);
	assert_int_equal(n, 4 + 1 + 4 + 10 + 5);
	assert_int_equal(spop_frame_end(buf, (size_t)n), 0);
	assert_int_equal(spop_frame_length(buf, 3, &len), -1);
	assert_int_equal(spop_frame_length(buf, (size_t)n, &len), 4);
	assert_int_equal(len, (uint32_t)n - 4);
	assert_int_equal(spop_frame_decode(buf + 4, len, &f), (int)len);
	assert_true(f.stream_id == UINT64_MAX && f.frame_id == 4294967295u);
	assert_int_equal(f.payload_len, 0);
	for (uint32_t cut = 0; cut < len; cut++)
		assert_int_equal(spop_frame_decode(buf + 4, cut, &f), -1);
	assert_int_equal(spop_frame_begin(buf, 8, SPOP_FRAME_ACK, 1, 0, 0), -1);
	assert_int_equal(spop_frame_end(buf, 4), -1);
	assert_string_equal(spop_frame_type_str(3), "NOTIFY");
	assert_string_equal(spop_frame_type_str(77), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_varint_vectors),
		cmocka_unit_test(test_varint_limits),
		cmocka_unit_test(test_example_ack),
		cmocka_unit_test(test_healthcheck_hello),
		cmocka_unit_test(test_hello_negotiate),
		cmocka_unit_test(test_agent_hello_roundtrip),
		cmocka_unit_test(test_disconnect_roundtrip),
		cmocka_unit_test(test_typed_data),
		cmocka_unit_test(test_names_have_no_type_byte),
		cmocka_unit_test(test_message_roundtrip),
		cmocka_unit_test(test_message_many_args),
		cmocka_unit_test(test_unset_var),
		cmocka_unit_test(test_frame_header),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
