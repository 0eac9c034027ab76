#!/usr/bin/env bash
# tls/ticket-keys.sh — the session-ticket keys every TLS front shares.
#
#   tls/ticket-keys.sh RUN            make RUN/ticket.keys once (kept after)
#   tls/ticket-keys.sh --rotate RUN   new current key; the old one becomes
#                                     RUN/ticket.keys.prev
#
# RUN/ticket.keys holds two lines of 64 hex digits (32 random bytes each):
# the ticket encryption key and the ticket MAC key. Every front reads it:
#   stunnel  ticketKeySecret / ticketMacSecret (tls/stunnel-conf.sh)
#   hitch    SG_TICKET_KEYS through build/libsg-hitch.so (tls/hitch-run.sh)
#   HAProxy  RUN/ticket.keys.haproxy, written here: three base64 lines of
#            80 bytes (16-byte name, 32-byte AES key, 32-byte HMAC key).
#            HAProxy encrypts with the next-to-last line and decrypts with
#            all three: lines are previous, current, current, so tickets
#            issued before a rotation still resume on HAProxy.
# Files are made under umask 077 and moved into place by rename. Kept keys
# survive restarts and reloads; rotating them (say daily, from cron) limits
# what a stolen key decrypts. After --rotate, regenerate the stunnel/hitch
# configuration and send SIGHUP, or reload HAProxy (tls/README.md).
set -euo pipefail
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
rotate=0
case "${1:-}" in
-h|--help) usage 0 ;;
--rotate) rotate=1; shift ;;
esac
[ $# -eq 1 ] || usage 1 >&2
run=$1
mkdir -p "$run"
keys=$run/ticket.keys
umask 077
if [ "$rotate" = 1 ] && [ -s "$keys" ]; then
	cp "$keys" "$keys.prev.tmp" && mv "$keys.prev.tmp" "$keys.prev"
fi
if [ "$rotate" = 1 ] || [ ! -s "$keys" ]; then
	{ openssl rand -hex 32; openssl rand -hex 32; } >"$keys.tmp" && mv "$keys.tmp" "$keys"
fi
check() { # check FILE: two lines of 64 hex digits
	local a b
	{ read -r a; read -r b; } <"$1" || true
	[[ $a =~ ^[0-9a-f]{64}$ && $b =~ ^[0-9a-f]{64}$ ]] ||
		{ echo "ticket-keys.sh: $1: want two lines of 64 hex digits" >&2; exit 1; }
}
check "$keys"
prev=$keys; [ -s "$keys.prev" ] && prev=$keys.prev
check "$prev"
# haproxy_line FILE: name (first 16 bytes of SHA-256 of both keys), AES, HMAC.
haproxy_line() {
	local k m
	{ read -r k; read -r m; } <"$1"
	{ printf '%s%s' "$k" "$m" | openssl dgst -sha256 -binary | head -c 16
	  printf '%s%s' "$k" "$m" | perl -pe '$_ = pack("H*", $_)'; } | base64 -w0
	echo
}
{ haproxy_line "$prev"; haproxy_line "$keys"; haproxy_line "$keys"; } >"$keys.haproxy.tmp"
mv "$keys.haproxy.tmp" "$keys.haproxy"
