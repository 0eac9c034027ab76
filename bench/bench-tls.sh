#!/usr/bin/env bash
# bench-tls.sh — what TLS termination costs seedgate, in one run:
#
#  1. full handshakes per second through stunnel, ECDSA P-256 certificate
#     against RSA-2048 (`openssl s_time -new`, CLIENTS processes at once),
#     and, for reference, through HAProxy's own TLS with the ECDSA one;
#  2. keep-alive requests per second through stunnel (-> PROXY -> HAProxy)
#     against HAProxy's own TLS termination, same certificate, same
#     ciphers (wrk https, -t1 -c64).
#
# Server side (stunnel and HAProxy, nbthread 1) is pinned to SERVER_CPU, the
# load generators to LOAD_CPU, so each configuration gets the same single
# core to serve with. HAProxy answers every request itself (http-request
# return), so what differs between configurations is only the TLS path.
# Configurations alternate within each round; the table gives medians.
# Results: bench/results/tls.md (machine, versions, date).
#
# Environment: ROUNDS (3), DURATION (5 s per measurement), CLIENTS (8
# s_time processes), CONNS (64 wrk connections), SERVER_CPU (0), LOAD_CPU (1).
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CLIENTS=${CLIENTS:-8}
CONNS=${CONNS:-64}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=bench/results/tls.md
TMP=$(mktemp -d /tmp/bench-tls.XXXXXX)
pids=()

fail() { echo "bench-tls: $*" >&2; exit 1; }

cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT

for c in openssl stunnel haproxy wrk taskset; do
	command -v "$c" >/dev/null || fail "$c not installed"
done
[ "$(nproc)" -ge 2 ] || { SERVER_CPU=0; LOAD_CPU=0; echo "bench-tls: one CPU, server and load share it"; }

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

wait_port() {
	local port=$1 pid=$2 name=$3
	for _ in $(seq 200); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		kill -0 "$pid" 2>/dev/null || { cat "$TMP/$name.log"; fail "$name exited"; }
		sleep 0.05
	done
	cat "$TMP/$name.log"; fail "$name did not listen on $port"
}

# --- certificates, HAProxy, two stunnels -----------------------------------
tls/make-certs.sh "$TMP/certs" >/dev/null || fail "make-certs.sh failed"

PROXY_PORT=$(free_port)   # HAProxy, accept-proxy, plain HTTP (stunnel's target)
HTLS_PORT=$(free_port)    # HAProxy's own TLS termination
EC_PORT=$(free_port)      # stunnel, ECDSA P-256
RSA_PORT=$(free_port)     # stunnel, RSA-2048

# Same policy on both terminations: the TLS 1.2 list and TLS 1.3 suites
# and groups of tls/stunnel.conf.in.
ciphers=$(sed -n 's/^ciphers = //p' tls/stunnel.conf.in)
suites=$(sed -n 's/^ciphersuites = //p' tls/stunnel.conf.in)
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
    ssl-default-bind-ciphers $ciphers
    ssl-default-bind-ciphersuites $suites
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend fe_proxy
    bind 127.0.0.1:$PROXY_PORT accept-proxy
    http-request return status 200 content-type text/plain string "ok"
frontend fe_tls
    bind 127.0.0.1:$HTLS_PORT ssl crt $TMP/certs/server.pem curves X25519:P-256 alpn http/1.1
    http-response set-header Strict-Transport-Security "max-age=63072000"
    http-request return status 200 content-type text/plain string "ok"
EOF
haproxy -c -f "$TMP/haproxy.cfg" >"$TMP/haproxy-check.log" 2>&1 || { cat "$TMP/haproxy-check.log"; fail "haproxy -c"; }
taskset -c "$SERVER_CPU" haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
hap_pid=$!; pids+=($!); wait_port "$HTLS_PORT" $! haproxy

tls/stunnel-conf.sh --accept "127.0.0.1:$EC_PORT" --connect "127.0.0.1:$PROXY_PORT" \
	--certs "$TMP/certs" --run "$TMP/run-ec" --debug err >"$TMP/stunnel-ec.conf" || fail "stunnel-conf.sh"
tls/stunnel-conf.sh --accept "127.0.0.1:$RSA_PORT" --connect "127.0.0.1:$PROXY_PORT" \
	--certs "$TMP/certs" --run "$TMP/run-rsa" --rsa --debug err >"$TMP/stunnel-rsa.conf" || fail "stunnel-conf.sh"
taskset -c "$SERVER_CPU" tls/stunnel-run.sh "$TMP/stunnel-ec.conf" >"$TMP/stunnel-ec.log" 2>&1 &
ec_pid=$!; pids+=($!); wait_port "$EC_PORT" $! stunnel-ec
taskset -c "$SERVER_CPU" tls/stunnel-run.sh "$TMP/stunnel-rsa.conf" >"$TMP/stunnel-rsa.log" 2>&1 &
rsa_pid=$!; pids+=($!); wait_port "$RSA_PORT" $! stunnel-rsa

