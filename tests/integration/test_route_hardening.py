"""route-agent under pressure: descriptors and the connection cap, a second
agent on a taken port, idle timeouts that cannot race HAProxy's, the health
feed before healthcheckd is up, log lines that quote outside bytes, and the
SPOP runtime's other exhaustion paths (silent peers, floods of bad
connections, a peer that never reads).

Every agent here is a real route-agent on 127.0.0.1; limits are set with
prlimit(1) on its command line, or on the running process by PID."""
import os
import re
import resource
import signal
import socket
import subprocess
import time

import pytest

import harness
import route_util as ru
import spop_util as su

SLOW = harness.SLOW
ROOT = harness.ROOT


def write_seed(stack, name="seed.conf"):
    text, _ = ru.seed_text(ru.port_range())
    return stack.write(name, text)


def start(stack, seed, *, name="route-agent", prefix=(), extra=(), workers=1, port=None, health=None):
    """route-agent (optionally under `prefix`, e.g. prlimit) with /metrics;
    waits until both ports answer."""
    port = port or harness.free_port()
    stats = harness.free_port()
    argv = list(prefix) + [harness.bin_path("route-agent"), "--listen", f"127.0.0.1:{port}", "--seed", seed,
                           "--workers", str(workers), "--stats", f"127.0.0.1:{stats}"]
    if health:
        argv += ["--health", health]
    argv += list(extra)
    proc = stack.start(name, argv)
    stack.wait_port(port, proc)
    stack.wait_port(stats, proc)
    return ru.RouteAgent(stack, proc, port, stats, seed)


def need_fds(n):
    """This test process opens n sockets at once: raise our own soft limit
    (or skip when the hard one is too low)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return
    if hard != resource.RLIM_INFINITY and hard < n:
        pytest.skip(f"needs {n} open files, hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def cpu_seconds(pid):
    """User + system CPU time the process used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connect_all(port, n, timeout=10.0):
    conns = []
    try:
        for _ in range(n):
            conns.append(su.SpopClient(port, timeout=timeout * SLOW))
    except BaseException:
        close_all(conns)
        raise
    return conns


def close_all(conns):
    for c in conns:
        c.close()


def read_hello_reply(c):
    """The agent's answer to a HAPROXY-HELLO already sent: the frame."""
    f = c.read_frame()
    assert f is not None, "EOF instead of an answer to HELLO"
    return f


def count(pattern, text):
    return len(re.findall(pattern, text))


# ---------------------------------------------------------------------------
# 1. Descriptors: the limit is raised, connections are capped below it

def test_soft_open_files_limit_is_raised_1100_hellos_answered(stack):
    """Under a 1024 soft limit (hard 4096) every one of 1100 HELLOs is
    answered: the agent raised its soft limit to the hard one, and its cap
    (shown in /metrics) is derived from it."""
    need_fds(1300)
    seed = write_seed(stack)
    agent = start(stack, seed, prefix=["prlimit", "--nofile=1024:4096"], workers=2)
    conns = connect_all(agent.port, 1100)
    try:
        for c in conns:
            c.send(su.hello_frame())
        for c in conns:
            f = read_hello_reply(c)
            assert f.type == su.AGENT_HELLO, f
        m = agent.metrics()
        assert ru.metric(m, "seedgate_spop_connections") == 1100
        assert ru.metric(m, "seedgate_open_files_limit") == 4096
        cap = ru.metric(m, "seedgate_spop_connections_max")
        # the cap leaves the reserve (64) and what is open at start
        assert 1100 <= cap <= 4096 - 64, cap
    finally:
        close_all(conns)
    assert "open-files limit raised from 1024 to 4096" in agent.log()
    assert re.search(r"started: .* up to \d+ connections \(open-files limit 4096\)", agent.log())


