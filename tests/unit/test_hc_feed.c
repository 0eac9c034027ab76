/*
 * test_hc_feed.c — the health feed: encoder/decoder round trips and
 * rejections, the bounded line splitter, and the libev client against a
 * real unix socket (snapshot, deltas, link loss reported once, reconnect).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <ev.h>

#include "hc_feed.h"

static void test_encode_decode_target(void **state)
{
	char line[HC_FEED_LINE_MAX + 1];
	struct hc_feed_rec r;
	int n = hc_feed_encode_target(line, sizeof(line), "compute-1.a_b", HC_DOWN, "[::1]:8080",
	                              1763778000123LL, "HTTP 500\r\n(expected 200-399)");

	assert_true(n > 0);
	assert_string_equal(line, "T compute-1.a_b down [::1]:8080 1763778000123 HTTP 500  (expected 200-399)\n");
	assert_int_equal(hc_feed_decode(line, (size_t)n, &r), 1);
	assert_int_equal(r.type, HC_FEED_TARGET);
	assert_string_equal(r.name, "compute-1.a_b");
	assert_int_equal(r.state, HC_DOWN);
	assert_string_equal(r.addr, "[::1]:8080");
	assert_int_equal(r.since_ms, 1763778000123LL);
	assert_string_equal(r.reason, "HTTP 500  (expected 200-399)");

	n = hc_feed_encode_target(line, sizeof(line), "hub1", HC_DRAIN, NULL, 0, NULL);
	assert_string_equal(line, "T hub1 drain - 0 \n");
	assert_int_equal(hc_feed_decode(line, (size_t)n, &r), 1);
	assert_string_equal(r.addr, "");
	assert_string_equal(r.reason, "");
	assert_int_equal(r.state, HC_DRAIN);
}

static void test_encode_rejects(void **state)
{
	char line[HC_FEED_LINE_MAX + 1];
	char longname[40];

	memset(longname, 'a', 33);
	longname[33] = '\0';
	assert_int_equal(hc_feed_encode_target(line, sizeof(line), "bad name", HC_UP, NULL, 0, ""), -1);
	assert_int_equal(hc_feed_encode_target(line, sizeof(line), longname, HC_UP, NULL, 0, ""), -1);
	assert_int_equal(hc_feed_encode_target(line, sizeof(line), "a", (enum hc_state)7, NULL, 0, ""), -1);
	assert_int_equal(hc_feed_encode_target(line, sizeof(line), "a", HC_UP, "1.2.3.4 :5", 0, ""), -1);
	assert_int_equal(hc_feed_encode_target(line, 10, "a", HC_UP, NULL, 0, ""), -1);
	assert_int_equal(hc_feed_encode_end(line, 3, 12345), -1);
}

static void test_reason_truncated(void **state)
{
	char line[HC_FEED_LINE_MAX + 1], reason[600];
	struct hc_feed_rec r;
	int n;

	memset(reason, 'r', sizeof(reason) - 1);
	reason[sizeof(reason) - 1] = '\0';
	n = hc_feed_encode_target(line, sizeof(line), "a", HC_UP, NULL, 1, reason);
	assert_true(n > 0 && n < HC_FEED_LINE_MAX);
	assert_int_equal(hc_feed_decode(line, (size_t)n, &r), 1);
	assert_int_equal(strlen(r.reason), HC_FEED_REASON_MAX);
}

static void test_decode_other_lines(void **state)
{
	struct hc_feed_rec r;
	char line[HC_FEED_LINE_MAX + 1];
	int n;

	assert_int_equal(hc_feed_decode("H seedgate-health 1\n", 20, &r), 1);
	assert_int_equal(r.type, HC_FEED_HELLO);
	assert_int_equal(r.version, 1);
	assert_int_equal(hc_feed_decode("E 42", 4, &r), 1);
	assert_int_equal(r.count, 42);
	n = hc_feed_encode_detail(line, sizeof(line), "n1", "node", "us-east", 1700000000000LL, 412, 17, 3);
	assert_true(n > 0);
	assert_int_equal(hc_feed_decode(line, (size_t)n, &r), 1);
	assert_int_equal(r.type, HC_FEED_DETAIL);
	assert_string_equal(r.kind, "node");
	assert_string_equal(r.dc, "us-east");
	assert_int_equal(r.latency_us, 412);
	assert_int_equal(r.checks, 17);
	assert_int_equal(r.fails, 3);
	/* ignored: unknown types, empty lines, glued words */
	assert_int_equal(hc_feed_decode("X whatever", 10, &r), 0);
	assert_int_equal(hc_feed_decode("", 0, &r), 0);
	assert_int_equal(hc_feed_decode("Tx a up - 1", 11, &r), 0);
	/* malformed known types */
	assert_int_equal(hc_feed_decode("T a sideways - 1 x", 18, &r), -1);
	assert_int_equal(hc_feed_decode("T a up - notime x", 17, &r), -1);
	assert_int_equal(hc_feed_decode("T a up -", 8, &r), -1);
	assert_int_equal(hc_feed_decode("T b@d up - 1 x", 14, &r), -1);
	assert_int_equal(hc_feed_decode("E", 1, &r), -1);
	assert_int_equal(hc_feed_decode("E 99999999999999999999", 22, &r), -1);
	assert_int_equal(hc_feed_decode("H other 1", 9, &r), -1);
}

