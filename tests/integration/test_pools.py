"""Path classes through the real HAProxy: pools of servers per datacenter
and `route PREFIX POOL` lines of the seed directory (docs/seed-directory.md,
Pools).

On the demo's stack (stack_util.start_stack: haproxy.cfg, `seedctl haproxy`'s
backends with the pool backends, two route agents, a demo server per hub,
node and pool server) it proves:
* each prefix reaches its pool, the longest prefix wins, the API pool made
  of a hub's address is served by that hub only, everything else still goes
  to the hubs or the project's node; with the decision cache on, a
  keep-alive connection alternating /api and /api/v1/blobs gets each right;
* the route agent's answers on the wire: backend and why, no server, and
  no decision-cache key for a first segment a deeper route splits;
* healthcheckd's verdicts drive pool failover across datacenters: the local
  pool's servers killed -> the other dc's pool serves (HAProxy marks them
  MAINT through the runtime API); back up -> local again; with none up
  anywhere -> the hubs; a server added to the seed file is added to HAProxy
  live and serves, and deleted from HAProxy when removed from the file;
* an ambiguous directory is rejected with file:line by `seedctl check` and
  route-agent (at start, and on reload where the last good one stays);
* the directory in etcd with pools: import/export round-trip it, agents
  route prefixes from it, and `seedctl put`/`drain`/`del` of routes and
  pool servers are followed.
"""
import http.client
import subprocess

import pytest

import etcd_util
import harness
import health_util as hu
import route_util as ru
import spop_util as su
import stack_util
from test_health_failover import haproxy_status
from test_live_backends import servers_state
from test_route_agent import sess_actions as _sess_actions

SLOW = harness.SLOW
PID = "2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"


def seed_text(ports, extra=""):
    """Two dcs; hubs, nodes, and the pools mirrors (2 servers in us-east, 1
    in eu-west), files (us-east) and api (a server on hub11's address)."""
    p = iter(ports)
    addr = {name: next(p) for name in ("hub11", "hub12", "hub21", "node11", "node21",
                                       "mirror11", "mirror12", "mirror21", "files11")}
    lines = ["replicas 1", "dc us-east", "dc eu-west",
             f"hub hub11 127.0.0.1:{addr['hub11']} dc=us-east",
             f"hub hub12 127.0.0.1:{addr['hub12']} dc=us-east",
             f"hub hub21 127.0.0.1:{addr['hub21']} dc=eu-west",
             f"node node11 127.0.0.1:{addr['node11']} dc=us-east",
             f"node node21 127.0.0.1:{addr['node21']} dc=eu-west",
             "pool mirrors", "pool files", "pool api",
             f"server mirror11 127.0.0.1:{addr['mirror11']} dc=us-east pool=mirrors",
             f"server mirror12 127.0.0.1:{addr['mirror12']} dc=us-east pool=mirrors",
             f"server mirror21 127.0.0.1:{addr['mirror21']} dc=eu-west pool=mirrors",
             f"server files11 127.0.0.1:{addr['files11']} dc=us-east pool=files",
             f"server api11 127.0.0.1:{addr['hub11']} dc=us-east pool=api",
             "route /download mirrors", "route /static files", "route /api api",
             "route /api/v1/blobs files"]
    return "\n".join(lines) + "\n" + extra, addr


def served(info, path, n=1):
    """The set of X-Served-By over n fresh connections."""
    return {stack_util.served_by(info.http_port, path) for _ in range(n)}


def where_path(seed, path, down=()):
    argv = [harness.bin_path("seedctl"), "where", "--seed", seed]
    if down:
        argv += ["--down", ",".join(down)]
    r = subprocess.run(argv + [path], capture_output=True, text=True, check=True)
    return r.stdout.rstrip("\n").split("\t")