def test_at_the_cap_new_connections_get_disconnect_13_without_spinning(stack):
    """Open-files limit 256 (soft and hard): the cap leaves the reserve; a
    connection over it reads AGENT-DISCONNECT 13 naming the cap (it used
    to wait unaccepted, EMFILE, until HAProxy's hello timeout)."""
    seed = write_seed(stack)
    agent = start(stack, seed, prefix=["prlimit", "--nofile=256:256"], workers=2)
    cap = int(ru.metric(agent.metrics(), "seedgate_spop_connections_max"))
    assert 100 <= cap <= 256 - 64 - 16, cap
    served = connect_all(agent.port, cap)
    try:
        for c in served:
            c.hello()
        harness.wait_until(lambda: ru.metric(agent.metrics(), "seedgate_spop_connections") == cap,
                           what="every connection counted")
        # One at a time: each extra connection reads a clear refusal.
        for _ in range(5):
            with su.SpopClient(agent.port, timeout=5 * SLOW) as c:
                c.send(su.hello_frame())
                status, msg = c.expect_disconnect()
                assert status == su.ST_RES_ALLOC, (status, msg)
                assert f"connection cap ({cap} connections)" in msg, msg
        # A burst that never closes: more than the refusals that may linger
        # at once (16), so the agent pauses its listener between them. All
        # are refused in the end, and the agent does not burn CPU meanwhile.
        cpu0, t0 = cpu_seconds(agent.proc.pid), time.monotonic()
        burst = connect_all(agent.port, 40)
        try:
            for c in burst:
                c.send(su.hello_frame())
            for c in burst:
                f = c.read_frame(timeout=15 * SLOW)
                assert f is not None and f.type == su.AGENT_DISCONNECT, f
                assert f.kv()["status-code"] == su.ST_RES_ALLOC
        finally:
            close_all(burst)
        spent, wall = cpu_seconds(agent.proc.pid) - cpu0, time.monotonic() - t0
        assert spent < 0.5 + wall / 4, f"agent used {spent:.2f}s of CPU in {wall:.2f}s at the cap"
        m = agent.metrics()
        assert ru.metric(m, "seedgate_spop_connections_refused_total") == 45
        assert ru.metric(m, "seedgate_spop_disconnects_total", status="13") == 45
        # the connections served are untouched
        for i, c in enumerate(served[:5]):
            assert su.ack_vars(c.call(i + 1, 1, [("route", [("path", "/")])]))["why"] == "hub"
    finally:
        close_all(served)
    # Slots freed: a new connection is served again.
    harness.wait_until(lambda: ru.metric(agent.metrics(), "seedgate_spop_connections") == 0,
                       what="connections closed")
    agent.decide("/")
    # 45 refusals, one log line (rate-limited: one per 10 s, with a count)
    log = agent.log()
    assert 1 <= count(rf"at the connection cap \({cap}\)", log) <= 2, log


def test_max_connections_option(stack):
    seed = write_seed(stack)
    agent = start(stack, seed, extra=["--max-connections", "3"])
    assert ru.metric(agent.metrics(), "seedgate_spop_connections_max") == 3
    conns = [agent.client() for _ in range(3)]
    try:
        with su.SpopClient(agent.port, timeout=5 * SLOW) as c:
            c.send(su.hello_frame())
            assert c.expect_disconnect()[0] == su.ST_RES_ALLOC
    finally:
        close_all(conns)
    # more than the open-files limit allows: refused at start, with the numbers
    p = stack.start("too-many", ["prlimit", "--nofile=256:256", harness.bin_path("route-agent"), "--listen",
                                 f"127.0.0.1:{harness.free_port()}", "--seed", seed, "--max-connections", "1000"])
    assert p.popen.wait(10 * SLOW) == 1, p.log()
    assert re.search(r"max-connections 1000 is more than the open-files limit allows: \d+ \(limit 256 - ",
                     p.log()), p.log()


def test_out_of_descriptors_pauses_accepting_without_flooding_the_log(stack):
    """The running agent's limit is lowered under its cap (an operator, or
    descriptors used elsewhere): accept() fails with EMFILE. The listener
    pauses and retries, the log gets one line per 10 s, not one per retry,
    and the connections that waited are served once descriptors free up."""
    seed = write_seed(stack)
    agent = start(stack, seed)
    pid = agent.proc.pid
    # A full /metrics exchange first: the port probe start() made is then
    # accepted, so only SPOP connections meet the lowered limit (this test
    # is about the SPOP listener, not the /metrics server's accept()).
    agent.metrics()
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    limit = len(os.listdir(f"/proc/{pid}/fd")) + 8
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
    conns = connect_all(agent.port, 30)
    try:
        for c in conns:
            c.send(su.hello_frame())
        # the first few are served; wait until the agent is out of descriptors
        agent.wait_log(r"accept: Too many open files")
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(2.0)         # the scenario: 2 s of EMFILE, i.e. ~20 retries
        spent, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
        assert spent < 0.5, f"agent used {spent:.2f}s of CPU in {wall:.2f}s out of descriptors"
        # one line per 10 s (two if this machine stalled past a window)
        assert count(r"accept: Too many open files", agent.log()) <= 2, agent.log()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        for c in conns:
            f = read_hello_reply(c)
            assert f.type == su.AGENT_HELLO, f
    finally:
        close_all(conns)
    m = agent.metrics()
    assert ru.metric(m, "seedgate_spop_accept_errors_total") >= 5
    assert ru.metric(m, "seedgate_log_lines_suppressed_total") >= 4


