"""healthcheckd when resources run out, and its sharp edges.

What it proves:
* 80 feed subscribers that never read, against a healthcheckd whose
  open-files limit is 64: the subscriber cap holds them off, every target
  stays up in the feed, in /metrics and in HAProxy (no MAINT), the log
  stays short and the daemon does not spin;
* the descriptor limit really reached (lowered under a running daemon):
  checks that cannot open a socket are skipped and counted, never a
  verdict; accept() sheds connections without spinning;
* many targets and subscribers that never read: the snapshot is not
  queued whole per subscriber (RSS stays small) and comes back once they
  leave;
* /metrics with 64 idle connections still answers a scrape;
* a second healthcheckd on the same --feed is refused and leaves the first
  one reachable; the feed socket gets --feed-mode / --feed-group;
* bytes from the seed are escaped in logs and parse errors, label values
  in /metrics as Prometheus wants; 1h is a valid interval; --help prints
  no '%%'; drained targets are counted apart.
"""
import os
import socket
import stat
import subprocess
import time

import harness
import health_util as hu
import route_util as ru

SLOW = harness.SLOW
HCD_ARGS = ["--interval", "100ms", "--timeout", "300ms", "--fall", "2", "--rise", "2"]


def demo(stack, name, port):
    p = stack.start(name, [harness.bin_path("demo-server"), "--name", name,
                           "--listen", f"127.0.0.1:{port}"])
    stack.wait_port(port, p)
    return p


def start_hcd(stack, seed, feed, *, nofile=None, stats=None, haproxy=None, args=(), name="healthcheckd"):
    """healthcheckd, under `prlimit --nofile=N:N` when nofile is given (prlimit
    execs it: the PID is healthcheckd's)."""
    argv = [harness.bin_path("healthcheckd"), "--seed", seed, "--feed", feed] + HCD_ARGS
    if stats:
        argv += ["--stats", f"127.0.0.1:{stats}"]
    if haproxy:
        argv += ["--haproxy-socket", haproxy]
    argv += list(args)
    if nofile:
        argv = ["prlimit", f"--nofile={nofile}:{nofile}"] + argv
    p = stack.start(name, argv)
    stack.wait_unix(feed, p, timeout=10)
    return p


def three_targets(stack):
    ports = {n: harness.free_port() for n in ("h1", "n1", "n2")}
    for n, port in ports.items():
        demo(stack, n, port)
    seed = stack.write("seed.conf", "replicas 2\ndc a\n"
                       f"hub h1 127.0.0.1:{ports['h1']} dc=a\n"
                       f"node n1 127.0.0.1:{ports['n1']} dc=a\n"
                       f"node n2 127.0.0.1:{ports['n2']} dc=a\n")
    return seed, ports


def haproxy_for(stack, ports):
    """A HAProxy with the seed's backends and a runtime API socket."""
    sock = stack.path("haproxy.sock")
    fe = harness.free_port()
    cfg = (f"global\n    stats socket {sock} level admin\n"
           "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
           f"frontend fe\n    bind 127.0.0.1:{fe}\n    default_backend nodes_a\n"
           f"backend hubs_a\n    server h1 127.0.0.1:{ports['h1']}\n"
           f"backend nodes_a\n    server n1 127.0.0.1:{ports['n1']}\n"
           f"    server n2 127.0.0.1:{ports['n2']}\n")
    stack.haproxy(cfg, wait_ports=[fe])
    return sock


