"""Project access control through the REAL HAProxy with the shipped
haproxy-conf (stack_util.start_stack(auth=True): SG_AUTH=1, route agents
with --auth-keys, tokens from `seedctl token`).

Every hub and node of the seed is a recording HTTP server of this test (the
"access log": every request with its headers), so a test can say both what
the client got and what the node saw.

What it proves: a valid token (cookie or Bearer) reaches the project's node,
which sees the user header and never the token (other cookies kept); a
missing, expired, tampered, alg=none, HS256-with-the-public-key-as-secret,
unknown-kid or oversized token gets 401, a token for another project 403,
and the nodes' log shows none of them; hub paths need no token; a client's
own user header is removed everywhere; the per-connection decision cache
cannot bypass the check (SG_ROUTE_CACHE=1 is overridden); the agents
failing sends project requests to the hubs, never a node; a key rotated in
(SIGHUP) works, and a revoked key stops working within 1 s of the reload.
"""
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import signal
import threading
import time

import harness
import route_util as ru
import stack_util
from test_metrics_format import promtool_check_metrics

SLOW = harness.SLOW
USER_HEADER = "X-Seedgate-User"


class Recorder(http.server.ThreadingHTTPServer):
    """A hub or node: answers 200 with X-Served-By, records (path, headers)."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name, port):
        self.name = name
        self.log = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def requests(self, prefix="/"):
        with self.lock:
            return [(p, h) for p, h in self.log if p.startswith(prefix)]

    def stop(self):
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's naming
        with self.server.lock:
            self.server.log.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = f"{self.server.name} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("X-Served-By", self.server.name)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_auth_stack(stack, haproxy_env=None, agent_args=(), route_map=False):
    """2 dcs x (1 hub + 2 nodes); every target replaced by a Recorder on its
    port. Returns (info, recorders by name)."""
    ports = [harness.free_port() for _ in range(8)]
    text, _ = ru.seed_text(ports, hubs=1, nodes=2)
    seed = stack.write("seed.conf", text)
    info = stack_util.start_stack(stack, seed, auth=True, haproxy_env=haproxy_env, agent_args=agent_args,
                                  route_map=route_map)
    recs = {}
    for name, proc in info.servers.items():
        proc.stop()
        recs[name] = Recorder(name, info.server_ports[name])
        stack.defer(recs[name].stop)
    return info, recs


def request(port, path, headers=None, conn=None):
    """(status, X-Served-By, body) of one GET (on conn when given)."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=5 * SLOW)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, r.getheader("X-Served-By"), body
    finally:
        if own:
            c.close()


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def node_requests(recs, project):
    return [r for name, rec in recs.items() if name.startswith("node") for r in rec.requests(f"/{project}")]


