#!/usr/bin/env bash
# haproxy-conf/seed-targets.sh — the hubs, nodes, pool servers and datacenters
# of a seed directory, one per line, for the scripts that start a demo server
# per target (demo.sh, tests/integration/stack_util.py):
#
#   haproxy-conf/seed-targets.sh FILE
#     dc     NAME                     every datacenter, in file order
#     hub    NAME HOST:PORT DC        every hub
#     node   NAME HOST:PORT DC        every node
#     server NAME HOST:PORT DC        every pool server, unless a hub, a node
#                                     or an earlier server has its address
#
# A minimal reading of the seed grammar (docs/seed-directory.md): it does not
# validate; run `seedctl check FILE` for that (demo.sh does, first).
set -euo pipefail
[ $# -eq 1 ] && [ "$1" != -h ] && [ "$1" != --help ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
awk '
{ sub(/#.*/, "") }
$1 == "dc" && NF >= 2 { line[++n] = "dc " $2; kind[n] = "dc"; next }
($1 == "hub" || $1 == "node" || $1 == "server") && NF >= 3 {
	dc = "-"
	for (i = 4; i <= NF; i++) if ($i ~ /^dc=/) dc = substr($i, 4)
	line[++n] = $1 " " $2 " " $3 " " dc
	if ($1 != "server") seen[$3] = 1
	kind[n] = $1; addr[n] = $3
}
END {
	for (i = 1; i <= n; i++) {
		if (kind[i] == "server") {
			if (addr[i] in seen) continue
			seen[addr[i]] = 1
		}
		print line[i]
	}
}
' "$1"
