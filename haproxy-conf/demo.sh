#!/usr/bin/env bash
# haproxy-conf/demo.sh — the whole seedgate stack on loopback (`make demo`).
#
#   haproxy-conf/demo.sh [--seed FILE] [--dir DIR] [--http PORT] [--https PORT]
#                        [--proxy PORT] [--agents PORT,PORT] [--agent-stats PORT,PORT]
#                        [--hc-stats PORT] [--cache] [--tls-front stunnel|hitch|haproxy]
#                        [--etcd [--etcd-ports PORT,PORT]] [--auth]
#
#   --seed         seed directory (default haproxy-conf/seed.conf)
#   --dir          runtime directory: logs, <name>.pid, sockets, certificates,
#                  generated backends (default $SEEDGATE_BUILD/demo)
#   --http         HAProxy's plain HTTP port (default 8080)
#   --https        the TLS port (default 8443)
#   --proxy        HAProxy's PROXY-protocol port that stunnel/hitch use (default 8081)
#   --agents       the two route agents' SPOP ports (default 12345,12346)
#   --agent-stats  their /metrics ports (default 9101,9102)
#   --hc-stats     healthcheckd's stats port (default 9110)
#   --cache        route with the decision cache (SG_ROUTE_CACHE=1)
#   --map          route with the map cache (SG_ROUTE_MAP=1): the agents
#                  publish into DIR/route-agent{1,2}.map through
#                  DIR/haproxy-map.sock
#   --tls-front    who terminates TLS on --https (default $TLS_FRONT, else
#                  stunnel): stunnel or hitch (PROXY protocol to HAProxy),
#                  or haproxy (its own `bind ... ssl`, SG_HTTPS_BIND). All
#                  use the certificates and ticket keys of tls/ (tls/README.md)
#   --etcd         keep the directory in a local etcd (`make demo ETCD=1`):
#                  starts a one-member etcd on 127.0.0.1 (data in DIR/etcd.data,
#                  fresh each run), `seedctl import`s the seed into it and runs
#                  every daemon with --seed etcd://127.0.0.1:PORT/seedgate/demo
#   --etcd-ports   etcd's client and peer ports (default 2379,2380)
#   --auth         project access control (`make demo AUTH=1`,
#                  docs/access-control.md): a demo P-256 key pair in
#                  DIR/auth/ (demo-1.key.pem, demo-1.pub.pem; made with the
#                  openssl CLI when missing, kept across runs), the agents
#                  with --auth-keys DIR/auth/keys, HAProxy with SG_AUTH=1;
#                  the URLs to try include the command that mints a token
#
# Starts one demo server per hub and node of the seed (on the seed's
# addresses), healthcheckd, two route agents, HAProxy (master-worker) and
# the TLS front; prints the URLs to try; stays in the foreground until Ctrl-C or
# SIGTERM, then stops everything it started, by PID, and exits 0. If any of
# its processes dies meanwhile, it says which and stops the rest (exit 1).
# One demo per DIR: DIR/demo.lock is held for the demo's lifetime and
# DIR/demo.pid names it; a second demo on the same DIR refuses to start.
# Binaries come from $SEEDGATE_BUILD (default build/), HAProxy from
# $HAPROXY (default: haproxy on PATH); nothing is installed. Everything runs
# as the user who started it (root for `make demo`).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${SEEDGATE_BUILD:-$root/build}

# --help prints the comment block above, whatever its length
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
die() { echo "demo: $*" >&2; exit 1; }

