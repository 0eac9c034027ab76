#!/usr/bin/env bash
# haproxy-conf/run-haproxy.sh — start HAProxy the way every seedgate run
# does: master-worker (-W), in the foreground (-db), haproxy.cfg then the
# generated backends. Checks the configuration first (-c) so that a mistake
# is reported, with HAProxy's own ALERT lines, before anything listens.
#
#   haproxy-conf/run-haproxy.sh BACKENDS_FILE [extra haproxy args...]
#
# The environment carries SG_* (see haproxy.cfg); SG_CONF_DIR defaults to
# this directory; HAPROXY=/path/to/haproxy picks the binary (default: the
# first haproxy on PATH). exec's haproxy: the script's PID is the master's.
# Reload: kill -USR2 <that pid>. Exit 1 at once when the check fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] && [ "$1" != -h ] && [ "$1" != --help ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
backends=$1; shift
export SG_CONF_DIR=${SG_CONF_DIR:-$here}
haproxy=${HAPROXY:-haproxy}
command -v "$haproxy" >/dev/null || { echo "run-haproxy.sh: no HAProxy binary '$haproxy' (install haproxy, or set HAPROXY=/path)" >&2; exit 1; }
[ -r "$backends" ] || { echo "run-haproxy.sh: cannot read backends file $backends" >&2; exit 1; }
# The map cache's maps (SG_ROUTE_MAP=1): HAProxy loads them at start and
# refuses to start without them. Always empty on disk: the route agents
# fill them at run time (runtime API), and a new worker starts empty.
run_dir=${SG_RUN_DIR:-/run/seedgate}
if [ -d "$run_dir" ]; then
	for m in route-agent1.map route-agent2.map; do
		[ -e "$run_dir/$m" ] || : > "$run_dir/$m"
	done
fi
# No -q: a broken file must show HAProxy's ALERT lines (file:line: why),
# not just exit 1. HAProxy prints them on stderr; the caller's log gets them.
if ! "$haproxy" -c -f "$here/haproxy.cfg" -f "$backends" "$@" >&2; then
	echo "run-haproxy.sh: configuration check failed ($haproxy -c -f $here/haproxy.cfg -f $backends): see the ALERT lines above" >&2
	exit 1
fi
exec "$haproxy" -W -db -f "$here/haproxy.cfg" -f "$backends" "$@"
