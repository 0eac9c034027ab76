#!/usr/bin/env bash
# bench/bench-auth.sh — what project access control (SG_AUTH=1) costs, with
# the shipped haproxy-conf/haproxy.cfg and route-agent --auth-keys.
#
# One HAProxy (nbthread 1, pinned to CPU 0) per run, driven by
# wrk -t1 -c64 -d${BENCH_DURATION:-4}s (keep-alive) on CPU 1 with the demo
# servers (1 hub, 3 nodes) and one route agent (--workers 1). 1000 projects
# and 100 users; user u holds one token granting its 10 projects. Runs,
# alternating within each round (BENCH_ROUNDS, default 2):
#   off      SG_AUTH=0: per-request routing, the same requests (the cookie
#            is sent and ignored)
#   on       SG_AUTH=1: the same requests; each connection rotates over the
#            1000 projects, so over the 100 users and their tokens (after
#            the first 100 requests, verified-token cache hits)
#   on-new   SG_AUTH=1, every request a token never seen before (20000
#            tokens, more than the agent's cache holds): an ECDSA
#            verification per request, the worst case
# For comparison (why the check is in the agent, docs/access-control.md):
#   hap-plain  a bare HAProxy frontend answering 200 itself
#   hap-jwt    the same with HAProxy 2.6's jwt_verify on the cookie (no
#              cache: every request verifies its token)
# on the `on` requests (BENCH_JWT_ROUNDS, default 1: the difference is
# large): HAProxy's CPU per request tells jwt_verify's cost.
# Reported: req/s (medians), the ratio on/off (target >= 0.90, the issue's),
# HAProxy's and the agent's CPU per request and the capacity ratio they give
# (robust to other load on a shared machine, unlike req/s), the agent's cache hits and
# misses, non-2xx answers (must be 0: every token is valid). Results in
# bench/results/auth.md (BENCH_OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${SEEDGATE_BUILD:-$root/build}
rounds=${BENCH_ROUNDS:-2}
duration=${BENCH_DURATION:-4}
out=${BENCH_OUT:-$root/bench/results/auth.md}
py=/usr/bin/python3