@pytest.mark.parametrize("cache", [False, True], ids=["per-request", "decision-cache"])
def test_each_prefix_reaches_its_pool(stack, cache):
    text, _ = seed_text([harness.free_port() for _ in range(9)])
    seed = stack.write("seed.conf", text)
    info = stack_util.start_stack(stack, seed, cache=cache)
    # what seedctl says is what the proxy does
    assert where_path(seed, "/download/foo.xo") == ["/download/foo.xo", "pool_mirrors_us-east", "pool",
                                                    "mirrors", "/download", "mirror11", "mirror12", "mirror21"]
    assert where_path(seed, "/api/v1/blobs/7")[1:5] == ["pool_files_us-east", "pool", "files", "/api/v1/blobs"]

    assert served(info, "/download/foo.xo", 20) == {"mirror11", "mirror12"}     # balanced over the local pool
    assert served(info, "/download?v=2", 4) <= {"mirror11", "mirror12"}
    assert served(info, "/static/app.css", 4) == {"files11"}
    assert served(info, "/api/v1/blobs/7", 4) == {"files11"}                  # longest prefix
    assert served(info, "/api/v1/users", 10) == {"hub11"}                     # the API's hub subset
    assert served(info, "/api", 4) == {"hub11"}
    assert served(info, "/index.html", 20) == {"hub11", "hub12"}              # not a route: the hubs
    assert served(info, "/downloads/x", 10) <= {"hub11", "hub12"}             # whole segments only
    node = stack_util.where(seed, PID)
    assert served(info, f"/{PID}/download/x", 4) == {node}                    # projects first

    # the agents count pool decisions
    assert sum(ru.metric(ru.read_metrics(p), "seedgate_route_decisions_total", why="pool")
               for p in info.agent_stats_ports) > 0

    # one keep-alive connection, requests alternating across prefixes that
    # share a first segment: the decision cache must not reuse /api's answer
    c = http.client.HTTPConnection("127.0.0.1", info.http_port, timeout=5 * SLOW)
    try:
        for path, want in [("/api/a", "hub11"), ("/api/v1/blobs/1", "files11"), ("/api/b", "hub11"),
                           ("/api/v1/blobs/2", "files11"), ("/static/x", "files11"),
                           ("/download/y", ("mirror11", "mirror12")), (f"/{PID}/z", node)]:
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            assert r.status == 200, path
            by = r.getheader("X-Served-By")
            assert by in want if isinstance(want, tuple) else by == want, (path, by)
    finally:
        c.close()


def sess_actions(client, path, sid):
    return _sess_actions(None, client, path, sid)


def test_agent_answers(stack):
    # What the route agent answers on the wire: a pool path sets backend and
    # why, no server (HAProxy balances the pool backend) and no project; the
    # decision cache's entry keys on the first segment unless a route goes
    # deeper under it.
    text, _ = seed_text(ru.port_range())
    seed = stack.write("seed.conf", text)
    agent = ru.start_agent(stack, seed, dc="us-east")
    v = agent.decide("/download/foo.xo")
    assert v == {"backend": "pool_mirrors_us-east", "why": "pool"}, v
    v = agent.decide("/api/v1/blobs/x")
    assert v == {"backend": "pool_files_us-east", "why": "pool"}, v
    v = agent.decide("/other")
    assert v == {"backend": "hubs_us-east", "why": "hub"}, v
    S = su.SCOPE_SESS
    with agent.client() as c:
        assert sess_actions(c, "/download/foo.xo", 1) == [("set-var", S, "dest", "pool_mirrors_us-east//pool"),
                                                          ("set-var", S, "key", "download")]
        for sid, path in enumerate(("/api/v1/blobs/x", "/api/users"), 2):
            dest = "pool_files_us-east//pool" if "blobs" in path else "pool_api_us-east//pool"
            assert sess_actions(c, path, sid) == [("set-var", S, "dest", dest), ("unset-var", S, "key", None)], path
    assert ru.metric(agent.metrics(), "seedgate_route_decisions_total", why="pool") == 5


def start_with_health(stack):
    ports = [harness.free_port() for _ in range(9)]
    text, addr = seed_text(ports)
    seed = stack.write("seed.conf", text)
    feed = stack.path("health.sock")
    stats = harness.free_port()
    hu.start_healthcheckd(stack, seed, feed=feed, stats_port=stats, haproxy_socks=[stack.path("haproxy.sock")])
    info = stack_util.start_stack(stack, seed, health_feed=feed)
    w = hu.Feed(feed)
    for name in ("mirror11", "mirror12", "mirror21", "files11", "api11", "hub11"):
        w.wait_state(name, "up", timeout=5)
    hu.wait_wired(info.agent_stats_ports, stats)
    return info, seed, text, w, addr


