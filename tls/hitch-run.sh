#!/usr/bin/env bash
# tls/hitch-run.sh — start hitch in the foreground with CONF (from
# tls/hitch-conf.sh), the ticket keys of RUN/ticket.keys installed.
#
#   tls/hitch-run.sh CONF RUN     (exec's hitch: its PID is this script's)
#
# * Raises the open-files soft limit to the hard limit: every connection
#   holds two descriptors, so a worker serves about half the limit.
# * hitch has no ticket-key setting: LD_PRELOAD=libsg-hitch.so with
#   SG_TICKET_KEYS=RUN/ticket.keys gives every TLS context those keys, at
#   start and at each SIGHUP reload, and makes hitch's workers share one
#   listener, so a reload resets no queued connection. The library is searched in
#   $SG_HITCH_SO, then $SEEDGATE_BUILD and build/ next to this directory
#   (a clone; make install puts PREFIX/lib/seedgate there instead); hitch
#   refuses to start without it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 2 ] && [ "$1" != -h ] && [ "$1" != --help ] || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; [ $# -eq 2 ] || [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; exit; }
conf=$1 run=$2
bin=$(command -v hitch || echo /usr/sbin/hitch)
[ -x "$bin" ] || { echo "hitch-run.sh: hitch not installed (Debian package hitch)" >&2; exit 1; }
# Where the library is looked for after $SG_HITCH_SO (make install
# rewrites this line to its lib/seedgate directory).
so_dirs="${SEEDGATE_BUILD:-} $here/../build"
so=
for c in "${SG_HITCH_SO:-}" $(for d in $so_dirs; do echo "$d/libsg-hitch.so"; done); do
	[ -n "$c" ] && [ -f "$c" ] && { so=$(cd "$(dirname "$c")" && pwd)/$(basename "$c"); break; }
done
[ -n "$so" ] || { echo "hitch-run.sh: libsg-hitch.so not found (make; or set SG_HITCH_SO)" >&2; exit 1; }
[ -s "$run/ticket.keys" ] || { echo "hitch-run.sh: $run/ticket.keys missing (tls/hitch-conf.sh makes it)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export LD_PRELOAD=$so${LD_PRELOAD:+:$LD_PRELOAD}
export SG_TICKET_KEYS=$(cd "$run" && pwd)/ticket.keys
exec "$bin" --config="$conf" --pidfile="$(cd "$run" && pwd)/hitch.pid"
