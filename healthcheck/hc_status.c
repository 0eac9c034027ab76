/*
 * hc_status.c — the health table (`seedctl health`, `healthcheckd
 * --status`): one blocking read of the feed's snapshot, printed as a table.
 * A command-line tool's helper, so it may block, bounded by a deadline.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hc_feed.h"

struct status_row {
	struct hc_feed_rec t;       /* the T line */
	struct hc_feed_rec s;       /* its S line, if any */
	bool have_s;
	bool dup;                   /* a later T line of a row before it */
};

struct status_read {
	struct status_row *rows;
	size_t n, cap;
	bool done, oom;
};

/* Collects T and S records until E. */
static void status_on_line(void *udata, const char *line, size_t len)
{
	struct status_read *r = udata;
	struct hc_feed_rec rec;

	if (r->done || hc_feed_decode(line, len, &rec) != 1)
		return;
	if (rec.type == HC_FEED_END) {
		r->done = true;
	} else if (rec.type == HC_FEED_TARGET) {
		if (r->n == r->cap) {
			size_t cap = r->cap ? r->cap * 2 : 64;
			struct status_row *rows = realloc(r->rows, cap * sizeof(*rows));
			if (!rows) {
				r->oom = r->done = true;
				return;
			}
			r->rows = rows;
			r->cap = cap;
		}
		memset(&r->rows[r->n], 0, sizeof(r->rows[r->n]));
		r->rows[r->n++].t = rec;
	} else if (rec.type == HC_FEED_DETAIL) {
		for (size_t i = r->n; i-- > 0;) {
			if (strcmp(r->rows[i].t.name, rec.name) == 0) {
				r->rows[i].s = rec;
				r->rows[i].have_s = true;
				break;
			}
		}
	}
}

/* Row pointers in name order, equal names in the order they came. */
static int row_cmp(const void *a, const void *b)
{
	const struct status_row *x = *(const struct status_row *const *)a;
	const struct status_row *y = *(const struct status_row *const *)b;
	int c = strcmp(x->t.name, y->t.name);

	return c ? c : (x < y ? -1 : x > y);
}

/* A target that changed while the snapshot was on its way has a second T
 * line before E (healthcheckd sends the change at once when the snapshot
 * is past that target): its first row, which has the S line, takes the
 * latest T line and the later rows go. One row per target, in feed order. */
static int status_merge(struct status_read *r)
{
	struct status_row **by = malloc((r->n ? r->n : 1) * sizeof(*by));
	size_t i, j, n = 0;

	if (!by)
		return -1;
	for (i = 0; i < r->n; i++)
		by[i] = &r->rows[i];
	qsort(by, r->n, sizeof(*by), row_cmp);
	for (i = 0; i < r->n; i = j)
		for (j = i + 1; j < r->n && strcmp(by[j]->t.name, by[i]->t.name) == 0; j++) {
			by[i]->t = by[j]->t;
			by[j]->dup = true;
		}
	free(by);
	for (i = 0; i < r->n; i++)
		if (!r->rows[i].dup)
			r->rows[n++] = r->rows[i];
	r->n = n;
	return 0;
}

/* Formats an age in ms as "12s ago", "3m ago", "2h ago". */
static void status_age(char *out, size_t room, int64_t then_ms, int64_t now_ms)
{
	int64_t s = (now_ms - then_ms) / 1000;

	if (then_ms <= 0)
		snprintf(out, room, "-");
	else if (s < 120)
		snprintf(out, room, "%llds ago", (long long)(s < 0 ? 0 : s));
	else if (s < 7200)
		snprintf(out, room, "%lldm ago", (long long)(s / 60));
	else
		snprintf(out, room, "%lldh ago", (long long)(s / 3600));
}

/* Prints the table; see hc_feed.h. */
int hc_status_print(const char *path, FILE *out, unsigned timeout_ms, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct status_read r = { 0 };
	struct hc_line_buf lb;
	struct timespec ts;
	int64_t now_ms, deadline;
	int fd, ret = -1;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		snprintf(err, errlen, "health feed %s: %s (is healthcheckd running with --feed?)", path,
		         strerror(errno));
		goto out_close;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	deadline = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + timeout_ms;
	hc_line_buf_init(&lb);
	while (!r.done) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		char buf[16384];
		ssize_t n;
		int64_t left;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		left = deadline - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
		if (left <= 0) {
			snprintf(err, errlen, "health feed %s: no complete snapshot within %u ms", path, timeout_ms);
			goto out_free;
		}
		if (poll(&pfd, 1, (int)left) == -1 && errno != EINTR) {
			snprintf(err, errlen, "poll: %s", strerror(errno));
			goto out_free;
		}
		if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = read(fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "health feed %s: closed before the end of the snapshot", path);
			goto out_free;
		}
		hc_line_buf_feed(&lb, buf, (size_t)n, status_on_line, &r);
	}
	if (r.oom || status_merge(&r) == -1) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	fprintf(out, "%-20s %-5s %-10s %-6s %-10s %-10s %9s  %s\n", "TARGET", "KIND", "DC", "STATE",
	        "SINCE", "CHECKED", "LATENCY", "REASON");
	for (size_t i = 0; i < r.n; i++) {
		const struct status_row *row = &r.rows[i];
		char since[24], checked[24], lat[24];

		status_age(since, sizeof(since), row->t.since_ms, now_ms);
		status_age(checked, sizeof(checked), row->have_s ? row->s.last_check_ms : 0, now_ms);
		if (row->have_s && row->s.last_check_ms > 0)
			snprintf(lat, sizeof(lat), "%.1fms", row->s.latency_us / 1000.0);
		else
			snprintf(lat, sizeof(lat), "-");
		fprintf(out, "%-20s %-5s %-10s %-6s %-10s %-10s %9s  %s\n", row->t.name,
		        row->have_s ? row->s.kind : "-", row->have_s ? row->s.dc : "-",
		        hc_state_str(row->t.state), since, checked, lat, row->t.reason);
	}
	ret = (int)r.n;
out_free:
	free(r.rows);
out_close:
	close(fd);
	return ret;
}
