/*
 * hc_haproxy.c — healthcheckd's client of HAProxy's runtime API (the stats
 * socket, --haproxy-socket PATH, one client per socket).
 *
 * One persistent connection in interactive mode ("prompt"): commands are
 * queued and written together once per loop iteration (pipelined). HAProxy
 * ends every answer with the prompt "\n> ", so the byte stream splits into
 * one answer per command, in order: each command sent is remembered (a FIFO
 * of records, `sent`) and its answer is judged against it. A command HAProxy
 * refuses ("No such server.", "Backend must use a dynamic load balancing ...")
 * is logged with the command, hence the backend/server, and counted by
 * command in seedgate_hc_haproxy_commands_failed_total.
 *
 * On (re)connect: "prompt", "show info" (the worker's pid), then "show
 * servers state", and nothing else until its answer is in ("syncing": other
 * commands are dropped, the sync replaces them). That answer is what this
 * HAProxy process really has; hc_servers.c turns it into the directory's
 * servers (adds those the configuration file lacks, removes those the
 * directory dropped, fixes weights and addresses), then the full health
 * state is applied (hcd_haproxy_full_state). While disconnected, commands
 * are dropped for the same reason. A light keep-alive command stops the CLI
 * idle timeout ("stats timeout") from closing the session.
 *
 * A master-worker reload (SIGUSR2) does not close our session: the old
 * worker keeps serving it (and stays alive for it). So once a second a
 * short, separate connection asks "show info" for the worker's Pid; when it
 * differs from the one our session talks to, the session is closed and
 * reopened to the new worker, which gets the sync and the full state.
 *
 * Nothing here waits forever on the peer: a probe without an answer after
 * HAPROXY_PROBE_TIMEOUT_S, or a session whose answers stop for
 * HAPROXY_ANSWER_TIMEOUT_US, is closed and the session reconnects (the path
 * may now belong to a process that accepts and never answers).
 *
 * Removing a server takes several steps: "set server B/S state maint", then
 * "del server B/S", which HAProxy refuses while the server has connections
 * (active, idle or queued); it is retried every second, and after
 * HAPROXY_DEL_GRACE_US "shutdown sessions server B/S" ends what is left.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hc_daemon.h"
#include "hc_escape.h"
#include "hc_metrics.h"

#define HAPROXY_MAGIC             0x48434850u   /* "HCHP" */
#define HAPROXY_BACKOFF_MIN_MS    100
#define HAPROXY_BACKOFF_MAX_MS    2000
#define HAPROXY_KEEPALIVE_S       1.0
#define HAPROXY_QUEUE_MAX         (16u << 20)
#define HAPROXY_ANSWER_MAX        (64u << 20)    /* one answer (show servers state of a huge directory) */
#define HAPROXY_PROBE_TIMEOUT_S   2.0
#define HAPROXY_ANSWER_TIMEOUT_US (5 * 1000000LL)
#define HAPROXY_DEL_RETRY_US      (1 * 1000000LL)
#define HAPROXY_DEL_GRACE_US      (10 * 1000000LL)
/* "backend/server": the longest backend is pool_<pool>_<dc> (two names) */
#define HAPROXY_KEY_MAX           (3 * ROUTER_NAME_MAX + 16)

/* What a command is, for judging its answer and for the failure metric. */
enum cmd_kind {
	CMD_OTHER, CMD_PROMPT, CMD_SHOW_INFO, CMD_SERVERS_STATE, CMD_KEEPALIVE, CMD_SET_STATE,
	CMD_SET_ADDR, CMD_SET_WEIGHT, CMD_ADD, CMD_ENABLE, CMD_DEL, CMD_SHUTDOWN, CMD_DYNCOOKIE,
	CMD_COUNT
};

/* The command's first words (its label); "set server B/S FIELD" is told
 * apart by FIELD (cmd_classify). */
static const char *const cmd_label[CMD_COUNT] = {
	[CMD_OTHER] = "other", [CMD_PROMPT] = "prompt", [CMD_SHOW_INFO] = "show info",
	[CMD_SERVERS_STATE] = "show servers state", [CMD_KEEPALIVE] = "show cli level",
	[CMD_SET_STATE] = "set server state", [CMD_SET_ADDR] = "set server addr",
	[CMD_SET_WEIGHT] = "set server weight", [CMD_ADD] = "add server", [CMD_ENABLE] = "enable server",
	[CMD_DEL] = "del server", [CMD_SHUTDOWN] = "shutdown sessions server",
	[CMD_DYNCOOKIE] = "enable dynamic-cookie backend",
};

