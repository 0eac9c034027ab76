#!/usr/bin/env bash
# tls/stunnel-conf.sh — print a complete stunnel configuration for seedgate.
#
#   tls/stunnel-conf.sh --accept HOST:PORT --connect HOST:PORT --certs DIR --run DIR
#                       [--out FILE] [--user USER --group GROUP]
#                       [--rsa] [--log] [--debug LEVEL]
#
#   --accept    where stunnel listens for TLS clients (demo: 127.0.0.1:8443)
#   --connect   HAProxy's accept-proxy bind (demo: 127.0.0.1:8080)
#   --certs     a directory filled by tls/make-certs.sh (server.crt/.key)
#   --run       runtime directory: stunnel.pid, ticket.keys (made once and
#               kept, so session tickets survive a stunnel restart),
#               stunnel.log with --log
#   --out       write the configuration to FILE, mode 0600 (0640 and group
#               GROUP with --group): it carries the session ticket secrets.
#               Without --out it goes to stdout: keep that file private.
#   --user/--group  stunnel drops to them after binding (setuid/setgid;
#               production: stunnel4/stunnel4). RUN must be writable by the
#               user (pid file), and after a SIGHUP reload the user re-reads
#               this file and the key: make them readable by GROUP (--out
#               does it for this file; chgrp GROUP + chmod 0640 the key)
#   --rsa       serve the RSA-2048 certificate instead (benchmark only)
#   --log       also log to RUN/stunnel.log (stderr always, foreground)
#   --debug     syslog level name or 0-7 (default notice)
#
# Start it with tls/stunnel-run.sh, which raises the open-files limit first
# (stunnel sizes its connection cap from it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "stunnel-conf.sh: $*" >&2; exit 1; }

accept= connect= certs= run= rsa=0 log=0 debug=notice out= user= group=
while [ $# -gt 0 ]; do
	case "$1" in
	--accept) accept=${2:?}; shift 2 ;;
	--connect) connect=${2:?}; shift 2 ;;
	--certs) certs=${2:?}; shift 2 ;;
	--run) run=${2:?}; shift 2 ;;
	--out) out=${2:?}; shift 2 ;;
	--user) user=${2:?}; shift 2 ;;
	--group) group=${2:?}; shift 2 ;;
	--rsa) rsa=1; shift ;;
	--log) log=1; shift ;;
	--debug) debug=${2:?}; shift 2 ;;
	-h|--help) usage 0 ;;
	*) echo "stunnel-conf.sh: unknown argument $1" >&2; usage 1 >&2 ;;
	esac
done
[ -n "$accept" ] && [ -n "$connect" ] && [ -n "$certs" ] && [ -n "$run" ] || usage 1 >&2
case "$accept" in *:[0-9]*) ;; *) die "--accept wants HOST:PORT, got '$accept'" ;; esac
case "$connect" in *:[0-9]*) ;; *) die "--connect wants HOST:PORT, got '$connect'" ;; esac
[ -z "$user" ] || id -u "$user" >/dev/null 2>&1 || die "--user $user: no such user"
[ -z "$group" ] || getent group "$group" >/dev/null || die "--group $group: no such group"

certs=$(cd "$certs" && pwd) || die "no such directory: $certs"
mkdir -p "$run"
run=$(cd "$run" && pwd)
name=server; [ "$rsa" = 1 ] && name=server-rsa
[ -s "$certs/$name.crt" ] && [ -s "$certs/$name.key" ] ||
	die "$certs/$name.crt or .key missing (run tls/make-certs.sh $certs)"

# Ticket keys: shared by every front, made once and reused (ticket-keys.sh).
keys=$run/ticket.keys
"$here/ticket-keys.sh" "$run" || die "cannot make $keys"
{ read -r tkey; read -r tmac; } <"$keys"

output= setuid="; setuid: not set (runs as the user who starts it)" setgid="; setgid: not set"
[ "$log" = 1 ] && output="output = $run/stunnel.log"
[ -n "$user" ] && setuid="setuid = $user"
[ -n "$group" ] && setgid="setgid = $group"

render() {
	sed -e "s|@ACCEPT@|$accept|g" -e "s|@CONNECT@|$connect|g" -e "s|@RUN@|$run|g" \
	    -e "s|@CERT@|$certs/$name.crt|g" -e "s|@KEY@|$certs/$name.key|g" \
	    -e "s|@DEBUG@|$debug|g" -e "s|@OUTPUT@|$output|g" \
	    -e "s|@SETUID@|$setuid|g" -e "s|@SETGID@|$setgid|g" \
	    -e "s|@TICKET_KEY@|$tkey|g" -e "s|@TICKET_MAC@|$tmac|g" \
	    "$here/stunnel.conf.in"
}
if [ -z "$out" ]; then
	render
	exit 0
fi
# The file holds the ticket secrets: created private (umask 077, so never
# readable by others even for an instant), group-readable only for the
# group stunnel drops to, then renamed into place.
tmp=$out.tmp.$$
trap 'rm -f "$tmp"' EXIT
( umask 077; render >"$tmp" ) || die "cannot write $tmp"
if [ -n "$group" ]; then
	chgrp "$group" "$tmp" && chmod 0640 "$tmp" || die "cannot give $tmp to group $group"
fi
mv -f "$tmp" "$out" || die "cannot write $out"
