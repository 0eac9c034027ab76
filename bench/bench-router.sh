#!/usr/bin/env bash
# Router microbenchmarks: placement lookup and decision ns/op, table build
# time and memory per node for 100/1k/10k nodes (weight 10, the default,
# and weight 1), the load time of two 100k-line seed directories (10k nodes
# in 2 dcs + 90k pins; 1k nodes + 99k pins) and memory per pin. Times are
# thread CPU time, medians of ROUNDS (default 5) rounds: the machine is
# shared, so the load average is recorded with them. Instruction counts per
# operation come from perf when its counters work, else from callgrind
# (which counts instructions whatever the machine's load).
# BEFORE=DIR (a build directory of another commit, e.g. one made with
# `git archive REV | tar -x -C /tmp/x && make -C /tmp/x`) also runs that
# build's router-bench on the weight-10 tables, right before this one's, so
# a change is compared within one run on the same machine and load.
# Writes bench/results/router.md.
#
# bench/bench-router.sh --pools: path classes only (router-bench --pools):
# router_decide with no route line, 100 and 1000 (hub paths, the worst hub
# path, paths under a route, project paths), ns/op and callgrind
# instructions. BEFORE_TREE=DIR (the source tree of another commit with
# build/librouter.a built, e.g. `git archive main | tar -x -C DIR && make -C
# DIR build/librouter.a`) also links this router-bench against that library
# and header and counts its instructions for the same hub and project paths
# (no route: its directories have none): today's decision, side by side. Writes bench/results/router-pools.md.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${SEEDGATE_BUILD:-$PWD/build}
bin=$B/tools/router-bench
rounds=${ROUNDS:-5}
[ -x "$bin" ] || { echo "bench-router: $bin not built (make)"; exit 1; }
out=bench/results/router.md
before=${BEFORE:+$BEFORE/tools/router-bench}
[ -z "$before" ] || [ -x "$before" ] || { echo "bench-router: $before not built"; exit 1; }

# icount FUNCTION ITERS ARGS...: instructions per call of FUNCTION (inclusive).
# ICOUNT_BIN: another binary than $bin.
icount() {
	local fn=$1 iters=$2 f
	shift 2
	f=$(mktemp /tmp/bench-router.XXXXXX)
	valgrind --tool=callgrind --callgrind-out-file="$f" --toggle-collect="$fn" "${ICOUNT_BIN:-$bin}" "$@" >/dev/null 2>&1
	awk -v n="$iters" '/^(summary|totals):/ { printf "%.0f", $2 / n; exit }' "$f"
	rm -f "$f"
}

