#!/usr/bin/env bash
# tls/make-certs.sh — make a private ECDSA P-256 CA and the certificates the
# demo, the tests and the benchmark use. Nothing here is committed: every
# certificate is made when a test or the demo starts.
#
#   tls/make-certs.sh [--days N] [--name DNS]... DIR
#
# Writes into DIR (created if needed):
#   ca.crt ca.key              private CA, ECDSA P-256 (kept if already there
#                              and valid for at least one more day)
#   server.crt server.key      ECDSA P-256 server certificate signed by the CA,
#                              SANs: localhost, seedgate.test, *.seedgate.test,
#                              each --name, IP 127.0.0.1 and ::1
#   server-rsa.crt server-rsa.key   RSA-2048 server certificate, same SANs,
#                              used only by bench/bench-tls.sh for comparison
#   server.pem                 server.crt + server.key (what stunnel's cert= takes)
# Server certificates are made fresh on every run (N days, default 90).
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

days=90
names=(localhost seedgate.test '*.seedgate.test')
dir=
while [ $# -gt 0 ]; do
	case "$1" in
	--days) days=${2:?--days needs a number}; shift 2 ;;
	--name) names+=("${2:?--name needs a DNS name}"); shift 2 ;;
	-h|--help) usage 0 ;;
	-*) echo "make-certs.sh: unknown option $1" >&2; usage 1 >&2 ;;
	*) [ -z "$dir" ] || { echo "make-certs.sh: one DIR only" >&2; exit 1; }; dir=$1; shift ;;
	esac
done
[ -n "$dir" ] || usage 1 >&2
command -v openssl >/dev/null || { echo "make-certs.sh: openssl not installed" >&2; exit 1; }

mkdir -p "$dir"
umask 077
tmp=$(mktemp -d "$dir/.make-certs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

san="IP:127.0.0.1,IP:::1"
for n in "${names[@]}"; do san="DNS:$n,$san"; done

# The CA: reused while it has more than a day to live, so that a client that
# already trusts ca.crt keeps working when server certificates are rolled.
if ! { [ -s "$dir/ca.crt" ] && [ -s "$dir/ca.key" ] &&
       openssl x509 -in "$dir/ca.crt" -noout -checkend 86400 >/dev/null 2>&1; }; then
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/ca.key" 2>/dev/null
	openssl req -new -x509 -key "$tmp/ca.key" -sha256 -days 3650 \
		-subj "/O=seedgate/CN=seedgate private CA" \
		-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "subjectKeyIdentifier=hash" \
		-out "$tmp/ca.crt"
	mv "$tmp/ca.key" "$dir/ca.key"
	mv "$tmp/ca.crt" "$dir/ca.crt"
fi

# sign NAME KEYFILE: a server certificate for NAME's key, signed by the CA.
sign() {
	local name=$1 key=$2
	cat >"$tmp/$name.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
	openssl req -new -key "$key" -subj "/O=seedgate/CN=${names[0]}" -out "$tmp/$name.csr"
	openssl x509 -req -in "$tmp/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -sha256 -days "$days" \
		-extfile "$tmp/$name.ext" -out "$tmp/$name.crt" 2>/dev/null
}

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/server.key" 2>/dev/null
sign server "$tmp/server.key"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/server-rsa.key" 2>/dev/null
sign server-rsa "$tmp/server-rsa.key"

# Move into place key first, then certificate, each by rename: a process
# reading the directory never sees a half-written file.
for n in server server-rsa; do
	cat "$tmp/$n.crt" "$tmp/$n.key" >"$tmp/$n.pem"
	mv "$tmp/$n.key" "$dir/$n.key"
	mv "$tmp/$n.crt" "$dir/$n.crt"
	mv "$tmp/$n.pem" "$dir/$n.pem"
done
chmod 0644 "$dir/ca.crt" "$dir/server.crt" "$dir/server-rsa.crt"
echo "make-certs.sh: CA and server certificates in $dir (SANs: $san)"
