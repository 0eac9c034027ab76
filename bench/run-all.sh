#!/usr/bin/env bash
# make bench: runs every bench/bench-*.sh in turn. Each script measures one
# thing, prints its ratios and writes a dated file under bench/results/.
# BENCH_ONLY=name runs bench/bench-name.sh alone.
set -uo pipefail
cd "$(dirname "$0")/.."
export SEEDGATE_BUILD=${SEEDGATE_BUILD:-$PWD/build}
rc=0
for s in bench/bench-*.sh; do
	name=${s#bench/bench-}; name=${name%.sh}
	[ -n "${BENCH_ONLY:-}" ] && [ "$BENCH_ONLY" != "$name" ] && continue
	echo "== bench $name"
	if ! bash "$s"; then echo "bench $name FAILED"; rc=1; fi
done
# The pictures (bench/results/*.png) from whatever results are there now.
/usr/bin/python3 bench/plot.py || rc=1
exit $rc