def auth_metrics(info):
    """seedgate_auth_results_total by result, summed over the agents."""
    out = {}
    for port in info.agent_stats_ports:
        _s, _h, body = harness.http_get(port, "/metrics")
        for line in body.decode().splitlines():
            if line.startswith("seedgate_auth_results_total{"):
                res = line.split('result="', 1)[1].split('"', 1)[0]
                out[res] = out.get(res, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def test_token_checks_at_the_edge(stack):
    # SG_ROUTE_CACHE=1 on purpose: access control must override it.
    info, recs = start_auth_stack(stack, haproxy_env={"SG_ROUTE_CACHE": "1"})
    port, auth = info.http_port, info.auth
    project, other = ru.random_ids(2, seed=14)
    node = stack_util.where(info.seed_path, project, dc=info.dc)
    assert node.startswith("node"), node
    good = stack_util.mint_token(auth, "alice", [project])

    # Valid token in the cookie, with other cookies around it: the node.
    st, by, _ = request(port, f"/{project}/files", {"Cookie": f"a=1; sg_token={good}; b=2"})
    assert (st, by) == (200, node)
    path, hdrs = recs[node].requests(f"/{project}")[-1]
    assert hdrs[USER_HEADER.lower()] == "alice"
    assert good not in json.dumps(hdrs), "the node saw the token"
    assert hdrs["cookie"] == "a=1; b=2"
    # Alone in Cookie: the header goes; as a Bearer: Authorization goes.
    assert request(port, f"/{project}/x", {"Cookie": f"sg_token={good}"})[:2] == (200, node)
    assert "cookie" not in recs[node].requests(f"/{project}/x")[-1][1]
    assert request(port, f"/{project}/y", {"Authorization": f"Bearer {good}"})[:2] == (200, node)
    hdrs = recs[node].requests(f"/{project}/y")[-1][1]
    assert "authorization" not in hdrs and hdrs[USER_HEADER.lower()] == "alice"
    # A forged user header next to a valid token is replaced.
    request(port, f"/{project}/z", {"Cookie": f"sg_token={good}", USER_HEADER: "root"})
    assert recs[node].requests(f"/{project}/z")[-1][1][USER_HEADER.lower()] == "alice"

    seen = len(node_requests(recs, project))
    h, c, s = good.split(".")
    claims = json.loads(unb64(c))
    with open(os.path.join(auth.dir, "k1.pub.pem"), "rb") as f:
        pub = f.read()
    hs_head = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    hs_sig = b64(hmac.new(pub, f"{hs_head}.{c}".encode(), hashlib.sha256).digest())
    stack_util.make_auth_key(auth.dir, "stranger")
    auth.private["stranger"] = os.path.join(auth.dir, "stranger.key.pem")
    refused = {
        "missing": ({}, 401),
        "expired": ({"Cookie": "sg_token=" + stack_util.mint_token(auth, "alice", [project], ttl=60,
                                                                    now=time.time() - 120)}, 401),
        "tampered": ({"Cookie": f"sg_token={h}.{b64(json.dumps(dict(claims, sub='mallory')).encode())}.{s}"}, 401),
        "alg none": ({"Cookie": f"sg_token={b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{c}."}, 401),
        "HS256 with the public key": ({"Cookie": f"sg_token={hs_head}.{c}.{hs_sig}"}, 401),
        "unknown kid": ({"Cookie": "sg_token=" + stack_util.mint_token(auth, "alice", [project],
                                                                        kid="stranger")}, 401),
        "oversized": ({"Cookie": "sg_token=" + good + "A" * 4200}, 401),
        "oversized bearer": ({"Authorization": "Bearer " + "A" * 5000}, 401),
        "garbage": ({"Authorization": "Bearer not.a.token"}, 401),
        "wrong project": ({"Cookie": "sg_token=" + stack_util.mint_token(auth, "alice", [other])}, 403),
    }
    for what, (headers, want) in refused.items():
        st, by, body = request(port, f"/{project}/files", headers)
        assert (st, by) == (want, None), (what, st, by, body)
    assert len(node_requests(recs, project)) == seen, "a refused request reached a node"
    # Credentials too long for the agent: HAProxy answers 401 without asking it.
    before = sum(auth_metrics(info).values())
    for headers in ({"Authorization": "Bearer " + "A" * 5000},
                    {"Cookie": f"sg_token={good}; big=" + "B" * 11000}):
        st, by, _ = request(port, f"/{project}/files", headers)
        assert (st, by) == (401, None), (st, by)
    assert sum(auth_metrics(info).values()) == before, "the agent was asked"
    assert len(node_requests(recs, project)) == seen
    m = auth_metrics(info)
    for res in ("missing", "expired", "bad_signature", "bad_alg", "unknown_kid", "forbidden", "malformed"):
        assert m.get(res, 0) >= 1, (res, m)
    assert m["ok"] >= 4

    # Keep-alive: a granted request, then one without a token on the same
    # connection (the decision cache would have reused the first answer).
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5 * SLOW)
    stack.defer(conn.close)
    assert request(port, f"/{project}/a", {"Cookie": f"sg_token={good}"}, conn)[:2] == (200, node)
    assert request(port, f"/{project}/b", {}, conn)[:2] == (401, None)

    # Hub paths: no token needed, and no forged user header either.
    hub = "hub11"
    st, by, _ = request(port, "/projects/list", {USER_HEADER: "root"})
    assert (st, by) == (200, hub)
    assert USER_HEADER.lower() not in recs[hub].requests("/projects/list")[-1][1]

    # The agents fail: project requests fail open to the hubs, never a node.
    for p in info.agent_procs:
        p.stop(signal.SIGKILL)
    harness.wait_until(lambda: request(port, f"/{project}/down", {"Cookie": f"sg_token={good}"})[1] == hub,
                       10 * SLOW, interval=0.1, what="fail-open to the hubs")
    assert not recs[node].requests(f"/{project}/down")


