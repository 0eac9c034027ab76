/*
 * sd_source.c — a daemon's seed directory, from a file or etcd (see
 * sd_source.h): the loader thread, the file source (inotify, transient
 * retries), the local copy of an etcd directory, the initial load and the
 * seedgate_seed_* metrics. The etcd sync itself is sd_sync.c.
 *
 * Threads: everything here runs on the daemon's loop except the job the
 * loader thread runs (read + parse a file, build an etcd listing, write
 * the local copy). One job at a time; the loop hands a job over under
 * `lock` and the thread posts it back with an ev_async. Loop-side fields
 * need no lock: requests and results are both handled on the loop.
 */
#include "sd_source.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <libgen.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "hc_metrics.h"
#include "sd_filewatch.h"
#include "sd_int.h"
#include "seeddir.h"

#define SOURCE_MAGIC     0x53454544u   /* "SEED" */
#define ERR_LEN          512
#define FILE_MAX         (256u << 20)   /* router_dir_load's limit */
#define RETRY_MIN        0.1            /* transient file errors: first retry */
#define RETRY_MAX        5.0            /* ... doubling up to this */
#define DOWN_LOG_EVERY   10.0           /* etcd unreachable: one log line per this many seconds */
#define INITIAL_WAIT     10.0           /* etcd at start: give up and use the local copy */

enum job_kind { JOB_FILE, JOB_BUILD, JOB_CACHE };

/* One unit of work for the loader thread; results filled in by it. */
struct sd_job {
	enum job_kind kind;
	char reason[32];
	/* JOB_BUILD */
	struct sd_recs recs;
	char gen[24];
	int64_t rev;
	/* JOB_CACHE: text to write */
	char *text;
	size_t text_len;
	/* results */
	struct router_dir *dir;
	char err[ERR_LEN];
	int err_no;                      /* JOB_FILE: errno of a read failure */
};

struct sd_source {
	unsigned magic;
	struct ev_loop *loop;
	struct sd_source_config cfg;
	char *spec, *cache_path, *daemon;
	bool is_etcd;
	struct sd_etcd_spec es;

	/* loop thread only */
	bool busy, again, started, initial;
	bool initial_done;
	struct router_dir *initial_dir;
	char initial_err[ERR_LEN];
	unsigned initial_failures;
	uint64_t initial_pages;          /* listing pages seen at the last initial tick */
	ev_timer initial_timer;
	char again_reason[32];
	struct sd_job *pending_build;    /* etcd listing waiting for the thread */
	char *cache_text;                /* accepted directory to write to the local copy */
	size_t cache_len;
	char *last_text;                 /* text of the directory just built (etcd) */
	size_t last_len;
	int64_t last_rev;                /* revision of the directory just built */
	ev_async wake;

	/* status (metrics, logs) */
	int64_t revision;                /* etcd revision / file generation in use */
	double last_sync;                /* wall time the directory in use was last known current */
	uint64_t sync_errors;
	bool connected, from_cache;
	char last_error[ERR_LEN], last_logged[ERR_LEN];
	double last_error_time, last_down_log;
	uint64_t down_suppressed;
	char describe[64];

	/* file */
	struct sd_filewatch watch;
	ev_timer retry;
	double retry_delay;
	bool deleted_reported;

	/* etcd */
	struct sd_sync *sync;

	/* hand-over, guarded by lock */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
	struct sd_job *job;              /* given to the thread */
	struct sd_job *done_job;         /* handed back */
};

static struct sd_source *source_from(void *data)
{
	struct sd_source *s = data;

	if (!s || s->magic != SOURCE_MAGIC)
		abort();
	return s;
}

