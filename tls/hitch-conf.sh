#!/usr/bin/env bash
# tls/hitch-conf.sh — print a complete hitch configuration for seedgate,
# with the policy of tls/stunnel.conf.in (same suites, groups, certificate).
#
#   tls/hitch-conf.sh --accept HOST:PORT --connect HOST:PORT --certs DIR --run DIR
#                     [--out FILE] [--user USER --group GROUP]
#                     [--workers N] [--rsa] [--log]
#
#   --accept    where hitch listens for TLS clients (demo: 127.0.0.1:8443)
#   --connect   HAProxy's accept-proxy bind (demo: 127.0.0.1:8081)
#   --certs     a directory filled by tls/make-certs.sh (server.pem)
#   --run       runtime directory: hitch.pid, ticket.keys (tls/ticket-keys.sh,
#               made once and kept), hitch.log with --log
#   --out       write the configuration to FILE (mode 0644: it holds no
#               secret; the ticket keys stay in RUN/ticket.keys)
#   --user/--group  hitch's workers drop to them (production: _hitch).
#               Without --user as root, the workers stay root (hitch
#               insists that this be written out).
#   --workers   worker processes (default: the number of CPUs)
#   --rsa       serve the RSA-2048 certificate instead (benchmark only)
#   --log       log to RUN/hitch.log instead of stderr
#
# Start it with tls/hitch-run.sh CONF RUN, which raises the open-files limit
# and loads the ticket keys (hitch has no setting for them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "hitch-conf.sh: $*" >&2; exit 1; }

accept= connect= certs= run= rsa=0 log=0 out= user= group= workers=$(nproc)
while [ $# -gt 0 ]; do
	case "$1" in
	--accept) accept=${2:?}; shift 2 ;;
	--connect) connect=${2:?}; shift 2 ;;
	--certs) certs=${2:?}; shift 2 ;;
	--run) run=${2:?}; shift 2 ;;
	--out) out=${2:?}; shift 2 ;;
	--user) user=${2:?}; shift 2 ;;
	--group) group=${2:?}; shift 2 ;;
	--workers) workers=${2:?}; shift 2 ;;
	--rsa) rsa=1; shift ;;
	--log) log=1; shift ;;
	-h|--help) usage 0 ;;
	*) echo "hitch-conf.sh: unknown argument $1" >&2; usage 1 >&2 ;;
	esac
done
[ -n "$accept" ] && [ -n "$connect" ] && [ -n "$certs" ] && [ -n "$run" ] || usage 1 >&2
hostport() { # hitch wants "[HOST]:PORT"
	case "$1" in
	\[*\]:[0-9]*) echo "$1" ;;
	*:[0-9]*) echo "[${1%:*}]:${1##*:}" ;;
	*) die "$2 wants HOST:PORT, got '$1'" ;;
	esac
}
accept=$(hostport "$accept" --accept)
connect=$(hostport "$connect" --connect)
[[ $workers =~ ^[1-9][0-9]*$ ]] || die "--workers wants a positive number, got '$workers'"
[ -z "$user" ] || id -u "$user" >/dev/null 2>&1 || die "--user $user: no such user"
[ -z "$group" ] || getent group "$group" >/dev/null || die "--group $group: no such group"
if [ -z "$user" ] && [ "$(id -u)" = 0 ]; then user=root group=${group:-root}; fi

certs=$(cd "$certs" && pwd) || die "no such directory: $certs"
mkdir -p "$run"
run=$(cd "$run" && pwd)
name=server; [ "$rsa" = 1 ] && name=server-rsa
[ -s "$certs/$name.pem" ] || die "$certs/$name.pem missing (run tls/make-certs.sh $certs)"
"$here/ticket-keys.sh" "$run"

# The policy is stunnel's: one source for suites and groups.
conf_in=$here/stunnel.conf.in
ciphers=$(sed -n 's/^ciphers = //p' "$conf_in")
suites=$(sed -n 's/^ciphersuites = //p' "$conf_in")
curves=$(sed -n 's/^curves = //p' "$conf_in")
[ -n "$ciphers" ] && [ -n "$suites" ] && [ -n "$curves" ] || die "cannot read the policy from $conf_in"

render() {
	cat <<CONF
# hitch configuration for seedgate's TLS front door (tls/hitch-conf.sh).
# Do not edit: regenerate. Same policy as tls/stunnel.conf.in.
#
# clients --TLS 1.2/1.3, ECDSA P-256--> hitch $accept
#         --PROXY protocol v2--> HAProxy $connect (bind ... accept-proxy)

frontend = "$accept"
backend = "$connect"
# HAProxy learns the client's address from a PROXY v2 header and puts it in
# X-Forwarded-For for the backends.
write-proxy-v2 = on
# Leaf + key in one file (tls/make-certs.sh). Certificate roll: replace it
# by rename, then SIGHUP (new workers serve it; old ones finish their
# connections).
pem-file = "$certs/$name.pem"

# TLS 1.2 and 1.3 only; TLS 1.2 ECDHE + AEAD suites only; TLS 1.3 standard
# AEAD suites; groups X25519 then P-256.
tls-protos = TLSv1.2 TLSv1.3
ciphers = "$ciphers"
ciphersuites = "$suites"
ecdh-curve = "$curves"
prefer-server-ciphers = on

# Session resumption: tickets with the keys of RUN/ticket.keys, installed
# by tls/hitch-run.sh (libsg-hitch.so), so they survive restarts and
# reloads. (Debian's hitch is built without its shared session cache; a
# client that takes no ticket resumes only on the worker that served it,
# through OpenSSL's per-process cache.)

# One libev worker per CPU. Each connection holds two descriptors (client
# and HAProxy): a worker's cap is half of the open-files limit that
# tls/hitch-run.sh raises to the hard limit.
workers = $workers
backlog = 1024
keepalive = 3600

user = "$user"
group = "$group"
daemon = off
log-level = 1
CONF
	[ "$log" = 1 ] && echo "log-filename = \"$run/hitch.log\""
	return 0
}
# hitch refuses root workers unless told so: an empty user is left out.
render_clean() { render | grep -v '^user = ""$' | grep -v '^group = ""$'; }
if [ -z "$out" ]; then
	render_clean
	exit 0
fi
tmp=$out.tmp.$$
trap 'rm -f "$tmp"' EXIT
render_clean >"$tmp" || die "cannot write $tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$out" || die "cannot write $out"
