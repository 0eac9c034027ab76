/* hc_procmetrics.c — build_info and process metrics; see hc_procmetrics.h. */
#include "hc_procmetrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef SEEDGATE_VERSION
#define SEEDGATE_VERSION "unknown"
#endif

const char hc_build_version[] = SEEDGATE_VERSION;

/* Seconds since the epoch at boot, from /proc/stat's btime. */
static long long boot_time(void)
{
	char line[256];
	long long bt = -1;
	FILE *f = fopen("/proc/stat", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %lld", &bt) == 1)
			break;
	fclose(f);
	return bt;
}

/* utime, stime (ticks), starttime (ticks since boot), vsize (bytes) and rss
 * (pages) of /proc/self/stat. The command name (field 2) may hold spaces and
 * parentheses: the fields we want are counted from its last ')'. */
static int self_stat(unsigned long long *utime, unsigned long long *stime, unsigned long long *start,
                     unsigned long long *vsize, long long *rss)
{
	char buf[1024], *p;
	size_t n;
	FILE *f = fopen("/proc/self/stat", "re");

	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* after ')': state(3) ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24) */
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %lld",
	           utime, stime, start, vsize, rss) != 5)
		return -1;
	return 0;
}

static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;      /* the directory's own descriptor */
}

void hc_metrics_process(struct hc_text *o, const char *daemon)
{
	unsigned long long ut, st, start, vsize;
	long long rss, bt;
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE), fds;
	struct rlimit rl;

	hc_text_printf(o, "# HELP seedgate_build_info seedgate build: version and daemon, always 1.\n"
	               "# TYPE seedgate_build_info gauge\n"
	               "seedgate_build_info{daemon=\"%s\",version=\"%s\"} 1\n", daemon, hc_build_version);
	if (tick > 0 && page > 0 && self_stat(&ut, &st, &start, &vsize, &rss) == 0) {
		hc_text_printf(o, "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
		               "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
		               "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
		               "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n"
		               "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
		               "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n",
		               (double)(ut + st) / (double)tick, rss * (long long)page, vsize);
		bt = boot_time();
		if (bt >= 0)
			hc_text_printf(o, "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
			               "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n",
			               (double)bt + (double)start / (double)tick);
	}
	fds = open_fds();
	if (fds >= 0)
		hc_text_printf(o, "# HELP process_open_fds Number of open file descriptors.\n"
		               "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n", fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		hc_text_printf(o, "# HELP process_max_fds Maximum number of open file descriptors.\n"
		               "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
}
