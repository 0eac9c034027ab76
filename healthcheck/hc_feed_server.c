/*
 * hc_feed_server.c — the publishing side of the health feed: a unix stream
 * listener (--feed PATH); each subscriber gets the snapshot once the initial
 * round of checks is in, then every delta as it happens. Lines are written
 * at once (a verdict reaches route agents within one loop iteration).
 *
 * Bounded, whatever the subscribers do:
 * - how many: at most hcd_feed_cap() subscribers, derived from the
 *   open-files limit after the descriptors checks need are set aside (see
 *   README.md, "Sizing"); more are closed as soon as accepted;
 * - memory: the snapshot is not queued whole per subscriber but made a
 *   chunk at a time (FEED_SNAP_CHUNK) as the subscriber reads; deltas are
 *   queued up to feed_queue_max() and a subscriber that lets its queue
 *   fill is dropped; a drained queue gives its memory back;
 * - accept() at the descriptor limit goes through hc_acceptor (no spin,
 *   one log line per period).
 * The socket file gets an explicit mode (--feed-mode, --feed-group), and a
 * lock file beside it (PATH.lock, flock) keeps a second healthcheckd from
 * taking over a live feed.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "hc_daemon.h"
#include "hc_limits.h"
#include "hc_metrics.h"

#define FEED_MAGIC          0x48434650u   /* "HCFP" */
#define FEED_SUB_MAGIC      0x48434653u   /* "HCFS" */
#define FEED_SNAP_CHUNK     (16u << 10)   /* snapshot bytes made ahead of the socket */
#define FEED_SUB_KEEP       (64u << 10)   /* a drained queue bigger than this is freed */
#define FEED_QUEUE_BASE     (1u << 20)    /* queue bound: 1 MB ... */
#define FEED_QUEUE_PER_TGT  256u          /* ... + a line per target (a full round of changes) */

struct feed_sub {
	unsigned magic;
	struct hcd_feed *feed;
	int fd;
	ev_io rio, wio;
	struct hcd_buf out;
	bool ready;                /* the snapshot was started: deltas follow */
	bool in_snap;              /* snapshot lines still to make */
	unsigned snap_pos;         /* hcd_snapshot_part()'s position */
	struct feed_sub *next;
};

struct hcd_feed {
	unsigned magic;
	struct hcd *d;
	int lfd, lock_fd;
	struct hc_acceptor acceptor;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char lock_path[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
	struct feed_sub *subs;
	unsigned nsubs;
	bool ready;
	struct hc_ratelog refused_log;
};

static struct feed_sub *sub_from(void *data)
{
	struct feed_sub *s = data;

	if (!s || s->magic != FEED_SUB_MAGIC)
		abort();
	return s;
}

/* The most a subscriber may have queued before it is dropped. */
static size_t feed_queue_max(const struct hcd *d)
{
	return FEED_QUEUE_BASE + (size_t)d->ntargets * FEED_QUEUE_PER_TGT;
}

/* Unlinks and frees a subscriber. */
static void sub_drop(struct feed_sub *s, const char *why)
{
	struct hcd_feed *f = s->feed;
	struct feed_sub **pp;
	bool big = s->out.cap > FEED_SUB_KEEP;

	for (pp = &f->subs; *pp && *pp != s; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = s->next;
	f->nsubs--;
	if (why)
		hcd_log("feed: subscriber fd %d dropped: %s", s->fd, why);
	ev_io_stop(f->d->loop, &s->rio);
	ev_io_stop(f->d->loop, &s->wio);
	close(s->fd);
	hcd_buf_free(&s->out);
	s->magic = 0;
	free(s);
#ifdef __GLIBC__
	/* a big queue's pages go back to the system, not only to malloc */
	if (big)
		malloc_trim(0);
#else
	(void)big;
#endif
}

/* Makes the next snapshot lines (while little is queued) and writes what is
 * queued; watches for writability while anything is left. Returns -1 when
 * the subscriber was dropped. */
static int sub_flush(struct feed_sub *s)
{
	struct hcd_feed *f = s->feed;

	for (;;) {
		if (s->in_snap) {
			int rc = hcd_snapshot_part(f->d, &s->out, &s->snap_pos, FEED_SNAP_CHUNK);

			if (rc == -1) {
				sub_drop(s, "out of memory for the snapshot");
				return -1;
			}
			s->in_snap = rc == 0;
		}
		if (hcd_buf_flush(&s->out, s->fd) == -1) {
			sub_drop(s, strerror(errno));
			return -1;
		}
		if (hcd_buf_pending(&s->out) > 0 || !s->in_snap)
			break;
	}
	if (hcd_buf_pending(&s->out) > feed_queue_max(f->d)) {
		sub_drop(s, "not reading (queue full)");
		return -1;
	}
	if (hcd_buf_pending(&s->out) > 0) {
		ev_io_start(f->d->loop, &s->wio);
		return 0;
	}
	ev_io_stop(f->d->loop, &s->wio);
	if (s->out.cap > FEED_SUB_KEEP)
		hcd_buf_free(&s->out);      /* a burst is over: give the memory back */
	return 0;
}

/* Starts a subscriber's snapshot: made and sent as it reads. */
static void sub_snapshot(struct feed_sub *s)
{
	s->ready = true;
	s->in_snap = true;
	s->snap_pos = 0;
	(void)sub_flush(s);
}

static void sub_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)sub_flush(sub_from(w->data));
}

