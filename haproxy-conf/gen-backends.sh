#!/usr/bin/env bash
# haproxy-conf/gen-backends.sh — the backends file haproxy.cfg is loaded with.
#
#   haproxy-conf/gen-backends.sh --seed FILE --out FILE
#
# Runs `seedctl haproxy` (backends hubs_<dc> and nodes_<dc>, server names =
# seed names), then guards every nodes_<dc> backend so that a project
# request reaches the node the route agent named, or the hubs, and never
# another node:
#   * `use-server %[var(txn.route.server)]` sends the request to the named
#     node (with haproxy.cfg's decision cache, SG_ROUTE_CACHE=1, the name is
#     the second field of sess.route.dest). HAProxy skips that rule when
#     the name is empty or unknown or the server is down (runtime API,
#     healthcheckd), and then balances;
#   * so node servers get weight 0: balancing can never pick a node
#     (use-server still can: weight only matters to balancing);
#   * and the one server balancing can pick is a backup that connects to
#     haproxy.cfg's fe_node_fallback, i.e. this datacenter's hubs. Retries
#     that give a node up (option redispatch) land there too.
# The placement (which replica, which datacenter) is the agent's job alone.
# Used by demo.sh and tests/integration/stack_util.py; seedctl comes from
# $SEEDCTL or $SEEDGATE_BUILD/seedctl (default build/seedctl).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seedctl=${SEEDCTL:-${SEEDGATE_BUILD:-$here/../build}/seedctl}

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
seed= out=
while [ $# -gt 0 ]; do
	case "$1" in
	--seed) seed=${2:?}; shift 2 ;;
	--out) out=${2:?}; shift 2 ;;
	-h|--help) usage 0 ;;
	*) echo "gen-backends.sh: unknown argument $1" >&2; usage 1 >&2 ;;
	esac
done
[ -n "$seed" ] && [ -n "$out" ] || usage 1 >&2
[ -x "$seedctl" ] || { echo "gen-backends.sh: $seedctl is not built (run make)" >&2; exit 1; }

raw=$out.seedctl.$$
trap 'rm -f "$raw" "$out.tmp.$$"' EXIT
"$seedctl" haproxy --seed "$seed" --out "$raw"

awk '
function end_nodes() {
	if (in_nodes)
		print "    server sg_hubs_fallback \"unix@${SG_RUN_DIR}/node-fallback.sock\" backup"
	for (; blanks > 0; blanks--)
		print ""
	in_nodes = 0
}
in_nodes && /^[ \t]*$/ { blanks++; next }
/^backend / {
	end_nodes()
	print
	if ($2 ~ /^nodes_/) {
		in_nodes = 1
		print "    # guarded by haproxy-conf/gen-backends.sh: the named node or the hubs, never another node"
		print ".if streq(\"${SG_ROUTE_CACHE}\",1)"
		print "    use-server %[var(sess.route.dest),field(2,/)] if TRUE"
		print ".else"
		print "    use-server %[var(txn.route.server)] if { var(txn.route.server) -m found }"
		print ".endif"
	}
	next
}
in_nodes && /^[ \t]*use-server / { next }          # ours replaces any
in_nodes && /^[ \t]*server / {
	if ($0 ~ / weight [0-9]+/) sub(/ weight [0-9]+/, " weight 0")
	else $0 = $0 " weight 0"
	print
	next
}
{ print }
END { end_nodes() }
' "$raw" >"$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
