#!/usr/bin/env bash
# bench-tls.sh — what TLS termination costs seedgate, in one run, for each
# of the three TLS fronts (tls/README.md) against plain HTTP:
#
#   plain     HTTP straight to HAProxy (the baseline: no TLS at all)
#   stunnel   stunnel  -> PROXY v1 -> HAProxy accept-proxy
#   hitch     hitch    -> PROXY v2 -> HAProxy accept-proxy (1 worker)
#   haproxy   HAProxy's own TLS (`bind ... ssl`, the line of haproxy.cfg)
#
#  1. keep-alive requests (wrk -t1 -cCONNS, TLS 1.3 ECDSA): req/s and
#     requests per server CPU-second;
#  2. full handshakes (`openssl s_time -new`, CLIENTS processes): TLS 1.3
#     and 1.2, ECDSA P-256 and RSA-2048, per second and per server
#     CPU-second;
#  3. resumed handshakes (`openssl s_time -reuse -www /`, TLS 1.2 and 1.3,
#     ECDSA): per server CPU-second, and the share actually resumed.
#
# Every front gets the same server CPU (SERVER_CPU: stunnel or hitch and
# HAProxy, all pinned there; HAProxy nbthread 1); the load generators run on
# LOAD_CPU. HAProxy answers every request itself (http-request return), so
# what differs is only the TLS path. Configurations alternate within each
# round; the tables give medians. Results: bench/results/tls.md.
#
# Environment: ROUNDS (3), DURATION (3 s per measurement), CLIENTS (8
# s_time processes), CONNS (64 wrk connections), SERVER_CPU (0), LOAD_CPU (1),
# STUNNEL_EXTRA (lines appended to the stunnel configuration's service
# section, to try a setting: bench/results/tls.md records what was tried).
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
CLIENTS=${CLIENTS:-8}
CONNS=${CONNS:-64}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
STUNNEL_EXTRA=${STUNNEL_EXTRA:-}
BUILD=${SEEDGATE_BUILD:-$PWD/build}
OUT=${BENCH_TLS_OUT:-bench/results/tls.md}
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

for c in openssl stunnel haproxy wrk taskset curl; do
	command -v "$c" >/dev/null || fail "$c not installed"
done
command -v hitch >/dev/null || [ -x /usr/sbin/hitch ] || fail "hitch not installed"
[ -f "$BUILD/libsg-hitch.so" ] || fail "$BUILD/libsg-hitch.so not built (make)"
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

# --- certificates, HAProxy, two stunnels, two hitches ----------------------
tls/make-certs.sh "$TMP/certs" >/dev/null || fail "make-certs.sh failed"
tls/ticket-keys.sh "$TMP/run" || fail "ticket-keys.sh failed"

PLAIN_PORT=$(free_port)   # HAProxy, plain HTTP (the baseline)
PROXY_PORT=$(free_port)   # HAProxy, accept-proxy (stunnel's and hitch's target)
declare -A PORT
for f in stunnel hitch haproxy; do PORT[$f-ec]=$(free_port); PORT[$f-rsa]=$(free_port); done

# HAProxy's TLS binds: haproxy.cfg's own line, variables filled in.
hap_bind() { # hap_bind PORT PEM
	grep -m1 'bind "${SG_HTTPS_BIND}" ssl' haproxy-conf/haproxy.cfg |
		sed -e "s|\${SG_HTTPS_BIND}|127.0.0.1:$1|" -e "s|\${SG_TLS_CRT}|$2|" \
		    -e "s|\${SG_TLS_TICKETS}|$TMP/run/ticket.keys.haproxy|"
}
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:$PLAIN_PORT
    bind 127.0.0.1:$PROXY_PORT accept-proxy
$(hap_bind "${PORT[haproxy-ec]}" "$TMP/certs/server.pem")
$(hap_bind "${PORT[haproxy-rsa]}" "$TMP/certs/server-rsa.pem")
    http-request set-var(txn.sg_tls) bool(1) if { fc_rcvd_proxy } or { ssl_fc }
    http-after-response set-header Strict-Transport-Security "max-age=63072000" if { var(txn.sg_tls) -m bool }
    http-request return status 200 content-type text/plain string "ok"
EOF
haproxy -c -f "$TMP/haproxy.cfg" >"$TMP/haproxy-check.log" 2>&1 || { cat "$TMP/haproxy-check.log"; fail "haproxy -c"; }
taskset -c "$SERVER_CPU" haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
hap_pid=$!; pids+=($!); wait_port "$PLAIN_PORT" $! haproxy

