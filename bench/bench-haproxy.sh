#!/usr/bin/env bash
# bench/bench-haproxy.sh — what routing costs HAProxy, in req/s relative to
# plain HAProxy, with the shipped haproxy-conf/haproxy.cfg in every run.
#
# Configurations, alternating within each round (BENCH_ROUNDS, default 4),
# each a fresh HAProxy (nbthread 1, pinned to CPU 0) driven by
# wrk -t1 -c64 -d${BENCH_DURATION:-5}s (CPU 1, with the demo servers and the
# route agent):
#   plain-rotate  SG_ROUTE_OFF=1: no routing, every request to the one hub
#   plain-repeat  the same, wrk repeating one path
#   agent-rotate  per-request SPOE to build/route-agent, a new project per request
#   cache-repeat  SG_ROUTE_CACHE=1, every connection repeats one project
#   cache-rotate  SG_ROUTE_CACHE=1, a new project per request (cache misses)
#   lua-rotate    SG_ROUTE_LUA=1: a Lua table in HAProxy with the same ids
#                 and the same placement (seedctl where), for comparison
# The map cache against the other routing modes (bench/bench-map.sh runs
# these alone), one scenario each with every mode:
#   {off,spoe,cache,map}-hot    every request another project among 1000
#   {off,spoe,cache,map}-repeat every connection repeats one project
#   {off,spoe,cache,map}-fresh  every request a never-seen project
# off = SG_ROUTE_OFF=1, spoe = per-request SPOE, cache = SG_ROUTE_CACHE=1,
# map = SG_ROUTE_MAP=1 with a second route agent publishing its map.
# BENCH_CONFIGS="plain-repeat cache-repeat" runs a subset. HAPROXY=/path
# runs another HAProxy binary. BENCH_EXTRA_NODES=N adds N servers no
# project is placed on to the node backends, BENCH_NODE_SHARDS=K spreads
# the nodes over K node backends (`node-shards K`; bench/lib.sh).
# BENCH_SERVERS=apart runs a demo-server process per server instead of one
# for all (bench/lib.sh says why one is the default).
# "rotate" runs use bench/wrk/rotate.lua over BENCH_IDS (default 10000)
# project ids, "repeat" runs bench/wrk/repeat.lua; each is compared with the
# plain run of the same wrk script. Medians over the rounds, ratios against
# the targets of docs/architecture.md section 4, then HAProxy's instructions per request
# under callgrind (robust to other load on the machine; BENCH_CALLGRIND=0
# skips it), recorded in bench/results/haproxy.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${SEEDGATE_BUILD:-$root/build}
rounds=${BENCH_ROUNDS:-4}
duration=${BENCH_DURATION:-5}
nids=${BENCH_IDS:-10000}
out=${BENCH_OUT:-$root/bench/results/haproxy.md}
py=/usr/bin/python3
haproxy_bin=${HAPROXY:-haproxy}

. bench/lib.sh
bench_init haproxy "seedctl route-agent tools/demo-server" "$haproxy_bin wrk taskset"
# --- the bench's seed: one datacenter, one hub, three nodes ----------------
bench_seed
agent_map=$(free_port)   # the map cache's agent
$py -c "import uuid,sys; [print(uuid.uuid4()) for _ in range($nids)]" >"$work/ids"
head -1000 "$work/ids" >"$work/ids-hot"
# the map cache's maps must exist before HAProxy starts (run-haproxy.sh
# creates them too; the callgrind runs start HAProxy directly)
: >"$work/route-agent1.map"
: >"$work/route-agent2.map"
# The Lua table: the same placement the agent computes (seedctl where).
"$build/seedctl" where --seed "$work/seed.conf" - <"$work/ids" |
	awk -F'\t' 'BEGIN { print "return {" } { printf "[\"%s\"]={\"nodes_bench\",\"%s\"},\n", $1, $2 } END { print "}" }' \
	>"$work/routes.lua"
bench_servers
# The Lua comparison's files, in every HAProxy's environment (unused unless
# SG_ROUTE_LUA=1); wrk's ids.
hap_env=(SG_LUA_FILE=$root/bench/wrk/haproxy-route.lua SG_LUA_TABLE=$work/routes.lua)
wrk_env=(SG_BENCH_IDS=$work/ids)
# the map cache's agent: publishes into $work/route-agent1.map
taskset -c $cpu_rest "$build/route-agent" --listen "127.0.0.1:$agent_map" --seed "$work/seed.conf" \
	--workers 1 --haproxy-socket "$work/haproxy-map.sock" --map-file "$work/route-agent1.map" \
	>>"$work/agent-map.log" 2>&1 &