struct collected {
	int lines;
	char last[HC_FEED_LINE_MAX + 1];
	char all[4096];
};

static void collect_line(void *udata, const char *line, size_t len)
{
	struct collected *c = udata;

	c->lines++;
	memcpy(c->last, line, len);
	c->last[len] = '\0';
	size_t used = strlen(c->all);
	snprintf(c->all + used, sizeof(c->all) - used, "%.*s|", (int)(len < 1000 ? len : 1000), line);
}

static void test_line_buf_pieces(void **state)
{
	const char *in = "T a up - 1 x\nE 1\nT b down 1.2.3.4:5 2 refused\n";
	struct hc_line_buf lb;
	struct collected c = { 0 };

	hc_line_buf_init(&lb);
	for (size_t i = 0; in[i]; i++)
		hc_line_buf_feed(&lb, in + i, 1, collect_line, &c);
	assert_int_equal(c.lines, 3);
	assert_string_equal(c.all, "T a up - 1 x|E 1|T b down 1.2.3.4:5 2 refused|");
	/* a partial line stays until its end arrives */
	hc_line_buf_feed(&lb, "E 7", 3, collect_line, &c);
	assert_int_equal(c.lines, 3);
	hc_line_buf_feed(&lb, "\n", 1, collect_line, &c);
	assert_string_equal(c.last, "E 7");
}

static void test_line_buf_overlong(void **state)
{
	char big[3000];
	struct hc_line_buf lb;
	struct collected c = { 0 };

	memset(big, 'x', sizeof(big));
	hc_line_buf_init(&lb);
	hc_line_buf_feed(&lb, "E 1\n", 4, collect_line, &c);
	hc_line_buf_feed(&lb, big, 1000, collect_line, &c);
	hc_line_buf_feed(&lb, big, 2000, collect_line, &c);   /* past the limit: dropped */
	hc_line_buf_feed(&lb, "tail\nE 2\n", 9, collect_line, &c);
	assert_int_equal(lb.overlong, 1);
	assert_string_equal(c.all, "E 1|E 2|");
	/* exactly the limit with its '\n' fits */
	memset(big, 'y', HC_FEED_LINE_MAX - 1);
	big[HC_FEED_LINE_MAX - 1] = '\n';
	hc_line_buf_feed(&lb, big, HC_FEED_LINE_MAX, collect_line, &c);
	assert_int_equal(c.lines, 3);
	assert_int_equal(strlen(c.last), HC_FEED_LINE_MAX - 1);
	big[HC_FEED_LINE_MAX - 1] = 'y';
	big[HC_FEED_LINE_MAX] = '\n';
	hc_line_buf_feed(&lb, big, HC_FEED_LINE_MAX + 1, collect_line, &c);
	assert_int_equal(c.lines, 3);
	assert_int_equal(lb.overlong, 2);
}

/* ---- client against a real unix socket ---- */

struct client_test {
	struct ev_loop *loop;
	int lfd, sfd;
	ev_io accept_io;
	int targets, ups, downs, snapshots;
	char last_name[64], last_addr[64];
	enum hc_state last_state;
	bool addr_null;
	int stop_after_ups, stop_after_downs, stop_after_targets;
};

static void ct_target(void *udata, const char *name, enum hc_state st, const char *addr)
{
	struct client_test *t = udata;

	t->targets++;
	snprintf(t->last_name, sizeof(t->last_name), "%s", name);
	t->addr_null = addr == NULL;
	snprintf(t->last_addr, sizeof(t->last_addr), "%s", addr ? addr : "");
	t->last_state = st;
	if (t->stop_after_targets && t->targets >= t->stop_after_targets)
		ev_break(t->loop, EVBREAK_ALL);
}