declare -A SPID   # server processes whose CPU counts, per configuration
SPID[plain]=$hap_pid SPID[haproxy-ec]=$hap_pid SPID[haproxy-rsa]=$hap_pid
for k in ec rsa; do
	rsa=(); [ $k = rsa ] && rsa=(--rsa)
	# One run directory per instance (pid files), the same ticket keys.
	mkdir -p "$TMP/run-$k"; cp -p "$TMP/run/ticket.keys" "$TMP/run-$k/"
	tls/stunnel-conf.sh --accept "127.0.0.1:${PORT[stunnel-$k]}" --connect "127.0.0.1:$PROXY_PORT" \
		--certs "$TMP/certs" --run "$TMP/run-$k" --debug err "${rsa[@]}" >"$TMP/stunnel-$k.conf" || fail "stunnel-conf.sh"
	[ -n "$STUNNEL_EXTRA" ] && printf '%b\n' "$STUNNEL_EXTRA" >>"$TMP/stunnel-$k.conf"
	taskset -c "$SERVER_CPU" tls/stunnel-run.sh "$TMP/stunnel-$k.conf" >"$TMP/stunnel-$k.log" 2>&1 &
	pids+=($!); SPID[stunnel-$k]="$! $hap_pid"; wait_port "${PORT[stunnel-$k]}" $! "stunnel-$k"
	tls/hitch-conf.sh --accept "127.0.0.1:${PORT[hitch-$k]}" --connect "127.0.0.1:$PROXY_PORT" \
		--certs "$TMP/certs" --run "$TMP/run-$k" --workers 1 "${rsa[@]}" --out "$TMP/hitch-$k.conf" || fail "hitch-conf.sh"
	SEEDGATE_BUILD=$BUILD taskset -c "$SERVER_CPU" tls/hitch-run.sh "$TMP/hitch-$k.conf" "$TMP/run-$k" >"$TMP/hitch-$k.log" 2>&1 &
	pids+=($!); SPID[hitch-$k]="$! $hap_pid"; wait_port "${PORT[hitch-$k]}" $! "hitch-$k"
done

# Sanity: each endpoint answers over TLS with the certificate it should.
for f in stunnel hitch haproxy; do
	for k in ec rsa; do
		want=ECDSA; [ $k = rsa ] && want=RSA-PSS
		out=$(openssl s_client -connect "127.0.0.1:${PORT[$f-$k]}" -servername localhost -brief </dev/null 2>&1)
		echo "$out" | grep -q "Signature type: $want" || { echo "$out"; fail "$f-$k: want $want"; }
	done
	curl -sk "https://127.0.0.1:${PORT[$f-ec]}/" | grep -q ok || fail "no answer through $f"
done