# ---------------------------------------------------------------------------
# 2. One agent per address

def test_second_agent_on_a_taken_port_fails_at_start(stack):
    seed = write_seed(stack)
    first = start(stack, seed, workers=2)
    second = stack.start("second", [harness.bin_path("route-agent"), "--listen", f"127.0.0.1:{first.port}",
                                    "--seed", seed, "--workers", "2"])
    assert second.popen.wait(10 * SLOW) == 1, second.log()
    assert f"127.0.0.1:{first.port} is already in use (another route-agent?)" in second.log()
    # every connection still reaches the first agent
    for _ in range(20):
        first.decide("/")
    assert ru.metric(first.metrics(), "seedgate_spop_connections_total") >= 20
    # the same for a unix socket
    path = stack.path("agent.sock")
    ua = stack.start("unix-first", [harness.bin_path("route-agent"), "--listen", path, "--seed", seed])
    stack.wait_unix(path, ua)
    ub = stack.start("unix-second", [harness.bin_path("route-agent"), "--listen", path, "--seed", seed])
    assert ub.popen.wait(10 * SLOW) == 1, ub.log()
    assert f"{path} is already in use (another route-agent?)" in ub.log()
    assert ua.alive()


# ---------------------------------------------------------------------------
# 3. Idle timeouts