static void ct_link(void *udata, bool connected, const char *why)
{
	struct client_test *t = udata;

	if (connected)
		t->ups++;
	else
		t->downs++;
	if ((connected && t->ups >= t->stop_after_ups) || (!connected && t->downs >= t->stop_after_downs))
		ev_break(t->loop, EVBREAK_ALL);
}

static void ct_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client_test *t = w->data;

	t->sfd = accept(t->lfd, NULL, NULL);
	ev_break(loop, EVBREAK_ALL);
}

static void ct_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop until a callback breaks it or 3 s pass. */
static void ct_run(struct client_test *t)
{
	ev_timer guard;

	ev_timer_init(&guard, ct_timeout, 3.0, 0.0);
	ev_timer_start(t->loop, &guard);
	ev_run(t->loop, 0);
	ev_timer_stop(t->loop, &guard);
}

static void ct_send(int fd, const char *s)
{
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void test_client_snapshot_delta_reconnect(void **state)
{
	struct client_test t = { .loop = ev_loop_new(EVFLAG_AUTO), .sfd = -1, .stop_after_ups = 1,
	                         .stop_after_downs = 1 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct hc_feed_client *c;
	struct hc_feed_client_stats st;
	char err[256];

	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/test_hc_feed.%d.sock", (int)getpid());
	unlink(sa.sun_path);
	c = hc_feed_client_new(t.loop, sa.sun_path, ct_target, ct_link, &t, err, sizeof(err));
	assert_non_null(c);
	assert_int_equal(t.downs, 0);                 /* nothing runs inside _new */
	/* no listener yet: the loss is reported once, however many retries */
	ct_run(&t);
	assert_int_equal(t.downs, 1);
	assert_false(hc_feed_client_connected(c));

	t.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_not_equal(t.lfd, -1);
	assert_int_equal(bind(t.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(t.lfd, 4), 0);
	ev_io_init(&t.accept_io, ct_accept, t.lfd, EV_READ);
	t.accept_io.data = &t;
	ev_io_start(t.loop, &t.accept_io);
	ct_run(&t);                                   /* until accepted */
	assert_int_not_equal(t.sfd, -1);
	assert_int_equal(t.downs, 1);

	/* snapshot in two pieces, split inside a line, with a junk line */
	ct_send(t.sfd, "H seedgate-health 1\nT n1 up 127.0.0.1:6001 17 HTTP 200\nS n1 node us 1 2 3 0\nT n2 do");
	ct_send(t.sfd, "wn - 18 connect: refused\nZ future line\nT bad\nE 2\n");
	ct_run(&t);                                   /* until link up */
	assert_int_equal(t.ups, 1);
	assert_int_equal(t.targets, 2);
	assert_string_equal(t.last_name, "n2");
	assert_int_equal(t.last_state, HC_DOWN);
	assert_true(t.addr_null);
	assert_true(hc_feed_client_connected(c));

	/* a delta */
	t.stop_after_targets = 3;
	ct_send(t.sfd, "T n2 up 127.0.0.1:6002 19 HTTP 200\n");
	ct_run(&t);
	assert_int_equal(t.targets, 3);
	assert_string_equal(t.last_addr, "127.0.0.1:6002");
	assert_int_equal(t.last_state, HC_UP);

	/* the server goes away: one loss, then a reconnect and a fresh snapshot */
	t.stop_after_targets = 0;
	t.stop_after_downs = 2;
	close(t.sfd);
	t.sfd = -1;
	ct_run(&t);
	assert_int_equal(t.downs, 2);
	assert_false(hc_feed_client_connected(c));
	ct_run(&t);                                   /* until accepted again */
	assert_int_not_equal(t.sfd, -1);
	t.stop_after_ups = 2;
	ct_send(t.sfd, "H seedgate-health 1\nT n1 down - 20 gone\nE 1\n");
	ct_run(&t);
	assert_int_equal(t.ups, 2);
	assert_int_equal(t.last_state, HC_DOWN);

	hc_feed_client_stats(c, &st);
	assert_int_equal(st.connects, 2);
	assert_int_equal(st.bad_lines, 1);            /* "T bad" */
	hc_feed_client_free(&c);
	assert_null(c);
	close(t.sfd);
	close(t.lfd);
	unlink(sa.sun_path);
	ev_loop_destroy(t.loop);
}

static void test_client_bad_args(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	char err[256], longpath[200];

	memset(longpath, 'p', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	assert_null(hc_feed_client_new(loop, longpath, ct_target, NULL, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "longer"));
	assert_null(hc_feed_client_new(loop, "/x", NULL, NULL, NULL, err, sizeof(err)));
	hc_feed_client_free(NULL);
	ev_loop_destroy(loop);
}

/* The fuzzer's reproducer "T x up - 5 \x7f\n": the decoder kept DEL in a
 * reason that the encoder turns into a space, so decode -> encode -> decode
 * changed the text. Every control byte and DEL must come out the same way
 * on both sides. */
static void test_reason_del_round_trip(void **state)
{
	static const char in[] = "T x up - 5 \x7f\n";
	char line[HC_FEED_LINE_MAX + 1];
	struct hc_feed_rec a, b;
	int n;

	assert_int_equal(hc_feed_decode(in, sizeof(in) - 1, &a), 1);
	assert_string_equal(a.reason, " ");
	n = hc_feed_encode_target(line, sizeof(line), a.name, a.state, a.addr, a.since_ms, a.reason);
	assert_true(n > 0);
	assert_int_equal(hc_feed_decode(line, (size_t)n, &b), 1);
	assert_string_equal(a.reason, b.reason);

	/* every byte below 0x20 (but the line's own '\n') and DEL */
	for (int c = 1; c < 0x20; c++) {
		if (c == '\n' || c == '\r')
			continue;
		n = snprintf(line, sizeof(line), "T x down - 1 a%cb\x7f\n", c);
		assert_int_equal(hc_feed_decode(line, (size_t)n, &a), 1);
		assert_string_equal(a.reason, "a b ");
		n = hc_feed_encode_target(line, sizeof(line), a.name, a.state, a.addr, a.since_ms, a.reason);
		assert_int_equal(hc_feed_decode(line, (size_t)n, &b), 1);
		assert_string_equal(b.reason, "a b ");
	}
}

/* The status table (seedctl health) from a snapshot that carries a change
 * before its E: healthcheckd sends a change at once when the snapshot is
 * already past that target. One row per target, with the latest state. */
static void test_status_merges_change_inside_snapshot(void **state)
{
	static const char feed[] =
		"H seedgate-health 1\n"
		"T n1 up 127.0.0.1:1 1000 TCP connect\n"
		"S n1 node a 1000 10 1 0\n"
		"T n2 up 127.0.0.1:2 1000 TCP connect\n"
		"S n2 node a 1000 10 1 0\n"
		"T n1 down 127.0.0.1:1 2000 connect: Connection refused\n"
		"E 2\n";
	char path[] = "/tmp/test_hc_status.XXXXXX", sock[64], err[256], *text = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t textlen = 0;
	FILE *out = open_memstream(&text, &textlen);
	int lfd, rc;
	pid_t pid;

	assert_non_null(mkdtemp(path));
	snprintf(sock, sizeof(sock), "%s/feed.sock", path);
	strcpy(sa.sun_path, sock);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {                        /* the feed: one subscriber */
		int fd = accept(lfd, NULL, NULL);

		_exit(fd >= 0 && write(fd, feed, sizeof(feed) - 1) == (ssize_t)sizeof(feed) - 1 ? 0 : 1);
	}
	rc = hc_status_print(sock, out, 3000, err, sizeof(err));
	fclose(out);
	waitpid(pid, NULL, 0);
	close(lfd);
	unlink(sock);
	rmdir(path);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(text, "n1 "));
	assert_null(strstr(strstr(text, "n1 ") + 1, "\nn1 "));   /* one row for n1 */
	assert_non_null(strstr(text, "refused"));
	assert_non_null(strstr(strstr(text, "\nn1 "), "node "));     /* it kept its S line */
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_decode_target),
		cmocka_unit_test(test_encode_rejects),
		cmocka_unit_test(test_reason_truncated),
		cmocka_unit_test(test_reason_del_round_trip),
		cmocka_unit_test(test_status_merges_change_inside_snapshot),
		cmocka_unit_test(test_decode_other_lines),
		cmocka_unit_test(test_line_buf_pieces),
		cmocka_unit_test(test_line_buf_overlong),
		cmocka_unit_test(test_client_snapshot_delta_reconnect),
		cmocka_unit_test(test_client_bad_args),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