pids+=($!)
wait_tcp "$agent_map"

# wrk_for SCRIPT -> "lua-file ids-file": hot rotates over the first 1000 ids
wrk_for() {
	case $1 in
	hot) echo "bench/wrk/rotate.lua $work/ids-hot" ;;
	*) echo "bench/wrk/$1.lua $work/ids" ;;
	esac
}

# run_one NAME SCRIPT ENV...: one fresh HAProxy with ENV, one measurement.
run_one() {
	local name=$1 script=$2; shift 2
	local attempt
	# Other programs on this machine may take a port between free_port and
	# HAProxy's bind: then HAProxy exits, and we try again with new ports.
	for attempt in 1 2 3; do
		start_haproxy "$@" && break
		[ $attempt = 3 ] && { echo "bench-haproxy: HAProxy does not start (see $work/haproxy.log)" >&2; exit 1; }
	done
	measure "$name" "$script"
}

# measure NAME SCRIPT: 1 s warm-up, one measured wrk run, HAProxy stopped;
# appends "round name rps errors to_hubs to_nodes cpu_us" to raw.tsv.
measure() {
	local name=$1 script=$2
	local lua ids
	read -r lua ids < <(wrk_for "$script")
	SG_BENCH_IDS=$ids taskset -c $cpu_rest wrk -t1 -c64 -d1s -s "$lua" \
		"http://127.0.0.1:$http" >/dev/null
	local worker t0 t1
	worker=$(cat "/proc/$hap_pid/task/$hap_pid/children" | awk '{ print $1 }')
	t0=$(cpu_ticks "$worker")
	SG_BENCH_IDS=$ids taskset -c $cpu_rest wrk -t1 -c64 -d"${duration}s" -s "$lua" \
		"http://127.0.0.1:$http" >"$work/wrk.out"
	t1=$(cpu_ticks "$worker")
	local stat hubs nodes
	wrk_result "$work/wrk.out" $((t1 - t0))
	local rps=$wrk_rps errs=$wrk_errs us=$wrk_us
	stat=$(show_stat)
	hubs=$(echo "$stat" | awk -F, '$1 == "hubs_bench" && $2 == "BACKEND" { print $8 }')
	nodes=$(echo "$stat" | awk -F, '$1 ~ /^nodes_bench/ && $2 == "BACKEND" { n += $8 } END { print n + 0 }')
	kill -TERM "$hap_pid"; wait "$hap_pid" 2>/dev/null || true; hap_pid=
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$rps" "$errs" "$hubs" "$nodes" "$us" >>"$work/raw.tsv"
	printf '  round %s %-13s %10s req/s  %6s us HAProxy CPU/req  errors %s  to hubs %s  to nodes %s\n' \
		"$round" "$name" "$rps" "$us" "$errs" "$hubs" "$nodes"
}

configs=(
	"plain-rotate rotate SG_ROUTE_OFF=1"
	"agent-rotate rotate"
	"cache-rotate rotate SG_ROUTE_CACHE=1"
	"lua-rotate rotate SG_ROUTE_LUA=1"
	"plain-repeat repeat SG_ROUTE_OFF=1"
	"cache-repeat repeat SG_ROUTE_CACHE=1"
)
map_env="SG_ROUTE_MAP=1 SG_AGENT1=127.0.0.1:$agent_map SG_AGENT2=127.0.0.1:$agent_map"
for scen in hot repeat fresh; do
	configs+=("off-$scen $scen SG_ROUTE_OFF=1" "spoe-$scen $scen" "cache-$scen $scen SG_ROUTE_CACHE=1"
		"map-$scen $scen $map_env")
done
# the map-cache comparison only when asked for (bench/bench-map.sh)
[ -n "${BENCH_CONFIGS:-}" ] || configs=("${configs[@]:0:6}")
if [ -n "${BENCH_CONFIGS:-}" ]; then   # e.g. BENCH_CONFIGS="plain-repeat cache-repeat"
	keep=()
	for c in "${configs[@]}"; do
		case " $BENCH_CONFIGS " in *" ${c%% *} "*) keep+=("$c") ;; esac
	done
	configs=("${keep[@]}")