seed=$here/seed.conf dir= http=8080 https=8443 proxy=8081 agents=12345,12346
agent_stats=9101,9102 hc_stats=9110 cache=0 map=0 tls_front=${TLS_FRONT:-stunnel}
etcd=0 etcd_ports=2379,2380 auth=0
while [ $# -gt 0 ]; do
	case "$1" in
	--seed) seed=${2:?}; shift 2 ;;
	--dir) dir=${2:?}; shift 2 ;;
	--http) http=${2:?}; shift 2 ;;
	--https) https=${2:?}; shift 2 ;;
	--proxy) proxy=${2:?}; shift 2 ;;
	--agents) agents=${2:?}; shift 2 ;;
	--agent-stats) agent_stats=${2:?}; shift 2 ;;
	--hc-stats) hc_stats=${2:?}; shift 2 ;;
	--cache) cache=1; shift ;;
	--map) map=1; shift ;;
	--tls-front) tls_front=${2:?}; shift 2 ;;
	--etcd) etcd=1; shift ;;
	--etcd-ports) etcd_ports=${2:?}; shift 2 ;;
	--auth) auth=1; shift ;;
	-h|--help) usage 0 ;;
	*) echo "demo: unknown argument $1" >&2; usage 1 >&2 ;;
	esac
done
dir=${dir:-$build/demo}
case "$tls_front" in stunnel|hitch|haproxy) ;; *) die "--tls-front must be stunnel, hitch or haproxy, not '$tls_front'" ;; esac
seed=$(cd "$(dirname "$seed")" && pwd)/$(basename "$seed")
IFS=, read -r agent1 agent2 <<<"$agents"
IFS=, read -r astats1 astats2 <<<"$agent_stats"

# --- what is there --------------------------------------------------------
missing=()
for b in seedctl route-agent tools/demo-server; do
	[ -x "$build/$b" ] || missing+=("$build/$b")
done
haproxy_bin=${HAPROXY:-haproxy}
command -v "$haproxy_bin" >/dev/null || missing+=("$haproxy_bin (Debian package haproxy, or HAPROXY=/path)")
export HAPROXY=$haproxy_bin   # run-haproxy.sh takes the same binary
[ ${#missing[@]} -eq 0 ] || die "not built or not installed: ${missing[*]} (run make, as root: make deps)"
have_hc=1 have_tls=1
if [ ! -x "$build/healthcheckd" ]; then
	have_hc=0
	echo "demo: NOTE: $build/healthcheckd is not built: no health checks (every node counts as up)" >&2
fi
# The TLS front's own program: stunnel4, hitch (and the ticket-key
# library it preloads), or nothing more for HAProxy's own TLS.
tls_missing=
[ -x "$root/tls/make-certs.sh" ] && [ -x "$root/tls/ticket-keys.sh" ] || tls_missing="tls/make-certs.sh"
case "$tls_front" in
stunnel) command -v stunnel4 >/dev/null || tls_missing="stunnel4 (Debian package stunnel4)" ;;
hitch) { command -v hitch >/dev/null || [ -x /usr/sbin/hitch ]; } || tls_missing="hitch (Debian package hitch)"
       [ -f "$build/libsg-hitch.so" ] || tls_missing="$build/libsg-hitch.so (run make)" ;;
esac
if [ -n "$tls_missing" ]; then
	have_tls=0
	echo "demo: NOTE: $tls_missing missing: no TLS ($tls_front) on :$https" >&2
fi
"$build/seedctl" check "$seed" >/dev/null || die "$seed does not check (see above)"

mkdir -p "$dir" || die "cannot create $dir"
dir=$(cd "$dir" && pwd)

# Unix sockets live in DIR. The kernel's sun_path holds 108 bytes, and
# HAProxy refuses a socket path longer than 97 bytes (it binds a temporary
# name next to the final one first): a deep clone or a long TMPDIR would
# make HAProxy (or healthcheckd) fail to start. Say so before anything runs.
sock_max=97
for s in haproxy.sock node-fallback.sock health.sock; do
	p=$dir/$s
	n=$(printf %s "$p" | wc -c)   # bytes, whatever the locale
	[ "$n" -le $sock_max ] || die "unix socket path $p is $n bytes; HAProxy accepts at most $sock_max (sun_path is 108). Give a shorter runtime directory: haproxy-conf/demo.sh --dir /tmp/sg-demo (at most $((sock_max - 19)) bytes)"
done