. bench/lib.sh
bench_init auth "seedctl route-agent tools/demo-server" "haproxy wrk taskset openssl"
metric() { $py -c 'import sys,urllib.request
t = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
print(sum(float(l.rsplit(" ", 1)[1]) for l in t.splitlines() if l.startswith(sys.argv[2])))' "$astats" "$1"; }

# --- seed, keys, tokens, requests ------------------------------------------------
bench_seed
astats=$(free_port)
openssl ecparam -name prime256v1 -genkey -noout -out "$work/bench.key.pem"
openssl ec -in "$work/bench.key.pem" -pubout -out "$work/bench.pub.pem" 2>/dev/null
echo "bench bench.pub.pem" >"$work/keys"
$py -c "import uuid; [print(uuid.uuid4()) for _ in range(1000)]" >"$work/ids"
mapfile -t ids <"$work/ids"
: >"$work/tokens"
for ((u = 0; u < 100; u++)); do
	args=()
	for ((k = 0; k < 10; k++)); do args+=(--project "${ids[u * 10 + k]}"); done
	"$build/seedctl" token --key "$work/bench.key.pem" --user "user$u" --ttl 3600 "${args[@]}" >>"$work/tokens"
done
mapfile -t tokens <"$work/tokens"
# on/off: project i (in order) with its owner's token (user i/10)
for ((i = 0; i < 1000; i++)); do
	printf '/%s/files/a.txt\t%s\n' "${ids[i]}" "${tokens[i / 10]}"
done >"$work/reqs.tsv"
# on-new: 20000 different tokens of one user for its 10 projects
"$build/seedctl" token --key "$work/bench.key.pem" --user newuser --ttl 3600 --count 20000 \
	$(for ((k = 0; k < 10; k++)); do printf -- '--project %s ' "${ids[k]}"; done) |
	awk -v ids="$work/ids" 'BEGIN { while ((getline l < ids) > 0 && n < 10) id[n++] = l }
		{ printf "/%s/files/a.txt\t%s\n", id[NR % 10], $0 }' >"$work/new.tsv"
bench_servers --auth-keys "$work/keys" --stats "127.0.0.1:$astats"
wait_tcp "$astats"
hap_env=()

# measure NAME REQS: 1 s warm-up, one measured run; appends a row to raw.tsv.
measure() {
	local name=$1 reqs=$2 worker t0 t1 a0 a1 h0 h1 m0 m1
	SG_BENCH_REQS=$reqs taskset -c $cpu_rest wrk -t1 -c64 -d1s -s bench/wrk/auth.lua "http://127.0.0.1:$http" >/dev/null
	if [ -n "${measure_direct:-}" ]; then worker=$hap_pid
	else worker=$(awk '{ print $1 }' "/proc/$hap_pid/task/$hap_pid/children"); fi
	t0=$(cpu_ticks "$worker") a0=$(cpu_ticks "$agent_pid")
	h0=$(metric seedgate_auth_cache_hits_total) m0=$(metric seedgate_auth_cache_misses_total)
	SG_BENCH_REQS=$reqs taskset -c $cpu_rest wrk -t1 -c64 -d"${duration}s" -s bench/wrk/auth.lua \
		"http://127.0.0.1:$http" >"$work/wrk.out"
	t1=$(cpu_ticks "$worker") a1=$(cpu_ticks "$agent_pid")
	h1=$(metric seedgate_auth_cache_hits_total) m1=$(metric seedgate_auth_cache_misses_total)
	local rps errs us aus nodes
	wrk_result "$work/wrk.out" $((a1 - a0))
	aus=$wrk_us                                   # the agent's CPU per request
	wrk_result "$work/wrk.out" $((t1 - t0))
	rps=$wrk_rps errs=$wrk_errs us=$wrk_us
	nodes=$(show_stat | awk -F, '$1 ~ /^nodes_bench/ && $2 == "BACKEND" { n += $8 } END { print n + 0 }')
	nodes=${nodes:--}
	kill -TERM "$hap_pid"; wait "$hap_pid" 2>/dev/null || true; hap_pid=
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\n' "$round" "$name" "$rps" "$errs" "$nodes" "$us" "$aus" \
		"$(awk -v a="$h1" -v b="$h0" 'BEGIN { print a - b }')" "$(awk -v a="$m1" -v b="$m0" 'BEGIN { print a - b }')" >>"$work/raw.tsv"
	printf '  round %s %-7s %9s req/s  HAProxy %5s us/req  agent %5s us/req  errors %s  to nodes %s\n' \
		"$round" "$name" "$rps" "$us" "$aus" "$errs" "$nodes"
}

configs=("off $work/reqs.tsv SG_AUTH=0" "on $work/reqs.tsv SG_AUTH=1" "on-new $work/new.tsv SG_AUTH=1")
echo "bench-auth: $rounds rounds x ${#configs[@]} runs, wrk -t1 -c64 -d${duration}s, 1000 projects, 100 users"
for ((round = 1; round <= rounds; round++)); do
	for ((k = 0; k < ${#configs[@]}; k++)); do
		c=${configs[$(( (k + round - 1) % ${#configs[@]} ))]}
		read -r name reqs envs <<<"$c"
		for attempt in 1 2 3; do
			start_haproxy "$envs" && break
			[ $attempt = 3 ] && { echo "bench-auth: HAProxy does not start (see $work/haproxy.log)" >&2; exit 1; }
		done
		measure "$name" "$reqs"
	done
done

# --- HAProxy's own jwt_verify, for comparison ---------------------------------------
# jwt_cfg JWT(0/1) PORT: a frontend that answers by itself, with or without
# jwt_verify (signature only: alg, exp and the project would need more rules).
jwt_cfg() {
	cat <<EOC
global
    nbthread 1
    stats socket $work/haproxy.sock mode 600 level admin
defaults
    mode http
    timeout client 30s
    timeout server 30s
    timeout connect 2s
frontend bench
    bind 127.0.0.1:$2
EOC
	[ "$1" = 1 ] && echo '    http-request set-var(txn.ok) req.cook(sg_token),jwt_verify("ES256","'"$work"'/bench.pub.pem")' &&
		echo '    http-request return status 401 unless { var(txn.ok) -m int 1 }'
	echo '    http-request return status 200 content-type text/plain string ok'
}
for ((round = 1; round <= ${BENCH_JWT_ROUNDS:-1}; round++)); do
	for j in 0 1; do
		http=$(free_port)
		jwt_cfg $j "$http" >"$work/jwt.cfg"
		taskset -c $cpu_hap haproxy -db -f "$work/jwt.cfg" >>"$work/haproxy.log" 2>&1 &
		hap_pid=$!
		wait_tcp "$http"
		# measure reads the worker from the master's children: a plain
		# (non master-worker) HAProxy is its own worker
		measure_direct=1 measure "$([ $j = 1 ] && echo hap-jwt || echo hap-plain)" "$work/reqs.tsv"
	done
done

# --- HAProxy instructions per request (callgrind) ------------------------------------
# req/s and CPU time swing with other work on a shared machine; the
# instructions HAProxy executes per request do not. HAProxy (master-worker;
# callgrind follows the fork) runs twice per setting, 2 s and 5 s of
# wrk -c8; the difference of the totals over the difference of the request
# counts removes the start-up cost. BENCH_CALLGRIND=0 skips it.
wrk_env=(SG_BENCH_REQS=$work/reqs.tsv)
: >"$work/cg.tsv"
if [ "${BENCH_CALLGRIND:-1}" != 0 ] && command -v valgrind >/dev/null; then
	echo "bench-auth: HAProxy instructions per request under callgrind"
	for c in "off SG_AUTH=0" "on SG_AUTH=1"; do
		read -r name envs <<<"$c"
		read -r n1 i1 < <(cg_run 2 auth "$envs")
		read -r n2 i2 < <(cg_run 5 auth "$envs")
		ir=$(awk -v a="$i1" -v b="$i2" -v c="$n1" -v d="$n2" 'BEGIN { printf "%.0f", (d > c ? (b - a) / (d - c) : 0) }')
		printf '%s\t%s\n' "$name" "$ir" >>"$work/cg.tsv"
		printf '  %-4s %8s instructions/request (requests %s and %s)\n' "$name" "$ir" "$n1" "$n2"
	done
fi

# --- results --------------------------------------------------------------------
$py - "$work/raw.tsv" "$out" "$rounds" "$duration" "$work/cg.tsv" <<'PY'
import statistics, subprocess, sys, time
raw, out, rounds, duration, cgfile = sys.argv[1:6]
cg = dict(l.split() for l in open(cgfile) if l.strip())
rows = [l.rstrip("\n").split("\t") for l in open(raw)]
by = {}
for r in rows:
    by.setdefault(r[1], []).append(r)
med = lambda name, col: statistics.median(float(r[col]) for r in by[name])
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception:
        return "?"
ratio = med("on", 2) / med("off", 2)
# CPU per request (HAProxy + agent): what capacity costs when the proxy is
# CPU-bound, and far less sensitive than req/s to other load on the machine.
cpu = lambda name: med(name, 5) + med(name, 6)
cpu_ratio = cpu("off") / cpu("on")
ratio_new = med("on-new", 2) / med("off", 2)
errors = sum(int(r[3]) for r in rows)
with open(out, "w") as f:
    f.write("# bench-auth: project access control on against off\n\n")
    f.write("Produced by `bench/bench-auth.sh` (`BENCH_ONLY=auth bench/run-all.sh`). HAProxy nbthread 1 pinned to CPU 0;\n")
    f.write(f"wrk -t1 -c64 -d{duration}s keep-alive, the demo servers (1 hub, 3 nodes) and one route agent\n")
    f.write(f"(--workers 1, --auth-keys) on CPU 1; {rounds} rounds, runs alternating; 1000 projects, 100 users\n")
    f.write("(user u's token grants its 10 projects); haproxy-conf/haproxy.cfg with SG_QUIET=1.\n\n```\n")
    f.write(f"haproxy: {sh('haproxy -v')}\nkernel: {sh('uname -sr')}\n")
    cpu_model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").strip()
    f.write(f"cpu: {cpu_model}, {sh('nproc')} cores\n")
    f.write(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    f.write(f"load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}\n")
    f.write(f"commit: {sh('git rev-parse --short HEAD')}\n```\n\n")
    f.write("## Raw runs\n\n| round | run | req/s | errors | to nodes | HAProxy CPU µs/req | agent CPU µs/req | cache hits | cache misses |\n|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        f.write("| " + " | ".join(r) + " |\n")
    f.write("\n## Medians\n\n| run | req/s | HAProxy CPU µs/req | agent CPU µs/req | req/s against off |\n|---|---|---|---|---|\n")
    for name in [n for n in ("off", "on", "on-new", "hap-plain", "hap-jwt") if n in by]:
        f.write(f"| {name} | {med(name, 2):.0f} | {med(name, 5):.1f} | {med(name, 6):.1f} | {med(name, 2) / med('off', 2):.3f} |\n")
    f.write(f"\nCPU per request, HAProxy + agent: off {cpu('off'):.1f} µs, on {cpu('on'):.1f} µs: capacity on/off = "
            f"**{cpu_ratio:.3f}** (target >= 0.90: {'met' if cpu_ratio >= 0.90 else 'NOT met'}).\n")
    f.write(f"req/s on/off = **{ratio:.3f}** (target >= 0.90: {'met' if ratio >= 0.90 else 'NOT met'}); "
            f"every request a new token: {ratio_new:.3f} of off; non-2xx answers and socket errors: {errors}.\n")
    if cg.get("off") and cg.get("on") and float(cg["on"]) > 0:
        f.write(f"\nHAProxy instructions per request (callgrind, independent of other load): off {cg['off']}, "
                f"on {cg['on']}: capacity on/off = **{float(cg['off']) / float(cg['on']):.3f}** when HAProxy is "
                f"the bottleneck (the agents run on other cores; target >= 0.90: "
                f"{'met' if float(cg['off']) / float(cg['on']) >= 0.90 else 'NOT met'}).\n")
    if "hap-jwt" in by:
        f.write(f"\nHAProxy 2.6's jwt_verify on the same requests (a bare frontend answering itself): "
                f"{med('hap-jwt', 5) - med('hap-plain', 5):.1f} µs of HAProxy CPU per request more than without it "
                f"({med('hap-plain', 2):.0f} -> {med('hap-jwt', 2):.0f} req/s): it has no cache, every request pays "
                f"the ECDSA verification, on HAProxy's own threads; and it checks the signature only.\n")
    f.write(f"A new token costs the agent {med('on-new', 6) - med('on', 6):.1f} µs of CPU more than a cached one "
            f"(SHA-256, JSON, ECDSA P-256 verification), HAProxy {med('on-new', 5) - med('on', 5):.1f} µs.\n")
print(open(out).read())
PY
