/*
 * spop-echo-agent — the smallest agent on libspop, for tests and benches.
 *
 * Handles SPOE message `echo`: every argument comes back as a txn-scope
 * variable of the same name and value, plus txn var `agent` = "echo".
 * With `option var-prefix echo`, HAProxy sees them as txn.echo.<arg>.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <pthread.h>

#include "spop_runtime.h"

#define ECHO_MAX_LISTEN 8

static void usage(FILE *f)
{
	fprintf(f,
		"usage: spop-echo-agent --listen ADDR [--listen ADDR...] [--workers N]\n"
		"                       [--max-frame-size N] [--idle-timeout MS] [-q] [--help]\n"
		"\n"
		"SPOE agent answering message `echo`: each argument is set back as the txn\n"
		"variable of the same name, plus txn var `agent` = \"echo\".\n"
		"\n"
		"  --listen ADDR         host:port, [v6]:port, /path or unix:/path (repeatable)\n"
		"  --workers N           worker threads (default 1)\n"
		"  --max-frame-size N    our max-frame-size (default 16380)\n"
		"  --idle-timeout MS     close connections idle that long (default %u; must exceed\n"
		"                        HAProxy's idle timeout for the agent)\n"
		"  -q, --quiet           log only warnings and errors\n"
		"  -h, --help            this text\n"
		"SIGTERM/SIGINT: graceful stop, exit 0.\n", SPOP_DEFAULT_IDLE_TIMEOUT_MS);
}

static int quiet;

static void log_line(void *udata, int priority, const char *msg)
{
	struct timespec ts;

	if (quiet && priority > LOG_WARNING)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(stderr, "%lld.%03ld spop-echo-agent: %s\n", (long long)ts.tv_sec, ts.tv_nsec / 1000000, msg);
}

/* Echoes every argument as a txn variable; NULL values come back as NULL. */
static void on_echo(void *udata, unsigned worker, const struct spop_args *args, struct spop_ack *ack)
{
	for (unsigned i = 0; i < args->count; i++)
		spop_ack_set_var_n(ack, SPOP_SCOPE_TXN, args->arg[i].name, args->arg[i].name_len, &args->arg[i].value);
	spop_ack_set_str(ack, SPOP_SCOPE_TXN, "agent", "echo", 4);
}

/* Parses a decimal unsigned option value; exits with a message if bad. */
static unsigned parse_uint(const char *opt, const char *s, unsigned min, unsigned max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "spop-echo-agent: %s: expected an integer in [%u, %u], got '%s'\n", opt, min, max, s);
		exit(2);
	}
	return (unsigned)v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "workers", required_argument, NULL, 'w' },
		{ "max-frame-size", required_argument, NULL, 'm' },
		{ "idle-timeout", required_argument, NULL, 'i' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct spop_runtime_config cfg = { .workers = 1, .log = log_line, .agent_name = "spop-echo-agent" };
	const char *listen[ECHO_MAX_LISTEN];
	unsigned nlisten = 0;
	struct spop_runtime *rt;
	struct spop_stats st;
	char err[256] = "";
	sigset_t sigs;
	int opt, sig = 0;

	while ((opt = getopt_long(argc, argv, "l:w:m:i:qh", opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			if (nlisten == ECHO_MAX_LISTEN) {
				fprintf(stderr, "spop-echo-agent: at most %d --listen\n", ECHO_MAX_LISTEN);
				return 2;
			}
			listen[nlisten++] = optarg;
			break;
		case 'w': cfg.workers = parse_uint("--workers", optarg, 1, 256); break;
		case 'm': cfg.max_frame_size = parse_uint("--max-frame-size", optarg, 256, 1u << 20); break;
		case 'i': cfg.idle_timeout_ms = parse_uint("--idle-timeout", optarg, 1, 86400000); break;
		case 'q': quiet = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || nlisten == 0) {
		usage(stderr);
		return 2;
	}

	/* Signals are taken synchronously by this thread; the workers block them. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	rt = spop_runtime_new(&cfg, err, sizeof(err));
	if (!rt) {
		fprintf(stderr, "spop-echo-agent: %s\n", err);
		return 1;
	}
	if (spop_runtime_on(rt, "echo", on_echo, NULL) == -1)
		goto out_fail;
	for (unsigned i = 0; i < nlisten; i++)
		if (spop_runtime_listen(rt, listen[i], err, sizeof(err)) == -1)
			goto out_fail;
	if (spop_runtime_start(rt, err, sizeof(err)) == -1)
		goto out_fail;
	for (unsigned i = 0; i < nlisten; i++)
		log_line(NULL, LOG_INFO, listen[i]);
	fprintf(stderr, "spop-echo-agent: listening, %u worker(s)\n", spop_runtime_workers(rt));

	while (sigwait(&sigs, &sig) != 0)
		;
	fprintf(stderr, "spop-echo-agent: signal %d, stopping\n", sig);
	spop_runtime_stop(rt);
	spop_runtime_stats(rt, &st);
	fprintf(stderr, "spop-echo-agent: stopped: conns=%llu hellos=%llu healthchecks=%llu notifies=%llu acks=%llu\n",
		(unsigned long long)st.conns_total, (unsigned long long)st.hellos,
		(unsigned long long)st.healthchecks, (unsigned long long)st.notifies, (unsigned long long)st.acks);
	spop_runtime_free(&rt);
	return 0;

out_fail:
	fprintf(stderr, "spop-echo-agent: %s\n", err[0] ? err : "cannot register handler");
	spop_runtime_free(&rt);
	return 1;
}
