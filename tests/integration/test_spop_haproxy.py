"""The SPOP runtime against the real HAProxy (2.6 on this machine), through
build/tools/spop-echo-agent:

* `option spop-check` marks the agent UP (and a server with no agent DOWN);
* the `echo` message sent on every request round-trips: the agent sets
  txn.echo.x from a request header, HAProxy returns it in a response header,
  over many requests on keep-alive connections, TCP and unix agents;
* SIGTERM stops the agent with exit status 0 while HAProxy holds
  connections to it, and HAProxy keeps answering (set-on-error path).
"""
import http.client
import re
import signal
import socket

import pytest

import harness

if not harness.have("haproxy"):
    pytest.skip("haproxy not installed", allow_module_level=True)

SPOE_CFG = """\
[echo]
spoe-agent echo-agent
    messages echo
    option var-prefix echo
    option set-on-error err
    option dontlog-normal
    no option send-frag-payload
    timeout hello 5s
    timeout idle 20s
    timeout processing 10s
    use-backend spoe_agents

spoe-message echo
    args x=req.hdr(x-test) n=int(42)
    event on-frontend-http-request
"""

HAPROXY_CFG = """\
global
    nbthread 2
    stats socket {sock} mode 600 level admin

defaults
    timeout connect 6s
    timeout client 30s
    timeout server 30s

frontend fe
    mode http
    bind 127.0.0.1:{http}
    filter spoe engine echo config {spoe}
    http-request return status 200 content-type text/plain string ok hdr X-Echo "%[var(txn.echo.x)]" hdr X-Agent "%[var(txn.echo.agent)]" hdr X-N "%[var(txn.echo.n)]" hdr X-Err "%[var(txn.echo.err)]"

backend spoe_agents
    mode tcp
    timeout connect 6s
    timeout server 30s
    option spop-check
    default-server inter 300ms fall 2 rise 1
    server a1 {agent} check

# the same check against a port where no agent listens (kept out of
# spoe_agents so that SPOE never picks it before its first check)
backend spoe_dead
    mode tcp
    option spop-check
    default-server inter 300ms fall 2 rise 1
    server nobody 127.0.0.1:{dead} check
"""


def start_agent(stack, listen, name="echo-agent", workers=2):
    exe = harness.bin_path("spop-echo-agent")
    p = stack.start(name, [exe, "--listen", listen, "--workers", str(workers)])
    if listen.startswith("/"):
        stack.wait_unix(listen, p)
    else:
        stack.wait_port(int(listen.rsplit(":", 1)[1]), p)
    return p


def start_haproxy(stack, agent_addr):
    http_port = harness.free_port()
    spoe = stack.write("spoe-echo.conf", SPOE_CFG)
    sock = stack.path("haproxy.sock")
    cfg = HAPROXY_CFG.format(sock=sock, http=http_port, spoe=spoe, agent=agent_addr,
                             dead=harness.free_port())
    stack.haproxy(cfg, wait_ports=[http_port])
    return http_port, sock


def admin(sock, cmd):
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


def server_status(sock, backend, server):
    """The status column of `show stat` for one server ("UP", "DOWN", ...)."""
    lines = admin(sock, "show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == backend and row.get("svname") == server:
            return row.get("status")
    return None


def wait_up(sock):
    harness.wait_until(lambda: server_status(sock, "spoe_agents", "a1") == "UP", 10,
                       what="spop-check to mark a1 UP")


def requests_on_keepalive(port, nconn=4, per_conn=50):
    """Many requests on a few keep-alive connections; returns the count."""
    done = 0
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10 * harness.SLOW) for _ in range(nconn)]
    try:
        for i in range(per_conn):
            for c, conn in enumerate(conns):
                value = f"v{c}-{i}-{'x' * (i % 7)}"
                conn.request("GET", f"/r/{c}/{i}", headers={"X-Test": value})
                r = conn.getresponse()
                r.read()
                assert r.status == 200
                assert r.getheader("X-Echo") == value, (value, r.getheaders())
                assert r.getheader("X-Agent") == "echo", r.getheaders()
                assert r.getheader("X-N") == "42", r.getheaders()
                assert not r.getheader("X-Err"), r.getheaders()
                assert r.will_close is False
                done += 1
    finally:
        for conn in conns:
            conn.close()
    return done


def test_spop_check_marks_agent_up(stack):
    port = harness.free_port()
    start_agent(stack, f"127.0.0.1:{port}")
    _http, sock = start_haproxy(stack, f"127.0.0.1:{port}")
    wait_up(sock)
    # the same check against a port with no agent must fail
    harness.wait_until(lambda: server_status(sock, "spoe_dead", "nobody") == "DOWN", 10,
                       what="spop-check to mark the agent-less server DOWN")
    state = admin(sock, "show servers state spoe_agents")
    assert " a1 " in state


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_echo_round_trips_on_every_request(stack, kind):
    if kind == "tcp":
        port = harness.free_port()
        listen = f"127.0.0.1:{port}"
        server_addr = listen
    else:
        listen = stack.path("echo.sock")
        server_addr = listen
    agent = start_agent(stack, listen)
    http_port, sock = start_haproxy(stack, server_addr)
    wait_up(sock)
    assert requests_on_keepalive(http_port) == 200
    assert agent.alive()
    # no protocol error on either side: any DISCONNECT the agent sent was status 0
    statuses = re.findall(r"AGENT-DISCONNECT status (\d+)", agent.log())
    assert all(st == "0" for st in statuses), agent.log()
    assert "HAPROXY-DISCONNECT status" not in agent.log(), agent.log()


def test_sigterm_stops_agent_cleanly(stack):
    port = harness.free_port()
    agent = start_agent(stack, f"127.0.0.1:{port}")
    http_port, sock = start_haproxy(stack, f"127.0.0.1:{port}")
    wait_up(sock)
    assert requests_on_keepalive(http_port, nconn=2, per_conn=10) == 20
    rc = agent.stop(signal.SIGTERM, timeout=5.0)
    assert rc == 0, agent.log()
    assert "stopped:" in agent.log()
    harness.wait_until(lambda: server_status(sock, "spoe_agents", "a1") == "DOWN", 10,
                       what="a1 DOWN after the agent stopped")
    # HAProxy keeps answering without its agent (set-on-error, empty vars)
    status, headers, _ = harness.http_get(http_port, "/after", headers={"X-Test": "gone"},
                                          timeout=15 * harness.SLOW)
    assert status == 200
    assert headers.get("x-echo", "") == ""
    assert headers.get("x-err"), headers
