#!/usr/bin/env bash
# Runs every test tier and ends with one summary line of counts.
#
#   unit          each cmocka binary $SEEDGATE_BUILD/tests/test_*
#   fuzz-replay   each $SEEDGATE_BUILD/tests/fuzz-replay-NAME over tests/fuzz/corpus/NAME
#   integration   pytest (Debian's, /usr/bin/python3) over tests/integration
#
# Environment: SEEDGATE_BUILD (default ./build), PYTEST_ARGS (extra pytest
# arguments, e.g. "-k spop"), SEEDGATE_ONLY=unit|fuzz|integration.
set -uo pipefail
cd "$(dirname "$0")/.."
export SEEDGATE_BUILD=${SEEDGATE_BUILD:-$PWD/build}
results=$SEEDGATE_BUILD/test-results
mkdir -p "$results"
only=${SEEDGATE_ONLY:-}

unit_pass=0 unit_fail=0 fuzz_pass=0 fuzz_fail=0
failed=()

if [ -z "$only" ] || [ "$only" = unit ]; then
	echo "== unit tests"
	for t in "$SEEDGATE_BUILD"/tests/test_*; do
		[ -x "$t" ] || continue
		name=$(basename "$t")
		if "$t" >"$results/$name.log" 2>&1; then
			unit_pass=$((unit_pass + 1)); echo "  PASS $name"
		else
			unit_fail=$((unit_fail + 1)); failed+=("$name"); echo "  FAIL $name"
			sed 's/^/    | /' "$results/$name.log" | tail -40
		fi
	done
fi

if [ -z "$only" ] || [ "$only" = fuzz ]; then
	echo "== fuzz corpus replay"
	for t in "$SEEDGATE_BUILD"/tests/fuzz-replay-*; do
		[ -x "$t" ] || continue
		name=${t##*/fuzz-replay-}
		corpus=tests/fuzz/corpus/$name
		if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
			fuzz_fail=$((fuzz_fail + 1)); failed+=("fuzz-$name"); echo "  FAIL $name: empty or missing corpus $corpus"
			continue
		fi
		if "$t" "$corpus" >"$results/fuzz-$name.log" 2>&1; then
			fuzz_pass=$((fuzz_pass + 1)); echo "  PASS $name ($(tail -1 "$results/fuzz-$name.log"))"
		else
			fuzz_fail=$((fuzz_fail + 1)); failed+=("fuzz-$name"); echo "  FAIL $name"
			tail -40 "$results/fuzz-$name.log" | sed 's/^/    | /'
		fi
	done
fi

it_pass=0 it_fail=0 it_skip=0
if [ -z "$only" ] || [ "$only" = integration ]; then
	echo "== integration tests"
	# shellcheck disable=SC2086
	/usr/bin/python3 -m pytest -p no:cacheprovider -q -rfEs tests/integration \
		--junitxml="$results/integration.xml" ${PYTEST_ARGS:-}
	read -r it_pass it_fail it_skip < <(/usr/bin/python3 - "$results/integration.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 1, 0); sys.exit()
suites = [root] if root.tag == "testsuite" else list(root)
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
s = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - s, f, s)
PY
)
	[ "$it_fail" -gt 0 ] && failed+=("integration")
fi

total_fail=$((unit_fail + fuzz_fail + it_fail))
status=PASS
[ "$total_fail" -gt 0 ] && status=FAIL
echo "SUMMARY: $status — unit $unit_pass passed, $unit_fail failed; fuzz-replay $fuzz_pass passed, $fuzz_fail failed; integration $it_pass passed, $it_fail failed, $it_skip skipped${failed:+ (failed: ${failed[*]})}"
[ "$total_fail" -eq 0 ]