fi
echo "bench-haproxy: $rounds rounds x ${#configs[@]} configurations, wrk -t1 -c64 -d${duration}s, $nids project ids"
for ((round = 1; round <= rounds; round++)); do
	# alternate: rotate the order every round so no configuration always
	# runs first or last
	for ((k = 0; k < ${#configs[@]}; k++)); do
		c=${configs[$(( (k + round - 1) % ${#configs[@]} ))]}
		# shellcheck disable=SC2086
		run_one $c
	done
done

# --- instructions per request (callgrind) ----------------------------------------
# req/s and even CPU time swing with whatever else runs on the machine;
# instructions executed by HAProxy per request do not. Each configuration
# runs under callgrind twice (2 s and 6 s of wrk -c8); the difference of the
# instruction totals over the difference of the request counts removes the
# start-up cost. The map cache's runs first warm the maps with a fixed
# number of requests (three passes over the ids: its agent publishes a
# project on its second miss), the same in both runs, so the difference
# removes them too. Skipped without valgrind or with BENCH_CALLGRIND=0.
# warm_map PORT IDS: three passes of GETs over the ids, one connection
warm_map() {
	$py - "$1" "$2" <<'PY'
import http.client, sys
ids = [l.strip() for l in open(sys.argv[2]) if l.strip()]
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
for _ in range(3):
    for i in ids:
        c.request("GET", f"/{i}/files/a.txt")
        c.getresponse().read()
PY
}
# cg_run DURATION SCRIPT ENV... -> "requests instructions"
cg_run() {
	local dur=$1 script=$2; shift 2
	local cg_http i vp lua ids
	read -r lua ids < <(wrk_for "$script")
	cg_http=$(free_port)
	rm -f "$work"/cgout.*
	env SG_HTTP_BIND=127.0.0.1:$cg_http SG_PROXY_BIND=127.0.0.1:$(free_port) SG_RUN_DIR=$work \
		SG_CONF_DIR=$root/haproxy-conf SG_AGENT1=127.0.0.1:$agent SG_AGENT2=127.0.0.1:$agent \
		SG_DC=bench SG_NBTHREAD=1 SG_QUIET=1 SG_SPOE_PROCESSING=2s SG_USER=root SG_GROUP=root \
		SG_LUA_FILE=$root/bench/wrk/haproxy-route.lua SG_LUA_TABLE=$work/routes.lua "$@" \
		valgrind --tool=callgrind --callgrind-out-file="$work/cgout.%p" \
		"$haproxy_bin" -W -db -f haproxy-conf/haproxy.cfg -f "$work/backends.cfg" >>"$work/callgrind.log" 2>&1 &
	vp=$!
	for ((i = 0; i < 300; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$cg_http") 2>/dev/null && break
		kill -0 "$vp" 2>/dev/null || break
		sleep 0.1
	done
	sleep 1
	case " $* " in *" SG_ROUTE_MAP=1 "*)
		case $script in
		hot) warm_map "$cg_http" "$ids" ;;
		repeat) warm_map "$cg_http" <(head -1 "$ids") ;;
		esac ;;
	esac
	SG_BENCH_IDS=$ids wrk -t1 -c8 -d"${dur}s" -s "$lua" \
		"http://127.0.0.1:$cg_http" >"$work/wrk-cg.out"
	kill -TERM "$vp" 2>/dev/null; wait "$vp" 2>/dev/null
	echo "$(awk '/requests in/ { print $1 }' "$work/wrk-cg.out") $(cat "$work"/cgout.* 2>/dev/null | awk '/^summary:/ { s += $2 } END { print s + 0 }')"
}
if [ "${BENCH_CALLGRIND:-1}" != 0 ] && command -v valgrind >/dev/null; then
	echo "bench-haproxy: instructions per request under callgrind"
	for c in "${configs[@]}"; do
		# shellcheck disable=SC2086
		set -- $c
		name=$1 script=$2; shift 2
		read -r n1 i1 < <(cg_run 2 "$script" "$@")
		read -r n2 i2 < <(cg_run 6 "$script" "$@")
		ir=$(awk -v a="$i1" -v b="$i2" -v c="$n1" -v d="$n2" 'BEGIN { printf "%.0f", (d > c ? (b - a) / (d - c) : 0) }')
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$n1" "$i1" "$n2" "$i2" "$ir" >>"$work/cg.tsv"
		printf '  %-13s %8s instructions/request (requests %s and %s)\n' "$name" "$ir" "$n1" "$n2"
	done
fi
touch "$work/cg.tsv"

# --- report ---------------------------------------------------------------------
{
	echo "haproxy: $("$haproxy_bin" -v | head -1)"
	echo "wrk: $(wrk -v 2>&1 | head -1)"
	echo "kernel: $(uname -sr)"
	echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $ncpu cores"
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shows here)"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "node backends: ${BENCH_NODE_SHARDS:-1} (node-shards), 3 nodes + ${BENCH_EXTRA_NODES:-0} servers no project is placed on (BENCH_EXTRA_NODES)"
	echo "demo servers: ${BENCH_SERVERS:-one} (one: one process serves the hub and the nodes; apart: a process each; bench/lib.sh)"
} >"$work/machine"
$py - "$work/raw.tsv" "$work/machine" "$out" "$rounds" "$duration" "$nids" "$work/cg.tsv" <<'PY'
import statistics, sys
raw, machine, out, rounds, duration, nids, cgfile = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(raw) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r[1], []).append(r)
med = {k: statistics.median(float(r[2]) for r in v) for k, v in by.items()}
at = {(r[0], r[1]): float(r[2]) for r in rows}
def per_round(name, base):
    # this configuration over BASE within each round (runs minutes apart
    # share less of the machine's drift than the medians do), sorted
    rs = sorted(at[(k, name)] / at[(k, base)] for k, n in at if n == name and (k, base) in at and at[(k, base)])
    return " ".join(f"{x:.2f}" for x in rs) or "-"
cpu = {k: statistics.median(float(r[6]) for r in v) for k, v in by.items()}
targets = {  # (baseline, target ratio or None, what)
    "agent-rotate": ("plain-rotate", 0.70, "per-request SPOE, every request another project"),
    "cache-repeat": ("plain-repeat", 0.90, "decision cache, connection repeats a project"),
    "cache-rotate": ("plain-rotate", None, "decision cache, every request another project (>= agent-rotate)"),
    "lua-rotate": ("plain-rotate", None, "Lua table in HAProxy (comparison, docs/architecture.md: ~0.63)"),
}
for scen, what in (("hot", "every request another of 1000 hot projects"),
                   ("repeat", "every connection repeats one project"),
                   ("fresh", "every request a never-seen project")):
    targets[f"spoe-{scen}"] = (f"off-{scen}", None, f"per-request SPOE, {what}")
    targets[f"cache-{scen}"] = (f"off-{scen}", None, f"per-connection cache, {what}")
    targets[f"map-{scen}"] = (f"off-{scen}", 0.92 if scen == "hot" else None, f"map cache, {what}")
names = ["plain-rotate", "plain-repeat", "agent-rotate", "cache-repeat", "cache-rotate", "lua-rotate"]
names += [f"{m}-{s}" for s in ("hot", "repeat", "fresh") for m in ("off", "spoe", "cache", "map")]
def miss_check(name, value_of, higher_better):
    # the miss path: map-fresh at most 5 % slower than per-request SPOE
    if name != "map-fresh" or "spoe-fresh" not in med:
        return None
    a, b = value_of("map-fresh"), value_of("spoe-fresh")
    ok = a >= 0.95 * b if higher_better else a <= b / 0.95
    return (">= 0.95 x spoe-fresh", "meets" if ok else "MISSES")
lines = ["# bench-haproxy: routing cost relative to plain HAProxy", "",
         "Produced by `bench/bench-haproxy.sh` (`make bench`, or `BENCH_ONLY=haproxy bench/run-all.sh`).",
         f"HAProxy nbthread 1 pinned to CPU 0; wrk -t1 -c64 -d{duration}s, demo servers and one route agent",
         f"(--workers 1) on CPU 1; {rounds} rounds, configurations alternating; {nids} project ids;",
         "haproxy-conf/haproxy.cfg with SG_QUIET=1 in every run.", "", "```"]
lines += open(machine).read().splitlines()
lines += ["```", "", "## Raw runs (req/s)", "",
          "| round | configuration | req/s | HAProxy CPU µs/req | errors | to hubs | to nodes |",
          "|---|---|---|---|---|---|---|"]
for r in rows:
    lines.append(f"| {r[0]} | {r[1]} | {float(r[2]):.0f} | {r[6]} | {r[3]} | {r[4]} | {r[5]} |")
lines += ["", "## Medians and ratios", "",
          "Ratio = median req/s over the baseline's. CPU ratio = the baseline's median HAProxy CPU",
          "per request over this configuration's: the req/s ratio HAProxy alone would allow, and far",
          "less sensitive to other load on the machine than req/s. Each round: the ratio within each",
          "round, lowest first (for map-fresh, against spoe-fresh), to show how far rounds spread.", "",
          "| configuration | median req/s | HAProxy µs/req | ratio to | ratio | CPU ratio | each round | target | verdict (req/s) |",
          "|---|---|---|---|---|---|---|---|---|"]
for name in names:
    if name not in med:
        continue
    if name not in targets or targets[name][0] not in med:
        lines.append(f"| {name} | {med[name]:.0f} | {cpu[name]:.1f} | - | 1.00 | 1.00 | - | - | baseline |")
        continue
    base, tgt, what = targets[name]
    ratio = med[name] / med[base]
    if tgt is not None:
        verdict = "meets" if ratio >= tgt else "MISSES"
        tgt_s = f">= {tgt:.2f}"
    elif name == "cache-rotate":
        verdict = "meets" if med[name] >= 0.95 * med["agent-rotate"] else "MISSES"
        tgt_s = ">= agent-rotate (5% noise)"
    else:
        verdict, tgt_s = "-", "-"
    mc = miss_check(name, lambda n: med[n], True)
    if mc:
        tgt_s, verdict = mc
    cratio = cpu[base] / cpu[name] if cpu[name] else 0
    each = per_round(name, "spoe-fresh" if mc else base)
    lines.append(f"| {name} ({what}) | {med[name]:.0f} | {cpu[name]:.1f} | {base} | {ratio:.2f} | {cratio:.2f} | {each} | {tgt_s} | {verdict} |")
cg = {l.split("\t")[0]: l.rstrip("\n").split("\t") for l in open(cgfile) if l.strip()}
if cg:
    lines += ["", "## HAProxy instructions per request (callgrind)", "",
              "Deterministic where req/s is not: each configuration under valgrind --tool=callgrind,",
              "wrk -t1 -c8 for 2 s and for 6 s (map-hot, map-repeat: after the same fixed warm-up);",
              "(instructions(6 s) - instructions(2 s)) /",
              "(requests(6 s) - requests(2 s)). Ratio = baseline's instructions over this one's:",
              "the req/s ratio if HAProxy's CPU is the bottleneck, as it is here.", "",
              "| configuration | requests (2 s / 6 s) | instructions/request | ratio to | ratio | target | verdict |",
              "|---|---|---|---|---|---|---|"]
    def ir(n):
        return float(cg[n][5]) if n in cg else 0.0
    for name in names:
        if name not in cg:
            continue
        r = cg[name]
        if name not in targets or targets[name][0] not in cg:
            lines.append(f"| {name} | {r[1]} / {r[3]} | {ir(name):.0f} | - | 1.00 | - | baseline |")
            continue
        base, tgt, what = targets[name]
        ratio = ir(base) / ir(name) if ir(name) else 0
        if tgt is not None:
            tgt_s, verdict = f">= {tgt:.2f}", "meets" if ratio >= tgt else "MISSES"
        elif name == "cache-rotate":
            tgt_s = ">= agent-rotate"
            verdict = "meets" if ir(name) <= ir("agent-rotate") else "MISSES"
        else:
            tgt_s, verdict = "-", "-"
        if name == "map-fresh" and "spoe-fresh" in cg:
            tgt_s = "<= spoe-fresh / 0.95"
            verdict = "meets" if ir(name) <= ir("spoe-fresh") / 0.95 else "MISSES"
        lines.append(f"| {name} | {r[1]} / {r[3]} | {ir(name):.0f} | {base} | {ratio:.2f} | {tgt_s} | {verdict} |")
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY
echo "bench-haproxy: results in $out"
