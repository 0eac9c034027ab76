/* hc_procmetrics.h — the metrics every seedgate daemon serves about itself:
 * seedgate_build_info and the standard process_* families (the names the
 * Prometheus client libraries use, so dashboards and alerts written for
 * any exporter work on ours). */
#ifndef SEEDGATE_HC_PROCMETRICS_H
#define SEEDGATE_HC_PROCMETRICS_H

#include "hc_metrics.h"

/* The package version the binaries were built as (debian/changelog). */
extern const char hc_build_version[];

/* Appends seedgate_build_info{daemon,version} 1 and process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds, read from
 * /proc/self. A value that cannot be read is left out (never a made-up 0). */
void hc_metrics_process(struct hc_text *out, const char *daemon);

#endif