def restart_server(stack, info, name, port):
    p = stack.start(f"{name}-again", [harness.bin_path("demo-server"), "--name", name,
                                      "--listen", f"127.0.0.1:{port}"])
    stack.wait_port(port, p)
    info.servers[name] = p


def test_pool_fails_over_across_datacenters(stack):
    info, seed, text, w, addr = start_with_health(stack)
    assert served(info, "/download/a.xo", 10) == {"mirror11", "mirror12"}

    # the local pool's servers die: healthcheckd's verdict moves the pool to eu-west
    info.servers["mirror11"].kill()
    info.servers["mirror12"].kill()
    w.wait_state("mirror11", "down", timeout=3)
    w.wait_state("mirror12", "down", timeout=3)
    harness.wait_until(lambda: served(info, "/download/a.xo", 1) == {"mirror21"}, 3, interval=0.01,
                       what="/download served by eu-west's mirror")
    assert served(info, "/download/a.xo", 10) == {"mirror21"}
    # the verdict also reached HAProxy's pool backend
    harness.wait_until(lambda: haproxy_status(info, "pool_mirrors_us-east", "mirror11") == "MAINT", 2,
                       what="mirror11 MAINT in HAProxy")
    assert where_path(seed, "/download/a.xo", down=["mirror11", "mirror12"])[1] == "pool_mirrors_eu-west"
    # other classes are not affected
    assert served(info, "/static/x", 4) == {"files11"}

    # every mirror down: the hubs take downloads (why no-pool)
    info.servers["mirror21"].kill()
    w.wait_state("mirror21", "down", timeout=3)
    harness.wait_until(lambda: served(info, "/download/a.xo", 1) <= {"hub11", "hub12"}, 3, interval=0.01,
                       what="/download served by the hubs")
    assert sum(ru.metric(ru.read_metrics(p), "seedgate_route_decisions_total", why="no-pool")
               for p in info.agent_stats_ports) > 0

    # local servers back: the pool returns to us-east
    restart_server(stack, info, "mirror11", addr["mirror11"])
    w.wait_state("mirror11", "up", timeout=3)
    harness.wait_until(lambda: served(info, "/download/a.xo", 1) == {"mirror11"}, 3, interval=0.01,
                       what="/download back on mirror11")

    # a server appended to the seed: healthcheckd adds it to HAProxy live
    port = harness.free_port()
    restart_server(stack, info, "files12", port)
    ru.write_atomic(seed, text + f"server files12 127.0.0.1:{port} dc=us-east pool=files\n")
    w.wait_state("files12", "up", timeout=5)
    harness.wait_until(lambda: "files12" in served(info, "/static/x", 6), 5, interval=0.05,
                       what="files12 serving /static")
    assert "files12" not in open(info.gen_cfg).read()     # only the runtime API knows it
    assert ("pool_files_us-east", "files12") in servers_state(info)
    # and removed from the seed: deleted from HAProxy, /static back on files11 alone
    ru.write_atomic(seed, text)
    harness.wait_until(lambda: ("pool_files_us-east", "files12") not in servers_state(info), 15, interval=0.1,
                       what="files12 deleted from HAProxy")
    assert served(info, "/static/x", 6) == {"files11"}


AMBIGUOUS = [
    ("route / files\n", "route prefix '/' would take project paths"),
    ("route /cafe files\n", "route prefix '/cafe' could match a project path"),
    ("route /static mirrors\n", "duplicate route '/static' (first on line 18)"),
    ("route /images nothere\n", "route '/images' to unknown pool 'nothere'"),
    ("pool empty\n", "pool 'empty' has no server"),
]