def haproxy_duration_s(text):
    """HAProxy's time format ("500ms", "30s", "1m", bare = ms) in seconds."""
    m = re.fullmatch(r"(\d+)(us|ms|s|m|h|d)?", text.strip())
    assert m, f"cannot read HAProxy duration {text!r}"
    mult = {"us": 1e-6, "ms": 1e-3, None: 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return int(m.group(1)) * mult


def shipped_haproxy_idle_s():
    """The longest idle timeout the shipped configuration gives HAProxy's
    agent connections: spoe-route.conf's `timeout idle` (2.6) and the
    route_agents backend's `timeout server` (3.x)."""
    spoe = open(os.path.join(ROOT, "haproxy-conf", "spoe-route.conf")).read()
    idle = [haproxy_duration_s(v) for v in re.findall(r"^\s+timeout\s+idle\s+(\S+)", spoe, re.M)]
    cfg = open(os.path.join(ROOT, "haproxy-conf", "haproxy.cfg")).read()
    sect = re.search(r"^backend route_agents\n((?:[ \t].*\n|\n)*)", cfg, re.M)
    assert idle and sect
    server = [haproxy_duration_s(v) for v in re.findall(r"^\s+timeout\s+server\s+(\S+)", sect.group(1), re.M)]
    return max(idle + server)


def test_default_idle_timeout_is_what_help_says_and_exceeds_haproxys(stack):
    r = subprocess.run([harness.bin_path("route-agent"), "--help"], capture_output=True, text=True, timeout=10)
    m = re.search(r"--idle-timeout MS .*\(default (\d+)\)?", r.stdout)
    assert m, r.stdout
    default_s = int(m.group(1)) / 1000
    assert "must" in r.stdout and "exceed HAProxy's" in " ".join(r.stdout.split())
    haproxy_s = shipped_haproxy_idle_s()
    assert default_s >= haproxy_s * 1.5, (default_s, haproxy_s)
    agent = start(stack, write_seed(stack))
    assert ru.metric(agent.metrics(), "seedgate_spop_idle_timeout_seconds") == default_s
    assert f"idle timeout {default_s:g} s" in agent.log()
    readme = open(os.path.join(ROOT, "spoe-agents", "route", "README.md")).read()
    assert "idle timeout must exceed HAProxy's" in " ".join(readme.split())


def test_connection_idle_less_than_the_agents_timeout_still_answers(stack):
    """The short variant of the rule: agent 2 s, HAProxy's side idles 1 s
    then sends a NOTIFY: it is answered, never raced by the agent's close."""
    agent = start(stack, write_seed(stack), extra=["--idle-timeout", "2000"])
    c = agent.client()
    try:
        time.sleep(1.0)         # the scenario: an idle second
        assert agent.decide("/", client=c)["why"] == "hub"
        time.sleep(1.0)         # idle again: the timer counts from the NOTIFY
        assert agent.decide("/", client=c)["why"] == "hub"
    finally:
        c.close()
    assert "idle timeout" not in agent.log().split("started:")[1].split("\n", 1)[1]


# ---------------------------------------------------------------------------
# 4. Health feed before healthcheckd is up

def test_health_feed_not_reachable_yet_is_not_lost(stack):
    seed = write_seed(stack)
    sock = stack.path("health.sock")
    agent = start(stack, seed, health=sock)
    agent.wait_log(r"health feed .* not reachable yet: connect")
    time.sleep(2.0)             # the scenario: ~6 failed attempts (50 ms doubling)
    log = agent.log()
    assert "lost" not in log, log
    assert count(r"health feed \S+ (not reachable|still)", log) == 1, log
    feed = ru.FeedServer(sock)
    stack.defer(feed.close)
    feed.accept({"hub11": "up"})
    agent.wait_log(r"health feed .* connected")
    feed.drop()
    agent.wait_log(r"health feed .* lost, keeping the last known state")
    assert "not reachable yet" not in agent.log().split("connected", 1)[1]


# ---------------------------------------------------------------------------
# 5. Log lines quote outside bytes escaped

def test_log_lines_escape_control_bytes(stack):
    seed = write_seed(stack)
    agent = start(stack, seed)
    good = open(seed, "rb").read()
    with open(seed, "wb") as f:
        f.write(good + b"node n\x1b[31mX\x07 127.0.0.1:1 dc=us-east\n")
    agent.proc.signal(signal.SIGHUP)
    agent.wait_log(r"seed reload failed")
    # a peer's DISCONNECT message with a newline and an escape sequence
    c = agent.client()
    c.send(su.haproxy_disconnect_frame(su.ST_IO, "boom\n2099-01-01T00:00:00Z route-agent[1]: forged \x1b[2J"))
    c.expect_disconnect()
    c.close()
    agent.wait_log(r"HAPROXY-DISCONNECT status 1")
    raw = open(agent.proc.log_path, "rb").read()
    assert b"\x1b" not in raw and b"\x07" not in raw
    assert b"n\\x1b[31mX\\x07" in raw, raw
    line = [ln for ln in raw.split(b"\n") if b"HAPROXY-DISCONNECT" in ln][0]
    assert b"boom\\x0a2099-01-01T00:00:00Z route-agent[1]: forged \\x1b[2J" in line, line
    # -c prints the same error escaped
    r = subprocess.run([harness.bin_path("route-agent"), "-c", "--seed", seed], capture_output=True, timeout=10)
    assert r.returncode == 1 and b"\x1b" not in r.stderr and b"\\x1b[31m" in r.stderr, r.stderr


# ---------------------------------------------------------------------------
# 6. Other exhaustion paths of the SPOP runtime

def test_connection_that_never_says_hello_is_closed(stack):
    """A peer that opens connections and never sends its HELLO holds a slot
    for 5 s, not for the idle timeout (90 s)."""
    agent = start(stack, write_seed(stack))
    with su.SpopClient(agent.port, timeout=15 * SLOW) as c:
        t0 = time.monotonic()
        status, msg = c.expect_disconnect()
        took = time.monotonic() - t0
    assert status == su.ST_TIMEOUT and "HELLO" in msg, (status, msg)
    assert 4.0 <= took < 10 * SLOW, took
    assert ru.metric(agent.metrics(), "seedgate_spop_hello_timeouts_total") == 1
    # a peer trickling its HELLO byte by byte does not extend it
    hello = su.hello_frame()
    with su.SpopClient(agent.port, timeout=15 * SLOW) as c:
        t0 = time.monotonic()
        for b in hello[:14]:
            c.send(bytes([b]))
            time.sleep(0.3)     # the scenario: one byte every 300 ms, past 4 s
        status, _ = c.expect_disconnect()
        assert status == su.ST_TIMEOUT and time.monotonic() - t0 < 10 * SLOW


def test_a_flood_of_bad_connections_does_not_flood_the_log(stack):
    agent = start(stack, write_seed(stack))
    bad = su.notify_frame(1, 1, [("route", [("path", "/")])])     # NOTIFY before HELLO
    for _ in range(100):
        with su.SpopClient(agent.port, timeout=5 * SLOW) as c:
            c.send(bad)
            assert c.expect_disconnect()[0] == su.ST_INVALID
    m = agent.metrics()
    assert ru.metric(m, "seedgate_spop_disconnects_total", status="4") == 100
    assert ru.metric(m, "seedgate_log_lines_suppressed_total") >= 70
    assert count(r"AGENT-DISCONNECT status 4", agent.log()) <= 25, agent.log()
    agent.proc.signal(signal.SIGTERM)
    assert agent.proc.popen.wait(10 * SLOW) == 0
    assert re.search(r"\d+ more DISCONNECT log lines since the last such line", agent.log()), agent.log()


def test_a_peer_that_never_reads_is_bounded(stack):
    """A peer that pipelines NOTIFYs and never reads the ACKs: the agent
    stops reading once its bounded output is full, so the peer's writes
    block after a bounded amount (socket buffers plus the agent's own), and
    every other connection is still answered."""
    agent = start(stack, write_seed(stack))
    c = agent.client()
    try:
        chunk = su.notify_frame(1, 1, [("route", [("path", "/" + "x" * 900)])]) * 64
        c.sock.setblocking(False)
        sent, cap = 0, 256 << 20
        pending = b""
        stalled_since = None
        while sent < cap:
            pending = pending or chunk      # whole frames only: never a torn one
            try:
                n = c.sock.send(pending)
                pending = pending[n:]
                sent += n
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 1.0:
                    break       # writes blocked for a second: the agent stopped reading
                time.sleep(0.01)
        assert sent < cap, "the agent kept reading from a peer that never reads"
        for _ in range(5):
            assert agent.decide("/")["why"] == "hub"
    finally:
        c.close()


# ---------------------------------------------------------------------------
# The refusal as HAProxy (2.6 here) sees it

REFUSAL_SPOE = """\
[route]
spoe-agent route-agent
    messages route
    option var-prefix route
    option set-on-error err
    option dontlog-normal
    no option send-frag-payload
    timeout hello 2s
    timeout idle 20s
    timeout processing 2s
    use-backend agents

spoe-message route
    args path=path host=req.hdr(host) src=src
    event on-frontend-http-request
"""

REFUSAL_HAPROXY = """\
global
    stats socket {sock} mode 600 level admin

defaults
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend fe
    mode http
    bind 127.0.0.1:{http}
    filter spoe engine route config {spoe}
    http-request return status 200 content-type text/plain string ok hdr X-Why "%[var(txn.route.why)]" hdr X-Err "%[var(txn.route.err)]"

backend agents
    mode tcp
    option spop-check
    default-server inter 200ms fall 2 rise 1
    server a1 127.0.0.1:{agent} check
"""


def haproxy_admin(sock, cmd):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock)
        s.sendall(cmd.encode() + b"\n")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out.decode()
            out += chunk


