"""haproxy-conf end to end: the shipped haproxy.cfg + spoe-route.conf +
generated backends, with the real route agents and demo servers (started
by stack_util, the way the demo starts them).

What it proves: hub traffic is balanced over the local hubs; a project path
reaches the node `seedctl where` names; the decision cache gives the same
answers (its entry, written by the agent in sess variables, names no node
after a hub answer, is forgotten on an agent error, expires after 1 s); a node HAProxy holds down sends its projects to the hubs, never to
another node; agents down means fail-open to the hubs; HSTS, X-Forwarded-For,
websockets through HAProxy; a SIGUSR2 reload keeps serving.
"""
import base64
import http.client
import os
import signal
import socket
import time
import uuid


import harness
from harness import free_port, http_get, wait_until
import stack_util

PROJECTS = [str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15) & ((1 << 128) - 1), version=4))
            for i in range(1, 13)]


def write_seed(stack):
    p = {n: free_port() for n in ("hub1", "hub2", "hubeu", "c1", "c2", "c3", "ceu1", "ceu2")}
    text = f"""replicas 2
dc us-east
dc eu-west
hub  hub1   127.0.0.1:{p['hub1']}  dc=us-east
hub  hub2   127.0.0.1:{p['hub2']}  dc=us-east
hub  hubeu  127.0.0.1:{p['hubeu']} dc=eu-west
node c1     127.0.0.1:{p['c1']}    dc=us-east
node c2     127.0.0.1:{p['c2']}    dc=us-east
node c3     127.0.0.1:{p['c3']}    dc=us-east
node ceu1   127.0.0.1:{p['ceu1']}  dc=eu-west
node ceu2   127.0.0.1:{p['ceu2']}  dc=eu-west
"""
    return stack.write("seed.conf", text)


def served_by(port, path, headers=None):
    status, hdrs, body = http_get(port, path, headers=headers)
    assert status == 200, (status, body)
    return hdrs["x-served-by"], hdrs, body


def test_hubs_and_projects_per_request(stack):
    seed = write_seed(stack)
    info = stack_util.start_stack(stack, seed)
    before = stack_util.agent_decisions(info)             # start_stack's warm-up asked too
    seen = {served_by(info.http_port, "/")[0] for _ in range(6)}
    assert seen == {"hub1", "hub2"}                      # local hubs, balanced
    for pid in PROJECTS:
        want = stack_util.where(seed, pid)
        assert want.startswith("c"), want
        got, _, body = served_by(info.http_port, f"/{pid}/files/x.txt")
        assert got == want, (pid, got, want)
        assert f"/{pid}/files/x.txt".encode() in body
    # No HSTS on plain HTTP (TLS requests only: test_conf_hardening.py),
    # the client address in X-Forwarded-For
    _, hdrs, body = served_by(info.http_port, "/")
    assert "strict-transport-security" not in hdrs
    assert b"xff=127.0.0.1" in body
    # per-request SPOE: every request above asked an agent
    assert stack_util.agent_decisions(info) - before == 6 + len(PROJECTS) + 1


def test_decision_cache_same_answers(stack):
    seed = write_seed(stack)
    info = stack_util.start_stack(stack, seed, cache=True)
    before = stack_util.agent_decisions(info)
    conn = http.client.HTTPConnection("127.0.0.1", info.http_port, timeout=5)
    try:
        for pid in PROJECTS[:4] + PROJECTS[:4]:
            for _ in range(3):                             # repeated: served from the cache
                conn.request("GET", f"/{pid}/a")
                r = conn.getresponse()
                r.read()
                assert r.status == 200
                assert r.getheader("X-Served-By") == stack_util.where(seed, pid)
            conn.request("GET", "/")                       # another key in between
            r = conn.getresponse()
            r.read()
            assert r.getheader("X-Served-By") in ("hub1", "hub2")
    finally:
        conn.close()
    # 32 requests, the key changed 16 times: the agent was asked 16 times
    asked = stack_util.agent_decisions(info) - before
    assert asked == 16, asked