def test_ambiguous_directory_rejected(stack):
    text, _ = seed_text(ru.port_range())
    good = stack.write("good.conf", text)
    r = subprocess.run([harness.bin_path("seedctl"), "check", good], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "3 pools, 5 pool servers, 4 routes" in r.stdout
    nlines = text.count("\n")
    for extra, msg in AMBIGUOUS:
        bad = stack.write("bad.conf", text + extra)
        want = f"{bad}:{nlines + 1}: {msg}"
        r = subprocess.run([harness.bin_path("seedctl"), "check", bad], capture_output=True, text=True)
        assert r.returncode == 1 and want in r.stderr, (extra, r.stderr)
        r = subprocess.run([harness.bin_path("route-agent"), "--listen", f"127.0.0.1:{harness.free_port()}",
                            "--seed", bad], capture_output=True, text=True, timeout=10 * SLOW)
        assert r.returncode != 0 and want in r.stdout + r.stderr, (extra, r.stdout, r.stderr)


def test_ambiguous_reload_keeps_last_good(stack):
    text, _ = seed_text([harness.free_port() for _ in range(9)])
    seed = stack.write("seed.conf", text)
    info = stack_util.start_stack(stack, seed, agents=1)
    assert served(info, "/static/x", 2) == {"files11"}
    ru.write_atomic(seed, text + "route /deadbeef files\n")
    want = f"{seed}:{text.count(chr(10)) + 1}: route prefix '/deadbeef' could match a project path"
    harness.wait_until(lambda: want in info.agent_procs[0].log(), 5, what="the agent reports file:line")
    assert served(info, "/static/x", 4) == {"files11"}
    assert served(info, "/download/x", 4) <= {"mirror11", "mirror12"}


@pytest.mark.skipif(not etcd_util.have_etcd(), reason="etcd not installed")
def test_etcd_directory_with_pools(stack):
    cluster = etcd_util.EtcdCluster(stack, members=1)
    text, _ = seed_text([harness.free_port() for _ in range(9)])
    seed = stack.write("seed.conf", text)
    prefix = "/sg/pools"
    spec = cluster.spec(prefix)
    seedctl = harness.bin_path("seedctl")
    r = subprocess.run([seedctl, "import", "--etcd", spec, seed], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # the round trip keeps every pool, server and route
    r = subprocess.run([seedctl, "export", "--etcd", spec], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(x for x in r.stdout.splitlines() if not x.startswith("#")) == sorted(text.splitlines())
    keys = cluster.get_prefix(prefix + "/g/")
    assert [v for k, v in keys.items() if k.endswith("/route/api/v1/blobs")] == [b"route /api/v1/blobs files"]
    r = subprocess.run([seedctl, "check", "--seed", spec], capture_output=True, text=True)
    assert r.returncode == 0 and "3 pools, 5 pool servers, 4 routes" in r.stdout, r.stdout + r.stderr

    info = stack_util.start_stack(stack, seed, agent_seed=spec)
    assert served(info, "/download/foo.xo", 10) == {"mirror11", "mirror12"}
    assert served(info, "/api/v1/blobs/1", 4) == {"files11"}
    assert served(info, "/api/x", 4) == {"hub11"}
    # a route changed in etcd is followed
    r = subprocess.run([seedctl, "put", "--etcd", spec, "route /static mirrors"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    harness.wait_until(lambda: served(info, "/static/x", 1) <= {"mirror11", "mirror12"}, 5, interval=0.05,
                       what="/static moved to the mirrors")
    # an ambiguous route is refused with its key, nothing written
    r = subprocess.run([seedctl, "put", "--etcd", spec, "route /beef files"], capture_output=True, text=True)
    assert r.returncode == 1 and "/route/beef: route prefix '/beef' could match a project path" in r.stderr, \
        r.stderr
    assert served(info, "/static/x", 4) <= {"mirror11", "mirror12"}
    # the local pool servers drained in etcd: the pool is taken from eu-west
    # (a single drained server leaves the backend's balancing to HAProxy's
    # weights, which healthcheckd sets: test_pool_fails_over_across_datacenters);
    # a route deleted sends its paths back to the hubs
    for name in ("mirror11", "mirror12"):
        r = subprocess.run([seedctl, "drain", "--etcd", spec, name], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    harness.wait_until(lambda: served(info, "/download/x", 4) == {"mirror21"}, 5, interval=0.05,
                       what="us-east mirrors drained")
    r = subprocess.run([seedctl, "del", "--etcd", spec, "route", "/static"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    harness.wait_until(lambda: served(info, "/static/x", 1) <= {"hub11", "hub12"}, 5, interval=0.05,
                       what="/static back to the hubs")