# --- measurements -----------------------------------------------------------
# CPU ticks (utime + stime) of the given processes and their children
# (hitch's workers), summed.
cpu_ticks() {
	local p c t=0
	for p in "$@"; do
		for c in $p $(cat /proc/"$p"/task/*/children 2>/dev/null); do
			t=$((t + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
		done
	done
	echo $t
}
hz=$(getconf CLK_TCK)

# handshakes PORT MODE VERSION SERVER_PIDS...: prints "H/s H-per-server-CPU-s
# resumed-share": handshakes/s summed over CLIENTS s_time processes, the
# same count per CPU-second the server processes used meanwhile, and the
# share of connections that resumed (s_time prints r per reused one).
# MODE: -new (full handshakes) or -reuse (resumed; -www / reads the answer,
# and with it the TLS 1.3 ticket). Run it in $(...) only (see the wait).
handshakes() {
	local port=$1 mode=$2 ver=$3 i conns=0 reused=0 c0 c1 t0 t1 www=()
	shift 3
	[ "$mode" = -reuse ] && www=(-www /)
	c0=$(cpu_ticks "$@")
	t0=$(date +%s.%N)
	for i in $(seq "$CLIENTS"); do
		taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$port" "$mode" "$ver" "${www[@]}" \
			-time "$DURATION" >"$TMP/s_time.$i" 2>&1 &
	done
	wait   # called as $(handshakes ...): a subshell whose only children are these clients
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$@")
	for i in $(seq "$CLIENTS"); do
		n=$(awk '/connections in [0-9.]+ real seconds/ {print $1}' "$TMP/s_time.$i")
		[ -n "$n" ] || { cat "$TMP/s_time.$i"; fail "s_time gave no figure"; }
		conns=$((conns + n))
		reused=$((reused + $(grep -E '^[r*]+$' "$TMP/s_time.$i" | tr -cd r | wc -c)))
	done
	awk -v n="$conns" -v r="$reused" -v t=$((c1 - c0)) -v hz="$hz" -v el="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
		'BEGIN { printf "%.0f ", n / el; if (t > 0) printf "%.0f ", n * hz / t; else printf "n/a ";
		         printf "%.2f\n", (n > 0 ? r / n : 0) }'
}

# keepalive URL SERVER_PIDS...: prints "req/s req-per-server-CPU-s" for wrk
# over CONNS keep-alive connections.
keepalive() {
	local url=$1 out c0 c1
	shift
	c0=$(cpu_ticks "$@")
	out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" 2>&1)
	c1=$(cpu_ticks "$@")
	echo "$out" | grep -qE "Non-2xx|Socket errors" && { echo "$out" >&2; fail "wrk saw errors on $url"; }
	echo "$out" | awk -v t=$((c1 - c0)) -v hz="$hz" -v d="$DURATION" \
		'/^Requests\/sec:/ { if (t > 0) printf "%s %.0f\n", $2, $2 * d * hz / t; else print $2, "n/a" }'
}

declare -A res cpu rsm
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench-tls: $ROUNDS rounds x ${DURATION}s; server on CPU $SERVER_CPU, load on CPU $LOAD_CPU; loadavg $load_before"
keepalive "https://127.0.0.1:${PORT[stunnel-ec]}/" ${SPID[stunnel-ec]} >/dev/null   # warm-up
for r in $(seq "$ROUNDS"); do
	for cfg in plain stunnel hitch haproxy; do
		if [ $cfg = plain ]; then
			read -r v c < <(keepalive "http://127.0.0.1:$PLAIN_PORT/" ${SPID[plain]})
		else
			read -r v c < <(keepalive "https://127.0.0.1:${PORT[$cfg-ec]}/" ${SPID[$cfg-ec]})
		fi
		[ -n "${v:-}" ] || fail "wrk gave no figure ($cfg)"
		res[ka_$cfg]+="$v "; cpu[ka_$cfg]+="$c "
		echo "  round $r keep-alive $cfg: $v req/s, $c per server CPU-second"
	done
	for ver in -tls1_3 -tls1_2; do
		for f in stunnel hitch haproxy; do
			for k in ec rsa; do
				read -r v c _ < <(handshakes "${PORT[$f-$k]}" -new "$ver" ${SPID[$f-$k]})
				res[hs_${f}_${k}_$ver]+="$v "; cpu[hs_${f}_${k}_$ver]+="$c "
				echo "  round $r full handshakes $f $k $ver: $v/s, $c per server CPU-second"
			done
			read -r v c s < <(handshakes "${PORT[$f-ec]}" -reuse "$ver" ${SPID[$f-ec]})
			res[rs_${f}_$ver]+="$v "; cpu[rs_${f}_$ver]+="$c "; rsm[rs_${f}_$ver]+="$s "
			echo "  round $r resumed handshakes $f $ver: $v/s, $c per server CPU-second, $s resumed"
		done
	done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

med() { printf '%s\n' ${res[$1]} | median; }
cmed() { printf '%s\n' ${cpu[$1]} | median; }
smed() { printf '%s\n' ${rsm[$1]} | median; }
cell() { echo "$(cmed "$1") [${cpu[$1]% }]"; }

# --- report -------------------------------------------------------------------
cpuname=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
plain_c=$(cmed ka_plain)
{
	echo "# TLS termination benchmark (bench/bench-tls.sh)"
	echo
	echo "* date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "* machine: $(nproc) CPUs, ${cpuname:-unknown CPU}, $(uname -sr)"
	echo "* versions: $(stunnel -version 2>&1 | awk '/^stunnel/ {print $1, $2; exit}'), $(hitch --version 2>&1 | head -1), $(haproxy -v | awk 'NR==1 {print $1, $3}'), $(openssl version | awk '{print $1, $2}'), $(wrk -v 2>&1 | awk 'NR==1 {print $1, $2}')"
	echo "* setup: server side (the front and HAProxy nbthread 1; hitch with 1 worker) pinned to CPU $SERVER_CPU,"
	echo "  load generators to CPU $LOAD_CPU; HAProxy answers every request itself;"
	echo "  stunnel -> PROXY v1 and hitch -> PROXY v2 -> HAProxy accept-proxy; one policy (tls/README.md)."
	[ -n "$STUNNEL_EXTRA" ] && echo "* stunnel configuration extra lines: \`$STUNNEL_EXTRA\`"
	echo "* $ROUNDS rounds, ${DURATION} s per measurement, configurations alternating; medians (per-round values in brackets)."
	echo "* load average (other work on the machine) before: $load_before, after: $load_after."
	echo "  \"per server CPU-s\" divides the count by the CPU time the server processes"
	echo "  (the front + HAProxy, or HAProxy alone) used meanwhile: the cost figure,"
	echo "  far less sensitive to other load on the machine than the wall-clock rate,"
	echo "  which is bounded by the load generators on one CPU. Compare the per-CPU columns."
	echo
	echo "## Keep-alive requests (wrk -t1 -c$CONNS; TLS 1.3, ECDSA P-256)"
	echo
	echo "| path | req/s | req per server CPU-s | vs plain HTTP (per CPU-s) |"
	echo "|---|---|---|---|"
	for cfg in plain stunnel hitch haproxy; do
		name=$cfg; [ $cfg = plain ] && name="plain HTTP (baseline)"; [ $cfg = haproxy ] && name="HAProxy's own TLS"
		echo "| $name | $(med ka_$cfg) [${res[ka_$cfg]% }] | $(cell ka_$cfg) | $(ratio "$(cmed ka_$cfg)" "$plain_c") |"
	done
	echo
	echo "## Full handshakes per server CPU-second ($CLIENTS \`openssl s_time -new\` clients)"
	echo
	echo "| front | TLS 1.3 ECDSA | TLS 1.3 RSA-2048 | TLS 1.2 ECDSA | TLS 1.2 RSA-2048 | ECDSA/RSA (1.3) |"
	echo "|---|---|---|---|---|---|"
	for f in stunnel hitch haproxy; do
		echo "| $f | $(cell hs_${f}_ec_-tls1_3) | $(cell hs_${f}_rsa_-tls1_3) | $(cell hs_${f}_ec_-tls1_2) | $(cell hs_${f}_rsa_-tls1_2) | $(ratio "$(cmed hs_${f}_ec_-tls1_3)" "$(cmed hs_${f}_rsa_-tls1_3)") |"
	done
	echo
	echo "Wall-clock full handshakes/s (bounded by the clients on one CPU):"
	echo
	echo "| front | TLS 1.3 ECDSA | TLS 1.3 RSA-2048 | TLS 1.2 ECDSA | TLS 1.2 RSA-2048 |"
	echo "|---|---|---|---|---|"
	for f in stunnel hitch haproxy; do
		echo "| $f | $(med hs_${f}_ec_-tls1_3) | $(med hs_${f}_rsa_-tls1_3) | $(med hs_${f}_ec_-tls1_2) | $(med hs_${f}_rsa_-tls1_2) |"
	done
	echo
	echo "## Resumed handshakes per server CPU-second (\`openssl s_time -reuse -www /\`, ECDSA)"
	echo
	echo "| front | TLS 1.3 | share resumed | TLS 1.2 | share resumed |"
	echo "|---|---|---|---|---|"
	for f in stunnel hitch haproxy; do
		echo "| $f | $(cell rs_${f}_-tls1_3) | $(smed rs_${f}_-tls1_3) | $(cell rs_${f}_-tls1_2) | $(smed rs_${f}_-tls1_2) |"
	done
	echo
	echo "Where stunnel's time goes (tls/README.md) was measured on the same setup with"
	echo "\`perf record -g -p <stunnel pid> -- sleep 4\` and \`strace -c -f -p <stunnel pid>\` (3 s)"
	echo "during \`wrk -t1 -c64 -d7s https://127.0.0.1:<port>/\`, and Nagle / log-level variants"
	echo "of tls/stunnel.conf.in alternated under \`wrk -t1 -c64 -d3s\`, counting server CPU ticks."
	echo
	echo "Command: \`${STUNNEL_EXTRA:+STUNNEL_EXTRA='$STUNNEL_EXTRA' }ROUNDS=$ROUNDS DURATION=$DURATION CLIENTS=$CLIENTS CONNS=$CONNS bench/bench-tls.sh\`"
} >"$OUT"
cat "$OUT"
