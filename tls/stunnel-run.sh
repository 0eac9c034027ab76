#!/usr/bin/env bash
# tls/stunnel-run.sh — start stunnel in the foreground with CONF, after
# raising the open-files soft limit to the hard limit: stunnel derives its
# cap on simultaneous clients from that limit (about half of it), and the
# usual soft limit of 1024 would make stunnel the bottleneck.
#
#   tls/stunnel-run.sh CONF     (exec's stunnel: its PID is this script's)
set -euo pipefail
[ $# -eq 1 ] && [ "$1" != -h ] && [ "$1" != --help ] || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
bin=$(command -v stunnel4 || command -v stunnel) || { echo "stunnel-run.sh: stunnel not installed" >&2; exit 1; }
exec "$bin" "$1"