/* Subscribers never write: anything read is discarded; EOF drops them. */
static void sub_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct feed_sub *s = sub_from(w->data);
	char buf[512];
	ssize_t n = read(s->fd, buf, sizeof(buf));

	if (n == 0)
		sub_drop(s, NULL);
	else if (n == -1 && errno != EAGAIN && errno != EINTR)
		sub_drop(s, strerror(errno));
}

/* See hc_daemon.h: how many subscribers the open-files limit leaves room
 * for once the daemon's own descriptors, the stats server's connections,
 * the HAProxy sockets and one check in flight per target are set aside. */
unsigned hcd_feed_cap(const struct hcd *d)
{
	long long room = (long long)d->nofile - HCD_FD_RESERVE - (long long)d->ntargets -
	                 (long long)d->opts.n_haproxy -
	                 (d->opts.stats_addr ? (long long)hc_metrics_client_cap(d->nofile) : 0);

	if (room < HCD_FEED_SUBS_MIN)
		room = HCD_FEED_SUBS_MIN;
	if (room > HCD_FEED_SUBS_MAX)
		room = HCD_FEED_SUBS_MAX;
	return (unsigned)room;
}

/* A new connection (hc_acceptor): a subscriber, or closed over the cap. */
static void feed_on_accept(void *udata, int fd)
{
	struct hcd_feed *f = udata;
	struct hcd *d = f->d;
	struct feed_sub *s;
	uint64_t n;

	if (f->nsubs >= hcd_feed_cap(d)) {
		close(fd);
		d->ctr.feed_refused++;
		if (hc_ratelog_hit(&f->refused_log, ev_now(d->loop), &n))
			hcd_log("feed: %llu subscriber(s) refused: at the limit of %u (from the open-files "
			        "limit %lu, see README.md \"Sizing\")", (unsigned long long)n, hcd_feed_cap(d),
			        d->nofile);
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return;
	}
	s->magic = FEED_SUB_MAGIC;
	s->feed = f;
	s->fd = fd;
	ev_io_init(&s->rio, sub_on_read, fd, EV_READ);
	s->rio.data = s;
	ev_io_init(&s->wio, sub_on_write, fd, EV_WRITE);
	s->wio.data = s;
	ev_io_start(d->loop, &s->rio);
	s->next = f->subs;
	f->subs = s;
	f->nsubs++;
	if (f->ready)
		sub_snapshot(s);
}

/* hc_acceptor's log: through healthcheckd's (escaped) logger. */
static void feed_log(const char *msg)
{
	hcd_log("%s", msg);
}

/* Takes PATH.lock (flock, held for the daemon's life, our pid inside).
 * 0, or -1 with err naming the path and the other daemon's pid. */
static int feed_lock(struct hcd_feed *f, char *err, size_t errlen)
{
	for (int tries = 0; tries < 5; tries++) {
		struct stat a, b;
		char pid[32] = "";
		int fd = open(f->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

		if (fd == -1) {
			snprintf(err, errlen, "--feed %s: lock file %s: %s", f->path, f->lock_path, strerror(errno));
			return -1;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
			ssize_t n = errno == EWOULDBLOCK ? pread(fd, pid, sizeof(pid) - 1, 0) : -1;

			pid[n > 0 ? n : 0] = '\0';
			pid[strcspn(pid, "\n")] = '\0';
			snprintf(err, errlen, "--feed %s: in use by another healthcheckd%s%s%s (lock %s held)",
			         f->path, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "", f->lock_path);
			close(fd);
			return -1;
		}
		/* the previous owner may have unlinked the file between our open
		 * and our flock: then the lock is on a dead inode, try again */
		if (fstat(fd, &a) == 0 && stat(f->lock_path, &b) == 0 && a.st_ino == b.st_ino &&
		    a.st_dev == b.st_dev) {
			int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());

			if (ftruncate(fd, 0) == -1 || pwrite(fd, pid, (size_t)n, 0) != n)
				hcd_log("feed: writing our pid to %s: %s", f->lock_path, strerror(errno));
			f->lock_fd = fd;
			return 0;
		}
		close(fd);
	}
	snprintf(err, errlen, "--feed %s: lock file %s keeps changing", f->path, f->lock_path);
	return -1;
}

/* Is something answering on path? A socket file left by a daemon that died
 * refuses connections (stale: replaced); a live one must not be unlinked
 * from under its owner (that is what the lock guards; this also catches an
 * owner that has no lock file, such as an older healthcheckd). */
static bool feed_in_use(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);   /* a full backlog must not block us */
	bool live;

	if (fd == -1)
		return false;
	strcpy(sa.sun_path, path);
	live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN;
	close(fd);
	return live;
}