/* A server being removed: maint sent, "del server" until HAProxy agrees. */
struct removal {
	char key[HAPROXY_KEY_MAX];         /* "backend/server" */
	int64_t since_us, next_us;
	bool in_flight;                    /* a del is waiting for its answer */
	bool shut;                         /* shutdown sessions sent */
	bool waiting_logged;
};

struct hcd_haproxy {
	unsigned magic;
	struct hcd *d;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;
	ev_io rio, wio;
	ev_prepare flush;          /* writes the queued commands once per iteration */
	ev_timer timer;            /* reconnect back-off, or keep-alive (1 s) */
	unsigned backoff_ms;
	struct hcd_buf out;        /* commands not yet written */
	struct hcd_buf sent;       /* records of commands not yet answered (see record_push) */
	struct hcd_buf in;         /* answers read, not yet complete */
	bool connected;
	bool syncing;              /* waiting for "show servers state" after connecting */
	bool reported_down;
	int64_t waited_us;         /* last answer byte read, or first command after none due */
	uint64_t commands, errors, connects, probe_timeouts, answer_timeouts;
	uint64_t failed[CMD_COUNT];
	/* "Proxy is disabled." answers: a worker stopping after a reload refuses
	 * everything, which is no failure; a "show info" tells (Stopping: 1) */
	unsigned disabled[CMD_COUNT];
	bool info_asked;
	struct removal *rm;
	unsigned nrm, caprm;
	/* reload detection: a fresh connection asks for the worker's pid */
	ev_timer probe_timer;
	ev_io probe_io;
	int probe_fd;
	int64_t probe_started_us;
	struct hc_line_buf probe_lines;
	long probe_pid;            /* Pid in the probe's answer, 0 if none yet */
	long session_pid;          /* worker our session is on (its own "show info") */
};

static void haproxy_connect(struct hcd_haproxy *h);
static void haproxy_queue(struct hcd_haproxy *h, unsigned flags, const char *fmt, va_list ap);

static struct hcd_haproxy *haproxy_from(void *data)
{
	struct hcd_haproxy *h = data;

	if (!h || h->magic != HAPROXY_MAGIC)
		abort();
	return h;
}

/* ---------------------------------------------------------------- commands */

static enum cmd_kind cmd_classify(const char *line)
{
	if (strncmp(line, "set server ", 11) == 0) {
		const char *field = strchr(line + 11, ' ');

		if (field && strncmp(field, " state ", 7) == 0)
			return CMD_SET_STATE;
		if (field && strncmp(field, " addr ", 6) == 0)
			return CMD_SET_ADDR;
		if (field && strncmp(field, " weight ", 8) == 0)
			return CMD_SET_WEIGHT;
		return CMD_OTHER;
	}
	for (unsigned k = CMD_PROMPT; k < CMD_COUNT; k++) {
		size_t n = strlen(cmd_label[k]);

		if (k != CMD_SET_STATE && k != CMD_SET_ADDR && k != CMD_SET_WEIGHT &&
		    strncmp(line, cmd_label[k], n) == 0 && strchr(" \n", line[n]))
			return (enum cmd_kind)k;
	}
	return CMD_OTHER;
}

/* The "backend/server" word of a command line (its first word with a '/'),
 * copied into key; "" if none. */
static void cmd_key(const char *line, char *key, size_t room)
{
	const char *p = line;

	key[0] = '\0';
	while (*p) {
		size_t n = strcspn(p, " ");

		if (memchr(p, '/', n)) {
			snprintf(key, room, "%.*s", (int)n, p);
			return;
		}
		p += n;
		p += strspn(p, " ");
	}
}

/* A record of the sent FIFO: kind, flags, the command line with its '\n'.
 * 0, or -1 when out of memory. */
