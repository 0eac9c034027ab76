/*
 * test_sd_source.c — the seed directory source both daemons use, file side
 * (etcd is covered by tests/integration/test_etcd_*.py against a real
 * cluster): requests during a load become exactly one more load, one edit
 * (in place or rename-over) is one reload, a broken file is reported as
 * NULL with file:line, other files in the directory are ignored, freeing
 * with a load in flight leaks nothing (run under ASan in build/asan), a
 * transient failure (EMFILE) is retried until it loads, and a deleted file
 * is reported once while the last good directory stays.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sd_source.h"

#define GOOD "replicas 2\ndc a\nhub h1 127.0.0.1:5001 dc=a\nnode n1 127.0.0.1:6001 dc=a\n"

struct record {
	unsigned calls, ok;
	char reason[8][64];
	char err[512];
};

struct fixture {
	char dir[64], seed[128];
	struct ev_loop *loop;
	struct record rec;
};

/* done callback: remembers what came back and drops the snapshot. */
static int on_done(void *udata, struct router_dir *dir, const char *err, const char *reason)
{
	struct record *r = udata;

	if (r->calls < 8)
		snprintf(r->reason[r->calls], sizeof(r->reason[0]), "%s", reason);
	r->calls++;
	if (dir) {
		r->ok++;
		assert_null(err);
		router_dir_release(&dir);
	} else {
		snprintf(r->err, sizeof(r->err), "%s", err);
	}
	return dir ? 0 : -1;
}

/* A file source on path, the way the daemons make one. */
static struct sd_source *new_source(struct fixture *f, const char *path)
{
	char err[256];
	struct sd_source_config cfg = {
		.spec = path, .daemon = "test", .debounce = 0.05, .done = on_done, .udata = &f->rec,
	};
	struct sd_source *s = sd_source_new(f->loop, &cfg, err, sizeof(err));