/* Binds the socket with only the owner's bits (no window where the umask
 * leaves it open to anyone), then gives it its group and final mode. */
static int feed_bind(struct hcd_feed *f, const struct sockaddr_un *sa, char *err, size_t errlen)
{
	const struct hcd_opts *o = &f->d->opts;
	mode_t old = umask(0177);
	int rc = bind(f->lfd, (const struct sockaddr *)sa, sizeof(*sa));

	umask(old);
	if (rc == -1) {
		snprintf(err, errlen, "--feed %s: %s", f->path, strerror(errno));
		return -1;
	}
	if (o->feed_gid != (gid_t)-1 && chown(f->path, (uid_t)-1, o->feed_gid) == -1) {
		snprintf(err, errlen, "--feed %s: --feed-group %s: %s", f->path, o->feed_group, strerror(errno));
		return -1;
	}
	if (chmod(f->path, o->feed_mode) == -1) {
		snprintf(err, errlen, "--feed %s: --feed-mode %04o: %s", f->path, o->feed_mode, strerror(errno));
		return -1;
	}
	return 0;
}

/* Listens on path; see the top of the file. */
struct hcd_feed *hcd_feed_new(struct hcd *d, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct hcd_feed *f;
	struct stat st;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "--feed %s: path longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		snprintf(err, errlen, "feed: out of memory");
		return NULL;
	}
	f->magic = FEED_MAGIC;
	f->d = d;
	f->lfd = f->lock_fd = -1;
	strcpy(f->path, path);
	snprintf(f->lock_path, sizeof(f->lock_path), "%s.lock", path);
	strcpy(sa.sun_path, path);
	if (feed_lock(f, err, errlen) == -1)
		goto out_free;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "--feed %s: exists and is not a socket", path);
			goto out_unlock;
		}
		if (feed_in_use(path)) {
			snprintf(err, errlen, "--feed %s: in use (a process answers on it); not replacing it", path);
			goto out_unlock;
		}
		(void)unlink(path);          /* stale: its daemon is gone */
	}
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->lfd == -1) {
		snprintf(err, errlen, "feed: socket: %s", strerror(errno));
		goto out_unlock;
	}
	if (feed_bind(f, &sa, err, errlen) == -1)
		goto out_close;
	if (listen(f->lfd, 128) == -1) {
		snprintf(err, errlen, "--feed %s: %s", path, strerror(errno));
		goto out_unlink;
	}
	hc_acceptor_start(&f->acceptor, d->loop, f->lfd, feed_on_accept, f, "feed", feed_log);
	return f;

out_unlink:
	(void)unlink(path);
out_close:
	close(f->lfd);
out_unlock:
	(void)unlink(f->lock_path);        /* ours: we hold the lock */
	close(f->lock_fd);
out_free:
	free(f);
	return NULL;
}

/* Closes every subscriber and the listener; removes the socket file, then
 * the lock file (still holding the lock, so nobody takes it half-way). */
void hcd_feed_free(struct hcd_feed **pf)
{
	struct hcd_feed *f = pf ? *pf : NULL;

	if (!f)
		return;
	while (f->subs)
		sub_drop(f->subs, NULL);
	hc_acceptor_stop(&f->acceptor);
	close(f->lfd);
	(void)unlink(f->path);
	(void)unlink(f->lock_path);
	close(f->lock_fd);
	f->magic = 0;
	free(f);
	*pf = NULL;
}

/* Sends one target's line to every subscriber that has started its
 * snapshot. One still in its snapshot gets it only if the snapshot already
 * went past that target (otherwise the snapshot line, made later, carries
 * the new state). */
void hcd_feed_publish(struct hcd_feed *f, unsigned index, const char *line, size_t len)
{
	struct feed_sub *s, *next;

	for (s = f->subs; s; s = next) {
		next = s->next;
		if (!s->ready || (s->in_snap && !hcd_snapshot_passed(s->snap_pos, index)))
			continue;
		if (hcd_buf_append(&s->out, line, len) == -1) {
			sub_drop(s, "out of memory");
			continue;
		}
		(void)sub_flush(s);
	}
}

/* The target table was replaced (seed reload): a snapshot half made from
 * the old table cannot be finished from the new one. Those subscribers are
 * dropped; they reconnect and get a whole snapshot. */
void hcd_feed_reloaded(struct hcd_feed *f)
{
	struct feed_sub *s, *next;

	for (s = f->subs; s; s = next) {
		next = s->next;
		if (s->in_snap && s->snap_pos > 0)
			sub_drop(s, "seed directory reloaded during its snapshot (it reconnects)");
		else if (s->in_snap)
			s->snap_pos = 0;
	}
}

/* The initial verdicts are in: subscribers waiting get their snapshot. */
void hcd_feed_ready(struct hcd_feed *f)
{
	struct feed_sub *s, *next;

	f->ready = true;
	for (s = f->subs; s; s = next) {
		next = s->next;
		if (!s->ready)
			sub_snapshot(s);
	}
}

unsigned hcd_feed_subscribers(const struct hcd_feed *f)
{
	return f->nsubs;
}