static double now_wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void slog(struct sd_source *s, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void slog(struct sd_source *s, int prio, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!s->cfg.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->cfg.log(s->cfg.udata, prio, msg);
}

static char *cache_wrap(struct sd_source *s, int64_t rev, const char *text, size_t len, size_t *outlen);

static void job_free(struct sd_job *j)
{
	if (!j)
		return;
	sd_recs_free(&j->recs);
	router_dir_release(&j->dir);
	free(j->text);
	free(j);
}

/* ---- loader thread jobs ----------------------------------------------- */

/* Reads and parses the seed file, keeping errno of a read failure so the
 * loop can tell a transient one (retried) from a real one. */
static void run_file(struct sd_source *s, struct sd_job *j)
{
	char *buf = NULL;
	size_t len = 0, room = 0;
	int fd = open(s->spec, O_RDONLY | O_CLOEXEC);

	if (fd == -1) {
		j->err_no = errno;
		if (errno == ENOENT)
			snprintf(j->err, sizeof(j->err), "seed file %s deleted: keeping the last good directory", s->spec);
		else
			snprintf(j->err, sizeof(j->err), "%s: %s", s->spec, strerror(errno));
		return;
	}
	for (;;) {
		ssize_t n;

		if (len == room) {
			size_t nroom = room ? room * 2 : 65536;
			char *nb;

			if (nroom > FILE_MAX) {
				snprintf(j->err, sizeof(j->err), "%s: file larger than %u MB", s->spec, FILE_MAX >> 20);
				goto out;
			}
			nb = realloc(buf, nroom);
			if (!nb) {
				j->err_no = ENOMEM;
				snprintf(j->err, sizeof(j->err), "%s: out of memory", s->spec);
				goto out;
			}
			buf = nb;
			room = nroom;
		}
		n = read(fd, buf + len, room - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			j->err_no = errno;
			snprintf(j->err, sizeof(j->err), "%s: %s", s->spec, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	j->dir = router_dir_parse_flags(buf ? buf : "", len, s->spec, s->cfg.flags, j->err, sizeof(j->err));
	if (!j->dir && strstr(j->err, "out of memory"))
		j->err_no = ENOMEM;
out:
	free(buf);
	close(fd);
}

/* Builds a listing; keeps its text form for the local copy. */
static void run_build(struct sd_source *s, struct sd_job *j)
{
	char err2[ERR_LEN];

	j->dir = sd_build(s->es.prefix, j->gen, j->recs.rec, j->recs.n, s->cfg.flags, j->err, sizeof(j->err));
	if (j->dir && s->cache_path) {
		size_t len;
		char *text = sd_text(s->es.prefix, j->gen, j->recs.rec, j->recs.n, &len, err2, sizeof(err2));

		/* no local copy this time is not worth refusing the directory */
		if (text)
			j->text = cache_wrap(s, j->rev, text, len, &j->text_len);
		free(text);
	}
	sd_recs_free(&j->recs);
}

/* Writes the local copy the safe way: a temporary file beside it, fsync,
 * rename over, fsync the directory. A crash leaves the old copy or the new
 * one, never half of one. */
static void run_cache(struct sd_source *s, struct sd_job *j)
{
	char tmp[4096], *dcopy;
	int fd, dfd;
	size_t off = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", s->cache_path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1 && errno == ENOENT) {
		/* first run: create the state directory (one level) */
		dcopy = strdup(s->cache_path);
		if (dcopy)
			(void)mkdir(dirname(dcopy), 0755);
		free(dcopy);
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	}
	if (fd == -1) {
		snprintf(j->err, sizeof(j->err), "%.400s: %s", tmp, strerror(errno));
		return;
	}
	while (off < j->text_len) {
		ssize_t n = write(fd, j->text + off, j->text_len - off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(j->err, sizeof(j->err), "%.400s: %s", tmp, strerror(errno));
			goto fail;
		}
		off += (size_t)n;
	}
	if (fsync(fd) == -1) {
		snprintf(j->err, sizeof(j->err), "%.400s: fsync: %s", tmp, strerror(errno));
		goto fail;
	}
	close(fd);
	if (rename(tmp, s->cache_path) == -1) {
		snprintf(j->err, sizeof(j->err), "rename %s: %s", s->cache_path, strerror(errno));
		unlink(tmp);
		return;
	}
	dcopy = strdup(s->cache_path);
	if (dcopy && (dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		(void)fsync(dfd);
		close(dfd);
	}
	free(dcopy);
	return;
fail:
	close(fd);
	unlink(tmp);
}

static void *loader_thread(void *arg)
{
	struct sd_source *s = arg;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct sd_job *j;

		while (!s->job && !s->stopping)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->stopping)
			break;
		j = s->job;
		s->job = NULL;
		pthread_mutex_unlock(&s->lock);

		/* Hand the memory of the directories replaced since the last
		 * load back to the system first: glibc keeps freed chunks in
		 * this thread's arena, and a daemon following a big directory
		 * through many re-lists would otherwise hold several copies'
		 * worth of RSS. */
		if (j->kind != JOB_CACHE)
			malloc_trim(0);
		if (j->kind == JOB_FILE)
			run_file(s, j);
		else if (j->kind == JOB_BUILD)
			run_build(s, j);
		else
			run_cache(s, j);

		pthread_mutex_lock(&s->lock);
		s->done_job = j;
		ev_async_send(s->loop, &s->wake);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Hands j to the thread (loop side; the thread is idle). */
static void give(struct sd_source *s, struct sd_job *j)
{
	s->busy = true;
	pthread_mutex_lock(&s->lock);
	s->job = j;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static struct sd_job *job_new(enum job_kind kind, const char *reason)
{
	struct sd_job *j = calloc(1, sizeof(*j));

	if (j) {
		j->kind = kind;
		snprintf(j->reason, sizeof(j->reason), "%s", reason);
	}
	return j;
}

/* Starts the next job if the thread is idle: an etcd build first (the
 * daemon waits for it), then a file reload asked for meanwhile, then the
 * local copy. */
static void pump(struct sd_source *s)
{
	struct sd_job *j;

	if (s->busy)
		return;
	if (s->pending_build) {
		j = s->pending_build;
		s->pending_build = NULL;
		give(s, j);
		return;
	}
	if (s->again) {
		s->again = false;
		j = job_new(JOB_FILE, s->again_reason);
		if (j) {
			give(s, j);
			return;
		}
	}
	if (s->cache_text) {
		j = job_new(JOB_CACHE, "local copy");
		if (!j)
			return;
		j->text = s->cache_text;
		j->text_len = s->cache_len;
		s->cache_text = NULL;
		give(s, j);
	}
}

/* ---- results ---------------------------------------------------------- */

static bool transient(int e)
{
	return e == EMFILE || e == ENFILE || e == ENOMEM || e == EIO || e == EAGAIN || e == EINTR || e == ENOBUFS;
}

static void set_error(struct sd_source *s, const char *err)
{
	s->sync_errors++;
	snprintf(s->last_error, sizeof(s->last_error), "%s", err);
	s->last_error_time = now_wall();
}

static void set_describe(struct sd_source *s)
{
	if (s->is_etcd)
		snprintf(s->describe, sizeof(s->describe), "etcd revision %lld%s", (long long)s->revision,
			 s->from_cache ? " (local copy)" : "");
	else
		snprintf(s->describe, sizeof(s->describe), "generation %lld", (long long)s->revision);
}

/* The daemon put a new directory in use. */
static void accepted(struct sd_source *s, int64_t etcd_rev)
{
	s->revision = s->is_etcd ? etcd_rev : s->revision + 1;
	s->last_sync = now_wall();
	s->from_cache = false;
	set_describe(s);
	if (s->is_etcd && s->last_text && s->cache_path) {
		free(s->cache_text);
		s->cache_text = s->last_text;
		s->cache_len = s->last_len;
		s->last_text = NULL;
	}
}

/* Hands a result to the daemon, or keeps it for sd_source_initial (which
 * the daemon accepts by calling sd_source_start). 0 when the daemon put dir
 * in use now. */
static int deliver(struct sd_source *s, struct router_dir *dir, const char *err, const char *reason)
{
	if (s->initial) {
		s->initial_dir = dir;
		if (!dir)
			snprintf(s->initial_err, sizeof(s->initial_err), "%.500s", err);
		s->initial_done = true;
		return -1;
	}
	return s->cfg.done(s->cfg.udata, dir, err, reason);
}

/* A file job came back. */
static void file_result(struct sd_source *s, struct sd_job *j)
{
	struct router_dir *dir = j->dir;

	j->dir = NULL;
	if (dir) {
		s->retry_delay = RETRY_MIN;
		s->deleted_reported = false;
		if (deliver(s, dir, NULL, j->reason) == 0)
			accepted(s, 0);
		return;
	}
	set_error(s, j->err);
	if (transient(j->err_no)) {
		char msg[ERR_LEN + 64];

		snprintf(msg, sizeof(msg), "%s (transient: retrying in %.1f s)", j->err, s->retry_delay);
		ev_timer_stop(s->loop, &s->retry);
		ev_timer_set(&s->retry, s->retry_delay, 0.0);
		ev_timer_start(s->loop, &s->retry);
		s->retry_delay = s->retry_delay * 2 > RETRY_MAX ? RETRY_MAX : s->retry_delay * 2;
		deliver(s, NULL, msg, j->reason);
		return;
	}
	if (j->err_no == ENOENT) {
		if (s->deleted_reported && !s->initial)
			return;      /* one line per deletion, however many events */
		s->deleted_reported = true;
	}
	deliver(s, NULL, j->err, j->reason);
}

/* An etcd build came back. */
static void build_result(struct sd_source *s, struct sd_job *j)
{
	struct router_dir *dir = j->dir;
	char reason[32];

	j->dir = NULL;
	free(s->last_text);
	s->last_text = j->text;
	s->last_len = j->text_len;
	s->last_rev = j->rev;
	j->text = NULL;
	if (s->sync)
		sd_sync_built(s->sync);
	if (!dir)
		set_error(s, j->err);
	snprintf(reason, sizeof(reason), "etcd revision %lld", (long long)j->rev);
	if (deliver(s, dir, dir ? NULL : j->err, reason) == 0)
		accepted(s, j->rev);
}

/* ev_async: the thread finished a job. */
static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct sd_source *s = source_from(w->data);
	struct sd_job *j;

	(void)loop;
	(void)revents;
	pthread_mutex_lock(&s->lock);
	j = s->done_job;
	s->done_job = NULL;
	pthread_mutex_unlock(&s->lock);
	if (!j)
		return;
	s->busy = false;
	if (j->kind == JOB_FILE)
		file_result(s, j);
	else if (j->kind == JOB_BUILD)
		build_result(s, j);
	else if (j->err[0])
		slog(s, LOG_WARNING, "seed: cannot write the local copy: %s", j->err);
	job_free(j);
	pump(s);
}

/* ---- file source ------------------------------------------------------- */

/* See sd_source.h. */
void sd_source_request(struct sd_source *s, const char *reason)
{
	if (s->is_etcd) {
		if (s->sync)
			sd_sync_relist(s->sync, true);
		return;
	}
	if (!s->again)
		snprintf(s->again_reason, sizeof(s->again_reason), "%s", s->busy ? SD_REASON_AGAIN : reason);
	s->again = true;
	pump(s);
}

static void file_changed(struct sd_filewatch *w, void *arg)
{
	(void)w;
	sd_source_request(source_from(arg), SD_REASON_FILE_CHANGED);
}

static void retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	sd_source_request(source_from(t->data), SD_REASON_RETRY);
}


/* ---- etcd source ------------------------------------------------------- */

static void on_listed(void *udata, int64_t rev, const char *gen, struct sd_recs *recs)
{
	struct sd_source *s = udata;
	struct sd_job *j = job_new(JOB_BUILD, SD_REASON_ETCD);

	if (!j) {
		sd_recs_free(recs);
		set_error(s, "out of memory");
		sd_sync_built(s->sync);
		return;
	}
	j->recs = *recs;
	j->rev = rev;
	snprintf(j->gen, sizeof(j->gen), "%s", gen);
	job_free(s->pending_build);     /* never two: the engine waits for built */
	s->pending_build = j;
	pump(s);
}

static void on_unchanged(void *udata, int64_t rev)
{
	struct sd_source *s = udata;

	if (s->initial) {
		/* an identical listing while the first one is being built:
		 * nothing to do, the build reports */
		return;
	}
	if (!s->from_cache && s->revision > 0) {
		s->revision = rev;
		s->last_sync = now_wall();
		set_describe(s);
	}
}

static void on_failed(void *udata, const char *msg, bool connectivity)
{
	struct sd_source *s = udata;
	double now = now_wall();

	set_error(s, msg);
	if (s->initial) {
		if (!connectivity || ++s->initial_failures >= s->es.n) {
			snprintf(s->initial_err, sizeof(s->initial_err), "%s", msg);
			s->initial_done = true;
		}
		return;
	}
	/* At most one line per DOWN_LOG_EVERY seconds while etcd is
	 * unreachable (each endpoint fails in turn with its own message);
	 * a new directory-level error (PREFIX/current missing, retried with
	 * the back-off) is said at once, repeats of it are limited too. */
	if (!connectivity && strcmp(msg, s->last_logged) != 0)
		s->last_down_log = 0;
	snprintf(s->last_logged, sizeof(s->last_logged), "%s", msg);
	if (now - s->last_down_log < DOWN_LOG_EVERY) {
		s->down_suppressed++;
		return;
	}
	if (!connectivity)
		slog(s, LOG_ERR, "seed: %s: %s (%llu more errors not logged)", s->spec, msg,
		     (unsigned long long)s->down_suppressed);
	else if (s->last_sync > 0)
		slog(s, LOG_WARNING, "seed: etcd: %s; keeping %s, last synced %.0f s ago (%llu more errors not logged)",
		     msg, s->describe, now - s->last_sync, (unsigned long long)s->down_suppressed);
	else
		slog(s, LOG_WARNING, "seed: etcd: %s; keeping %s (%llu more errors not logged)", msg, s->describe,
		     (unsigned long long)s->down_suppressed);
	s->last_down_log = now;
	s->down_suppressed = 0;
}

static void on_connected(void *udata, bool up, const char *endpoint)
{
	struct sd_source *s = udata;

	if (up == s->connected)
		return;
	s->connected = up;
	if (up) {
		if (s->started)       /* not for route-agent -c */
			slog(s, LOG_NOTICE, "seed: watching %s on %s", s->es.prefix, endpoint);
		s->last_down_log = 0;
		s->down_suppressed = 0;
	}
}

static const struct sd_sync_ops sync_ops = {
	.listed = on_listed,
	.unchanged = on_unchanged,
	.failed = on_failed,
	.connected = on_connected,
};

/* "# seedgate local copy ... revision N ..." -> N, or 0. */
static int64_t cache_revision(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];
	long long rev = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f) && line[0] == '#') {
		const char *p = strstr(line, " revision ");

		if (p && sscanf(p, " revision %lld", &rev) == 1)
			break;
	}
	fclose(f);
	return rev;
}