static int record_push(struct hcd_haproxy *h, enum cmd_kind kind, unsigned flags, const char *line, size_t len)
{
	char head[2] = { (char)('A' + kind), (char)('0' + (flags & 0x3f)) };

	if (hcd_buf_pending(&h->sent) == 0)
		h->waited_us = hcd_mono_us();
	/* on failure the caller drops the session, and with it this queue */
	if (hcd_buf_append(&h->sent, head, 2) == -1 || hcd_buf_append(&h->sent, line, len) == -1)
		return -1;
	return 0;
}

/* Takes the oldest record: its kind and flags, the line into buf. false if none. */
static bool record_pop(struct hcd_haproxy *h, enum cmd_kind *kind, unsigned *flags, char *buf, size_t room)
{
	const char *p = h->sent.p + h->sent.off, *nl;
	size_t left = hcd_buf_pending(&h->sent);

	if (left < 3 || !(nl = memchr(p, '\n', left)))
		return false;
	*kind = (enum cmd_kind)(p[0] - 'A');
	if (*kind >= CMD_COUNT)
		*kind = CMD_OTHER;
	*flags = (unsigned)(p[1] - '0');
	snprintf(buf, room, "%.*s", (int)(nl - p - 2), p + 2);
	h->sent.off += (size_t)(nl - p) + 1;
	if (h->sent.off == h->sent.len)
		hcd_buf_reset(&h->sent);
	return true;
}

/* ---------------------------------------------------------------- removals */

static struct removal *removal_find(struct hcd_haproxy *h, const char *key)
{
	for (unsigned i = 0; i < h->nrm; i++)
		if (strcmp(h->rm[i].key, key) == 0)
			return &h->rm[i];
	return NULL;
}

static void removal_drop(struct hcd_haproxy *h, struct removal *r)
{
	*r = h->rm[--h->nrm];
}

/* Sends the next "del server" of every removal that is due; after the grace
 * period, "shutdown sessions server" first (once). */
static void removals_tick(struct hcd_haproxy *h)
{
	int64_t now = hcd_mono_us();

	for (unsigned i = 0; i < h->nrm; i++) {
		struct removal *r = &h->rm[i];

		if (r->in_flight || r->next_us > now)
			continue;
		if (!r->shut && now - r->since_us >= HAPROXY_DEL_GRACE_US) {
			hcd_log("haproxy %s: %s still has connections after %lld s: shutting its sessions down",
			        h->path, r->key, (long long)(HAPROXY_DEL_GRACE_US / 1000000));
			hcd_haproxy_command(h, "shutdown sessions server %s", r->key);
			r->shut = true;
		}
		/* maint again: someone (an operator) may have enabled it meanwhile */
		hcd_haproxy_command(h, "set server %s state maint", r->key);
		hcd_haproxy_command(h, "del server %s", r->key);
		r->in_flight = true;
	}
}

void hcd_haproxy_remove_server(struct hcd_haproxy *h, const char *backend, const char *name)
{
	char key[HAPROXY_KEY_MAX];
	struct removal *r;

	if (!hcd_haproxy_ready(h))
		return;
	snprintf(key, sizeof(key), "%s/%s", backend, name);
	if (removal_find(h, key))
		return;
	if (h->nrm == h->caprm) {
		unsigned cap = h->caprm ? h->caprm * 2 : 16;
		struct removal *p = realloc(h->rm, cap * sizeof(*p));

		if (!p) {
			hcd_log("haproxy %s: out of memory removing %s", h->path, key);
			return;
		}
		h->rm = p;
		h->caprm = cap;
	}
	r = &h->rm[h->nrm++];
	*r = (struct removal){ .since_us = hcd_mono_us() };
	snprintf(r->key, sizeof(r->key), "%s", key);
	removals_tick(h);
}

bool hcd_haproxy_forget_removal(struct hcd_haproxy *h, const char *backend, const char *name)
{
	char key[HAPROXY_KEY_MAX];
	struct removal *r;

	snprintf(key, sizeof(key), "%s/%s", backend, name);
	r = removal_find(h, key);
	if (!r)
		return false;
	removal_drop(h, r);
	return true;
}