# Sanity: each endpoint answers over TLS with the certificate it should.
check_cert() {
	local port=$1 want=$2 out
	out=$(openssl s_client -connect "127.0.0.1:$port" -servername localhost -brief </dev/null 2>&1)
	echo "$out" | grep -q "Signature type: $want" || { echo "$out"; fail "port $port: want $want"; }
}
check_cert "$EC_PORT" ECDSA
check_cert "$RSA_PORT" RSA-PSS
check_cert "$HTLS_PORT" ECDSA
curl -sk "https://127.0.0.1:$EC_PORT/" | grep -q ok || fail "no answer through stunnel"

# --- measurements -----------------------------------------------------------
# CPU ticks (utime + stime, all threads) of the given processes, summed.
cpu_ticks() { local p t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
hz=$(getconf CLK_TCK)

# handshakes PORT VERSION SERVER_PIDS...: prints "H/s H-per-server-CPU-s":
# full handshakes/s summed over CLIENTS s_time processes, and the same
# count divided by the CPU the server processes used meanwhile (robust
# against other load on the machine). Run it in $(...) only (see the wait).
handshakes() {
	local port=$1 ver=$2 i conns=0 c0 c1 t0 t1
	shift 2
	c0=$(cpu_ticks "$@")
	t0=$(date +%s.%N)
	for i in $(seq "$CLIENTS"); do
		taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$port" -new "$ver" \
			-time "$DURATION" >"$TMP/s_time.$i" 2>&1 &
	done
	wait   # called as $(handshakes ...): a subshell whose only children are these clients
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$@")
	for i in $(seq "$CLIENTS"); do
		# "N connections in T real seconds, ..." (T in whole seconds: we time it ourselves)
		n=$(awk '/connections in [0-9.]+ real seconds/ {print $1}' "$TMP/s_time.$i")
		[ -n "$n" ] || { cat "$TMP/s_time.$i"; fail "s_time gave no figure"; }
		conns=$((conns + n))
	done
	awk -v n="$conns" -v t=$((c1 - c0)) -v hz="$hz" -v el="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
		'BEGIN { printf "%.0f ", n / el; if (t > 0) printf "%.0f\n", n * hz / t; else print "n/a" }'
}

# keepalive PORT SERVER_PIDS...: prints "req/s req-per-server-CPU-s" for wrk
# over CONNS keep-alive connections.
keepalive() {
	local port=$1 out c0 c1
	shift
	c0=$(cpu_ticks "$@")
	out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "https://127.0.0.1:$port/" 2>&1)
	c1=$(cpu_ticks "$@")
	echo "$out" | grep -qE "Non-2xx|Socket errors" && { echo "$out" >&2; fail "wrk saw errors on port $port"; }
	echo "$out" | awk -v t=$((c1 - c0)) -v hz="$hz" -v d="$DURATION" \
		'/^Requests\/sec:/ { if (t > 0) printf "%s %.0f\n", $2, $2 * d * hz / t; else print $2, "n/a" }'
}

declare -A res cpu
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench-tls: $ROUNDS rounds x ${DURATION}s; server on CPU $SERVER_CPU, load on CPU $LOAD_CPU; loadavg $load_before"
keepalive "$EC_PORT" "$ec_pid" "$hap_pid" >/dev/null   # warm-up
for r in $(seq "$ROUNDS"); do
	for ver in -tls1_3 -tls1_2; do
		for cfg in ec rsa hap; do
			case $cfg in
			ec)  read -r v c < <(handshakes "$EC_PORT" "$ver" "$ec_pid" "$hap_pid") ;;
			rsa) read -r v c < <(handshakes "$RSA_PORT" "$ver" "$rsa_pid" "$hap_pid") ;;
			hap) read -r v c < <(handshakes "$HTLS_PORT" "$ver" "$hap_pid") ;;
			esac
			res[hs_${cfg}_$ver]+="$v "; cpu[hs_${cfg}_$ver]+="$c "
			echo "  round $r handshakes $cfg $ver: $v/s, $c per server CPU-second"
		done
	done
	for cfg in stunnel haproxy; do
		if [ $cfg = stunnel ]; then
			read -r v c < <(keepalive "$EC_PORT" "$ec_pid" "$hap_pid")
		else
			read -r v c < <(keepalive "$HTLS_PORT" "$hap_pid")
		fi
		[ -n "$v" ] || fail "wrk gave no figure"
		res[ka_$cfg]+="$v "; cpu[ka_$cfg]+="$c "
		echo "  round $r keep-alive $cfg: $v req/s, $c per server CPU-second"
	done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

