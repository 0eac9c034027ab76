#!/usr/bin/env bash
# bench/bench-health.sh — healthcheckd with 10,000 targets checked once a second.
#
#   bench/bench-health.sh [--targets N] [--seconds S]     (defaults 10000, 30)
#
# A helper process (Python, embedded below) holds N/2 listening sockets on
# 127.0.0.1 that accept and drop connections, and N/2 bound but not
# listening sockets (connect is refused at once): N file descriptors, under
# the 20000 open-files limit. A seed directory names them all as nodes.
# healthcheckd checks them (TCP, interval 1 s, fall 2, rise 2, jitter 10 %).
# Measured: healthcheckd's CPU use from /proc/PID/stat over S seconds, the
# checks per second from its /metrics, and the time from closing 20 listening
# sockets to their "down" lines on the health feed. Results go to
# bench/results/health.md with machine, versions and date.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SEEDGATE_BUILD:-$PWD/build}
targets=10000 seconds=30
while [ $# -gt 0 ]; do
	case "$1" in
	--targets) targets=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	-h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench-health: unknown argument $1" >&2; exit 1 ;;
	esac
done
[ -x "$build/healthcheckd" ] || { echo "bench-health: $build/healthcheckd not built (make)" >&2; exit 1; }
py=/usr/bin/python3
run=$(mktemp -d /tmp/bench-health.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$run"
}
trap cleanup EXIT
ulimit -n 20000

