#!/usr/bin/env bash
# haproxy-conf/seed-targets.sh — the hubs, nodes and datacenters of a seed
# directory, one per line, for the scripts that start a demo server per
# target (demo.sh, tests/integration/stack_util.py):
#
#   haproxy-conf/seed-targets.sh FILE
#     dc   NAME                       every datacenter, in file order
#     hub  NAME HOST:PORT DC          every hub
#     node NAME HOST:PORT DC          every node
#
# A minimal reading of the seed grammar (docs/seed-directory.md): it does not
# validate; run `seedctl check FILE` for that (demo.sh does, first).
set -euo pipefail
[ $# -eq 1 ] && [ "$1" != -h ] && [ "$1" != --help ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
awk '
{ sub(/#.*/, "") }
$1 == "dc" && NF >= 2 { print "dc", $2; next }
($1 == "hub" || $1 == "node") && NF >= 3 {
	dc = "-"
	for (i = 4; i <= NF; i++) if ($i ~ /^dc=/) dc = substr($i, 4)
	print $1, $2, $3, dc
}
' "$1"
