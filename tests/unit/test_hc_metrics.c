/*
 * test_hc_metrics.c — the /metrics server both daemons share: the text
 * buffer grows without losing text, GET/HEAD /metrics get the render
 * callback's body (also one larger than a socket buffer), other paths 404,
 * other methods 405, bad addresses are refused with a message, and idle
 * connections do not lock scrapers out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hc_metrics.h"

static unsigned render_lines;      /* lines the render callback writes */

/* Render callback: numbered lines, so a lost or repeated chunk shows. */
static void render(void *udata, struct hc_text *out)
{
	unsigned *calls = udata;

	(*calls)++;
	for (unsigned i = 0; i < render_lines; i++)
		hc_text_printf(out, "seedgate_test_line{n=\"%u\"} %u\n", i, i);
}

static void test_text_grows(void **state)
{
	struct hc_text t = { 0 };
	char want[64];
	size_t off = 0;

	for (unsigned i = 0; i < 5000; i++)
		hc_text_printf(&t, "line %u\n", i);
	assert_false(t.failed);
	for (unsigned i = 0; i < 5000; i++) {
		int n = snprintf(want, sizeof(want), "line %u\n", i);

		assert_memory_equal(t.p + off, want, (size_t)n);
		off += (size_t)n;
	}
	assert_int_equal(off, t.len);
	hc_text_free(&t);
	assert_null(t.p);
	assert_int_equal(t.len, 0);
}

/* Sends req to the server on 127.0.0.1:port and collects the whole answer
 * into out (NUL-terminated), running the loop between reads. */
static size_t fetch(struct ev_loop *loop, unsigned port, const char *req, char *out, size_t room)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t len = 0;

	assert_int_not_equal(fd, -1);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	for (int spins = 0; spins < 20000; spins++) {
		ssize_t n;

		ev_run(loop, EVRUN_NOWAIT);
		n = recv(fd, out + len, room - 1 - len, 0);
		if (n == 0)
			break;
		if (n > 0)
			len += (size_t)n;
		else if (errno == EAGAIN)
			usleep(100);
		else
			fail_msg("recv: %s", strerror(errno));
		assert_true(len < room - 1);
	}
	close(fd);
	out[len] = '\0';
	return len;
}

static void test_serves_metrics(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	static char buf[1 << 21];
	unsigned calls = 0;
	char err[256];
	struct hc_metrics_server *s = hc_metrics_server_new(loop, "127.0.0.1:0", render, &calls, err, sizeof(err));
	const char *body;

	assert_non_null(s);
	assert_int_not_equal(hc_metrics_server_port(s), 0);

	render_lines = 3;
	fetch(loop, hc_metrics_server_port(s), "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.0 200 OK\r\n"));
	assert_non_null(strstr(buf, "Content-Type: text/plain; version=0.0.4"));
	body = strstr(buf, "\r\n\r\n") + 4;
	assert_string_equal(body, "seedgate_test_line{n=\"0\"} 0\nseedgate_test_line{n=\"1\"} 1\n"
	                          "seedgate_test_line{n=\"2\"} 2\n");
	assert_int_equal(calls, 1);

	/* a query string is fine; HEAD gets the headers only */
	fetch(loop, hc_metrics_server_port(s), "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", buf, sizeof(buf));
	assert_non_null(strstr(buf, "200 OK"));
	fetch(loop, hc_metrics_server_port(s), "HEAD /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_non_null(strstr(buf, "200 OK"));
	assert_string_equal(strstr(buf, "\r\n\r\n"), "\r\n\r\n");

	/* other paths and methods: no render */
	calls = 0;
	fetch(loop, hc_metrics_server_port(s), "GET /metricsx HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.0 404 "));
	fetch(loop, hc_metrics_server_port(s), "GET / HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.0 404 "));
	fetch(loop, hc_metrics_server_port(s), "POST /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.0 405 "));
	assert_int_equal(calls, 0);

	/* ~1.3 MB: more than a socket buffer, so the rest goes out on EV_WRITE */
	render_lines = 40000;
	size_t len = fetch(loop, hc_metrics_server_port(s), "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	body = strstr(buf, "\r\n\r\n") + 4;
	char cl[64];
	snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", len - (size_t)(body - buf));
	assert_non_null(strstr(buf, cl));
	assert_non_null(strstr(body, "seedgate_test_line{n=\"39999\"} 39999\n"));

	hc_metrics_server_free(&s);
	assert_null(s);
	ev_loop_destroy(loop);
}