/* The answer to a "del server": done, or try again later. */
static bool removal_answer(struct hcd_haproxy *h, const char *key, const char *ans, size_t len)
{
	struct removal *r = removal_find(h, key);

	if (len >= 14 && memcmp(ans, "Server deleted", 14) == 0) {
		if (r) {
			hcd_log("haproxy %s: %s removed (after %lld ms)", h->path, key,
			        (long long)((hcd_mono_us() - r->since_us) / 1000));
			removal_drop(h, r);
		}
		return true;
	}
	if (!r)
		return !memmem(ans, len, "No such", 7);    /* not ours any more (added again) */
	if (memmem(ans, len, "No such", 7)) {          /* gone already: nothing to wait for */
		removal_drop(h, r);
		return false;
	}
	r->in_flight = false;
	r->next_us = hcd_mono_us() + HAPROXY_DEL_RETRY_US;
	if (memmem(ans, len, "connections", 11)) {
		if (!r->waiting_logged)
			hcd_log("haproxy %s: %s in maintenance, waiting for its connections to end", h->path, key);
		r->waiting_logged = true;
		return true;    /* expected while connections finish */
	}
	return false;
}

/* ---------------------------------------------------------------- connection */

/* Drops the connection and schedules a reconnect. */
static void haproxy_lost(struct hcd_haproxy *h, const char *why)
{
	struct ev_loop *loop = h->d->loop;

	if (h->fd != -1) {
		ev_io_stop(loop, &h->rio);
		ev_io_stop(loop, &h->wio);
		ev_prepare_stop(loop, &h->flush);
		close(h->fd);
		h->fd = -1;
	}
	if (h->connected || !h->reported_down)
		hcd_log("haproxy %s: %s; reconnecting", h->path, why);
	h->connected = false;
	h->syncing = false;
	h->reported_down = true;
	h->session_pid = 0;
	h->info_asked = false;
	memset(h->disabled, 0, sizeof(h->disabled));
	h->nrm = 0;             /* the sync after reconnecting finds what is left */
	hcd_buf_reset(&h->out);
	hcd_buf_reset(&h->sent);
	hcd_buf_reset(&h->in);
	ev_timer_stop(loop, &h->timer);
	ev_timer_set(&h->timer, h->backoff_ms / 1000.0, 0.0);
	ev_timer_start(loop, &h->timer);
	h->backoff_ms *= 2;
	if (h->backoff_ms > HAPROXY_BACKOFF_MAX_MS)
		h->backoff_ms = HAPROXY_BACKOFF_MAX_MS;
}

/* Writes the queue; keeps watching for writability if it is not empty. */
static void haproxy_flush(struct hcd_haproxy *h)
{
	if (hcd_buf_flush(&h->out, h->fd) == -1) {
		haproxy_lost(h, strerror(errno));
		return;
	}
	if (hcd_buf_pending(&h->out) > 0)
		ev_io_start(h->d->loop, &h->wio);
	else
		ev_io_stop(h->d->loop, &h->wio);
}

static void haproxy_on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct hcd_haproxy *h = haproxy_from(w->data);

	ev_prepare_stop(loop, w);
	if (h->connected)
		haproxy_flush(h);
}

static void haproxy_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	haproxy_flush(haproxy_from(w->data));
}

/* "Pid: N" in a show info answer; 0 if absent. */
static long info_pid(const char *ans, size_t len)
{
	const char *p = memmem(ans, len, "\nPid: ", 6);

	if (p)
		return strtol(p + 6, NULL, 10);
	return len > 5 && memcmp(ans, "Pid: ", 5) == 0 ? strtol(ans + 5, NULL, 10) : 0;
}

/* Whether ans is a success answer to a command of this kind. */
static bool answer_ok(enum cmd_kind kind, unsigned flags, const char *ans, size_t len)
{
	switch (kind) {
	case CMD_PROMPT:
	case CMD_KEEPALIVE:
		return true;
	case CMD_SHOW_INFO:
		return info_pid(ans, len) > 0;
	case CMD_SERVERS_STATE:
		return len >= 2 && ans[0] == '1' && ans[1] == '\n';
	case CMD_SET_ADDR:
		/* "IP changed from ...", "no need to change the addr", "port changed ..." */
		return len == 0 || memmem(ans, len, "changed", 7) || memmem(ans, len, "no need", 7);
	case CMD_ADD:
		return (len >= 21 && memcmp(ans, "New server registered", 21) == 0) ||
		       ((flags & HCD_CMD_EXISTS_OK) && memmem(ans, len, "lready exists", 13));
	default:
		return len == 0;
	}
}