static void initial_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sd_source *s = source_from(w->data);

	(void)loop;
	(void)revents;
	uint64_t pages = s->sync ? sd_sync_pages(s->sync) : 0;

	if (s->busy || s->pending_build)
		return;      /* a listing arrived and is being built: wait for it */
	if (pages != s->initial_pages) {
		/* a big directory on a slow etcd: pages keep coming, wait on
		 * (until INITIAL_WAIT / 4 passes without one) */
		s->initial_pages = pages;
		return;
	}
	if (!s->initial_done) {
		snprintf(s->initial_err, sizeof(s->initial_err), "no answer from etcd within %.0f s%s%.400s",
			 INITIAL_WAIT, s->last_error[0] ? ": " : "", s->last_error);
		s->initial_done = true;
	}
}

/* Prefixes the text form with the header the local copy carries. */
static char *cache_wrap(struct sd_source *s, int64_t rev, const char *text, size_t len, size_t *outlen)
{
	char head[SD_PREFIX_MAX + 4096], ts[32];
	time_t t = time(NULL);
	struct tm tm;
	size_t hl;
	char *out;

	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	hl = (size_t)snprintf(head, sizeof(head),
			      "# seedgate: local copy of %s\n# revision %lld, written %s by %s; do not edit\n",
			      s->spec, (long long)rev, ts, s->daemon);
	if (hl >= sizeof(head))
		hl = sizeof(head) - 1;
	out = malloc(hl + len + 1);
	if (!out)
		return NULL;
	memcpy(out, head, hl);
	memcpy(out + hl, text, len);
	out[hl + len] = '\0';
	*outlen = hl + len;
	return out;
}

