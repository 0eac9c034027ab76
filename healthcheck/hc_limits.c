/*
 * hc_limits.c — RLIMIT_NOFILE, rate-limited logging and the acceptor that
 * survives descriptor exhaustion (see hc_limits.h).
 */
#include "hc_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ACCEPT_BATCH 64      /* accepts per wake-up: other watchers get their turn */

/* See hc_limits.h. */
unsigned long hc_nofile_raise(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	return hc_nofile_limit();
}

/* See hc_limits.h. */
unsigned long hc_nofile_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return 1024ul;
	if (rl.rlim_cur == RLIM_INFINITY)
		return 1ul << 20;
	return (unsigned long)rl.rlim_cur;
}

/* See hc_limits.h. */
bool hc_ratelog_hit(struct hc_ratelog *r, double now, uint64_t *n)
{
	r->pending++;
	r->total++;
	if (now < r->next)
		return false;
	*n = r->pending;
	r->pending = 0;
	r->next = now + HC_RATELOG_PERIOD_S;
	return true;
}

/* See hc_limits.h. */
void hc_log_stderr(const char *msg)
{
	struct timespec now;
	struct tm tm;
	char ts[32];

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ [%d]: %s\n", ts, now.tv_nsec / 1000000, (int)getpid(), msg);
}

/* Opens the spare descriptor (best effort: -1 when none is left). */
static int spare_open(void)
{
	return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* The listener is paused for a moment: accept again. */
static void acceptor_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hc_acceptor *a = w->data;

	(void)revents;
	if (a->spare == -1)
		a->spare = spare_open();
	ev_io_start(loop, &a->io);
}

/* Logs an accept failure, once per period with the count. */
static void acceptor_log(struct hc_acceptor *a, int err, const char *what_done)
{
	char msg[256];
	uint64_t n;

	if (!hc_ratelog_hit(&a->limit_log, ev_now(a->loop), &n))
		return;
	snprintf(msg, sizeof(msg), "%s: accept: %s: %llu connection(s) %s in the last %.0f s "
	         "(%llu closed at the limit, %llu pauses since start)", a->what, strerror(err),
	         (unsigned long long)n, what_done, HC_RATELOG_PERIOD_S, (unsigned long long)a->shed,
	         (unsigned long long)a->pauses);
	a->log(msg);
}

/* Stops accepting for HC_ACCEPT_PAUSE_S. */
static void acceptor_pause(struct hc_acceptor *a)
{
	a->pauses++;
	ev_io_stop(a->loop, &a->io);
	ev_timer_set(&a->pause, HC_ACCEPT_PAUSE_S, 0.);
	ev_timer_start(a->loop, &a->pause);
}

/* At the descriptor limit: use the spare to take the pending connection
 * off the backlog and close it. accept() reports EMFILE before it looks at
 * the backlog, so there may be nothing pending after all. Returns 1 when a
 * connection was closed, 0 when none was pending, -1 when the spare could
 * not be used (the caller pauses). */
static int acceptor_shed(struct hc_acceptor *a)
{
	int fd, err;

	if (a->spare == -1)
		a->spare = spare_open();
	if (a->spare == -1)
		return -1;
	close(a->spare);
	a->spare = -1;
	fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	err = errno;
	if (fd != -1) {
		close(fd);
		a->shed++;
	}
	a->spare = spare_open();
	if (fd == -1 && (err == EAGAIN || err == EWOULDBLOCK))
		return 0;
	return fd != -1 && a->spare != -1 ? 1 : -1;
}

static void acceptor_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hc_acceptor *a = w->data;

	(void)loop;
	(void)revents;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd != -1) {
			a->cb(a->udata, fd);
			continue;
		}
		switch (errno) {
		case EAGAIN:
#if EAGAIN != EWOULDBLOCK
		case EWOULDBLOCK:
#endif
			return;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue;              /* that connection is gone: the next one */
		case EMFILE:
		case ENFILE: {
			int err = errno, rc = acceptor_shed(a);

			if (rc == 0)
				return;            /* nothing was waiting */
			if (rc == 1) {
				acceptor_log(a, err, "closed at once");
				continue;
			}
			acceptor_log(a, err, "left waiting (listener paused)");
			acceptor_pause(a);
			return;
		}
		default:                       /* ENOBUFS, ENOMEM, ...: let it pass */
			acceptor_log(a, errno, "left waiting (listener paused)");
			acceptor_pause(a);
			return;
		}
	}
}

/* See hc_limits.h. */
void hc_acceptor_start(struct hc_acceptor *a, struct ev_loop *loop, int lfd, hc_accept_fn cb,
                       void *udata, const char *what, hc_log_fn log)
{
	*a = (struct hc_acceptor){ .loop = loop, .lfd = lfd, .cb = cb, .udata = udata, .what = what,
	                           .log = log ? log : hc_log_stderr };
	a->spare = spare_open();
	ev_io_init(&a->io, acceptor_cb, lfd, EV_READ);
	a->io.data = a;
	ev_timer_init(&a->pause, acceptor_resume, HC_ACCEPT_PAUSE_S, 0.);
	a->pause.data = a;
	ev_io_start(loop, &a->io);
}

/* See hc_limits.h. */
void hc_acceptor_stop(struct hc_acceptor *a)
{
	if (!a->loop)
		return;
	ev_io_stop(a->loop, &a->io);
	ev_timer_stop(a->loop, &a->pause);
	if (a->spare != -1)
		close(a->spare);
	a->spare = -1;
	a->loop = NULL;
}