/* Counts and logs one failed command. */
static void command_failed(struct hcd_haproxy *h, enum cmd_kind kind, const char *line, const char *ans, size_t len)
{
	h->errors++;
	h->failed[kind]++;
	if (h->failed[kind] <= 20 || h->failed[kind] % 1000 == 0)
		hcd_log("haproxy %s: %s: %.*s (%llu failed %s so far)", h->path, line,
		        (int)(len > 200 ? 200 : len), len ? ans : "(no answer)",
		        (unsigned long long)h->failed[kind], cmd_label[kind]);
}

/* The session's own "show info": a worker that is stopping (HAProxy was
 * reloaded, the new worker has the socket) refused the commands it answered
 * "Proxy is disabled."; the session moves to the new worker at once. */
static void session_info(struct hcd_haproxy *h, const char *ans, size_t len)
{
	h->info_asked = false;
	if (memmem(ans, len, "\nStopping: 1", 12)) {
		memset(h->disabled, 0, sizeof(h->disabled));
		h->backoff_ms = HAPROXY_BACKOFF_MIN_MS;
		haproxy_lost(h, "worker stopping (HAProxy reloaded)");
		return;
	}
	for (unsigned k = 0; k < CMD_COUNT; k++) {
		for (; h->disabled[k] > 0; h->disabled[k]--)
			command_failed(h, (enum cmd_kind)k, cmd_label[k], "Proxy is disabled.", 18);
	}
}

/* One complete answer (the prompt stripped), judged against its command. */
static void haproxy_on_answer(struct hcd_haproxy *h, const char *ans, size_t len)
{
	char line[512], key[HAPROXY_KEY_MAX];
	enum cmd_kind kind;
	unsigned flags;
	bool ok;

	if (!record_pop(h, &kind, &flags, line, sizeof(line))) {
		kind = CMD_OTHER;
		flags = 0;
		snprintf(line, sizeof(line), "(no command)");
	}
	while (len > 0 && (ans[len - 1] == '\n' || ans[len - 1] == '\r'))
		len--;
	ok = answer_ok(kind, flags, ans, len);
	if (kind == CMD_SHOW_INFO && ok) {
		h->session_pid = info_pid(ans, len);
		session_info(h, ans, len);
		return;
	} else if (!ok && memmem(ans, len, "Proxy is disabled", 17)) {
		h->disabled[kind]++;
		if (!h->info_asked)
			hcd_haproxy_command(h, "show info");
		h->info_asked = true;
		return;
	} else if (kind == CMD_DEL) {
		cmd_key(line, key, sizeof(key));
		ok = removal_answer(h, key, ans, len);
	} else if (kind == CMD_SERVERS_STATE && h->syncing) {
		uint64_t before = h->commands;

		h->syncing = false;
		if (ok)
			hcd_servers_sync(h->d, h, ans, len);
		hcd_haproxy_full_state(h->d, h);
		hcd_log("haproxy %s: servers in sync (worker %ld), applying the full state: %llu commands", h->path,
		        h->session_pid, (unsigned long long)(h->commands - before));
	}
	if (!ok)
		command_failed(h, kind, line, ans, len);
}

static void haproxy_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hcd_haproxy *h = haproxy_from(w->data);
	char buf[16384];
	ssize_t n = read(h->fd, buf, sizeof(buf));
	const char *p;

	if (n == 0) {
		haproxy_lost(h, "connection closed (HAProxy reloaded or stopped)");
		return;
	}
	if (n == -1) {
		if (errno != EAGAIN && errno != EINTR)
			haproxy_lost(h, strerror(errno));
		return;
	}
	h->waited_us = hcd_mono_us();
	if (hcd_buf_append(&h->in, buf, (size_t)n) == -1 || hcd_buf_pending(&h->in) > HAPROXY_ANSWER_MAX) {
		haproxy_lost(h, "answer too big, or out of memory");
		return;
	}
	/* every answer ends with the prompt "\n> " */
	while (h->connected && (p = memmem(h->in.p + h->in.off, hcd_buf_pending(&h->in), "\n> ", 3))) {
		const char *start = h->in.p + h->in.off;

		h->in.off += (size_t)(p - start) + 3;
		haproxy_on_answer(h, start, (size_t)(p - start));
	}
	if (h->connected && h->in.off == h->in.len)
		hcd_buf_reset(&h->in);
}

