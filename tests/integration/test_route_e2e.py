"""route-agent behind the REAL HAProxy, with the shipped haproxy-conf (via
CONF-DEMO's stack_util.start_stack, the way the demo runs it): a seed
directory of 2 datacenters, 6 nodes and 2 hubs, demo servers answering with
X-Served-By.

What it proves: 1000 random project ids each reach the node `seedctl
where` names first, other paths the local hub, websockets reach the
project's node and echo; killing every route agent (SIGKILL) under load
fails no request (fail-open to the hubs) and a restart resumes project
routing within 2 s; seed edits under load (a node added, a pin added, a
broken file) are followed within 1 s, and the broken file changes nothing
and is reported with file:line; with the real healthcheckd feeding the
agents (and not HAProxy), a stopped node's projects move to their replica,
the agents applying the checker's verdict well within 1 s.
"""
import base64
import http.client
import os
import re
import signal
import socket
import time

import harness
import route_util as ru
import stack_util

SLOW = harness.SLOW


def seed_for(stack, ports, **kw):
    """2 dcs x (1 hub + 3 nodes), on the given ports (the demo servers listen
    there). Returns the seed text."""
    text, _ = ru.seed_text(ports, hubs=1, nodes=3, **kw)
    return text


def ports_for(n=16):
    return [harness.free_port() for _ in range(n)]


served_by = stack_util.served_by
Load = stack_util.Load


def start(stack, seed_text_, **kw):
    seed = stack.write("seed.conf", seed_text_)
    info = stack_util.start_stack(stack, seed, **kw)
    return seed, info


def test_projects_hubs_and_websockets(stack):
    seed, info = start(stack, seed_for(stack, ports_for()))
    ids = ru.random_ids(1000, seed=2024)
    want = ru.seedctl_where(seed, ids)
    conn = http.client.HTTPConnection("127.0.0.1", info.http_port, timeout=5 * SLOW)
    wrong = []
    for pid in ids:
        got = served_by(info.http_port, f"/{pid}/files/a.txt", conn)
        if got != want[pid][0]:
            wrong.append((pid, got, want[pid]))
    assert not wrong, wrong[:10]
    assert {want[pid][0] for pid in ids} == {"node11", "node12", "node13"}
    for path in ("/", "/app/index.html", "/api/x?y=1", "/not-a-project/x", f"/{ids[0][:-1]}/x"):
        assert served_by(info.http_port, path, conn) == "hub11", path
    conn.close()

    # Websocket upgrade to a project path: reaches its node, echoes.
    pid = ids[7]
    s = socket.create_connection(("127.0.0.1", info.http_port), timeout=5 * SLOW)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /{pid}/socket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        assert d, head
        head += d
    assert head.startswith(b"HTTP/1.1 101"), head
    assert f"x-served-by: {want[pid][0]}".encode() in head.lower(), head
    for payload in (b"hello", b"seedgate " * 10):
        mask = os.urandom(4)
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        echo = b""
        while len(echo) < 2 + len(payload):
            d = s.recv(4096)
            assert d, "websocket closed"
            echo += d
        assert echo == bytes([0x81, len(payload)]) + payload
    s.close()