def haproxy_states(sock):
    """{server: status} from `show stat` (MAINT when healthcheckd set maint)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(sock)
        s.sendall(b"show stat\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    out = {}
    for row in data.decode(errors="replace").splitlines():
        f = row.split(",")
        if len(f) > 17 and f[1] in ("h1", "n1", "n2"):
            out[f[1]] = f[17]
    return out


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])     # utime + stime


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def idle_clients(path, n):
    """n unix connections that never read; those refused are kept too (the
    server closed them: harmless)."""
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        try:
            s.connect(path)
        except OSError:
            s.close()
            continue
        out.append(s)
    return out


def idle_tcp(port, n):
    out = []
    for _ in range(n):
        out.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    return out


def close_all(socks):
    for s in socks:
        s.close()


def log_lines(proc):
    return proc.log().count("\n")


def no_change_for(w, seconds, names):
    """Watches the feed for `seconds` (a bounded window, not a race: any
    change in it is a failure) and returns the events seen."""
    t0 = time.monotonic()
    time.sleep(seconds)
    return [e for e in w.events if e[0] >= t0 and e[1] in names and e[2] != "up"]


def test_idle_subscribers_at_nofile_64_change_nothing(stack):
    seed, ports = three_targets(stack)
    sock = haproxy_for(stack, ports)
    feed, stats = stack.path("feed.sock"), harness.free_port()
    hc = start_hcd(stack, seed, feed, nofile=64, stats=stats, haproxy=sock)
    w = hu.Feed(feed)
    for n in ports:
        w.wait_state(n, "up")
    harness.wait_until(lambda: ru.metric(ru.read_metrics(stats), "seedgate_hc_haproxy_connected") == 1,
                       5, what="healthcheckd on HAProxy's runtime API")
    harness.wait_until(lambda: set(haproxy_states(sock).values()) == {"UP"} or
                       set(haproxy_states(sock).values()) <= {"UP", "no check"}, 5,
                       what="servers ready in HAProxy")
    lines0 = log_lines(hc)
    t0 = cpu_ticks(hc.pid)
    socks = idle_clients(feed, 80)
    stack.defer(lambda: close_all(socks))
    # 15 check rounds: every target must stay up all along
    bad = no_change_for(w, 1.5, set(ports))
    spent = cpu_ticks(hc.pid) - t0
    assert bad == [], bad
    assert spent < 30, f"{spent} ticks of CPU in 1.5 s: spinning"
    m = ru.read_metrics(stats)
    cap = ru.metric(m, "seedgate_hc_feed_subscribers_max")
    assert 4 <= cap < 64, cap
    assert ru.metric(m, "seedgate_hc_feed_subscribers") <= cap
    assert ru.metric(m, "seedgate_hc_feed_refused_total") > 0
    assert fd_count(hc.pid) < 64
    m = ru.read_metrics(stats)
    for n in ports:
        assert ru.metric(m, "seedgate_hc_target_up", target=n) == 1
    assert ru.metric(m, "seedgate_hc_checks_total", result="fail") == 0
    assert "MAINT" not in haproxy_states(sock).values(), haproxy_states(sock)
    assert log_lines(hc) - lines0 < 10, hc.log()[-3000:]
    assert rss_kb(hc.pid) < 64 * 1024
    print(f"\nnofile 64, 80 idle subscribers: cap {cap:.0f}, {spent} CPU ticks in 1.5 s, "
          f"{fd_count(hc.pid)} fds, {log_lines(hc) - lines0} log lines, RSS {rss_kb(hc.pid)} kB")


def test_descriptor_limit_reached_skips_checks(stack):
    seed, ports = three_targets(stack)
    sock = haproxy_for(stack, ports)
    feed, stats = stack.path("feed.sock"), harness.free_port()
    hc = start_hcd(stack, seed, feed, nofile=64, stats=stats, haproxy=sock)
    w = hu.Feed(feed)
    for n in ports:
        w.wait_state(n, "up")
    harness.wait_until(lambda: ru.metric(ru.read_metrics(stats), "seedgate_hc_haproxy_connected") == 1,
                       5, what="healthcheckd on HAProxy's runtime API")
    # Let the checks between rounds settle, then leave room for exactly two
    # more descriptors: two idle subscribers take them, and from then on
    # every check's socket() fails with EMFILE, as does accept().
    base = min(fd_count(hc.pid) for _ in range(20))     # without a check in flight
    subprocess.run(["prlimit", "--pid", str(hc.pid), f"--nofile={base + 2}:64"], check=True)
    lines0 = log_lines(hc)
    socks = idle_clients(feed, 20)
    stack.defer(lambda: close_all(socks))
    harness.wait_until(lambda: "skipped" in hc.log(), 5, what="skipped checks logged")

    t0 = cpu_ticks(hc.pid)
    more = idle_clients(feed, 20)           # accept() at EMFILE: shed, no spin
    socks += more
    for _ in range(20):                     # the same on the /metrics listener
        try:
            socks.append(socket.create_connection(("127.0.0.1", stats), timeout=2))
        except OSError:
            pass
    bad = no_change_for(w, 1.5, set(ports))
    spent = cpu_ticks(hc.pid) - t0
    assert bad == [], bad
    assert spent < 30, f"{spent} ticks of CPU in 1.5 s: spinning"
    assert "MAINT" not in haproxy_states(sock).values(), haproxy_states(sock)
    assert log_lines(hc) - lines0 < 15, hc.log()[-3000:]
    assert "skipped" in hc.log() and "feed: accept: Too many open files" in hc.log()
    assert "closed at once" in hc.log()

    # room again: metrics answer, the skips were counted, nothing went down
    subprocess.run(["prlimit", "--pid", str(hc.pid), "--nofile=64:64"], check=True)
    close_all(socks)
    m = harness.wait_until(lambda: ru.read_metrics(stats), 5, what="metrics after the limit")
    assert ru.metric(m, "seedgate_hc_checks_skipped_total", reason="fd_limit") > 0
    assert ru.metric(m, "seedgate_hc_checks_total", result="fail") == 0
    for n in ports:
        assert ru.metric(m, "seedgate_hc_target_up", target=n) == 1
        assert w.get(n) == "up"
    print(f"\nlimit {base + 2} reached: "
          f"{ru.metric(m, 'seedgate_hc_checks_skipped_total', reason='fd_limit'):.0f} checks skipped, "
          f"{spent} CPU ticks in 1.5 s, {log_lines(hc) - lines0} log lines")


def test_snapshot_not_queued_per_subscriber(stack):
    n_targets = 4000
    lines = ["replicas 2", "dc a"] + [f"node n{i} 127.0.0.1:{20000 + i % 1000} dc=a check=none"
                                     for i in range(n_targets)]
    seed = stack.write("seed.conf", "\n".join(lines) + "\n")
    feed, stats = stack.path("feed.sock"), harness.free_port()
    hc = start_hcd(stack, seed, feed, stats=stats)
    w = hu.Feed(feed, timeout=10)
    assert len(w.state) == n_targets
    base = rss_kb(hc.pid)
    socks = idle_clients(feed, 40)
    stack.defer(lambda: close_all(socks))
    harness.wait_until(lambda: ru.metric(ru.read_metrics(stats), "seedgate_hc_feed_subscribers") >= 41,
                       5, what="40 idle subscribers")
    grown = rss_kb(hc.pid) - base
    # the whole snapshot is ~0.5 MB: queued per subscriber it was 20+ MB
    assert grown < 8 * 1024, f"RSS grew {grown} kB for 40 subscribers"
    close_all(socks)
    harness.wait_until(lambda: ru.metric(ru.read_metrics(stats), "seedgate_hc_feed_subscribers") == 1,
                       5, what="idle subscribers gone")
    after = rss_kb(hc.pid) - base
    assert after < 6 * 1024, f"RSS still {after} kB above the start once they left"
    print(f"\n{n_targets} targets, 40 subscribers not reading: RSS +{grown} kB, +{after} kB after")


def test_metrics_64_idle_connections(stack):
    seed, ports = three_targets(stack)
    feed, stats = stack.path("feed.sock"), harness.free_port()
    start_hcd(stack, seed, feed, stats=stats)
    socks = idle_tcp(stats, 64)
    stack.defer(lambda: close_all(socks))
    m = ru.read_metrics(stats)
    assert ru.metric(m, "seedgate_hc_feed_subscribers") >= 0
    # and under a small limit too (cap 4): the oldest idle one makes room
    feed2, stats2 = stack.path("feed2.sock"), harness.free_port()
    start_hcd(stack, seed, feed2, nofile=64, stats=stats2, name="healthcheckd-64")
    socks2 = idle_tcp(stats2, 64)
    stack.defer(lambda: close_all(socks2))
    assert ru.metric(ru.read_metrics(stats2), "seedgate_hc_feed_subscribers") >= 0


def test_second_daemon_refused_and_socket_mode(stack):
    seed, ports = three_targets(stack)
    feed = stack.path("feed.sock")
    first = start_hcd(stack, seed, feed)
    assert stat.S_IMODE(os.lstat(feed).st_mode) == 0o660
    w = hu.Feed(feed)
    w.wait_state("n1", "up")
    r = subprocess.run([harness.bin_path("healthcheckd"), "--seed", seed, "--feed", feed] + HCD_ARGS,
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, r
    assert feed in r.stderr and f"pid {first.pid}" in r.stderr, r.stderr
    assert os.path.exists(feed)
    w2 = hu.Feed(feed)
    assert w2.get("n1") == "up"
    assert first.alive()

    # explicit mode and group on another feed
    feed2 = stack.path("feed2.sock")
    start_hcd(stack, seed, feed2, args=["--feed-mode", "0600", "--feed-group", str(os.getgid())],
              name="healthcheckd-2")
    st = os.lstat(feed2)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_gid == os.getgid()
    bad = subprocess.run([harness.bin_path("healthcheckd"), "--seed", seed, "--feed", feed2,
                          "--feed-mode", "999"], capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "--feed-mode" in bad.stderr

    # a stale socket file (its daemon killed) is replaced
    first.kill()
    assert os.path.exists(feed)
    again = start_hcd(stack, seed, feed, name="healthcheckd-again")
    assert hu.Feed(feed).get("n1") in ("up", None) and again.alive()


def test_escaping_and_small_fixes(stack):
    # a seed error quoting a control byte and a non-ASCII byte
    bad = stack.path("bad.conf")
    with open(bad, "wb") as f:
        f.write(b"replicas 2\ndc a\nnode n1 127.0.0.1:1 dc=a check=sm\x1b[2Jk\xff\n")
    r = subprocess.run([harness.bin_path("healthcheckd"), "-c", "--seed", bad], capture_output=True)
    assert r.returncode == 1
    assert b"\x1b" not in r.stderr and b"\xff" not in r.stderr, r.stderr
    assert b"sm\\x1b[2Jk\\xff" in r.stderr, r.stderr

    # 1h is "up to 1h"
    ok = stack.write("ok.conf", "replicas 2\ndc a\nnode n1 127.0.0.1:1 dc=a interval=1h timeout=1h\n")
    r = subprocess.run([harness.bin_path("healthcheckd"), "-c", "--seed", ok], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    over = stack.write("over.conf", "replicas 2\ndc a\nnode n1 127.0.0.1:1 dc=a interval=61m\n")
    r = subprocess.run([harness.bin_path("healthcheckd"), "-c", "--seed", over], capture_output=True, text=True)
    assert r.returncode == 1 and "interval" in r.stderr

    r = subprocess.run([harness.bin_path("healthcheckd"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "%%" not in r.stdout and "+-PCT % (10)" in r.stdout

    # a running daemon: a broken reload with raw bytes is logged escaped; a
    # socket path with a quote and a newline is an escaped label value;
    # drained targets are counted apart
    seed, ports = three_targets(stack)
    with open(seed, "a") as f:
        f.write(f"node d1 127.0.0.1:{ports['n1']} dc=a state=drain\n")
    feed, stats = stack.path("feed.sock"), harness.free_port()
    weird = stack.path('ha"p\nx.sock')
    hc = start_hcd(stack, seed, feed, stats=stats, haproxy=weird)
    w = hu.Feed(feed)
    w.wait_state("d1", "drain")
    with urllib_get(stats) as body:
        assert 'socket="' + weird.replace('"', '\\"').replace("\n", "\\n") + '"' in body, body
        # every line is one sample (the raw newline would have split one)
        m = ru.parse_metrics("\n".join(l for l in body.splitlines() if "haproxy" not in l))
    assert ru.metric(m, "seedgate_hc_targets", state="drain") == 1
    assert ru.metric(m, "seedgate_hc_targets", state="up") == 3
    assert ru.metric(m, "seedgate_hc_targets", state="down") == 0
    with open(seed, "ab") as f:
        f.write(b"bo\x07gus\x1b]0;pwned\x07 x\n")
    harness.wait_until(lambda: "reload" in hc.log() and "pwned" in hc.log(), 5, what="reload error logged")
    with open(hc.log_path, "rb") as f:
        raw = f.read()
    assert b"\x07" not in raw and b"\x1b" not in raw, raw[-500:]
    assert b"unknown keyword 'bo\\x07gus\\x1b]0;pwned\\x07'" in raw, raw[-800:]
    assert b'ha"p\\x0ax.sock' in raw         # the socket path in log lines too


class urllib_get:
    """GET /metrics as text (the raw body: label values checked as written)."""

    def __init__(self, port):
        self.port = port

    def __enter__(self):
        _st, _h, body = harness.http_get(self.port, "/metrics")
        return body.decode()

    def __exit__(self, *a):
        return False
