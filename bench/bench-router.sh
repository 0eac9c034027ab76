#!/usr/bin/env bash
# Router microbenchmarks: placement lookup and decision ns/op, table build
# time and memory per node for 100/1k/10k nodes (weight 10, the default, and
# weight 1), and the load time of a 100k-line seed directory (10k nodes +
# 90k pins). Writes bench/results/router.md.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${SEEDGATE_BUILD:-$PWD/build}
bin=$B/tools/router-bench
[ -x "$bin" ] || { echo "bench-router: $bin not built (make)"; exit 1; }
out=bench/results/router.md
{
	echo "# router microbenchmarks"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- compiler: $(${CC:-gcc} --version | head -1), -O2"
	echo "- libxxhash: $(dpkg-query -W -f='${Version}' libxxhash-dev 2>/dev/null || echo unknown)"
	echo "- command: bench/bench-router.sh ($bin); times are process CPU time"
	echo
	for w in 10 1; do
		echo "## weight $w"
		echo
		"$bin" --weight "$w" | tail -n +3
		echo
	done
} | tee "$out"