if [ "${1:-}" = --pools ]; then
	out=bench/results/router-pools.md
	old=
	if [ -n "${BEFORE_TREE:-}" ]; then
		[ -f "$BEFORE_TREE/build/librouter.a" ] || { echo "bench-router: $BEFORE_TREE/build/librouter.a not built"; exit 1; }
		old=$(mktemp /tmp/router-bench-before.XXXXXX)
		${CC:-gcc} -O2 -std=c11 -D_GNU_SOURCE -I"$BEFORE_TREE/router" -o "$old" bench/router-bench.c \
			"$BEFORE_TREE/build/librouter.a" -lxxhash -pthread
	fi
	# router-bench's --what decide-* runs 4096 checked decisions, then --iters timed ones
	n=100000 calls=$((100000 + 4096))
	{
		echo "# router: path classes (pools and route prefixes)"
		echo
		echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
		echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "- compiler: $(${CC:-gcc} --version | head -1), -O2; libxxhash $(dpkg-query -W -f='${Version}' libxxhash-dev 2>/dev/null || echo unknown)"
		echo "- command: ${BEFORE_TREE:+BEFORE_TREE=$BEFORE_TREE }bench/bench-router.sh --pools ($bin --pools --rounds $rounds)"
		echo "- directory: 1 dc, 1 hub, 100 nodes, 10 pools of 2 servers; N routes, 60 % /dlN, 40 % /api/rN"
		echo "  (so /api is a step of the trie: /api/... paths probe twice)"
		echo
		"$bin" --pools --rounds "$rounds"
		echo
		if command -v valgrind >/dev/null; then
			echo "Instructions per router_decide (callgrind, $calls calls):"
			echo
			echo "| request | ${old:+today (BEFORE_TREE) | }no route | 100 routes | 1000 routes |"
			echo "|---|${old:+---:|}---:|---:|---:|"
			for k in hub hub-api pool project; do
				row="| $k |"
				if [ -n "$old" ]; then
					if [ $k = pool ]; then row="$row - |"
					else row="$row $(ICOUNT_BIN=$old icount router_decide $calls --what decide-$k --routes 0 --iters $n) |"; fi
				fi
				for r in 0 100 1000; do
					if [ $k = pool ] && [ $r = 0 ]; then row="$row - |"; continue; fi
					row="$row $(icount router_decide $calls --what decide-$k --routes $r --iters $n) |"
				done
				echo "$row"
			done
			echo
			echo "(hub: the 4096 hub paths, 1/4 under /api/; hub-api: /api/<letters>/x only;"
			echo "pool: paths under a route; project: /<uuid>/x)"
		fi
		cat <<'READING'

Reading: the route table is a hash trie (router_int.h), so a decision costs
the same with 100 and 1000 routes (the 1000-route column differs by cache
misses only, within the machine's noise); instructions are the same. A
directory without routes decides as before (+10 instructions: two more
fields of the answer). With routes, a hub path whose first byte or first
segment length starts no route is told so before any hash (most hub
traffic); one whose first segment does (/api/... when /api/rN are routes)
hashes one or two prefixes: at worst about 420 instructions, still under a
project decision of today (531). Project paths are decided before any route
lookup: unchanged.
READING
		echo
		echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
	} | tee "$out"
	[ -z "$old" ] || rm -f "$old"
	exit 0
fi

{
	echo "# router microbenchmarks"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- compiler: $(${CC:-gcc} --version | head -1), -O2"
	echo "- libxxhash: $(dpkg-query -W -f='${Version}' libxxhash-dev 2>/dev/null || echo unknown)"
	echo "- command: ${BEFORE:+BEFORE=$BEFORE }bench/bench-router.sh ($bin --rounds $rounds); times are thread CPU time, medians"
	echo "- lookup = router_preference (1 dc, replicas 2) over 65536 random ids;"
	echo "  decide = router_decide on \"/<uuid>/x\" paths of the same ids (classify, decode,"
	echo "  canonical text, pin probe, ring, health); the 100k-line rows decide on pinned ids"
	echo
	if [ -n "$before" ]; then
		echo "## before: weight 10, $before"
		echo
		"$before" --weight 10 --rounds "$rounds" | tail -n +3
		echo
	fi
	# weight 10 at the default ring-scale (8), weight 1, and weight 10 at
	# ring-scale 4 (what a directory near the point budget trades for memory)
	for row in "10 8" "1 8" "10 4"; do
		set -- $row
		echo "## weight $1, ring-scale $2"
		echo
		if [ "$row" = "10 8" ]; then "$bin" --weight "$1" --rounds "$rounds" | tail -n +3
		else "$bin" --weight "$1" --scale "$2" --quick | tail -n +3; fi
		echo
	done
	echo "## instructions per operation"
	echo
	# (capture first: grep -q closing the pipe early made perf fail under
	# pipefail, and the test read "counters work")
	perf_out=$(perf stat -e instructions true 2>&1 || true)
	if ! command -v perf >/dev/null || grep -q "not supported" <<<"$perf_out"; then
		if command -v valgrind >/dev/null; then
			echo "perf counters are not available here; callgrind counts (1k nodes, weight 10):"
			echo
			echo "| operation | instructions |"
			echo "|---|---:|"
			echo "| lookup (router_preference) | $(icount router_preference 100000 --what lookup --nodes 1000 --iters 100000) |"
			echo "| decide (router_decide, no pins) | $(icount router_decide 100000 --what decide --nodes 1000 --iters 100000) |"
			echo "| decide, pinned id (65536 pins) | $(icount router_decide 100000 --what decide-pin --nodes 1000 --pins 65536 --iters 100000) |"
			echo "| build 1k nodes (router_dir_parse, 2.56M points), per point | $(icount router_dir_parse 2560000 --what build --nodes 1000) |"
		else
			echo "perf counters and valgrind unavailable: no instruction counts"
		fi
	else
		echo '```'
		perf stat -e instructions "$bin" --what decide --nodes 1000 --iters 10000000 2>&1 | grep instructions
		echo '```'
	fi
	echo
	echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
	cat <<'HISTORY'

## ring-scale (points per unit of weight set by the operator, 2^25-point budget)

2026-12-01T05:24Z, BEFORE=build of main (commit a3de705, every node weight
x 256 points), load average 4.6-7.3 (shared machine: lookup and decide
figures move by 30 % or more between runs; memory is exact). At the default
ring-scale 8 placement and memory are main's at every size (20.67, 16.59,
13.31 KB a node at 100, 1k, 10k nodes; 140.1 MB for the 10k-node 100k-line
directory). Building a ring above 8 M points costs more CPU than on main
(10k nodes, 25.6 M points: 925 vs 402 ms; 100k-line load 539 vs 274 ms):
the build sorts it in 4 passes, hashing the points again in each, to need
at most 64 MB of scratch instead of 205 MB. ring-scale 4 (160 points a
weight-10 node): 1.02 KB a node at 10k nodes, built in 40 ms. Callgrind,
1k-node build (2.56 M points, one pass): 157 instructions a point (main:
144). A directory over the budget is refused before anything is built:
`seedctl check` and `seedctl where` on 8,000 nodes of weight=256
(/usr/bin/time): 0.02 s and 4.4 MB max RSS each (main built 8.3 GB of
rings in 26.6 s); 100k default-weight nodes at ring-scale 3 (8 M points):
check 0.17 s / 36 MB, where 0.97 s / 169 MB.

The figures of the point budget that followed the node count (commits
279be5a-2790f35: 10k weight-10 nodes at 1.02 KB a node with the busiest
node at 1.33 x the mean, about half of a dc's projects moving when it
crossed 410, 820, 1,639 or 3,277 nodes) are superseded by these: ring-scale
(9d10fc3) replaced that scheme, and they describe no build since.

## before (commit f9cfa83, two-level ring: bucket index, then 4-byte entries)

Measured 2026-11-22T03:30Z, this script with that commit's router-bench
(SEEDGATE_BUILD pointing at its build), run right before the gapped ring's
own run, load average 1.96-2.33. A lookup then read the bucket index, then
the entries: two dependent cache misses.

| nodes (weight 10) | build (ms) | lookup (ns/op) | decide (ns/op) | memory/node (KB) |
|---:|---:|---:|---:|---:|
| 100 | 12.9 | 66.1 | 121.7 | 12.75 |
| 1000 | 107.9 | 196.2 | 383.3 | 12.26 |
| 10000 | 1146.1 | 223.7 | 446.6 | 13.48 |

| nodes (weight 1) | build (ms) | lookup (ns/op) | decide (ns/op) | memory/node (KB) |
|---:|---:|---:|---:|---:|
| 100 | 5.0 | 55.8 | 103.8 | 1.51 |
| 1000 | 15.4 | 72.7 | 134.7 | 1.47 |
| 10000 | 119.7 | 193.6 | 408.5 | 1.41 |

100k-line loads (weight 10): 10k nodes in 2 dcs + 90k pins 1199 ms,
141.8 MB; 1k nodes + 99k pins 155 ms, 20.7 MB (weight 1: 186 and 78 ms).
Callgrind (1k nodes): lookup 171, decide 498, decide on a pinned id 436
instructions; build 134 instructions per point.

## route-agent impact (bench/bench-agent.sh, BEFORE=)

2026-11-22T03:36Z, bench-agent.sh of commit f9cfa83 driving two
route-agents built from that commit's tree, one with the gapped ring's
router files (router_place.c, router_int.h, router_decide.c) and one
without; 3 rounds x 4 s, medians, load average 0.7 -> 2.4 (other jobs
ran). Decisions per agent CPU-second, after/before: 10k-node seed 1.14
(8 connections x 64 in flight: 842683 -> 915892) and 1.02 (64 x 4);
small seed 1.00 and 0.97 (its ring stays in cache: no change expected;
the spread is the machine's noise).

## before (commit ad017c3, 8-byte points, comparison-free but cache-hostile build)

Measured 2026-11-22 on the same machine (load average ~6), router-bench
--quick of that commit (decide then formatted the id inside the timed loop):

| nodes | build (ms) | lookup (ns/op) | decide (ns/op) | memory/node (KB) |
|---:|---:|---:|---:|---:|
| 100 | 20.8 | 86.3 | 564.4 | 22.73 |
| 1000 | 282.2 | 256.0 | 860.5 | 22.24 |
| 10000 | 2253.4 | 282.3 | 735.7 | 23.46 |

100k-line loads: 10k nodes + 90k pins 2291 ms, 239.3 MB; 1k nodes + 99k
pins 394 ms, 30.4 MB. Callgrind (1k nodes): lookup 171, decide 1117,
decide on a pinned id 1034 instructions; build 178 instructions per point.
HISTORY
} | tee "$out"