	assert_non_null(s);
	return s;
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

/* Runs the loop for `seconds`, or until `calls` results came back. */
static void run_until(struct fixture *f, unsigned calls, double seconds)
{
	ev_timer tick;
	ev_tstamp end;

	ev_timer_init(&tick, tick_cb, 0.01, 0.01);
	ev_timer_start(f->loop, &tick);
	ev_now_update(f->loop);
	end = ev_now(f->loop) + seconds;
	while (f->rec.calls < calls && ev_now(f->loop) < end)
		ev_run(f->loop, EVRUN_ONCE);
	ev_timer_stop(f->loop, &tick);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

/* Writes a temporary file next to path and renames it over path. */
static void write_atomic(const char *path, const char *text)
{
	char tmp[160];

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	write_file(tmp, text);
	assert_int_equal(rename(tmp, path), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_sd_source.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->seed, sizeof(f->seed), "%s/seed.conf", f->dir);
	write_file(f->seed, GOOD);
	f->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(f->loop);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[160];

	snprintf(path, sizeof(path), "%s/other.conf", f->dir);
	unlink(path);
	unlink(f->seed);
	rmdir(f->dir);
	ev_loop_destroy(f->loop);
	free(f);
	return 0;
}

static void test_requests_during_a_load_merge(void **state)
{
	struct fixture *f = *state;
	struct sd_source *sw = new_source(f, f->seed);

	/* the loop has not run: the 2nd and 3rd arrive while the 1st loads */
	sd_source_request(sw, "SIGHUP");
	sd_source_request(sw, "SIGHUP");
	sd_source_request(sw, "SIGHUP");
	run_until(f, 2, 5.0);
	assert_int_equal(f->rec.calls, 2);
	assert_string_equal(f->rec.reason[0], "SIGHUP");
	assert_string_equal(f->rec.reason[1], SD_REASON_AGAIN);
	assert_int_equal(f->rec.ok, 2);
	run_until(f, 3, 0.3);
	assert_int_equal(f->rec.calls, 2);
	sd_source_free(&sw);
	assert_null(sw);
}

static void test_one_edit_one_reload(void **state)
{
	struct fixture *f = *state;
	char err[256], other[160];
	struct sd_source *sw = new_source(f, f->seed);

	assert_int_equal(sd_source_start(sw, err, sizeof(err)), 0);

	write_atomic(f->seed, GOOD "node n2 127.0.0.1:6002 dc=a\n");
	run_until(f, 1, 5.0);
	run_until(f, 2, 0.3);                 /* nothing more for this edit */
	assert_int_equal(f->rec.calls, 1);
	assert_string_equal(f->rec.reason[0], SD_REASON_FILE_CHANGED);
	assert_int_equal(f->rec.ok, 1);

	write_file(f->seed, "replicas 2\ndc a\nbogus line\n");   /* in place */
	run_until(f, 2, 5.0);
	run_until(f, 3, 0.3);
	assert_int_equal(f->rec.calls, 2);
	assert_int_equal(f->rec.ok, 1);
	assert_non_null(strstr(f->rec.err, "seed.conf:3:"));

	snprintf(other, sizeof(other), "%s/other.conf", f->dir);
	write_file(other, "not the seed\n");
	run_until(f, 3, 0.3);
	assert_int_equal(f->rec.calls, 2);
	sd_source_free(&sw);
}

static void test_free_with_a_load_in_flight(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct sd_source *sw = new_source(f, f->seed);

	assert_int_equal(sd_source_start(sw, err, sizeof(err)), 0);
	sd_source_request(sw, "SIGHUP");
	sd_source_free(&sw);               /* the result is dropped, not leaked */
	assert_int_equal(f->rec.calls, 0);
}

static void test_follow_a_missing_directory(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct sd_source *sw = new_source(f, "/nonexistent-dir/seed.conf");

	assert_int_equal(sd_source_start(sw, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "inotify on /nonexistent-dir: "));
	/* SIGHUP-style loads still work, and report the missing file */
	sd_source_request(sw, "SIGHUP");
	run_until(f, 1, 5.0);
	assert_int_equal(f->rec.calls, 1);
	assert_int_equal(f->rec.ok, 0);
	assert_non_null(strstr(f->rec.err, "/nonexistent-dir/seed.conf"));
	sd_source_free(&sw);
}

/* The first load goes through sd_source_initial, synchronously. */
static void test_initial(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct sd_source *sw = new_source(f, f->seed);
	struct router_dir *dir = sd_source_initial(sw, err, sizeof(err));

	assert_non_null(dir);
	assert_int_equal(router_dir_target_count(dir), 2);
	router_dir_release(&dir);
	assert_int_equal(sd_source_start(sw, err, sizeof(err)), 0);
	assert_string_equal(sd_source_describe(sw), "generation 1");
	assert_int_equal(f->rec.calls, 0);
	sd_source_free(&sw);
}

/* Out of descriptors (EMFILE) is our problem, not the file's: the load is
 * retried with a back-off and succeeds once descriptors are back. */
static void test_transient_failure_is_retried(void **state)
{
	struct fixture *f = *state;
	struct sd_source *sw = new_source(f, f->seed);
	struct rlimit saved, low;
	int fd;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	/* the lowest limit that leaves no descriptor free */
	fd = dup(0);
	assert_true(fd >= 0);
	low = saved;
	low.rlim_cur = (rlim_t)fd;
	close(fd);
	fd = dup(0);                            /* takes the last free one */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	sd_source_request(sw, "SIGHUP");
	run_until(f, 1, 5.0);
	assert_int_equal(f->rec.calls, 1);
	assert_int_equal(f->rec.ok, 0);
	assert_non_null(strstr(f->rec.err, "transient: retrying in"));
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	close(fd);
	run_until(f, 2, 5.0);
	assert_int_equal(f->rec.calls, 2);
	assert_int_equal(f->rec.ok, 1);
	assert_string_equal(f->rec.reason[1], SD_REASON_RETRY);
	sd_source_free(&sw);
}

/* A deleted file is said once; nothing replaces the directory in use. */
static void test_deleted_file_is_reported_once(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct sd_source *sw = new_source(f, f->seed);

	assert_int_equal(sd_source_start(sw, err, sizeof(err)), 0);
	assert_int_equal(unlink(f->seed), 0);
	run_until(f, 1, 5.0);
	assert_int_equal(f->rec.calls, 1);
	assert_int_equal(f->rec.ok, 0);
	assert_non_null(strstr(f->rec.err, "deleted: keeping the last good directory"));
	sd_source_request(sw, "SIGHUP");
	run_until(f, 2, 0.5);
	assert_int_equal(f->rec.calls, 1);      /* still deleted: not said again */
	write_atomic(f->seed, GOOD);
	run_until(f, 2, 5.0);
	assert_int_equal(f->rec.ok, 1);
	sd_source_free(&sw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_requests_during_a_load_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_edit_one_reload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_with_a_load_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follow_a_missing_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transient_failure_is_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deleted_file_is_reported_once, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
