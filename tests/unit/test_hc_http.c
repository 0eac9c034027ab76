/*
 * test_hc_http.c — the HTTP check's request builder and status-line
 * parser, including answers that arrive one byte at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "hc_check.h"

static void test_status_complete(void **state)
{
	unsigned st = 0;

	assert_int_equal(hc_http_status("HTTP/1.1 200 OK\r\n", 17, &st), 1);
	assert_int_equal(st, 200);
	assert_int_equal(hc_http_status("HTTP/1.0 503 Service Unavailable\r\n", 34, &st), 1);
	assert_int_equal(st, 503);
	assert_int_equal(hc_http_status("HTTP/1.1 204\r\n", 14, &st), 1);
	assert_int_equal(st, 204);
	assert_int_equal(hc_http_status("HTTP/2 301 x", 12, &st), 1);
	assert_int_equal(st, 301);
}

static void test_status_partial_reads(void **state)
{
	const char *resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
	unsigned st = 0;
	size_t i;

	/* every prefix shorter than "HTTP/1.1 404 " needs more bytes */
	for (i = 0; i < 13; i++)
		assert_int_equal(hc_http_status(resp, i, &st), 0);
	assert_int_equal(hc_http_status(resp, 13, &st), 1);
	assert_int_equal(st, 404);
	assert_int_equal(hc_http_status(resp, strlen(resp), &st), 1);
}

static void test_status_garbage(void **state)
{
	unsigned st = 0;

	assert_int_equal(hc_http_status("SSH-2.0-OpenSSH\r\n", 17, &st), -1);
	assert_int_equal(hc_http_status("H", 1, &st), 0);
	assert_int_equal(hc_http_status("HX", 2, &st), -1);
	assert_int_equal(hc_http_status("HTTP/x.1 200 OK", 15, &st), -1);
	assert_int_equal(hc_http_status("HTTP/1.1 20x OK", 15, &st), -1);
	assert_int_equal(hc_http_status("HTTP/1.1 2000 OK", 16, &st), -1);
	assert_int_equal(hc_http_status("HTTP/1.1 099 OK", 15, &st), -1);
	assert_int_equal(hc_http_status("HTTP/1.1  200 OK", 16, &st), -1);
	assert_int_equal(hc_http_status("\x16\x03\x01\x00", 4, &st), -1);   /* TLS record */
}

static void test_request(void **state)
{
	char buf[256];
	int n = hc_http_request(buf, sizeof(buf), "HEAD", "/health?x=1", "node1.example:8080");

	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(buf));
	assert_string_equal(buf, "HEAD /health?x=1 HTTP/1.1\r\nHost: node1.example:8080\r\n"
	                    "User-Agent: seedgate-healthcheckd\r\nAccept: */*\r\n\r\n");
	assert_int_equal(hc_http_request(buf, sizeof(buf), "GET", "/a b", "h"), -1);
	assert_int_equal(hc_http_request(buf, sizeof(buf), "GET", "/", "h\r\nX: y"), -1);
	assert_int_equal(hc_http_request(buf, sizeof(buf), "GET", "", "h"), -1);
	assert_int_equal(hc_http_request(buf, 20, "GET", "/", "h"), -1);       /* no room */
}

/* A seed reload replaced the request of a target whose check had written
 * part of the old one: the offset of the old, longer request was then
 * applied to the new, shorter one and req_len - woff underflowed (a write
 * of ~2^64 bytes from past the buffer). Replacing the request resets what
 * was written; what is left never goes past the end. */
static void test_request_replaced_mid_write(void **state)
{
	struct hc_http_req r = { 0 };
	char longpath[300];
	const char *rest;
	size_t left;
	int n;

	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_true(hc_http_req_set(&r, "GET", longpath, "h") > 300);
	assert_false(hc_http_req_wrote(&r, 310));              /* a partial write */
	rest = hc_http_req_rest(&r, &left);
	assert_int_equal(left, r.len - 310);
	assert_ptr_equal(rest, r.buf + 310);

	n = hc_http_req_set(&r, "GET", "/", "h");                /* the reload */
	assert_int_equal(n, (int)r.len);
	assert_true(r.len < 310);
	rest = hc_http_req_rest(&r, &left);
	assert_int_equal(left, r.len);                        /* the whole new request */
	assert_ptr_equal(rest, r.buf);
	assert_true(hc_http_req_wrote(&r, left));
	(void)hc_http_req_rest(&r, &left);
	assert_int_equal(left, 0);

	/* even an offset past the end (never made by these functions) gives 0 */
	r.woff = r.len + 100;
	(void)hc_http_req_rest(&r, &left);
	assert_int_equal(left, 0);
	assert_true(hc_http_req_wrote(&r, 5));

	/* a refused request leaves the current one (and its offset) alone */
	r.woff = 3;
	assert_int_equal(hc_http_req_set(&r, "G T", "/", "h"), -1);
	assert_int_equal(r.woff, 3);
	hc_http_req_rewind(&r);
	assert_int_equal(r.woff, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_complete),
		cmocka_unit_test(test_status_partial_reads),
		cmocka_unit_test(test_status_garbage),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_request_replaced_mid_write),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