def test_agents_killed_under_load_fail_open_then_resume(stack):
    seed, info = start(stack, seed_for(stack, ports_for()))
    ids = ru.random_ids(50, seed=77)
    want = ru.seedctl_where(seed, ids)
    paths = [f"/{pid}/x" for pid in ids] + ["/", "/app"]
    load = Load(info.http_port, paths)
    load.start()
    try:
        harness.wait_until(lambda: load.ok > 50, 10, what="load running")
        time.sleep(0.5)
        for p in info.agent_procs:
            p.signal(signal.SIGKILL)
        for p in info.agent_procs:
            p.popen.wait(5)
        # With no agent every request goes to the hubs, and none fails. (Until
        # HAProxy's checks mark the agents DOWN, each request first waits for
        # the SPOE processing timeout: slower, not failed.)
        ok0 = load.ok
        harness.wait_until(lambda: load.ok > ok0 + 20, 10, what="requests served with the agents dead")
        time.sleep(1.0)
        assert served_by(info.http_port, f"/{ids[0]}/x") == "hub11"
        ok1 = load.ok
        harness.wait_until(lambda: load.ok > ok1 + 20, 10, what="requests served with the agents DOWN")

        t0 = time.monotonic()
        for i in range(len(info.agent_procs)):
            stack_util.restart_agent(stack, info, i)
        restarted = time.monotonic()
        harness.wait_until(lambda: all(served_by(info.http_port, f"/{pid}/x") == want[pid][0]
                                       for pid in ids[:6]), 2.0 + 0.5, interval=0.05,
                           what="project routing after the agents' restart")
        resumed = time.monotonic() - restarted
        print(f"project routing resumed {resumed:.2f}s after the agents listened "
              f"({restarted - t0:.2f}s to start them)")
        time.sleep(0.5)
    finally:
        load.stop()
    assert not load.failures, load.failures[:5]
    assert load.ok > 200


def test_seed_edits_under_load(stack):
    ports = ports_for()
    # Start with node14 known to HAProxy and the agents (the demo servers
    # and generated backends are built from this seed) ...
    full_text, addrs = ru.seed_text(ports, hubs=1, nodes=4)
    seed, info = start(stack, full_text)
    # ... then take it out of the seed: HAProxy keeps its server, as it would
    # once ops regenerated the backends before adding the node.
    without = "\n".join(l for l in full_text.splitlines() if not l.startswith("node node14 ")) + "\n"
    ru.write_atomic(seed, without)
    for p in info.agent_procs:
        harness.wait_until(lambda p=p: "generation 2" in p.log(), 3, what="agents reloaded")
    ids = ru.random_ids(300, seed=99)
    before = ru.seedctl_where(seed, ids)
    after_full = ru.seedctl_where(stack.write("full.conf", full_text), ids)
    movers = [pid for pid in ids if after_full[pid][0] == "node14"][:8]
    assert len(movers) >= 4, "too few projects move to node14"
    for pid in movers:
        assert served_by(info.http_port, f"/{pid}/") == before[pid][0] != "node14"

    load = Load(info.http_port, [f"/{pid}/y" for pid in ids[:40]] + ["/"])
    load.start()
    try:
        harness.wait_until(lambda: load.ok > 30, 10, what="load running")

        def follows(paths_want, limit, what):
            """Every path answered as wanted (twice, so both agents are seen),
            within limit seconds of now."""
            t0 = time.monotonic()
            harness.wait_until(lambda: all(served_by(info.http_port, p) == w
                                           for p, w in paths_want * 2),
                               limit, interval=0.02, what=what)
            return time.monotonic() - t0

        # A node added.
        ru.write_in_place(seed, full_text)
        took = follows([(f"/{pid}/", "node14") for pid in movers], 1.0, "node14 receives its projects")
        print(f"node added: followed in {took:.2f}s")

        # Pins added: one to a local node other than its computed one (local
        # pinned nodes come first), one to the other datacenter's node only.
        pinned, remote = [pid for pid in ids if pid not in movers][:2]
        local = next(n for n in ("node11", "node12", "node13", "node14") if n != after_full[pinned][0])
        pin_text = full_text + f"project {pinned} node22 {local}\nproject {remote} node22\n"
        ru.write_atomic(seed, pin_text)
        took = follows([(f"/{pinned}/z", local), (f"/{remote}/z", "node22")], 1.0, "pins followed")
        print(f"pins added: followed in {took:.2f}s")

        # A broken file: nothing changes, every agent reports file:line.
        broken = pin_text + "project not-a-uuid node11\n"
        nlines = broken.count("\n")
        ru.write_in_place(seed, broken)
        for p in info.agent_procs:
            harness.wait_until(lambda p=p: re.search(re.escape(seed) + rf":{nlines}: ", p.log()), 2,
                               what="broken file reported with file:line")
        for _ in range(6):
            assert served_by(info.http_port, f"/{pinned}/z") == local
            assert served_by(info.http_port, f"/{remote}/z") == "node22"
            assert served_by(info.http_port, f"/{movers[0]}/") == "node14"
        assert all(p.alive() for p in info.agent_procs)
    finally:
        load.stop()
    assert not load.failures, load.failures[:5]


