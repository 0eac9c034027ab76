# bench/lib.sh — helpers shared by the HAProxy benchmarks (bench-haproxy.sh,
# bench-auth.sh). Sourced, never run: bench/run-all.sh only runs bench-*.sh.
#
#   bench_init NAME "BINARIES" "COMMANDS"
#       checks that $build has BINARIES and PATH has COMMANDS (exit 1 with
#       what is missing), then sets ncpu, cpu_hap=0 and cpu_rest (1 when
#       there is a second core), work (a fresh /tmp/sg-bench-NAME.XXXXXX),
#       pids=() (processes to stop) and hap_pid, and traps EXIT to stop them
#       by PID and remove $work (BENCH_KEEP=1 keeps it, for a look at
#       what a run left). Needs $build and $py.
#   free_port, wait_tcp PORT, cpu_ticks PID (utime + stime in clock ticks),
#   show_stat (HAProxy's "show stat" on $work/haproxy.sock).

bench_init() {
	bench_name=$1
	local b c
	for b in $2; do
		[ -x "$build/$b" ] || { echo "bench-$bench_name: $build/$b not built (make)" >&2; exit 1; }
	done
	for c in $3; do
		command -v "$c" >/dev/null || { echo "bench-$bench_name: $c not installed" >&2; exit 1; }
	done
	ncpu=$(nproc)
	cpu_hap=0 cpu_rest=$((ncpu > 1 ? 1 : 0))
	work=$(mktemp -d "/tmp/sg-bench-$bench_name.XXXXXX")
	pids=()
	hap_pid=
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	set +e
	[ -n "$hap_pid" ] && kill -TERM "$hap_pid" 2>/dev/null
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	wait 2>/dev/null
	if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench-$bench_name: kept $work" >&2; else rm -rf "$work"; fi
}

free_port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_tcp() {
	local i
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench-$bench_name: nothing on port $1" >&2
	return 1
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
show_stat() { $py -c 'import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show stat\n")
while True:
    c=s.recv(65536)
    if not c: break
    sys.stdout.write(c.decode())' "$work/haproxy.sock"; }

# The bench's seed, one datacenter, one hub, three nodes on free ports
# ($hub $n1 $n2 $n3), in $work/seed.conf, and its backends in
# $work/backends.cfg; $agent is the route agent's port.
bench_seed() {
	hub=$(free_port) n1=$(free_port) n2=$(free_port) n3=$(free_port)
	agent=$(free_port)
	cat >"$work/seed.conf" <<EOS
replicas 2
node-shards ${BENCH_NODE_SHARDS:-1}
dc bench
hub  hub1 127.0.0.1:$hub dc=bench
node n1   127.0.0.1:$n1  dc=bench
node n2   127.0.0.1:$n2  dc=bench
node n3   127.0.0.1:$n3  dc=bench
EOS
	SEEDGATE_BUILD=$build haproxy-conf/gen-backends.sh --seed "$work/seed.conf" --out "$work/backends.cfg"
	# BENCH_EXTRA_NODES=N: N more servers in the node backends that no
	# project is placed on (weight 0, no address), spread evenly over them
	# (BENCH_NODE_SHARDS=K: the seed's `node-shards K`), to measure what the
	# size of a node backend costs HAProxy per routed request (use-server
	# finds the node by name: a scan of the backend's servers on HAProxy 2.6
	# to 3.2). (The Lua comparison, lua-rotate, knows nodes_bench only.)
	if [ "${BENCH_EXTRA_NODES:-0}" -gt 0 ]; then
		awk -v n="$BENCH_EXTRA_NODES" -v k="${BENCH_NODE_SHARDS:-1}" '{ print }
			/^backend nodes_bench(_[0-9]+)?$/ { for (i = 1; i <= n / k; i++) printf "    server extra%d_%d 127.0.0.1:%d weight 0 init-addr none\n", NR, i, i }' \
			"$work/backends.cfg" >"$work/backends.cfg.x" && mv "$work/backends.cfg.x" "$work/backends.cfg"
	fi
}

# bench_servers AGENT-ARGS...: the demo servers and one route agent
# (--workers 1, plus AGENT-ARGS) on $cpu_rest; returns once all listen.
# $agent_pid is the agent.
#
# By default one demo-server process serves the hub's and the nodes'
# addresses (BENCH_SERVERS=one). Why: on loopback, HAProxy's send() wakes
# the receiving process, and waking a process that sleeps on the other CPU
# (an inter-processor interrupt, dear in a VM) is charged to HAProxy's CPU.
# With one process per server, a run whose requests go to the three nodes
# wakes three processes, each with a third of the work and so more often
# asleep than the one hub of a routing-off run: measured, 4x the context
# switches on the servers' CPU, and 10 % of HAProxy's CPU in
# sock_def_readable (perf; 4 % routing off), a cost of the test bed that
# real nodes, on other machines, never charge to HAProxy.
# One process for all addresses makes every configuration wake the same
# one. BENCH_SERVERS=apart: one process per server, as before.
bench_servers() {
	local t p
	case ${BENCH_SERVERS:-one} in
	one)
		taskset -c $cpu_rest "$build/tools/demo-server" --name server --listen "127.0.0.1:$hub" \
			--listen "127.0.0.1:$n1" --listen "127.0.0.1:$n2" --listen "127.0.0.1:$n3" \
			>>"$work/servers.log" 2>&1 &
		pids+=($!) ;;
	apart)
		for t in hub1:$hub n1:$n1 n2:$n2 n3:$n3; do
			taskset -c $cpu_rest "$build/tools/demo-server" --name "${t%%:*}" --listen "127.0.0.1:${t##*:}" \
				>>"$work/servers.log" 2>&1 &
			pids+=($!)
		done ;;
	*) echo "bench-$bench_name: BENCH_SERVERS must be one or apart" >&2; exit 1 ;;
	esac
	taskset -c $cpu_rest "$build/route-agent" --listen "127.0.0.1:$agent" --seed "$work/seed.conf" \
		--workers 1 "$@" >>"$work/agent.log" 2>&1 &
	agent_pid=$!
	pids+=($agent_pid)
	for p in $hub $n1 $n2 $n3 $agent; do wait_tcp "$p"; done
}