def test_map_cache_never_skips_the_check(stack):
    """SG_ROUTE_MAP=1 with the agents publishing their maps: a map hit would
    route without asking the agent, so SG_AUTH=1 turns the map cache off.
    A project requested often with a valid token (published by now if the
    maps were read) still needs its token on every request."""
    info, recs = start_auth_stack(stack, route_map=True)
    port = info.http_port
    project, = ru.random_ids(1, seed=21)
    node = stack_util.where(info.seed_path, project, dc=info.dc)
    good = stack_util.mint_token(info.auth, "alice", [project])
    for i in range(8):
        assert request(port, f"/{project}/ok{i}", {"Cookie": f"sg_token={good}"})[:2] == (200, node)
    seen = len(node_requests(recs, project))
    for i in range(8):
        assert request(port, f"/{project}/no{i}", {})[:2] == (401, None)
    assert len(node_requests(recs, project)) == seen, "a request without a token reached the node"


def test_key_rotation_and_revocation(stack):
    # two workers per agent: each has its own token cache to empty
    info, recs = start_auth_stack(stack, agent_args=["--workers", "2"])
    port, auth = info.http_port, info.auth
    project = ru.random_ids(1, seed=41)[0]
    node = stack_util.where(info.seed_path, project, dc=info.dc)
    old = stack_util.mint_token(auth, "bob", [project])

    def status(token):
        return request(port, f"/{project}/r", {"Cookie": f"sg_token={token}"})[0]

    def hup():
        for p in info.agent_procs:
            p.signal(signal.SIGHUP)

    assert status(old) == 200
    # Rotation, step 1: the new key k2 is added next to k1.
    priv, _ = stack_util.make_auth_key(auth.dir, "k2")
    auth.private["k2"] = priv
    new = stack_util.mint_token(auth, "bob", [project], kid="k2")
    assert status(new) == 401                         # not known yet
    stack_util.write_auth_keys(auth, ["k1", "k2"])
    hup()
    harness.wait_until(lambda: status(new) == 200, 2 * SLOW, interval=0.02, what="k2 accepted")
    assert status(old) == 200                         # both keys valid meanwhile

    # A broken key file is refused with file:line; the keys in use stay.
    with open(auth.keys_file, "w") as f:
        f.write("k1 k1.pub.pem\nk2 missing.pem\n")
    hup()
    harness.wait_until(lambda: all("keys:2: " in p.log() for p in info.agent_procs), 5 * SLOW,
                       what="the bad key file reported with file:line")
    assert status(old) == 200 and status(new) == 200
    # ... and every agent says so until a reload succeeds (the alert
    # SeedgateAuthKeysReloadFailed)
    for p in info.agent_stats_ports:
        body = harness.http_get(p, "/metrics")[2].decode()
        assert re.search(r"^seedgate_auth_keys_last_reload_successful 0$", body, re.M), p

    # Step 2: k1 revoked. The verified-token caches hold `old` (used on
    # fresh connections, which HAProxy spreads over the agents and their
    # workers); it must stop working within 1 s of the reload.
    for _ in range(16):
        assert status(old) == 200
    stack_util.write_auth_keys(auth, ["k2"])
    loads = [p.log().count("auth keys loaded") for p in info.agent_procs]
    t0 = time.monotonic()
    hup()
    # each agent reloads when its main loop takes the signal; from then on
    # none of its workers accepts k1's token, cached or not
    harness.wait_until(lambda: all(p.log().count("auth keys loaded") > n for p, n in zip(info.agent_procs, loads)),
                       1.0 * SLOW, interval=0.01, what="every agent reloaded its keys")
    assert status(old) == 401
    revoked_after = time.monotonic() - t0
    assert revoked_after < 1.0 * SLOW, revoked_after
    for _ in range(16):                               # every agent, every worker
        assert status(old) == 401
        assert status(new) == 200
    flushes = 0
    for port in info.agent_stats_ports:
        _s, _h, body = harness.http_get(port, "/metrics")
        flushes += int(float(re.search(r"^seedgate_auth_cache_flushes_total (\S+)$", body.decode(), re.M).group(1)))
    assert flushes >= 2, flushes                      # caches emptied by the reloads
    assert recs[node].requests(f"/{project}/r")[-1][1][USER_HEADER.lower()] == "bob"

    # The access-control families pass promtool, and count what happened.
    _s, _h, body = harness.http_get(info.agent_stats_ports[0], "/metrics")
    text = body.decode()
    rc, out = promtool_check_metrics(text)
    assert rc == 0 and out == "", out
    for family in ("seedgate_auth_results_total", "seedgate_auth_cache_hits_total",
                   "seedgate_auth_cache_misses_total", "seedgate_auth_cache_entries",
                   "seedgate_auth_cache_flushes_total", "seedgate_auth_keys", "seedgate_auth_key_reloads_total"):
        assert f"# TYPE {family} " in text, family
    assert "seedgate_auth_keys 1\n" in text
    # the broken file was seen at least once (its change, and the SIGHUP:
    # one reload each, or one for both)
    assert int(float(re.search(r'^seedgate_auth_key_reloads_total\{result="error"\} (\S+)$', text, re.M).group(1))) >= 1
    assert "seedgate_auth_keys_last_reload_successful 1\n" in text