/* Reconnect time, or the keep-alive tick while connected: keep-alive
 * command, answers overdue, removals due. */
static void haproxy_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hcd_haproxy *h = haproxy_from(w->data);

	if (!h->connected) {
		haproxy_connect(h);
		return;
	}
	if (hcd_buf_pending(&h->sent) > 0 && hcd_mono_us() - h->waited_us > HAPROXY_ANSWER_TIMEOUT_US) {
		h->answer_timeouts++;
		haproxy_lost(h, "no answer for 5 s");
		return;
	}
	hcd_haproxy_command(h, "show cli level");
	if (!h->syncing)
		removals_tick(h);
	ev_timer_set(&h->timer, HAPROXY_KEEPALIVE_S, 0.0);
	ev_timer_start(loop, &h->timer);
}

/* ---------------------------------------------------------------- probe */

/* Ends the probe connection. */
static void probe_close(struct hcd_haproxy *h)
{
	if (h->probe_fd != -1) {
		ev_io_stop(h->d->loop, &h->probe_io);
		close(h->probe_fd);
		h->probe_fd = -1;
	}
}

/* One line of "show info": we only want "Pid: N". */
static void probe_on_line(void *udata, const char *line, size_t len)
{
	struct hcd_haproxy *h = udata;

	if (len > 5 && memcmp(line, "Pid: ", 5) == 0)
		h->probe_pid = strtol(line + 5, NULL, 10);
}

/* The probe's answer: when complete, compare the worker's pid. */
static void probe_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hcd_haproxy *h = haproxy_from(w->data);
	char buf[4096];
	ssize_t n = read(h->probe_fd, buf, sizeof(buf));
	char why[96];

	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		hc_line_buf_feed(&h->probe_lines, buf, (size_t)n, probe_on_line, h);
		return;
	}
	probe_close(h);
	if (!h->connected || h->probe_pid <= 0)
		return;
	if (h->session_pid != 0 && h->probe_pid != h->session_pid) {
		snprintf(why, sizeof(why), "HAProxy reloaded (worker %ld -> %ld)", h->session_pid, h->probe_pid);
		haproxy_lost(h, why);
		/* reconnect at once: the new worker is there */
		ev_timer_stop(loop, &h->timer);
		h->backoff_ms = HAPROXY_BACKOFF_MIN_MS;
		haproxy_connect(h);
	}
}

/* Every second: a short non-interactive connection asks "show info". One
 * still unanswered after HAPROXY_PROBE_TIMEOUT_S is given up, and so is the
 * session: whatever holds the path does not answer (HAProxy stuck, or some
 * other process), and a reconnect is the only way to reach a HAProxy that
 * takes the path over later. */
static void probe_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hcd_haproxy *h = haproxy_from(w->data);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static const char cmd[] = "show info\n";

	if (h->probe_fd != -1 && hcd_mono_us() - h->probe_started_us >= (int64_t)(HAPROXY_PROBE_TIMEOUT_S * 1e6)) {
		probe_close(h);
		h->probe_timeouts++;
		if (h->connected)
			haproxy_lost(h, "\"show info\" probe unanswered for 2 s");
	}
	if (!h->connected || h->probe_fd != -1)
		return;
	strcpy(sa.sun_path, h->path);
	h->probe_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->probe_fd == -1)
		return;
	if (connect(h->probe_fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    write(h->probe_fd, cmd, sizeof(cmd) - 1) != (ssize_t)(sizeof(cmd) - 1)) {
		probe_close(h);
		return;
	}
	h->probe_pid = 0;
	h->probe_started_us = hcd_mono_us();
	hc_line_buf_init(&h->probe_lines);
	ev_io_set(&h->probe_io, h->probe_fd, EV_READ);
	ev_io_start(loop, &h->probe_io);
}