# One demo per runtime directory. The lock is held on fd 9 for this
# script's lifetime (children do not inherit it: see start()), so it is
# released however the demo ends, even by SIGKILL; demo.pid says who holds it.
command -v flock >/dev/null || die "flock not installed (Debian package util-linux)"
exec 9>>"$dir/demo.lock" || die "cannot open $dir/demo.lock"
if ! flock -n 9; then
	other=$(cat "$dir/demo.pid" 2>/dev/null)
	die "a demo is already running in $dir (pid ${other:-unknown}, see $dir/demo.pid): stop it first (Ctrl-C in its terminal, or kill -TERM ${other:-<pid>}), or give this one another --dir and other ports"
fi
# Leftovers of a previous demo that ended without cleaning up (SIGKILL).
rm -f "$dir"/*.pid "$dir"/*.sock
echo $$ >"$dir/demo.pid"

# --- process bookkeeping: every process gets DIR/<name>.pid ----------------
names=() pids=()
declare -A pid_of=()
start() { # start NAME CMD...: runs CMD in the background, logs to DIR/NAME.log
	local name=$1; shift
	"$@" >>"$dir/$name.log" 2>&1 </dev/null 9>&- &
	local pid=$!
	echo "$pid" >"$dir/$name.pid"
	names+=("$name") pids+=("$pid")
	pid_of[$name]=$pid
}
# dead NAME: true when NAME's process has exited (bash reaps our children,
# so kill -0 fails once one is gone); sets $why to "exit status N" (or the
# signal) for the message. Not in a subshell: only we can wait for it.
why=
dead() {
	local pid=${pid_of[$1]} rc
	kill -0 "$pid" 2>/dev/null && return 1
	wait "$pid" 2>/dev/null
	rc=$?
	if [ $rc -gt 128 ] && [ $rc -lt 160 ]; then why="killed by SIG$(kill -l $((rc - 128)))"; else why="exit status $rc"; fi
	return 0
}
log_tail() { # the last lines of DIR/NAME.log, indented, for an error message
	echo "  last lines of $dir/$1.log:"
	tail -n 15 "$dir/$1.log" 2>/dev/null | sed 's/^/  | /'
}
stopped=0
stop_all() { # SIGTERM in reverse start order, SIGKILL whatever is left after 5 s
	local i pid
	[ $stopped = 1 ] && return 0   # once: fail() and the EXIT trap both call it
	stopped=1
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[$i]}" 2>/dev/null
	done
	for ((i = 0; i < 50; i++)); do
		local alive=0
		for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
	wait 2>/dev/null
	for i in "${!names[@]}"; do rm -f "$dir/${names[$i]}.pid"; done
	rm -f "$dir/demo.pid"
}
# However this script ends (a failed command, an unset variable, a bug),
# its processes end with it; set only now, once the lock is ours, so a
# refused second demo never touches the first one's files.
trap stop_all EXIT
# SIGINT (Ctrl-C), SIGTERM and SIGHUP all stop the demo. A shell cannot
# trap a signal that was ignored when it started (nohup'ed or `&` from a
# script: SIGINT is ignored): then only SIGTERM reaches us, so say so.
stopping=0
on_signal() { stopping=1; }
trap on_signal INT TERM HUP
sigign=$(awk '$1 == "SigIgn:" { print $2 }' /proc/$$/status 2>/dev/null)
if [ -n "$sigign" ] && (( 16#$sigign & 2 )); then
	echo "demo: NOTE: started with SIGINT ignored: Ctrl-C cannot stop this demo; stop it with kill -TERM $$" >&2
fi
fail() { echo "demo: $*" >&2; stop_all; exit 1; }
wait_tcp() { # wait_tcp PORT NAME: up to 10 s for 127.0.0.1:PORT to accept
	local i
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		[ $stopping = 1 ] && return 1
		# Fail at once when the process is gone, with its own words.
		if dead "$2"; then
			fail "$2 (pid ${pid_of[$2]}) exited ($why) before listening on 127.0.0.1:$1
$(log_tail "$2")"
		fi
		sleep 0.1
	done
	fail "$2 does not listen on 127.0.0.1:$1 after 10 s
$(log_tail "$2")"
}

# --- etcd mode (--etcd, `make demo ETCD=1`) ---------------------------------------
# The directory lives in a one-member etcd on 127.0.0.1 that this demo starts
# first (so it is stopped last, with everything else): the seed file is
# `seedctl import`ed into it and every daemon follows
# etcd://127.0.0.1:PORT/seedgate/demo, each with its local copy in DIR. The
# seed file is still read for the demo servers' addresses; editing it no
# longer changes routing (use seedctl put/del/drain/register, printed below).
seed_arg=$seed etcd_spec= cache_hc=() cache_a1=() cache_a2=()
if [ $etcd = 1 ]; then
	IFS=, read -r etcd_client etcd_peer <<<"$etcd_ports"
	etcd_bin=$(command -v etcd || echo /usr/bin/etcd)
	[ -x "$etcd_bin" ] || fail "--etcd: no etcd binary (Debian package etcd-server)"
	etcd_spec=etcd://127.0.0.1:$etcd_client/seedgate/demo
	rm -rf "$dir/etcd.data"      # fresh each run: the import below is the directory
	start etcd "$etcd_bin" --name demo --data-dir "$dir/etcd.data" \
		--listen-client-urls "http://127.0.0.1:$etcd_client" \
		--advertise-client-urls "http://127.0.0.1:$etcd_client" \
		--listen-peer-urls "http://127.0.0.1:$etcd_peer" \
		--initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
		--initial-cluster "demo=http://127.0.0.1:$etcd_peer" \
		--heartbeat-interval 50 --election-timeout 500 --log-level warn --logger zap
	wait_tcp "$etcd_client" etcd
	# listening is not leading yet: retry the import until the member has
	# elected itself (well under a second), for at most 10 s
	for ((i = 0; ; i++)); do
		"$build/seedctl" import --etcd "$etcd_spec" "$seed" >"$dir/etcd-import.log" 2>&1 && break
		[ $i -lt 50 ] && [ $stopping = 0 ] ||
			fail "seedctl import into $etcd_spec failed: $(tail -n 3 "$dir/etcd-import.log")"
		sleep 0.2
	done
	seed_arg=$etcd_spec
	cache_hc=(--seed-cache "$dir/healthcheckd.seed-cache")
	cache_a1=(--seed-cache "$dir/route-agent-1.seed-cache")
	cache_a2=(--seed-cache "$dir/route-agent-2.seed-cache")
fi

# --- configuration ------------------------------------------------------------
"$build/seedctl" haproxy --seed "$seed_arg" --out "$dir/backends.cfg" ||
	die "cannot generate $dir/backends.cfg"
local_dc=$("$here/seed-targets.sh" "$seed" | awk '$1 == "dc" { print $2; exit }')
if [ $have_tls = 1 ]; then
	"$root/tls/make-certs.sh" "$dir/certs" >"$dir/make-certs.log" 2>&1 ||
		die "tls/make-certs.sh failed (see $dir/make-certs.log)"
	"$root/tls/ticket-keys.sh" "$dir" || die "tls/ticket-keys.sh failed"
	case "$tls_front" in
	# --out writes it 0600: it carries the session ticket secrets.
	stunnel) "$root/tls/stunnel-conf.sh" --accept "127.0.0.1:$https" --connect "127.0.0.1:$proxy" \
		--certs "$dir/certs" --run "$dir" --out "$dir/stunnel.conf" || die "tls/stunnel-conf.sh failed" ;;
	hitch) "$root/tls/hitch-conf.sh" --accept "127.0.0.1:$https" --connect "127.0.0.1:$proxy" \
		--certs "$dir/certs" --run "$dir" --out "$dir/hitch.conf" || die "tls/hitch-conf.sh failed" ;;
	esac
fi
# HAProxy's own TLS: its TLS FRONT block, switched on by SG_HTTPS_BIND.
tls_env=()
if [ $have_tls = 1 ] && [ "$tls_front" = haproxy ]; then
	tls_env=(SG_HTTPS_BIND=127.0.0.1:$https SG_TLS_CRT=$dir/certs/server.pem SG_TLS_TICKETS=$dir/ticket.keys.haproxy)
fi

# Access control (--auth): the demo key pair and the agents' key file.
auth_args=() auth_env=()
if [ $auth = 1 ]; then
	command -v openssl >/dev/null || die "--auth: the openssl command is needed (Debian package openssl)"
	mkdir -p "$dir/auth"
	if [ ! -s "$dir/auth/demo-1.key.pem" ] || [ ! -s "$dir/auth/demo-1.pub.pem" ]; then
		(umask 077; openssl ecparam -name prime256v1 -genkey -noout -out "$dir/auth/demo-1.key.pem") &&
			openssl ec -in "$dir/auth/demo-1.key.pem" -pubout -out "$dir/auth/demo-1.pub.pem" 2>/dev/null ||
			die "--auth: cannot make the demo key pair in $dir/auth"
	fi
	printf '# kid  public key (relative to this file); route-agent reloads it on SIGHUP\ndemo-1 demo-1.pub.pem\n' \
		>"$dir/auth/keys"
	auth_args=(--auth-keys "$dir/auth/keys")
	auth_env=(SG_AUTH=1)
fi

# --- processes ------------------------------------------------------------------
declare -A server_addr=()
while read -r kind name addr _dc; do
	[ "$kind" = dc ] && continue
	start "$name" "$build/tools/demo-server" --name "$name" --listen "$addr"
	server_addr[$name]=$addr
done < <("$here/seed-targets.sh" "$seed")

health=()
if [ $have_hc = 1 ]; then
	start healthcheckd "$build/healthcheckd" --seed "$seed_arg" --feed "$dir/health.sock" \
		--haproxy-socket "$dir/haproxy.sock" --stats "127.0.0.1:$hc_stats" "${cache_hc[@]}"
	health=(--health "$dir/health.sock")
fi
map_a1=() map_a2=()
if [ $map = 1 ]; then
	map_a1=(--haproxy-socket "$dir/haproxy-map.sock" --map-file "$dir/route-agent1.map")
	map_a2=(--haproxy-socket "$dir/haproxy-map.sock" --map-file "$dir/route-agent2.map")
fi
start route-agent-1 "$build/route-agent" --listen "127.0.0.1:$agent1" --seed "$seed_arg" \
	--stats "127.0.0.1:$astats1" "${health[@]}" "${cache_a1[@]}" "${map_a1[@]}" "${auth_args[@]}"
start route-agent-2 "$build/route-agent" --listen "127.0.0.1:$agent2" --seed "$seed_arg" \
	--stats "127.0.0.1:$astats2" "${health[@]}" "${cache_a2[@]}" "${map_a2[@]}" "${auth_args[@]}"

for name in "${!server_addr[@]}"; do
	wait_tcp "${server_addr[$name]##*:}" "$name"
done
wait_tcp "$agent1" route-agent-1
wait_tcp "$agent2" route-agent-2

# SG_USER/SG_GROUP=root: the demo's worker stays the user who started it
# (the shipped default drops to haproxy:haproxy, see haproxy.cfg).
start haproxy env SG_HTTP_BIND=127.0.0.1:$http SG_PROXY_BIND=127.0.0.1:$proxy SG_RUN_DIR=$dir SG_CONF_DIR=$here \
	SG_USER=root SG_GROUP=root \
	SG_AGENT1=127.0.0.1:$agent1 SG_AGENT2=127.0.0.1:$agent2 SG_DC=$local_dc SG_ROUTE_CACHE=$cache SG_ROUTE_MAP=$map \
	"${tls_env[@]}" "${auth_env[@]}" "$here/run-haproxy.sh" "$dir/backends.cfg"
wait_tcp "$http" haproxy
if [ $have_tls = 1 ]; then
	case "$tls_front" in
	stunnel) start stunnel "$root/tls/stunnel-run.sh" "$dir/stunnel.conf" ;;
	hitch) start hitch env SEEDGATE_BUILD="$build" "$root/tls/hitch-run.sh" "$dir/hitch.conf" "$dir" ;;
	esac
	if [ "$tls_front" = haproxy ]; then wait_tcp "$https" haproxy; else wait_tcp "$https" "$tls_front"; fi
fi

# --- what to try ------------------------------------------------------------------
project=$(awk '$1 == "project" { print $2; exit }' "$seed")
project=${project:-2f1c6a3e-8d4b-4c7a-9e21-5b7f0c3d9a64}
node=$("$build/seedctl" where --seed "$seed_arg" "$project" | cut -f2)
cat <<EOF

seedgate demo is running (seed $seed, datacenter $local_dc; runtime files in $dir)

  curl -si http://127.0.0.1:$http/                     # a hub of $local_dc answers (X-Served-By)
  curl -si http://127.0.0.1:$http/$project/           # project -> node $node (seedctl where)
EOF
if [ $have_tls = 1 ]; then
	echo "  curl -si --cacert $dir/certs/ca.crt https://127.0.0.1:$https/$project/   # TLS front: $tls_front"
fi
cat <<EOF
  $build/seedctl where --seed $seed_arg $project      # its preference list
  $build/seedctl health --feed $dir/health.sock     # healthcheckd's view of every hub and node
  echo "show stat" | socat - UNIX-CONNECT:$dir/haproxy.sock   # HAProxy runtime API
  curl -s http://127.0.0.1:$astats1/metrics                 # route agent 1
  kill -USR2 \$(cat $dir/haproxy.pid)                        # hitless HAProxy reload
EOF
if [ $auth = 1 ]; then
	cat <<EOF

Access control is on (SG_AUTH=1): project paths need a token (401 without, 403 for another project).
  token=\$($build/seedctl token --key $dir/auth/demo-1.key.pem --user alice --project $project --ttl 3600)
  curl -si -b "sg_token=\$token" http://127.0.0.1:$http/$project/           # -> node $node, as alice
  curl -si -H "Authorization: Bearer \$token" http://127.0.0.1:$http/$project/
  curl -si http://127.0.0.1:$http/$project/                                  # 401
  curl -s http://127.0.0.1:$astats1/metrics | grep '^seedgate_auth_'
EOF
fi
if [ $etcd = 1 ]; then
	cat <<EOF

The directory is in etcd ($etcd_spec); every daemon follows it live:
  $build/seedctl export --etcd $etcd_spec          # the directory, as text
  $build/tools/demo-server --name n9 --listen 127.0.0.1:7109 &   # a new node's server, then:
  $build/seedctl put --etcd $etcd_spec "node n9 127.0.0.1:7109 dc=$local_dc weight=10"
  $build/seedctl drain --etcd $etcd_spec $node      # its projects move (--undrain $node: back)
  $build/seedctl register --etcd $etcd_spec --ttl 5 "node n10 127.0.0.1:7110 dc=$local_dc"   # a member while it runs
  ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:$etcd_client get --prefix /seedgate/demo --keys-only
  curl -s http://127.0.0.1:$astats1/metrics | grep -E '^seedgate_(seed_revision|seed_etcd|health_epoch)'
EOF
fi
cat <<EOF

Processes: ${names[*]}
Demo pid $$ (in $dir/demo.pid).
Ctrl-C (or kill -TERM $$) stops everything.
EOF

# --- foreground until a signal, or until one of our processes dies ------------------
# Every process is watched, not only HAProxy: with a route agent, a demo
# server or stunnel gone the demo would be half-dead (503s, refused TLS).
while [ $stopping = 0 ]; do
	for name in "${names[@]}"; do
		if dead "$name"; then
			fail "$name (pid ${pid_of[$name]}) exited ($why): stopping everything
$(log_tail "$name")"
		fi
	done
	sleep 0.5 &
	wait $! 2>/dev/null
done
echo "demo: stopping ${#pids[@]} processes" >&2
stop_all
exit 0