/* Opens n connections to port that never ask anything, and runs the loop
 * until the server has accepted them all (so they count against its cap). */
static void open_idle(struct ev_loop *loop, unsigned port, int *fds, unsigned n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (unsigned i = 0; i < n; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_not_equal(fds[i], -1);
		assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
		ev_run(loop, EVRUN_NOWAIT);       /* keep the backlog short */
	}
	for (int spins = 0; spins < 200; spins++) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(500);
	}
}

/* Idle connections (connected, never asking) used to fill the 32 slots and
 * lock every scraper out for as long as they stayed. Now the oldest idle
 * one makes room: with 64 idle connections, and with more than the largest
 * cap, a scrape still gets its answer. */
static void test_idle_clients_do_not_lock_out(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	static char buf[1 << 16];
	static int fds[HC_METRICS_MAX_CLIENTS + 80];
	unsigned calls = 0, n = 64;
	unsigned long nofile = hc_nofile_raise();
	char err[256];
	struct hc_metrics_server *s = hc_metrics_server_new(loop, "127.0.0.1:0", render, &calls, err, sizeof(err));

	assert_non_null(s);
	render_lines = 1;
	open_idle(loop, hc_metrics_server_port(s), fds, n);
	fetch(loop, hc_metrics_server_port(s), "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.0 200 OK\r\n"));
	assert_int_equal(calls, 1);

	/* more idle connections than any cap (when the limit lets us hold both
	 * ends of them): the oldest are evicted, the scrape still works */
	if (nofile > 2 * (HC_METRICS_MAX_CLIENTS + 80) + 64) {
		open_idle(loop, hc_metrics_server_port(s), fds + n, HC_METRICS_MAX_CLIENTS + 80 - n);
		n = HC_METRICS_MAX_CLIENTS + 80;
		fetch(loop, hc_metrics_server_port(s), "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf));
		assert_non_null(strstr(buf, "HTTP/1.0 200 OK\r\n"));
		assert_true(hc_metrics_server_evictions(s) > 0);
	}
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
	hc_metrics_server_free(&s);
	ev_loop_destroy(loop);
}

static void test_bad_addresses(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	char err[256];
	unsigned calls = 0;

	assert_null(hc_metrics_server_new(loop, "127.0.0.1", render, &calls, err, sizeof(err)));
	assert_non_null(strstr(err, "stats address 127.0.0.1: expected host:port"));
	assert_null(hc_metrics_server_new(loop, "127.0.0.1:notaport", render, &calls, err, sizeof(err)));
	assert_non_null(strstr(err, "127.0.0.1:notaport"));

	struct hc_metrics_server *s = hc_metrics_server_new(loop, "[::1]:0", render, &calls, err, sizeof(err));
	if (s)                         /* a host without IPv6 may refuse ::1 */
		assert_int_not_equal(hc_metrics_server_port(s), 0);
	hc_metrics_server_free(&s);
	s = hc_metrics_server_new(loop, "*:0", render, &calls, err, sizeof(err));
	assert_non_null(s);
	hc_metrics_server_free(&s);
	ev_loop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_grows),
		cmocka_unit_test(test_serves_metrics),
		cmocka_unit_test(test_idle_clients_do_not_lock_out),
		cmocka_unit_test(test_bad_addresses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