/* Queues a command without the sync/connection checks (the connect sequence). */
static void haproxy_raw(struct hcd_haproxy *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void haproxy_raw(struct hcd_haproxy *h, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	haproxy_queue(h, 0, fmt, ap);
	va_end(ap);
}

/* One attempt; on success queues "prompt", "show info" and "show servers
 * state": the sync and the full state follow its answer. */
static void haproxy_connect(struct hcd_haproxy *h)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ev_loop *loop = h->d->loop;
	char why[200];

	strcpy(sa.sun_path, h->path);
	h->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd == -1) {
		snprintf(why, sizeof(why), "socket: %s", strerror(errno));
		haproxy_lost(h, why);
		return;
	}
	if (connect(h->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		haproxy_lost(h, why);
		return;
	}
	h->connected = true;
	h->syncing = true;
	h->reported_down = false;
	h->connects++;
	h->backoff_ms = HAPROXY_BACKOFF_MIN_MS;
	hcd_buf_reset(&h->out);
	hcd_buf_reset(&h->sent);
	hcd_buf_reset(&h->in);
	ev_io_set(&h->rio, h->fd, EV_READ);
	ev_io_set(&h->wio, h->fd, EV_WRITE);
	ev_io_start(loop, &h->rio);
	haproxy_raw(h, "prompt");
	haproxy_raw(h, "show info");
	haproxy_raw(h, "show servers state");
	hcd_log("haproxy %s: connected, reading its servers", h->path);
	haproxy_flush(h);
	if (h->connected) {
		ev_timer_stop(loop, &h->timer);
		ev_timer_set(&h->timer, HAPROXY_KEEPALIVE_S, 0.0);
		ev_timer_start(loop, &h->timer);
	}
}

/* ---------------------------------------------------------------- API */

/* Creates a client for the stats socket at path and connects. */
struct hcd_haproxy *hcd_haproxy_new(struct hcd *d, const char *path, char *err, size_t errlen)
{
	struct hcd_haproxy *h;

	if (strlen(path) >= sizeof(h->path)) {
		snprintf(err, errlen, "--haproxy-socket %s: path too long", path);
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "haproxy client: out of memory");
		return NULL;
	}
	h->magic = HAPROXY_MAGIC;
	h->d = d;
	strcpy(h->path, path);
	h->fd = -1;
	h->probe_fd = -1;
	ev_timer_init(&h->probe_timer, probe_on_timer, 1.0, 1.0);
	h->probe_timer.data = h;
	ev_io_init(&h->probe_io, probe_on_read, -1, EV_READ);
	h->probe_io.data = h;
	h->backoff_ms = HAPROXY_BACKOFF_MIN_MS;
	ev_io_init(&h->rio, haproxy_on_read, -1, EV_READ);
	h->rio.data = h;
	ev_io_init(&h->wio, haproxy_on_write, -1, EV_WRITE);
	h->wio.data = h;
	ev_prepare_init(&h->flush, haproxy_on_prepare);
	h->flush.data = h;
	ev_timer_init(&h->timer, haproxy_on_timer, 0.0, 0.0);
	h->timer.data = h;
	return h;
}

/* Starts the first connection attempt (called once targets exist). */
void hcd_haproxy_start(struct hcd_haproxy *h)
{
	ev_timer_start(h->d->loop, &h->probe_timer);
	haproxy_connect(h);
}

/* Closes and frees the client. */
void hcd_haproxy_free(struct hcd_haproxy **ph)
{
	struct hcd_haproxy *h = ph ? *ph : NULL;
	struct ev_loop *loop;

	if (!h)
		return;
	loop = h->d->loop;
	ev_timer_stop(loop, &h->timer);
	ev_timer_stop(loop, &h->probe_timer);
	probe_close(h);
	ev_prepare_stop(loop, &h->flush);
	if (h->fd != -1) {
		ev_io_stop(loop, &h->rio);
		ev_io_stop(loop, &h->wio);
		close(h->fd);
	}
	hcd_buf_free(&h->out);
	hcd_buf_free(&h->sent);
	hcd_buf_free(&h->in);
	free(h->rm);
	h->magic = 0;
	free(h);
	*ph = NULL;
}

