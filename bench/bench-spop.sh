#!/usr/bin/env bash
# bench-spop.sh — how many routing decisions per second an agent makes on
# one core, driven by spop-load (HAProxy's side of SPOP, no HAProxy).
#
# The agent is pinned to CPU 0 with one worker, the generator to CPU 1, so
# the agent has exactly one core. Agents: build/tools/spop-echo-agent (the
# runtime's floor) and build/route-agent with haproxy-conf/seed.conf when it
# is built. Per configuration it runs ROUNDS rounds of DURATION seconds and
# reports medians of decisions/s, the agent's CPU use (from /proc, so a
# generator that cannot saturate the agent shows up as < 100 %) and the
# decisions per agent CPU-second, plus latency percentiles.
#
# Environment: SEEDGATE_BUILD (default ./build), ROUNDS (3), DURATION (5),
# CONFIGS (space-separated conns:depth:threads, default "1:1024:1 8:64:1 64:1:1":
# a deep pipeline on one connection is what lets one generator core push
# the hardest; 64 connections x 1 is closest to HAProxy 2.6 under wrk -c64),
# AGENT_CPU (0), LOAD_CPU (1), SPOP_LOAD_ARGS (extra spop-load args).
# Target (docs/architecture.md §4): route-agent alone >= 500k decisions/s on one core.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${SEEDGATE_BUILD:-$PWD/build}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONFIGS=${CONFIGS:-"1:1024:1 8:64:1 64:1:1"}
AGENT_CPU=${AGENT_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
LOAD=$B/tools/spop-load
OUT=bench/results/spop.md
TMP=$(mktemp -d /tmp/bench-spop.XXXXXX)
agent_pid=

fail() { echo "bench-spop: $*" >&2; exit 1; }

cleanup() {
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

[ -x "$LOAD" ] || fail "$LOAD not built (make build/tools/spop-load)"
command -v taskset >/dev/null || fail "taskset missing (util-linux)"
ncpu=$(nproc)
[ "$ncpu" -ge 2 ] || { AGENT_CPU=0; LOAD_CPU=0; echo "bench-spop: one CPU only, agent and generator share it"; }

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# CPU ticks (utime+stime) of a process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# start_agent NAME ARGV... : starts the agent pinned on AGENT_CPU, waits for its port.
start_agent() {
	local name=$1; shift
	taskset -c "$AGENT_CPU" "$@" >"$TMP/$name.log" 2>&1 &
	agent_pid=$!
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		kill -0 "$agent_pid" 2>/dev/null || { cat "$TMP/$name.log"; fail "$name exited"; }
		sleep 0.05
	done
	cat "$TMP/$name.log"; fail "$name did not listen on $port"
}

stop_agent() {
	kill "$agent_pid" 2>/dev/null
	wait "$agent_pid" 2>/dev/null
	agent_pid=
}

declare -a rows
best_rate=0 best_core=0   # route-agent's best medians, for the target line
hz=$(getconf CLK_TCK)

# run_agent NAME MESSAGE ARGV... : every configuration, ROUNDS rounds each.
run_agent() {
	local name=$1 msg=$2; shift 2
	port=$(free_port)
	local argv=("$@" --listen "127.0.0.1:$port" --workers 1)
	start_agent "$name" "${argv[@]}"
	# warm-up: connections, page faults, caches
	taskset -c "$LOAD_CPU" "$LOAD" -c 4 -d 16 -t 1 -m "$msg" "127.0.0.1:$port" >/dev/null 2>&1
	for cfg in $CONFIGS; do
		IFS=: read -r c d t <<<"$cfg"
		: >"$TMP/rates" ; : >"$TMP/cpu" ; : >"$TMP/gcpu" ; : >"$TMP/percore" ; : >"$TMP/p50" ; : >"$TMP/p99" ; : >"$TMP/p999"
		local errs=0
		for r in $(seq "$ROUNDS"); do
			local t0 t1
			t0=$(cpu_ticks "$agent_pid")
			# shellcheck disable=SC2086
			taskset -c "$LOAD_CPU" "$LOAD" -c "$c" -d "$d" -T "$t" -t "$DURATION" -m "$msg" \
				${SPOP_LOAD_ARGS:-} "127.0.0.1:$port" >"$TMP/run.out" 2>&1
			local rc=$?
			t1=$(cpu_ticks "$agent_pid")
			local kv
			kv=$(tail -1 "$TMP/run.out")
			[ $rc -eq 0 ] || { echo "    round $r: spop-load exit $rc"; cat "$TMP/run.out"; }
			local rate secs e p50 p99 p999 gcpu
			rate=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$kv")
			secs=$(sed -n 's/.* seconds=\([0-9.]*\).*/\1/p' <<<"$kv")
			e=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$kv")
			p50=$(sed -n 's/.* p50_us=\([0-9.]*\).*/\1/p' <<<"$kv")
			p99=$(sed -n 's/.* p99_us=\([0-9.]*\).*/\1/p' <<<"$kv")
			p999=$(sed -n 's/.* p999_us=\([0-9.]*\).*/\1/p' <<<"$kv")
			gcpu=$(sed -n 's/.* gen_cpu_pct=\([0-9.]*\).*/\1/p' <<<"$kv")
			[ -n "$rate" ] || { cat "$TMP/run.out"; fail "no result from spop-load"; }
			errs=$((errs + ${e:-1}))
			# agent CPU share over the round (ticks include handshake and drain; close enough)
			local cpu
			cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$DURATION" 'BEGIN {printf "%.1f", 100 * (b - a) / hz / s}')
			echo "$rate" >>"$TMP/rates"; echo "$cpu" >>"$TMP/cpu"; echo "${gcpu:-0}" >>"$TMP/gcpu"
			awk -v r="$rate" -v c="$cpu" 'BEGIN {if (c > 0) printf "%.0f\n", r / (c / 100); else print 0}' >>"$TMP/percore"
			echo "$p50" >>"$TMP/p50"; echo "$p99" >>"$TMP/p99"; echo "$p999" >>"$TMP/p999"
			printf '    %-6s c=%-3s d=%-3s T=%s round %s: %9.0f decisions/s  agent CPU %5s%%  generator CPU %s%%  p50 %s us  p99 %s us  errors %s\n' \
				"$name" "$c" "$d" "$t" "$r" "$rate" "$cpu" "$gcpu" "$p50" "$p99" "$e"
		done
		local mr mc mg mp m50 m99 m999
		mr=$(median <"$TMP/rates"); mc=$(median <"$TMP/cpu"); mg=$(median <"$TMP/gcpu"); mp=$(median <"$TMP/percore")
		m50=$(median <"$TMP/p50"); m99=$(median <"$TMP/p99"); m999=$(median <"$TMP/p999")
		printf '  %-6s c=%-3s d=%-3s T=%s median: %.0f decisions/s, agent CPU %s%%, generator CPU %s%%, %.0f per agent core-second, p50 %s us p99 %s us p99.9 %s us, errors %s\n' \
			"$name" "$c" "$d" "$t" "$mr" "$mc" "$mg" "$mp" "$m50" "$m99" "$m999" "$errs"
		if [ "$name" = route ]; then
			best_rate=$(awk -v a="$best_rate" -v b="$mr" 'BEGIN {print (b > a) ? b : a}')
			best_core=$(awk -v a="$best_core" -v b="$mp" 'BEGIN {print (b > a) ? b : a}')
		fi
		rows+=("| $name | $c | $d | $t | $(printf '%.0f' "$mr") | $mc % | $mg % | $(printf '%.0f' "$mp") | $m50 | $m99 | $m999 | $errs |")
	done
	stop_agent
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench-spop: agent on CPU $AGENT_CPU, spop-load on CPU $LOAD_CPU, $ROUNDS x ${DURATION}s per configuration"
if [ -x "$B/tools/spop-echo-agent" ]; then
	run_agent echo echo "$B/tools/spop-echo-agent"
else
	echo "  echo agent not built: skipped"
fi
if [ -x "$B/route-agent" ]; then
	run_agent route route "$B/route-agent" --seed haproxy-conf/seed.conf
else
	echo "  route-agent not built: skipped"
fi
[ "${#rows[@]}" -gt 0 ] || fail "no agent built"

mkdir -p bench/results
{
	echo "# SPOP agent throughput (bench/bench-spop.sh)"
	echo
	echo "* date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "* machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, $(uname -r)"
	echo "* compiler: $(${CC:-gcc} --version | head -1); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo "* libev $(dpkg-query -W -f='${Version}' libev4 2>/dev/null || echo '?'), Debian $(cat /etc/debian_version 2>/dev/null || echo '?')"
	echo "* agent pinned to CPU $AGENT_CPU with --workers 1; spop-load pinned to CPU $LOAD_CPU"
	echo "* load average before the run: $load_before (other work on the machine skews the figures)"
	echo "* $ROUNDS rounds x ${DURATION} s per row, medians; c = connections, d = NOTIFYs in flight per connection, T = generator threads"
	echo "* message mix: spop-load default (route/echo message, args path/host/src; 8192 pooled requests, 80 % /<uuid>/... with random ids, 20 % /other)"
	echo "* per core = decisions/s divided by the agent's CPU share (from /proc/PID/stat)"
	echo "* target (docs/architecture.md §4): route-agent alone >= 500k decisions/s on one core"
	echo
	echo "| agent | c | d | T | decisions/s | agent CPU | generator CPU | decisions per agent core-s | p50 us | p99 us | p99.9 us | errors |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
	if [ -x "$B/route-agent" ]; then
		echo
		awk -v r="$best_rate" -v c="$best_core" 'BEGIN {
			v = "NOT met"
			if (c >= 500000) v = "met per agent core-second only (the agent was not saturated; measured rate below 500k/s)"
			if (r >= 500000) v = "met (measured >= 500k/s with one agent core)"
			printf "route-agent: best median %.0f decisions/s measured, %.0f per agent core-second: target %s\n", r, c, v
		}'
	fi
} >"$OUT"
tail -1 "$OUT"
echo "bench-spop: results in $OUT"