# HAProxy's environment in every run: the shipped haproxy.cfg on fresh
# ports, nbthread 1, quiet, the bench's agent; then ${hap_env[@]} (set by
# the script) and the run's own ENV.
hap_vars() {
	echo SG_HTTP_BIND=127.0.0.1:$1 SG_PROXY_BIND=127.0.0.1:$(free_port) SG_RUN_DIR=$work \
		SG_CONF_DIR=$root/haproxy-conf SG_AGENT1=127.0.0.1:$agent SG_AGENT2=127.0.0.1:$agent \
		SG_DC=bench SG_NBTHREAD=1 SG_QUIET=1 SG_USER=root SG_GROUP=root
}

# start_haproxy ENV...: a fresh HAProxy (master-worker, pinned to
# $cpu_hap) on a fresh port $http; 0 once it listens and sees the agent UP.
start_haproxy() {
	local i
	http=$(free_port)
	# shellcheck disable=SC2046
	env $(hap_vars "$http") "${hap_env[@]}" "$@" \
		taskset -c $cpu_hap haproxy-conf/run-haproxy.sh "$work/backends.cfg" >>"$work/haproxy.log" 2>&1 &
	hap_pid=$!
	for ((i = 0; i < 100; i++)); do
		kill -0 "$hap_pid" 2>/dev/null || { wait "$hap_pid" 2>/dev/null; hap_pid=; return 1; }
		(exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null && break
		sleep 0.1
	done
	[ "$i" -lt 100 ] || return 1
	for ((i = 0; i < 50; i++)); do   # agents UP in HAProxy's eyes (spop-check)
		show_stat | grep '^route_agents,agent1,.*,UP' >/dev/null && break
		sleep 0.1
	done
	return 0
}

# wrk_result FILE TICKS: from wrk's output and HAProxy's CPU ticks over the
# run, sets wrk_rps, wrk_reqs, wrk_errs (non-2xx and socket errors) and
# wrk_us (HAProxy CPU µs per request: robust against other load).
wrk_result() {
	wrk_rps=$(awk '/^Requests\/sec/ { print $2 }' "$1")
	wrk_reqs=$(awk '/requests in/ { print $1 }' "$1")
	wrk_us=$(awk -v t="$2" -v hz="$(getconf CLK_TCK)" -v n="$wrk_reqs" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')
	wrk_errs=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(/[^0-9 ]/, " "); n += $1 + $2 + $3 + $4 } END { print n + 0 }' "$1")
}

# cg_run DURATION SCRIPT ENV... -> "requests instructions": HAProxy under
# callgrind (it follows the master's fork), wrk -c8 for DURATION seconds
# with bench/wrk/SCRIPT.lua and the environment ${wrk_env[@]}. Two runs of
# different lengths give instructions per request without the start-up.
cg_run() {
	local dur=$1 script=$2 port i vp; shift 2
	port=$(free_port)
	rm -f "$work"/cgout.*
	# shellcheck disable=SC2046
	env $(hap_vars "$port") SG_SPOE_PROCESSING=2s "${hap_env[@]}" "$@" \
		valgrind --tool=callgrind --callgrind-out-file="$work/cgout.%p" \
		haproxy -W -db -f haproxy-conf/haproxy.cfg -f "$work/backends.cfg" >>"$work/callgrind.log" 2>&1 &
	vp=$!
	for ((i = 0; i < 300; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		kill -0 "$vp" 2>/dev/null || break
		sleep 0.1
	done
	sleep 1
	env "${wrk_env[@]}" wrk -t1 -c8 -d"${dur}s" -s "bench/wrk/$script.lua" "http://127.0.0.1:$port" >"$work/wrk-cg.out"
	kill -TERM "$vp" 2>/dev/null; wait "$vp" 2>/dev/null
	echo "$(awk '/requests in/ { print $1 }' "$work/wrk-cg.out") $(cat "$work"/cgout.* 2>/dev/null | awk '/^summary:/ { s += $2 } END { print s + 0 }')"
}
