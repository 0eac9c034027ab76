#!/usr/bin/env bash
# bench-etcd.sh — the seed directory in etcd (bench/etcd-bench.py does the
# work; tests/integration/etcd_util.py starts the cluster):
#
#   * propagation: a 3-member etcd cluster on loopback, AGENTS (2) route
#     agents; CHANGES (100) drains, each timed from sending the write to
#     EVERY agent answering the new decision over SPOP: median, p90, p99;
#   * a large directory (BIG_NODES 10000 nodes at weight 10, BIG_PINS
#     100000 pins) in etcd: initial sync (agent start to "started"), the
#     same from the text file, a one-record update (a full re-list and
#     rebuild), the agent's RSS.
#
# Environment: SEEDGATE_BUILD (./build), AGENTS, CHANGES, BIG_NODES,
# BIG_PINS, OUT (bench/results/etcd.md).
set -uo pipefail
cd "$(dirname "$0")/.."
export SEEDGATE_BUILD=${SEEDGATE_BUILD:-$PWD/build}
OUT=${OUT:-bench/results/etcd.md}
command -v etcd >/dev/null || { echo "bench-etcd: etcd not installed (etcd-server)"; exit 1; }
[ -x "$SEEDGATE_BUILD/route-agent" ] || { echo "bench-etcd: build first (make)"; exit 1; }
body=$(nice /usr/bin/python3 bench/etcd-bench.py) || { echo "bench-etcd: failed"; exit 1; }
{
	echo "# etcd seed directory"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- etcd: $(etcd --version | head -1 | cut -d: -f2 | tr -d ' '), 3 members on 127.0.0.1 (--heartbeat-interval 50 --election-timeout 500)"
	echo "- command: bench/bench-etcd.sh (AGENTS=${AGENTS:-2} CHANGES=${CHANGES:-100} BIG_NODES=${BIG_NODES:-10000} BIG_PINS=${BIG_PINS:-100000})"
	echo
	echo "$body"
} >"$OUT"
cat "$OUT"