# --- the sockets ---------------------------------------------------------
cat >"$run/sockets.py" <<'PY'
import os, selectors, socket, sys
n, run = int(sys.argv[1]), sys.argv[2]
sel = selectors.DefaultSelector()
listening, refusing = [], []
for i in range(n // 2):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0)); s.listen(64); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    listening.append(s)
for i in range(n - n // 2):
    s = socket.socket(); s.bind(("127.0.0.1", 0))     # bound, not listening: refused
    refusing.append(s)
with open(run + "/seed.conf.tmp", "w") as f:
    f.write("replicas 2\ndc bench\n")
    for i, s in enumerate(listening):
        f.write(f"node up{i:05d} 127.0.0.1:{s.getsockname()[1]} dc=bench\n")
    for i, s in enumerate(refusing):
        f.write(f"node dn{i:05d} 127.0.0.1:{s.getsockname()[1]} dc=bench\n")
os.rename(run + "/seed.conf.tmp", run + "/seed.conf")
ctl = socket.socket(socket.AF_UNIX); ctl.bind(run + "/ctl.sock"); ctl.listen(1); ctl.setblocking(False)
sel.register(ctl, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is ctl:
            c, _ = ctl.accept(); c.setblocking(True)
            k = int(c.recv(64).decode())                # close the first k listeners
            for j in range(k):
                sel.unregister(listening[j]); listening[j].close()
            c.sendall(b"ok\n"); c.close()
            continue
        for _ in range(64):
            try:
                c, _ = s.accept()
            except (BlockingIOError, ConnectionAbortedError):
                break
            c.close()
PY
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
$py "$run/sockets.py" "$targets" "$run" & pids+=($!)
for _ in $(seq 200); do [ -e "$run/seed.conf" ] && [ -S "$run/ctl.sock" ] && break; sleep 0.1; done
[ -e "$run/seed.conf" ] || { echo "bench-health: socket helper did not start" >&2; exit 1; }

# --- healthcheckd ----------------------------------------------------------
stats_port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$build/healthcheckd" --seed "$run/seed.conf" --feed "$run/feed.sock" --stats "127.0.0.1:$stats_port" \
	--interval 1s --fall 2 --rise 2 --jitter 10 --damp-flaps 0 2>"$run/healthcheckd.log" & hc=$!
pids+=($hc)

$py - "$run" "$targets" "$seconds" "$hc" "$stats_port" >"$run/result.txt" <<'PY'
import os, socket, sys, time, urllib.request
run, n, seconds, pid, stats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tck = os.sysconf("SC_CLK_TCK")

def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])            # utime + stime

def by_result():
    body = urllib.request.urlopen(f"http://127.0.0.1:{stats}/metrics", timeout=10).read().decode()
    return {l.split('"')[1]: float(l.rsplit(" ", 1)[1]) for l in body.splitlines()
            if l.startswith("seedgate_hc_checks_total{")}

def checks():
    return sum(by_result().values())

t0 = time.monotonic()
feed = socket.socket(socket.AF_UNIX)
for _ in range(300):
    try:
        feed.connect(run + "/feed.sock"); break
    except OSError:
        time.sleep(0.1)
buf, state = b"", {}
def lines():
    global buf
    while b"\n" not in buf:
        d = feed.recv(1 << 20)
        if not d:
            raise SystemExit("feed closed")
        buf += d
    line, buf = buf.split(b"\n", 1)
    return line.decode()
while True:
    l = lines()
    if l.startswith("T "):
        f = l.split(" ")
        state[f[1]] = f[2]
    if l.startswith("E "):
        break
t_snap = time.monotonic() - t0
up = sum(1 for v in state.values() if v == "up")
print(f"snapshot: {len(state)} targets after {t_snap:.2f} s: {up} up, {len(state) - up} down")
time.sleep(2)                                  # past the start-up spread

r0 = by_result()
c0, k0, w0 = cpu(), checks(), time.monotonic()
time.sleep(seconds)
c1, k1, w1 = cpu(), checks(), time.monotonic()
r1 = by_result()
print("results: " + ", ".join(f"{k} {(r1[k] - r0[k]) / (w1 - w0):.0f}/s" for k in sorted(r1)))
cpu_pct = 100.0 * (c1 - c0) / tck / (w1 - w0)
rate = (k1 - k0) / (w1 - w0)
print(f"cpu: {cpu_pct:.1f} % of one core over {w1 - w0:.1f} s ({(c1 - c0) / tck:.2f} s CPU)")
print(f"checks: {rate:.0f} per second ({(c1 - c0) / tck / max(k1 - k0, 1) * 1e6:.1f} us CPU per check)")

# failure detection: close 20 listeners, time their "down" lines
k = 20
ctl = socket.socket(socket.AF_UNIX); ctl.connect(run + "/ctl.sock")
t_kill = time.monotonic(); ctl.sendall(str(k).encode()); ctl.recv(16); ctl.close()
want = {f"up{i:05d}" for i in range(k)}
seen = {}
feed.settimeout(10)
while len(seen) < k:
    l = lines()
    if l.startswith("T "):
        f = l.split(" ")
        if f[1] in want and f[2] == "down" and f[1] not in seen:
            seen[f[1]] = time.monotonic() - t_kill
d = sorted(seen.values())
print(f"detect: {k} listeners closed, all down in the feed: median {1000 * d[len(d) // 2]:.0f} ms, "
      f"min {1000 * d[0]:.0f} ms, max {1000 * d[-1]:.0f} ms")
PY
cat "$run/result.txt"
rss=$(awk '/VmRSS/ {print $2 " " $3}' /proc/$hc/status)
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
echo "rss: $rss"

# --- record ------------------------------------------------------------------
out=bench/results/health.md
{
	echo "# healthcheckd: $targets targets, one check per second each"
	echo
	echo "Recorded by \`bench/bench-health.sh --targets $targets --seconds $seconds\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
	echo
	echo "* machine: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo "* versions: $(gcc --version | head -1); libev $(dpkg-query -W -f='${Version}' libev-dev 2>/dev/null); c-ares $(dpkg-query -W -f='${Version}' libc-ares-dev 2>/dev/null); seedgate $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo "* setup: $((targets / 2)) listening sockets (accept and close) + $((targets - targets / 2)) bound, not listening (refused), all on 127.0.0.1; TCP checks, interval 1 s, jitter 10 %, fall 2, rise 2"
	echo
	echo '```'
	cat "$run/result.txt"
	echo "healthcheckd rss: $rss"
	echo "load average (1/5/15 min) at start: $load_start, at end: $load_end"
	echo '```'
	echo
	echo "CPU is healthcheckd's utime+stime from /proc/PID/stat over the window;"
	echo "checks/s from seedgate_hc_checks_total. Detection: the time from closing"
	echo "20 listening sockets to their \"down\" lines on the health feed (fall 2:"
	echo "the next check, then a second one at the faster interval of 500 ms)."
	echo "The machine is shared (other builds and tests run at the same time: see"
	echo "the load average); the snapshot time is mostly the seed directory's"
	echo "parse and placement of 10,000 nodes (librouter), before any check runs."
} >"$out"
echo "bench-health: wrote $out"
