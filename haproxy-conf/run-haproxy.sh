#!/usr/bin/env bash
# haproxy-conf/run-haproxy.sh — start HAProxy the way every seedgate run
# does: master-worker (-W), in the foreground (-db), haproxy.cfg then the
# generated backends. Checks the configuration first (-c) so that a mistake
# is reported before anything listens.
#
#   haproxy-conf/run-haproxy.sh BACKENDS_FILE [extra haproxy args...]
#
# The environment carries SG_* (see haproxy.cfg); SG_CONF_DIR defaults to
# this directory. exec's haproxy: the script's PID is the master's.
# Reload: kill -USR2 <that pid>.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] && [ "$1" != -h ] && [ "$1" != --help ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
backends=$1; shift
export SG_CONF_DIR=${SG_CONF_DIR:-$here}
haproxy=${HAPROXY:-haproxy}
"$haproxy" -c -q -f "$here/haproxy.cfg" -f "$backends" "$@"
exec "$haproxy" -W -db -f "$here/haproxy.cfg" -f "$backends" "$@"