med() { printf '%s\n' ${res[$1]} | median; }
cmed() { printf '%s\n' ${cpu[$1]} | median; }
hs13_ec=$(med hs_ec_-tls1_3); hs13_rsa=$(med hs_rsa_-tls1_3)
hs12_ec=$(med hs_ec_-tls1_2); hs12_rsa=$(med hs_rsa_-tls1_2)
hs13_hap=$(med hs_hap_-tls1_3); hs12_hap=$(med hs_hap_-tls1_2)
ka_st=$(med ka_stunnel); ka_hap=$(med ka_haproxy)
c13_ec=$(cmed hs_ec_-tls1_3); c13_rsa=$(cmed hs_rsa_-tls1_3)
c12_ec=$(cmed hs_ec_-tls1_2); c12_rsa=$(cmed hs_rsa_-tls1_2)
c13_hap=$(cmed hs_hap_-tls1_3); c12_hap=$(cmed hs_hap_-tls1_2)
cka_st=$(cmed ka_stunnel); cka_hap=$(cmed ka_haproxy)

# --- report -------------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
	echo "# TLS termination benchmark (bench/bench-tls.sh)"
	echo
	echo "* date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "* machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $(uname -sr)"
	echo "* versions: $(stunnel -version 2>&1 | awk '/^stunnel/ {print $1, $2; exit}'), $(haproxy -v | awk 'NR==1 {print $1, $3}'), $(openssl version | awk '{print $1, $2}'), $(wrk -v 2>&1 | awk 'NR==1 {print $1, $2}')"
	echo "* setup: server side (stunnel, HAProxy nbthread 1) pinned to CPU $SERVER_CPU, load generators to CPU $LOAD_CPU;"
	echo "  HAProxy answers every request itself; stunnel -> PROXY v1 -> HAProxy accept-proxy."
	echo "* $ROUNDS rounds, ${DURATION} s per measurement, configurations alternating; medians (per-round values in brackets)."
	echo "* load average (other work on the machine) before: $load_before, after: $load_after."
	echo "  \"per server CPU-s\" divides the count by the CPU time the server processes"
	echo "  (stunnel + HAProxy, or HAProxy alone) used meanwhile: it is the cost figure,"
	echo "  less sensitive to other load than the wall-clock rate. The wall-clock"
	echo "  rates are bounded by the load generators on one CPU (an s_time client spends"
	echo "  more CPU per handshake than the server), so compare the per-CPU columns."
	echo
	echo "## Full handshakes through stunnel ($CLIENTS \`openssl s_time -new\` clients)"
	echo
	echo "| protocol | ECDSA P-256 /s | RSA-2048 /s | ratio | ECDSA per server CPU-s | RSA per server CPU-s | ratio |"
	echo "|---|---|---|---|---|---|---|"
	echo "| TLS 1.3 | $hs13_ec [${res[hs_ec_-tls1_3]% }] | $hs13_rsa [${res[hs_rsa_-tls1_3]% }] | $(ratio "$hs13_ec" "$hs13_rsa") | $c13_ec [${cpu[hs_ec_-tls1_3]% }] | $c13_rsa [${cpu[hs_rsa_-tls1_3]% }] | $(ratio "$c13_ec" "$c13_rsa") |"
	echo "| TLS 1.2 | $hs12_ec [${res[hs_ec_-tls1_2]% }] | $hs12_rsa [${res[hs_rsa_-tls1_2]% }] | $(ratio "$hs12_ec" "$hs12_rsa") | $c12_ec [${cpu[hs_ec_-tls1_2]% }] | $c12_rsa [${cpu[hs_rsa_-tls1_2]% }] | $(ratio "$c12_ec" "$c12_rsa") |"
	echo
	echo "For reference, full handshakes through HAProxy's own TLS (ECDSA P-256, same clients):"
	echo
	echo "| protocol | /s | per server CPU-s | stunnel ECDSA / HAProxy (per CPU-s) |"
	echo "|---|---|---|---|"
	echo "| TLS 1.3 | $hs13_hap [${res[hs_hap_-tls1_3]% }] | $c13_hap [${cpu[hs_hap_-tls1_3]% }] | $(ratio "$c13_ec" "$c13_hap") |"
	echo "| TLS 1.2 | $hs12_hap [${res[hs_hap_-tls1_2]% }] | $c12_hap [${cpu[hs_hap_-tls1_2]% }] | $(ratio "$c12_ec" "$c12_hap") |"
	echo
	echo "## Keep-alive requests (wrk -t1 -c$CONNS, https, ECDSA P-256, TLS 1.3)"
	echo
	echo "| termination | req/s | ratio | req per server CPU-s | ratio |"
	echo "|---|---|---|---|---|"
	echo "| HAProxy's own TLS (\`bind ... ssl\`) | $ka_hap [${res[ka_haproxy]% }] | 1.00 | $cka_hap [${cpu[ka_haproxy]% }] | 1.00 |"
	echo "| stunnel -> HAProxy (PROXY protocol) | $ka_st [${res[ka_stunnel]% }] | $(ratio "$ka_st" "$ka_hap") | $cka_st [${cpu[ka_stunnel]% }] | $(ratio "$cka_st" "$cka_hap") |"
	echo
	echo "Command: \`ROUNDS=$ROUNDS DURATION=$DURATION CLIENTS=$CLIENTS CONNS=$CONNS bench/bench-tls.sh\`"
} >"$OUT"
cat "$OUT"