def agent_row(sock):
    lines = haproxy_admin(sock, "show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == "agents" and row.get("svname") == "a1":
            return row
    return {}


@pytest.mark.skipif(not harness.have("haproxy"), reason="haproxy not installed")
def test_haproxy_sees_the_refusal_and_recovers(stack):
    """A full agent: HAProxy's spop-check reads the AGENT-DISCONNECT 13 and
    marks it DOWN with that reason (new connections go elsewhere; here a
    request fails open at once). A slot frees: UP again, answered."""
    agent = start(stack, write_seed(stack), extra=["--max-connections", "2"])
    held = [agent.client() for _ in range(2)]
    try:
        http_port = harness.free_port()
        sock = stack.path("haproxy.sock")
        cfg = REFUSAL_HAPROXY.format(sock=sock, http=http_port, agent=agent.port,
                                     spoe=stack.write("spoe-route.conf", REFUSAL_SPOE))
        stack.haproxy(cfg, wait_ports=[http_port])
        row = harness.wait_until(lambda: (r := agent_row(sock)).get("status") == "DOWN" and r, 10,
                                 what="spop-check to mark the full agent DOWN")
        assert "resource allocation error" in row.get("last_chk", ""), row
        status, headers, _ = harness.http_get(http_port, "/", timeout=10 * SLOW)
        assert status == 200 and headers.get("x-err") and not headers.get("x-why"), headers
        assert ru.metric(agent.metrics(), "seedgate_spop_connections_refused_total") >= 1
    finally:
        close_all(held)
    harness.wait_until(lambda: agent_row(sock).get("status") == "UP", 10, what="agent UP once slots free")
    status, headers, _ = harness.http_get(http_port, "/", timeout=10 * SLOW)
    assert status == 200 and headers.get("x-why") == "hub", headers