/* ---- API --------------------------------------------------------------- */

/* See sd_source.h. */
void sd_source_default_cache(const char *daemon, const char *spec, char *out, size_t len)
{
	const char *dir = getenv("STATE_DIRECTORY");
	uint64_t h = 0xcbf29ce484222325ull;

	for (const char *p = spec; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	if (!dir || !*dir || strchr(dir, ':'))
		dir = "/var/lib/seedgate";
	snprintf(out, len, "%s/%s-%08llx.seed", dir, daemon ? daemon : "seedgate",
		 (unsigned long long)(h & 0xffffffffu));
}

/* See sd_source.h. */
struct sd_source *sd_source_new(struct ev_loop *loop, const struct sd_source_config *cfg,
                                char *err, size_t errlen)
{
	struct sd_source *s = calloc(1, sizeof(*s));
	sigset_t all, saved;
	int rc;

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->magic = SOURCE_MAGIC;
	s->loop = loop;
	s->cfg = *cfg;
	sd_filewatch_init(&s->watch);
	s->retry_delay = RETRY_MIN;
	s->spec = strdup(cfg->spec);
	s->daemon = strdup(cfg->daemon ? cfg->daemon : "seedgate");
	if (!s->spec || !s->daemon)
		goto oom;
	s->is_etcd = sd_is_etcd(cfg->spec);
	if (s->is_etcd) {
		char path[4096];

		if (sd_etcd_spec_parse(cfg->spec, &s->es, err, errlen) == -1)
			goto fail;
		if (!cfg->cache_path)
			sd_source_default_cache(s->daemon, cfg->spec, path, sizeof(path));
		/* "" = no local copy (route-agent -c) */
		if (!cfg->cache_path || *cfg->cache_path) {
			s->cache_path = strdup(cfg->cache_path ? cfg->cache_path : path);
			if (!s->cache_path)
				goto oom;
		}
		s->sync = sd_sync_new(loop, &s->es, cfg->debounce > 0 ? cfg->debounce : 0.03, &sync_ops, s,
				      err, errlen);
		if (!s->sync)
			goto fail;
	}
	s->cfg.spec = s->spec;
	s->cfg.cache_path = s->cache_path;
	s->cfg.daemon = s->daemon;
	set_describe(s);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	ev_async_init(&s->wake, wake_cb);
	s->wake.data = s;
	ev_async_start(loop, &s->wake);
	ev_unref(loop);                  /* the loader alone never keeps the loop running */
	ev_init(&s->retry, retry_cb);
	s->retry.data = s;
	ev_init(&s->initial_timer, initial_timer_cb);
	s->initial_timer.data = s;

	/* The daemon handles signals on its loop; the thread must never be
	 * the one a process-directed signal lands on. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	rc = pthread_create(&s->thread, NULL, loader_thread, s);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the loader thread: %s", strerror(rc));
		ev_ref(loop);
		ev_async_stop(loop, &s->wake);
		pthread_cond_destroy(&s->cond);
		pthread_mutex_destroy(&s->lock);
		goto fail;
	}
	s->thread_started = true;
	return s;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	sd_sync_free(&s->sync);
	free(s->spec);
	free(s->daemon);
	free(s->cache_path);
	free(s);
	return NULL;
}

/* Runs the loop until the first job (or etcd sync) reported. */
static void run_until_initial(struct sd_source *s)
{
	while (!s->initial_done)
		ev_run(s->loop, EVRUN_ONCE);
}

/* See sd_source.h. */
struct router_dir *sd_source_initial(struct sd_source *s, char *err, size_t errlen)
{
	struct router_dir *dir;
	char cerr[ERR_LEN];

	s->initial = true;
	s->initial_done = false;
	s->initial_err[0] = '\0';
	if (!s->is_etcd) {
		struct sd_job *j = job_new(JOB_FILE, "start");

		if (!j) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		give(s, j);
		run_until_initial(s);
	} else {
		ev_timer_set(&s->initial_timer, INITIAL_WAIT, INITIAL_WAIT / 4);
		ev_timer_start(s->loop, &s->initial_timer);
		sd_sync_start(s->sync);
		run_until_initial(s);
		ev_timer_stop(s->loop, &s->initial_timer);
	}
	s->initial = false;
	dir = s->initial_dir;
	s->initial_dir = NULL;
	if (dir) {
		s->revision = s->is_etcd ? s->last_rev : 1;
		set_describe(s);
		s->revision = s->is_etcd ? s->last_rev : 0;   /* sd_source_start counts it in */
		return dir;
	}
	if (!s->is_etcd) {
		snprintf(err, errlen, "%s", s->initial_err);
		return NULL;
	}
	/* etcd unreachable or holding a bad directory: the local copy */
	if (!s->cache_path) {
		snprintf(err, errlen, "%s: %s", s->spec, s->initial_err);
		return NULL;
	}
	dir = router_dir_load_flags(s->cache_path, s->cfg.flags, cerr, sizeof(cerr));
	if (!dir) {
		snprintf(err, errlen, "%s: %s; and no usable local copy: %s", s->spec, s->initial_err, cerr);
		return NULL;
	}
	s->from_cache = true;
	s->revision = cache_revision(s->cache_path);
	set_describe(s);
	slog(s, LOG_WARNING, "seed: %s: %s; starting from the local copy %s (etcd revision %lld), "
	     "syncing in the background", s->spec, s->initial_err, s->cache_path, (long long)s->revision);
	return dir;
}

/* See sd_source.h. */
int sd_source_start(struct sd_source *s, char *err, size_t errlen)
{
	s->started = true;
	if (!s->from_cache) {
		if (s->is_etcd) {
			int64_t rev = s->revision;

			s->revision = 0;
			accepted(s, rev);
		} else {
			accepted(s, 0);
		}
	}
	pump(s);         /* the local copy of the first directory */
	if (!s->is_etcd)
		return sd_filewatch_start(&s->watch, s->loop, s->spec, s->cfg.debounce > 0 ? s->cfg.debounce : 0.05,
					  file_changed, s, err, errlen);
	return 0;
}

/* Writes a label value with \, " and newlines escaped. */
static void label_escape(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in && o + 3 < len; in++) {
		if (*in == '"' || *in == '\\') {
			out[o++] = '\\';
			out[o++] = *in;
		} else if (*in == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

/* See sd_source.h. */
void sd_source_metrics(struct sd_source *s, struct hc_text *t)
{
	char spec[2 * 4096], e[2 * ERR_LEN];
	double now = now_wall();

	label_escape(s->spec, spec, sizeof(spec));
	hc_text_printf(t, "# HELP seedgate_seed_source_info Where the seed directory comes from.\n"
			  "# TYPE seedgate_seed_source_info gauge\n"
			  "seedgate_seed_source_info{kind=\"%s\",spec=\"%s\"} 1\n",
		       s->is_etcd ? "etcd" : "file", spec);
	hc_text_printf(t, "# HELP seedgate_seed_revision etcd revision of the directory in use (a file: good loads, 1 = the first).\n"
			  "# TYPE seedgate_seed_revision gauge\n"
			  "seedgate_seed_revision %lld\n", (long long)s->revision);
	hc_text_printf(t, "# HELP seedgate_seed_last_sync_seconds Seconds since the directory in use was last known current (sync or load).\n"
			  "# TYPE seedgate_seed_last_sync_seconds gauge\n"
			  "seedgate_seed_last_sync_seconds %.3f\n", s->last_sync > 0 ? now - s->last_sync : -1.0);
	hc_text_printf(t, "# HELP seedgate_seed_sync_errors_total Failed syncs and loads (etcd unreachable, error answers, invalid directories, unreadable file).\n"
			  "# TYPE seedgate_seed_sync_errors_total counter\n"
			  "seedgate_seed_sync_errors_total %llu\n", (unsigned long long)s->sync_errors);
	if (s->is_etcd)
		hc_text_printf(t, "# HELP seedgate_seed_etcd_connected 1 while the etcd watch is established.\n"
				  "# TYPE seedgate_seed_etcd_connected gauge\n"
				  "seedgate_seed_etcd_connected %d\n"
				  "# HELP seedgate_seed_from_local_copy 1 while the directory in use is the local copy (etcd unreachable at start).\n"
				  "# TYPE seedgate_seed_from_local_copy gauge\n"
				  "seedgate_seed_from_local_copy %d\n", s->connected ? 1 : 0, s->from_cache ? 1 : 0);
	if (s->last_error[0]) {
		label_escape(s->last_error, e, sizeof(e));
		hc_text_printf(t, "# HELP seedgate_seed_last_error_info The last sync or load error.\n"
				  "# TYPE seedgate_seed_last_error_info gauge\n"
				  "seedgate_seed_last_error_info{error=\"%s\"} 1\n"
				  "# HELP seedgate_seed_last_error_timestamp_seconds When the last sync or load error happened (unix time).\n"
				  "# TYPE seedgate_seed_last_error_timestamp_seconds gauge\n"
				  "seedgate_seed_last_error_timestamp_seconds %.0f\n", e, s->last_error_time);
	}
}

/* See sd_source.h. */
const char *sd_source_describe(struct sd_source *s)
{
	return s->describe;
}

/* See sd_source.h. */
void sd_source_free(struct sd_source **sp)
{
	struct sd_source *s = *sp;

	*sp = NULL;
	if (!s)
		return;
	sd_sync_free(&s->sync);
	sd_filewatch_stop(&s->watch);
	ev_timer_stop(s->loop, &s->retry);
	ev_timer_stop(s->loop, &s->initial_timer);
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	ev_ref(s->loop);
	ev_async_stop(s->loop, &s->wake);
	job_free(s->job);
	job_free(s->done_job);
	job_free(s->pending_build);
	router_dir_release(&s->initial_dir);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->cache_text);
	free(s->last_text);
	free(s->spec);
	free(s->daemon);
	free(s->cache_path);
	s->magic = 0;
	free(s);
}
