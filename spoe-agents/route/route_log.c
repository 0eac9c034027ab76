/*
 * route_log.c — timestamped stderr lines or syslog, one write per line.
 *
 * log_line() is the one funnel every line of the daemon goes through (its
 * own and the SPOP runtime's), so it is where bytes from outside (a seed
 * file's line in a parse error, a peer's DISCONNECT message, a target name)
 * are made harmless: control bytes are written as \xNN, so a line can
 * neither forge another line nor drive the terminal that shows the log.
 */
#include "route_log.h"

#include "hc_escape.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool log_syslog;
static const char *log_ident = "route-agent";

/* Short level names for stderr lines; indexed by syslog priority. */
static const char *const log_level[8] = {
	"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

/* Chooses stderr or syslog for the rest of the process' life. */
void route_log_open(bool use_syslog, const char *ident)
{
	log_ident = ident;
	log_syslog = use_syslog;
	if (log_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

/* Closes syslog if it was opened. */
void route_log_close(void)
{
	if (log_syslog)
		closelog();
}

size_t route_log_escape(const char *in, char *out, size_t outlen)
{
	/* one convention for every daemon's logs (hc_escape.h): controls, DEL
	 * and bytes >= 0x80 as \xNN; a backslash stays, so a message quoting an
	 * already escaped one (a parser error) is not escaped twice */
	if (outlen == 0)
		return 0;
	hc_escape_log(out, outlen, in);
	return strlen(out);
}

/* Formats "<ISO time with ms> <ident>[<pid>]: <level>: <msg>\n" and writes it
 * with a single write(2), so lines from several threads never interleave.
 * msg is escaped first (route_log_escape). */
static void log_line(int priority, const char *raw)
{
	char line[1024], msg[900];
	struct timespec ts;
	struct tm tm;
	int n;

	route_log_escape(raw, msg, sizeof(msg));
	if (log_syslog) {
		syslog(priority, "%s", msg);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d]: %s: %s\n",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, log_ident, (int)getpid(), log_level[priority & 7], msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (write(STDERR_FILENO, line, (size_t)n) == -1) {
		/* nowhere left to report it */
	}
}

/* printf-style entry point used by the daemon code. */
void route_log(int priority, const char *fmt, ...)
{
	char msg[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_line(priority, msg);
}

/* Log callback for libraries (SPOP runtime): forwards msg as is. */
void route_log_cb(void *udata, int priority, const char *msg)
{
	(void)udata;
	log_line(priority, msg);
}