def test_demo_auth(stack):
    """`make demo AUTH=1` (demo.sh --auth): a demo key pair under the
    runtime dir, the mint command among the URLs to try; the printed
    command's token opens the project, no token gets 401."""
    import subprocess

    import test_demo_make as dm
    seed = dm.write_seed(stack)
    run = stack.path("demo")
    http_port = harness.free_port()
    # HAProxy inherits the demo's environment: a patient agent timeout, so
    # that a busy machine does not turn the node answer into a fail-open.
    demo = dm.start_demo(stack, dm.demo_argv(seed, run, http_port) + ["--auth"],
                         env={"SG_SPOE_PROCESSING": f"{int(500 * SLOW)}ms"})
    dm.wait_ready(demo)
    out = demo.log()
    assert os.path.exists(os.path.join(run, "auth", "demo-1.key.pem"))
    mint = re.search(r"token=\$\((.*seedctl token .*)\)", out)
    assert mint, out
    token = subprocess.run(mint.group(1), shell=True, check=True, capture_output=True, text=True).stdout.strip()
    project = re.search(r"--project (\S+)", mint.group(1)).group(1)
    node = stack_util.where(seed, project)
    # The demo waits 15 ms for the agents: until their first connections are
    # up, a request may fail open to the hubs (never to a node).
    harness.wait_until(lambda: request(http_port, f"/{project}/nb")[:2] == (401, None), 10 * SLOW,
                       interval=0.1, what="401 without a token")
    assert request(http_port, f"/{project}/nb", {"Cookie": f"sg_token={token}"})[:2] == (200, node)
    assert request(http_port, "/")[0] == 200                    # hubs: no token needed
    demo.signal(signal.SIGTERM)
    assert demo.popen.wait(60 * SLOW) == 0, demo.log()


def test_key_file_change_reloads_without_sighup(stack):
    """The agents follow --auth-keys like the seed file: a key revoked by
    rewriting the file (a rename over it, as deploy tools do) stops
    working on every agent and worker within 1 s, with no signal; a key
    added the same way is accepted."""
    info, _recs = start_auth_stack(stack, agent_args=["--workers", "2"])
    port, auth = info.http_port, info.auth
    project = ru.random_ids(1, seed=43)[0]
    old = stack_util.mint_token(auth, "bob", [project])

    def status(token):
        return request(port, f"/{project}/r", {"Cookie": f"sg_token={token}"})[0]

    for _ in range(16):                               # cached by every worker
        assert status(old) == 200
    priv, _ = stack_util.make_auth_key(auth.dir, "k2")
    auth.private["k2"] = priv
    new = stack_util.mint_token(auth, "bob", [project], kid="k2")
    t0 = time.monotonic()
    stack_util.write_auth_keys(auth, ["k2"])          # k2 in, k1 out; no SIGHUP
    harness.wait_until(lambda: all("the key file changed" in p.log() for p in info.agent_procs), 1.0 * SLOW,
                       interval=0.01, what="every agent reloaded the changed key file")
    assert status(old) == 401
    assert time.monotonic() - t0 < 1.0 * SLOW
    for _ in range(16):                               # every agent, every worker
        assert status(old) == 401
        assert status(new) == 200
