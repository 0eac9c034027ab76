#!/usr/bin/env bash
# bench-agent.sh — route-agent alone, driven by spop-load (HAProxy's side of
# SPOP, no HAProxy): routing decisions per second on one core, and the
# NOTIFY->ACK latency percentiles.
#
# The agent runs with one worker pinned to AGENT_CPU (taskset), the
# generator on LOAD_CPU. Per configuration it runs ROUNDS rounds of DURATION
# seconds and reports, per round and as medians: decisions/s, the agent's
# CPU use (utime+stime from /proc: below 100 % means the generator, not the
# agent, was the limit), decisions per agent CPU-second (the agent's
# capacity on one core, robust to a generator that cannot saturate it) and
# latency percentiles.
#
# Seeds: haproxy-conf/seed.conf (small) and a generated one with 10k nodes
# in 2 datacenters and 1k pins (decision cost must not grow with it).
# BEFORE=/path/to/an/older/route-agent adds it to every round, alternating
# with the current build (or AGENT=/path), and prints the after/before ratio.
#
# Environment: SEEDGATE_BUILD (./build), ROUNDS (3), DURATION (4),
# CONFIGS ("8:64 64:4": connections:depth), AGENT_CPU (1), LOAD_CPU (0),
# BEFORE (unset), OUT (bench/results/agent.md).
# Target (docs/architecture.md §4): >= 500k decisions/s on one core.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${SEEDGATE_BUILD:-$PWD/build}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4}
CONFIGS=${CONFIGS:-"8:64 64:4"}
AGENT_CPU=${AGENT_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BEFORE=${BEFORE:-}
OUT=${OUT:-bench/results/agent.md}
AGENT=${AGENT:-$B/route-agent}
LOAD=$B/tools/spop-load
TMP=$(mktemp -d /tmp/bench-agent.XXXXXX)
agent_pid=

fail() { echo "bench-agent: $*" >&2; exit 1; }
cleanup() {
	if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null; wait "$agent_pid" 2>/dev/null; fi
	rm -rf "$TMP"
}
trap cleanup EXIT

[ -x "$AGENT" ] || fail "$AGENT not built (make)"
[ -x "$LOAD" ] || fail "$LOAD not built (make)"
command -v taskset >/dev/null || fail "taskset missing (util-linux)"
[ "$(nproc)" -ge 2 ] || { AGENT_CPU=0; LOAD_CPU=0; echo "bench-agent: one CPU: agent and generator share it"; }
hz=$(getconf CLK_TCK)

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
kv() { tr ' ' '\n' | sed -n "s/^$1=//p"; }   # kv KEY < "k=v k=v ..."

# A large seed: 10k nodes over 2 dcs, 4 hubs, 1k pins.
big_seed() {
	/usr/bin/python3 - "$1" <<'PY'
import random, sys, uuid
rng = random.Random(1)
out = ["replicas 2", "dc us-east", "dc eu-west"]
for i in range(4):
    out.append(f"hub hub{i} 10.0.0.{i + 1}:80 dc={'us-east' if i < 2 else 'eu-west'}")
for i in range(10000):
    out.append(f"node n{i} 10.{1 + i // 60000}.{(i // 250) % 240}.{i % 250 + 1}:80 dc={'us-east' if i % 2 == 0 else 'eu-west'}")
for i in range(1000):
    pid = uuid.UUID(int=rng.getrandbits(128), version=4)
    out.append(f"project {pid} n{rng.randrange(10000)} n{rng.randrange(10000)}")
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
}

# start_agent BIN SEED: the agent pinned on AGENT_CPU, one worker; waits for
# its "started" log line (not just an open port: another process may have
# taken a port from free_port while a big seed loaded).
start_agent() {
	for _attempt in 1 2 3; do
		port=$(free_port)
		taskset -c "$AGENT_CPU" "$1" --listen "127.0.0.1:$port" --seed "$2" --workers 1 >"$TMP/agent.log" 2>&1 &
		agent_pid=$!
		for _ in $(seq 1200); do    # up to 60 s: a 10k-node seed takes seconds to load
			grep -q "started: listening" "$TMP/agent.log" && return 0
			kill -0 "$agent_pid" 2>/dev/null || break
			sleep 0.05
		done
		grep -q "Address already in use" "$TMP/agent.log" || { cat "$TMP/agent.log"; fail "route-agent did not start"; }
		wait "$agent_pid" 2>/dev/null
		agent_pid=
	done
	fail "route-agent: no free port after 3 attempts"
}
stop_agent() { kill "$agent_pid" 2>/dev/null; wait "$agent_pid" 2>/dev/null; agent_pid=; }

# one_round LABEL CONNS DEPTH: one spop-load run against the running agent;
# appends "label rate cpu_pct per_cpu_s p50 p99 p999" to $TMP/rows.
one_round() {
	local label=$1 conns=$2 depth=$3 t0 t1 line rate ticks cpu per
	t0=$(cpu_ticks "$agent_pid")
	line=$(taskset -c "$LOAD_CPU" "$LOAD" -c "$conns" -d "$depth" -t "$DURATION" -p 80 -i 100000 \
		"127.0.0.1:$port" 2>"$TMP/load.err" | tail -1)
	t1=$(cpu_ticks "$agent_pid")
	rate=$(kv rate <<<"$line")
	[ -n "$rate" ] || { cat "$TMP/load.err"; fail "spop-load failed: $line"; }
	ticks=$((t1 - t0))
	cpu=$(awk -v t="$ticks" -v hz="$hz" -v d="$DURATION" 'BEGIN {printf "%.0f", 100 * t / hz / d}')
	per=$(awk -v r="$rate" -v t="$ticks" -v hz="$hz" -v d="$DURATION" 'BEGIN {if (t == 0) print "n/a"; else printf "%.0f", r * d / (t / hz)}')
	echo "$label $rate $cpu $per $(kv p50_us <<<"$line") $(kv p99_us <<<"$line") $(kv p999_us <<<"$line")" >>"$TMP/rows"
	printf '  %-28s %9s dec/s  agent cpu %3s%%  %9s dec/cpu-s  p50 %7s us  p99 %8s us\n' "$label" "$rate" "$cpu" "$per" \
		"$(kv p50_us <<<"$line")" "$(kv p99_us <<<"$line")"
}

big_seed "$TMP/big.conf"
declare -a seeds=("small:haproxy-conf/seed.conf" "10k-nodes:$TMP/big.conf")
declare -a bins=("after:$AGENT")
[ -n "$BEFORE" ] && bins=("before:$BEFORE" "after:$AGENT")
: >"$TMP/rows"

echo "bench-agent: route-agent on CPU $AGENT_CPU, spop-load on CPU $LOAD_CPU, $ROUNDS x ${DURATION}s per configuration"
for s in "${seeds[@]}"; do
	for r in $(seq "$ROUNDS"); do
		for b in "${bins[@]}"; do                  # before/after alternate inside a round
			start_agent "${b#*:}" "${s#*:}"
			taskset -c "$LOAD_CPU" "$LOAD" -c 4 -d 16 -n 20000 "127.0.0.1:$port" >/dev/null 2>&1   # warm-up
			for cfg in $CONFIGS; do
				conns=${cfg%%:*} depth=${cfg##*:}
				one_round "${b%%:*}/${s%%:*}/${conns}x${depth}" "$conns" "$depth"
			done
			stop_agent
		done
	done
done

# Medians per label, in first-seen order.
summary=$(awk '{print $1}' "$TMP/rows" | awk '!seen[$0]++' | while read -r label; do
	med() { awk -v l="$label" -v c="$1" '$1 == l {print $c}' "$TMP/rows" | median; }
	printf '| %s | %s | %s %% | %s | %s | %s | %s |\n' "$label" "$(med 2)" "$(med 3)" "$(med 4)" "$(med 5)" "$(med 6)" "$(med 7)"
done)
ratios=
if [ -n "$BEFORE" ]; then
	ratios=$(awk '{split($1, p, "/"); k = p[2] "/" p[3]; if (p[1] == "before") { b[k] += $4; nb[k]++ } else { a[k] += $4; na[k]++ } }
		END { for (k in a) if (nb[k]) printf "| %s | %.2f |\n", k, (a[k] / na[k]) / (b[k] / nb[k]) }' "$TMP/rows")
fi

mkdir -p "$(dirname "$OUT")"
{
	echo "# route-agent alone: decisions per second (bench/bench-agent.sh)"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet -- spoe-agents 2>/dev/null || echo ' (+ local changes)')"
	echo "- machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(uname -sr)"
	echo "- versions: $(${CC:-gcc} --version | head -1); libev $(dpkg-query -W -f='${Version}' libev-dev 2>/dev/null); build flags -O2 -g"
	echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: other jobs ran)"
	echo "- route-agent --workers 1 pinned to CPU $AGENT_CPU; spop-load (1 thread, 80 % project paths from 100k ids) on CPU $LOAD_CPU"
	echo "- $ROUNDS rounds x ${DURATION}s per row, medians; configuration = connections x NOTIFYs in flight per connection"
	echo
	echo "| binary/seed/config | decisions/s | agent CPU | decisions per agent CPU-second | p50 µs | p99 µs | p99.9 µs |"
	echo "|---|---|---|---|---|---|---|"
	echo "$summary"
	if [ -n "$ratios" ]; then
		echo
		echo "after/before ratio of decisions per agent CPU-second:"
		echo
		echo "| seed/config | ratio |"
		echo "|---|---|"
		echo "$ratios"
	fi
	echo
	echo "Decisions per agent CPU-second is the agent's capacity on one core; decisions/s"
	echo "is what this generator reached (agent CPU < 100 % means the generator was the limit)."
	echo "Target (docs/architecture.md §4): >= 500k decisions/s on one core."
} >"$OUT.tmp"
[ -n "${BENCH_NOTES:-}" ] && printf '\n%s\n' "$BENCH_NOTES" >>"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "bench-agent: wrote $OUT"
cat "$OUT"