/* Queues one command line and its record; written before the loop next waits. */
static void haproxy_queue(struct hcd_haproxy *h, unsigned flags, const char *fmt, va_list ap)
{
	char line[512];
	int n;

	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 1 || memchr(line, '\n', (size_t)n))
		return;
	line[n++] = '\n';
	if (hcd_buf_pending(&h->out) > HAPROXY_QUEUE_MAX) {
		haproxy_lost(h, "command queue full (HAProxy not reading)");
		return;
	}
	/* the record first: an answer must never come without one */
	if (record_push(h, cmd_classify(line), flags, line, (size_t)n) == -1 ||
	    hcd_buf_append(&h->out, line, (size_t)n) == -1) {
		haproxy_lost(h, "out of memory for the command queue");
		return;
	}
	h->commands++;
	ev_prepare_start(h->d->loop, &h->flush);
}

void hcd_haproxy_command_flags(struct hcd_haproxy *h, unsigned flags, const char *fmt, ...)
{
	va_list ap;

	if (!hcd_haproxy_ready(h))
		return;
	va_start(ap, fmt);
	haproxy_queue(h, flags, fmt, ap);
	va_end(ap);
}

/* Queues one command line; dropped while disconnected or syncing (the sync
 * and the full state replace it). */
void hcd_haproxy_command(struct hcd_haproxy *h, const char *fmt, ...)
{
	va_list ap;

	if (!hcd_haproxy_ready(h))
		return;
	va_start(ap, fmt);
	haproxy_queue(h, 0, fmt, ap);
	va_end(ap);
}

bool hcd_haproxy_ready(const struct hcd_haproxy *h) { return h->connected && !h->syncing; }
bool hcd_haproxy_connected(const struct hcd_haproxy *h) { return h->connected; }
uint64_t hcd_haproxy_commands(const struct hcd_haproxy *h) { return h->commands; }
uint64_t hcd_haproxy_errors(const struct hcd_haproxy *h) { return h->errors; }
uint64_t hcd_haproxy_connects(const struct hcd_haproxy *h) { return h->connects; }
const char *hcd_haproxy_path(const struct hcd_haproxy *h) { return h->path; }

/* See hc_daemon.h: the runtime API client's own metrics. */
void hcd_haproxy_stats(const struct hcd *d, struct hc_text *o)
{
	/* a socket path is any bytes: escaped as a label value must be */
	char sock[HCD_MAX_HAPROXY][HC_ESCAPE_ROOM(256)];

	for (unsigned i = 0; i < d->opts.n_haproxy; i++)
		hc_escape_label(sock[i], sizeof(sock[i]), d->haproxy[i]->path);
	hc_text_printf(o, "# HELP seedgate_hc_haproxy_commands_failed_total Runtime API commands HAProxy refused, "
	               "by command (the log names the backend/server).\n"
	               "# TYPE seedgate_hc_haproxy_commands_failed_total counter\n");
	for (unsigned i = 0; i < d->opts.n_haproxy; i++)
		for (unsigned k = CMD_PROMPT; k < CMD_COUNT; k++)
			hc_text_printf(o, "seedgate_hc_haproxy_commands_failed_total{socket=\"%s\",command=\"%s\"} %llu\n",
			               sock[i], cmd_label[k], (unsigned long long)d->haproxy[i]->failed[k]);
	hc_text_printf(o, "# HELP seedgate_hc_haproxy_removals_pending Servers in maintenance waiting for "
	               "their connections to end before \"del server\".\n"
	               "# TYPE seedgate_hc_haproxy_removals_pending gauge\n");
	for (unsigned i = 0; i < d->opts.n_haproxy; i++)
		hc_text_printf(o, "seedgate_hc_haproxy_removals_pending{socket=\"%s\"} %u\n", sock[i],
		               d->haproxy[i]->nrm);
	hc_text_printf(o, "# HELP seedgate_hc_haproxy_timeouts_total Sessions given up because HAProxy (or "
	               "whatever holds the path) stopped answering, by what waited.\n"
	               "# TYPE seedgate_hc_haproxy_timeouts_total counter\n");
	for (unsigned i = 0; i < d->opts.n_haproxy; i++)
		hc_text_printf(o, "seedgate_hc_haproxy_timeouts_total{socket=\"%s\",what=\"probe\"} %llu\n"
		               "seedgate_hc_haproxy_timeouts_total{socket=\"%s\",what=\"session\"} %llu\n",
		               sock[i], (unsigned long long)d->haproxy[i]->probe_timeouts,
		               sock[i], (unsigned long long)d->haproxy[i]->answer_timeouts);
}