class KeepAlive:
    """One client connection kept open: the decision cache lives in it."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5 * harness.SLOW)

    def get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        body = r.read()
        assert r.status == 200, (r.status, body)
        return r.getheader("X-Served-By")

    def close(self):
        self.conn.close()


def cache_log_lines(info, path):
    """The cache-mode log lines of requests for path, in order."""
    return [line for line in info.haproxy.log().splitlines() if f'"GET /{path} HTTP' in line]


def test_decision_cache_node_then_hub_then_expiry(stack):
    # The agent writes the cache entry itself (message route-sess, sess
    # variables): a cached node answer still reaches the named node through
    # the node backend's guard; a hub answer on the same connection leaves
    # no node name behind; an entry older than 1 s is asked again.
    seed = write_seed(stack)
    info = stack_util.start_stack(stack, seed, cache=True)
    pid = PROJECTS[5]
    node = stack_util.where(seed, pid)
    before = stack_util.agent_decisions(info)
    c = KeepAlive(info.http_port)
    try:
        for _ in range(4):
            assert c.get(f"/{pid}/n") == node
        assert stack_util.agent_decisions(info) - before == 1       # three hits
        for _ in range(3):
            assert c.get("/static/h") in ("hub1", "hub2")
        assert stack_util.agent_decisions(info) - before == 2
        # the hub answer unset sess.route.server: the log shows no node
        wait_until(lambda: len(cache_log_lines(info, "static/h")) == 3, 5, what="hub log lines")
        for line in cache_log_lines(info, "static/h"):
            assert "why=hub node=- " in line, line
        node_lines = cache_log_lines(info, f"{pid}/n")
        assert len(node_lines) == 4 and all(f"why=primary node={node} " in l for l in node_lines), node_lines
        # back to the project: asked again (the key changed), then cached
        assert c.get(f"/{pid}/n") == node
        assert c.get(f"/{pid}/n") == node
        assert stack_util.agent_decisions(info) - before == 3
        # older than 1 s: asked again
        time.sleep(1.1)
        assert c.get(f"/{pid}/n") == node
        assert stack_util.agent_decisions(info) - before == 4
        assert c.get(f"/{pid}/n") == node
        assert stack_util.agent_decisions(info) - before == 4
    finally:
        c.close()


def freeze(proc):
    """SIGSTOP proc and wait until every one of its threads is stopped: the
    signal is asynchronous, and a worker thread already running could
    still answer one more NOTIFY (seen under ASan)."""
    proc.signal(signal.SIGSTOP)

    def stopped():
        for tid in os.listdir(f"/proc/{proc.pid}/task"):
            with open(f"/proc/{proc.pid}/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                    return False
        return True
    wait_until(stopped, 5, interval=0.005, what=f"{proc.name} stopped")


def seed_reloads_ok(info, stats_port):
    """seedgate_seed_reloads_total{result="ok"} of the agent on stats_port."""
    _status, _h, body = http_get(stats_port, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith('seedgate_seed_reloads_total{result="ok"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def test_decision_cache_agent_error_forgets_entry(stack):
    # An agent that does not answer in time: the request fails open to the
    # hubs and the connection's entry is forgotten, so the next request for
    # the cached key asks the agent again instead of reusing the entry.
    seed = write_seed(stack)
    info = stack_util.start_stack(stack, seed, cache=True)
    q, p = PROJECTS[6], PROJECTS[7]
    old = stack_util.where(seed, q)
    c = KeepAlive(info.http_port)
    try:
        assert c.get(f"/{q}/x") == old                              # entry for q
        # The agents now pin q to another node (seed reload): a fresh
        # connection sees it at once; c's entry may still name the old one.
        new = next(n for n in ("c1", "c2", "c3") if n != old)
        reloads = [seed_reloads_ok(info, port) for port in info.agent_stats_ports]
        text = open(seed).read() + f"project {q} {new}\n"
        with open(seed + ".tmp", "w") as f:
            f.write(text)
        os.rename(seed + ".tmp", seed)
        wait_until(lambda: all(seed_reloads_ok(info, port) > r for port, r in zip(info.agent_stats_ports, reloads)),
                   10, interval=0.05, what="both agents reloaded the pin")
        assert served_by(info.http_port, f"/{q}/x")[0] == new
        for a in info.agent_procs:
            freeze(a)
        try:
            assert c.get(f"/{p}/x") in ("hub1", "hub2")             # miss, agent error: hubs
        finally:
            for a in info.agent_procs:
                a.signal(signal.SIGCONT)
        # The error forgot the entry: q is asked again, and the answer is
        # new. (Had the entry been kept, the miss just now would have renewed
        # its time and q would hit the old answer.)
        assert c.get(f"/{q}/x") == new
    finally:
        c.close()
    wait_until(lambda: f"/{p}/x" in info.haproxy.log(), 5, what="log line of the error")
    line = [l for l in info.haproxy.log().splitlines() if f"/{p}/x" in l][-1]
    assert "err=-" not in line and "hubs_us-east/" in line, line


def test_node_down_in_haproxy_goes_to_hubs_never_another_node(stack):
    seed = write_seed(stack)
    info = stack_util.start_stack(stack, seed)
    pid = PROJECTS[0]
    node = stack_util.where(seed, pid)
    assert served_by(info.http_port, f"/{pid}/")[0] == node
    # HAProxy holds the node down (as healthcheckd would through the runtime
    # API) while the agent, without a health feed, still names it.
    stack_util.admin(info, f"disable server nodes_us-east/{node}")
    for _ in range(8):
        assert served_by(info.http_port, f"/{pid}/")[0] in ("hub1", "hub2")
    stack_util.admin(info, f"enable server nodes_us-east/{node}")
    assert served_by(info.http_port, f"/{pid}/")[0] == node


def test_dead_node_retried_to_hubs(stack):
    seed = write_seed(stack)
    info = stack_util.start_stack(stack, seed)
    pid = PROJECTS[1]
    node = stack_util.where(seed, pid)
    info.servers[node].stop()
    # connection refused -> retry redispatched to the backup -> the hubs
    for _ in range(4):
        assert served_by(info.http_port, f"/{pid}/")[0] in ("hub1", "hub2")


def test_agents_down_fail_open(stack):
    seed = write_seed(stack)
    info = stack_util.start_stack(stack, seed)
    for p in info.agent_procs:
        p.stop()
    for pid in PROJECTS[:6]:
        assert served_by(info.http_port, f"/{pid}/")[0] in ("hub1", "hub2")
    stack_util.restart_agent(stack, info, 0)
    want = stack_util.where(seed, PROJECTS[0])
    wait_until(lambda: served_by(info.http_port, f"/{PROJECTS[0]}/")[0] == want, 10,
               interval=0.2, what="agent back in use")


def test_websocket_through_haproxy_and_reload(stack):
    seed = write_seed(stack)
    info = stack_util.start_stack(stack, seed)
    pid = PROJECTS[2]
    node = stack_util.where(seed, pid)
    s = socket.create_connection(("127.0.0.1", info.http_port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /{pid}/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert f"x-served-by: {node}".encode() in head.lower()
    # reload while the websocket is open: the old worker keeps it
    stack_util.reload_haproxy(info)
    mask = os.urandom(4)
    payload = b"seedgate"
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    echo = b""
    while len(echo) < 2 + len(payload):
        d = s.recv(100)
        assert d, "websocket closed"
        echo += d
    assert echo == bytes([0x81, len(payload)]) + payload
    s.close()
    time.sleep(0.3 * harness.SLOW)
    assert info.haproxy.alive()
    assert served_by(info.http_port, f"/{pid}/")[0] == node


def test_node_unknown_to_haproxy_goes_to_hubs(stack):
    # The agent reloads a seed that pins a project to a node HAProxy's
    # generated backends do not have yet (seed edited, backends not
    # regenerated): use-server names an unknown server, and the request must
    # go to the hubs, not to some other node.
    seed = write_seed(stack)
    info = stack_util.start_stack(stack, seed)
    pid = PROJECTS[3]
    node = stack_util.where(seed, pid)
    assert served_by(info.http_port, f"/{pid}/")[0] == node
    reloads = [seed_reloads_ok(info, port) for port in info.agent_stats_ports]
    with open(seed, "a") as f:
        f.write(f"node c9 127.0.0.1:{free_port()} dc=us-east\nproject {pid} c9\n")
    # HAProxy alternates between the two agents: until BOTH have reloaded,
    # one may still name the old node.
    wait_until(lambda: all(seed_reloads_ok(info, port) > r
                           for port, r in zip(info.agent_stats_ports, reloads)),
               5, what="both agents reloaded the seed")
    seen = set()

    def moved():
        got = served_by(info.http_port, f"/{pid}/")[0]
        seen.add(got)
        return got in ("hub1", "hub2")
    wait_until(moved, 10, interval=0.1, what="pinned project on an unknown node -> hubs")
    assert seen <= {node, "hub1", "hub2"}, seen
    for _ in range(5):
        assert served_by(info.http_port, f"/{pid}/")[0] in ("hub1", "hub2")
    # the way it went: the agent chose c9, the node backend's backup took it
    wait_until(lambda: "nodes_us-east/sg_hubs_fallback" in info.haproxy.log()
               and "why=pinned" in info.haproxy.log(), 5, what="log line of the fallback")


def test_stuck_agent_costs_milliseconds(stack):
    # A frozen agent (SIGSTOP: connections open, nothing answered): with the
    # product's 15 ms processing timeout, requests fail open to the hubs in
    # milliseconds, then route normally again once the agent resumes.
    seed = write_seed(stack)
    info = stack_util.start_stack(stack, seed, agents=1,
                                  haproxy_env={"SG_SPOE_PROCESSING": "15ms"})
    pid = PROJECTS[4]
    node = stack_util.where(seed, pid)
    wait_until(lambda: served_by(info.http_port, f"/{pid}/")[0] == node, 5, what="routed")
    agent = info.agent_procs[0]
    freeze(agent)
    try:
        for _ in range(5):
            t0 = time.monotonic()
            got = served_by(info.http_port, f"/{pid}/")[0]
            elapsed = time.monotonic() - t0
            assert got in ("hub1", "hub2"), got
            assert elapsed < 0.5 * harness.SLOW, elapsed
    finally:
        agent.signal(signal.SIGCONT)
    wait_until(lambda: served_by(info.http_port, f"/{pid}/")[0] == node, 10, interval=0.1,
               what="routed again after SIGCONT")