def _log_time(line):
    """Unix time of a log line that starts with an ISO-8601 UTC timestamp."""
    import datetime
    stamp = line.split()[0].rstrip("Z")
    return datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc).timestamp()


def test_node_down_moves_projects_to_replica_via_health_feed(stack):
    """The real healthcheckd feeds the agents (and NOT HAProxy: no
    --haproxy-socket), so only the agents' health view can move a dead
    node's projects to their replica."""
    ports = ports_for()
    text, _ = ru.seed_text(ports, hubs=1, nodes=3)
    seed = stack.write("seed.conf", text)
    feed = stack.path("health.sock")
    hc = stack.start("healthcheckd", [harness.bin_path("healthcheckd"), "--seed", seed, "--feed", feed,
                                      "--interval", "200ms", "--rise", "2", "--fall", "2", "--jitter", "0"])
    stack.wait_unix(feed, hc)
    info = stack_util.start_stack(stack, seed, health_feed=feed)
    # healthcheckd started before the demo servers: its first checks failed
    # and each server is up only after `rise` checks. Wait for every agent
    # to see all targets up before asserting where requests land.
    def all_up(port):
        m = ru.read_metrics(port)
        return (ru.metric(m, "seedgate_health_feed_connected") == 1
                and ru.metric(m, "seedgate_health_targets_down") == 0)
    for port in info.agent_stats_ports:
        harness.wait_until(lambda port=port: all_up(port), 5, what="agents see every target up")
    ids = ru.random_ids(200, seed=31)
    want = ru.seedctl_where(seed, ids)
    victim = "node12"
    mine = [pid for pid in ids if want[pid][0] == victim][:6]
    assert len(mine) >= 3
    alt = ru.seedctl_where(seed, mine, down=(victim,))
    for pid in mine:
        assert served_by(info.http_port, f"/{pid}/") == victim

    info.servers[victim].stop()
    t0 = time.monotonic()
    harness.wait_until(lambda: all(served_by(info.http_port, f"/{pid}/") == alt[pid][0] for pid in mine * 2),
                       5, interval=0.02, what="projects moved to their replica")
    print(f"projects on their replica {time.monotonic() - t0:.2f}s after the node stopped")
    # The agents act on the checker's verdict quickly: compare log stamps.
    verdict = [l for l in hc.log().splitlines() if f"node {victim} " in l and "up -> down" in l]
    assert verdict, hc.log()
    t_verdict = _log_time(verdict[0])
    for p in info.agent_procs:
        applied = [_log_time(l) for l in p.log().splitlines() if "targets down" in l]
        applied = [t for t in applied if t >= t_verdict - 0.01]
        assert applied, p.log()
        lag = applied[0] - t_verdict
        print(f"{p.name}: applied the verdict {lag * 1000:.0f} ms after healthcheckd logged it")
        assert lag < 1.0 * SLOW, (lag, verdict[0])
    # Why says so, through HAProxy's log.
    harness.wait_until(lambda: "why=replica" in info.haproxy.log(), 2, what="why=replica in HAProxy's log")

    # The node comes back: its projects return.
    stack.start(victim + "-again", [harness.bin_path("demo-server"), "--name", victim,
                                    "--listen", f"127.0.0.1:{info.server_ports[victim]}"])
    harness.wait_until(lambda: all(served_by(info.http_port, f"/{pid}/") == victim for pid in mine * 2),
                       5, interval=0.05, what="projects back on their primary")
