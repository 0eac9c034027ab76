#!/usr/bin/env bash
# bench/bench-map.sh — the map cache (SG_ROUTE_MAP=1) against routing off,
# per-request SPOE and the per-connection cache, in one run, alternating,
# with the same haproxy.cfg: bench/bench-haproxy.sh's {off,spoe,cache,map}-
# {hot,repeat,fresh} configurations (see there), results in
# bench/results/map.md (HAPROXY=/path: another binary; BENCH_OUT: another
# file). Targets: map-hot >= 0.92 of off-hot (req/s and instructions per
# request), map-fresh (every lookup misses) >= 0.95 of spoe-fresh.
# Short by default (2 rounds of 3 s: about 2 minutes; the callgrind pass,
# BENCH_CALLGRIND=1, adds about as much).
set -euo pipefail
cd "$(dirname "$0")/.."
configs=""
for s in hot repeat fresh; do
	for m in off spoe cache map; do configs+=" $m-$s"; done
done
export BENCH_CONFIGS=${BENCH_CONFIGS:-$configs}
export BENCH_ROUNDS=${BENCH_ROUNDS:-2}
export BENCH_DURATION=${BENCH_DURATION:-3}
export BENCH_CALLGRIND=${BENCH_CALLGRIND:-0}
export BENCH_OUT=${BENCH_OUT:-$PWD/bench/results/map.md}
exec bash bench/bench-haproxy.sh
