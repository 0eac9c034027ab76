"""haproxy-conf end to end: the shipped haproxy.cfg + spoe-route.conf +
generated backends, with the real route agents and demo servers (started
by stack_util, the way the demo starts them).

What it proves: hub traffic is balanced over the local hubs; a project path
reaches the node `seedctl where` names; the decision cache gives the same
answers; a node HAProxy holds down sends its projects to the hubs, never to
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

import pytest

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
    seen = {served_by(info.http_port, "/")[0] for _ in range(6)}
    assert seen == {"hub1", "hub2"}                      # local hubs, balanced
    for pid in PROJECTS:
        want = stack_util.where(seed, pid)
        assert want.startswith("c"), want
        got, _, body = served_by(info.http_port, f"/{pid}/files/x.txt")
        assert got == want, (pid, got, want)
        assert f"/{pid}/files/x.txt".encode() in body
    # HSTS on every answer, the client address in X-Forwarded-For
    _, hdrs, body = served_by(info.http_port, "/")
    assert hdrs["strict-transport-security"] == "max-age=63072000"
    assert b"xff=127.0.0.1" in body
    # per-request SPOE: every request above asked an agent
    assert stack_util.agent_decisions(info) == 6 + len(PROJECTS) + 1


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
    with open(seed, "a") as f:
        f.write(f"node c9 127.0.0.1:{free_port()} dc=us-east\nproject {pid} c9\n")
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
    agent.signal(signal.SIGSTOP)
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
