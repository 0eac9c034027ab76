"""healthcheckd with the real HAProxy and route agents (CONF-DEMO's
stack_util.start_stack, the demo's configuration), under load.

What it proves:
* a node killed while clients load its project: the checker's verdict
  reaches the route agents and HAProxy, the project moves to its replica,
  no GET fails (HAProxy's retries cover the gap), and once the server is
  back its project returns after `rise` checks;
* every hub of one datacenter killed: hub traffic moves to the other one;
* a node answering HTTP 500, or hanging, is marked down by the HTTP check;
  one that flaps is held down (damped);
* healthcheckd killed: the agents keep the last known state (a node that
  recovers meanwhile stays avoided), and a restarted healthcheckd brings
  fresh state.
Checks run every 100 ms with fall 2 / rise 2 to keep the file short.
"""
import http.client
import threading
import time

import harness
import health_util as hu
import route_util as ru
import stack_util

SLOW = harness.SLOW
PROJECT_IDS = ru.random_ids(64, seed=7)


def start_all(stack, hc_args=()):
    ports = [harness.free_port() for _ in range(10)]
    text, addrs = ru.seed_text(ports, hubs=2, nodes=3)
    seed = stack.write("seed.conf", text)
    feed = stack.path("health.sock")
    stats = harness.free_port()
    hc = hu.start_healthcheckd(stack, seed, feed=feed, stats_port=stats,
                               haproxy_socks=[stack.path("haproxy.sock")], args=hc_args)
    info = stack_util.start_stack(stack, seed, health_feed=feed)
    w = hu.Feed(feed)
    for name in addrs:
        w.wait_state(name, "up", timeout=5)
    hu.wait_wired(info.agent_stats_ports, stats)
    return info, seed, feed, hc, w, addrs, stats


def project_on(seed, node_prefix="node1"):
    """A project id whose first choice (dc us-east) is a us-east node, and
    that node and the replica taking over when it is down."""
    for pid in PROJECT_IDS:
        first = stack_util.where(seed, pid, dc="us-east")
        if first.startswith(node_prefix):
            return pid, first, stack_util.where(seed, pid, dc="us-east", down=[first])
    raise AssertionError("no project on a us-east node")


def served_by(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5 * SLOW)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("X-Served-By")
    finally:
        c.close()


class Load:
    """Threads doing GETs in a loop; records (start, end, status, served-by)."""

    def __init__(self, port, path, threads=4):
        self.port, self.path = port, path
        self.results = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                st, by = served_by(self.port, self.path)
            except OSError as e:
                st, by = f"error {e}", None
            with self.lock:
                self.results.append((t0, time.monotonic(), st, by))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        return self.results


def haproxy_status(info, backend, server):
    for row in stack_util.admin(info, "show stat").splitlines():
        f = row.split(",")
        if len(f) > 17 and f[0] == backend and f[1] == server:
            return f[17]
    return None


def haproxy_pid(info):
    for line in stack_util.admin(info, "show info").splitlines():
        if line.startswith("Pid: "):
            return line[5:]
    return None


def restart_server(stack, info, name, addrs):
    p = stack.start(f"{name}-again", [harness.bin_path("demo-server"), "--name", name,
                                      "--listen", f"127.0.0.1:{addrs[name]}"])
    stack.wait_port(addrs[name], p)
    info.servers[name] = p
    return p


def test_node_killed_under_load_reroutes_without_errors(stack):
    info, seed, _feed, _hc, w, addrs, _stats = start_all(stack)
    pid, node, replica = project_on(seed)
    path = f"/{pid}/file.txt"
    assert served_by(info.http_port, path) == (200, node)

    load = Load(info.http_port, path)
    time.sleep(0.5)
    t_kill = time.monotonic()
    info.servers[node].kill()
    t_verdict = w.wait_state(node, "down", timeout=3)
    # a fresh request right after the verdict: how soon does routing follow?
    harness.wait_until(lambda: served_by(info.http_port, path) == (200, replica), 1, interval=0.005,
                       what=f"{pid} on {replica}")
    t_reroute = time.monotonic()
    time.sleep(1.5)
    results = load.finish()

    failed = [r for r in results if r[2] != 200]
    after = [r for r in results if r[0] > t_verdict]
    raced = [r for r in results if t_kill <= r[0] < t_verdict]
    print(f"\nnode {node} killed under load: verdict after {1000 * (t_verdict - t_kill):.0f} ms, "
          f"rerouted to {replica} after {1000 * (t_reroute - t_kill):.0f} ms; {len(results)} GETs, "
          f"{len(failed)} failed; the {len(raced)} that raced the verdict were retried by HAProxy "
          f"(longest {1000 * max((r[1] - r[0] for r in raced), default=0):.0f} ms) and served by "
          f"{sorted({r[3] for r in raced})}")
    assert not failed, failed[:5]
    assert after and all(r[3] == replica for r in after), {r[3] for r in after}
    assert not [r for r in results if r[0] > t_verdict and r[3] == node]
    assert haproxy_status(info, "nodes_us-east", node) == "MAINT"
    assert "refused" in w.reason(node) or "timeout" in w.reason(node), w.reason(node)

    # back: its project returns after rise (2) checks
    t_back = time.monotonic()
    restart_server(stack, info, node, addrs)
    w.wait_state(node, "up", timeout=3)
    harness.wait_until(lambda: served_by(info.http_port, path) == (200, node), 2,
                       what=f"{pid} back on {node}")
    print(f"node {node} restarted: its project back after {1000 * (time.monotonic() - t_back):.0f} ms")
    assert haproxy_status(info, "nodes_us-east", node).startswith(("UP", "no check"))


def test_every_hub_of_a_datacenter_killed(stack):
    info, _seed, _feed, _hc, w, _addrs, _stats = start_all(stack)
    assert served_by(info.http_port, "/")[1] in ("hub11", "hub12")
    t_kill = time.monotonic()
    info.servers["hub11"].kill()
    info.servers["hub12"].kill()
    w.wait_state("hub11", "down", timeout=3)
    t_verdict = w.wait_state("hub12", "down", timeout=3)
    harness.wait_until(lambda: served_by(info.http_port, "/")[1] in ("hub21", "hub22"), 2,
                       what="hub traffic in eu-west")
    print(f"\nhubs of us-east killed: both down after {1000 * (t_verdict - t_kill):.0f} ms, "
          f"hub traffic in eu-west after {1000 * (time.monotonic() - t_kill):.0f} ms")
    got = {served_by(info.http_port, f"/app/{i}") for i in range(20)}
    assert got <= {(200, "hub21"), (200, "hub22")}, got
    assert haproxy_status(info, "hubs_us-east", "hub11") == "MAINT"


def test_http_500_hang_and_flapping(stack):
    info, seed, _feed, _hc, w, addrs, stats = start_all(
        stack, hc_args=["--check", "http", "--check-path", "/health", "--damp-flaps", "4",
                        "--damp-window", "10s", "--damp-hold", "2s"])
    pid, node, replica = project_on(seed)
    path = f"/{pid}/x"

    # HTTP 500: TCP still accepts, the HTTP check fails
    hu.server_mode(addrs[node], "500")
    w.wait_state(node, "down", timeout=3)
    assert "HTTP 500" in w.reason(node), w.reason(node)
    harness.wait_until(lambda: served_by(info.http_port, path) == (200, replica), 1,
                       what="project on its replica")
    hu.server_mode(addrs[node], "ok")
    w.wait_state(node, "up", timeout=3)

    # hang: no answer within the 300 ms timeout
    other = "node13" if node != "node13" else "node12"
    hu.server_mode(addrs[other], "hang")
    w.wait_state(other, "down", timeout=3)
    assert "timeout" in w.reason(other), w.reason(other)
    hu.server_mode(addrs[other], "ok")
    w.wait_state(other, "up", timeout=3)

    # flapping: 500/ok every 400 ms. The first change is not a flap (nothing
    # came before it in the window); from the 4th flap on, a change to up is
    # held: for a target that started up, that is its 6th change.
    flapper = "node21"
    for _ in range(3):
        hu.server_mode(addrs[flapper], "500")
        w.wait_state(flapper, "down", timeout=3)
        hu.server_mode(addrs[flapper], "ok")
        time.sleep(0.4)
        if "damped" in w.reason(flapper):
            break
    assert w.get(flapper) == "down" and "damped" in w.reason(flapper), w.states_seen(flapper)
    t_held = time.monotonic()
    time.sleep(1.0)
    assert w.get(flapper) == "down", "released before the 2 s hold"
    w.wait_state(flapper, "up", timeout=3)
    print(f"\nflapping {flapper}: held down {1000 * (time.monotonic() - t_held):.0f} ms after it recovered")
    m = ru.read_metrics(stats)
    assert ru.metric(m, "seedgate_hc_checks_total", result="fail") > 0
    assert ru.metric(m, "seedgate_hc_checks_total", result="timeout") > 0


def test_healthcheckd_restart_keeps_last_state(stack):
    info, seed, feed, hc, w, addrs, _stats = start_all(stack)
    pid, node, replica = project_on(seed)
    path = f"/{pid}/y"
    info.servers[node].kill()
    w.wait_state(node, "down", timeout=3)
    harness.wait_until(lambda: served_by(info.http_port, path) == (200, replica), 1,
                       what="project on its replica")

    hc.kill()
    w.closed.wait(2)
    for port in info.agent_stats_ports:
        harness.wait_until(lambda p=port: ru.metric(ru.read_metrics(p), "seedgate_health_feed_connected") == 0,
                           3, what="agents notice the feed is gone")
    # the node recovers while nobody checks it: agents keep the last state
    restart_server(stack, info, node, addrs)
    for _ in range(10):
        assert served_by(info.http_port, path) == (200, replica)
        time.sleep(0.05)

    t_start = time.monotonic()
    hu.start_healthcheckd(stack, seed, feed=feed, haproxy_socks=[info.admin_sock],
                          name="healthcheckd-2")
    harness.wait_until(lambda: served_by(info.http_port, path) == (200, node), 4,
                       what=f"{pid} back on {node} with fresh state")
    print(f"\nhealthcheckd restarted: fresh state routes {pid} to {node} again after "
          f"{1000 * (time.monotonic() - t_start):.0f} ms")


def test_haproxy_reload_gets_the_full_state_again(stack):
    info, seed, _feed, hc, w, _addrs, stats = start_all(stack)
    pid, node, replica = project_on(seed)
    info.servers[node].kill()
    w.wait_state(node, "down", timeout=3)
    harness.wait_until(lambda: haproxy_status(info, "nodes_us-east", node) == "MAINT", 2,
                       what=f"{node} MAINT in HAProxy")
    connects = ru.metric(ru.read_metrics(stats), "seedgate_hc_haproxy_connects_total")
    worker = haproxy_pid(info)
    # SIGUSR2 to the master; a master still starting up ignores it: resend
    for _ in range(5):
        stack_util.reload_haproxy(info)
        try:
            harness.wait_until(lambda: haproxy_pid(info) not in (None, worker), 1,
                               what="a new HAProxy worker")
            break
        except AssertionError:
            continue
    assert haproxy_pid(info) != worker
    # the new worker starts from the configuration (node ready); healthcheckd
    # sees its CLI session end, reconnects and applies the full state again
    harness.wait_until(lambda: ru.metric(ru.read_metrics(stats), "seedgate_hc_haproxy_connects_total")
                       > connects, 5, what="healthcheckd reconnected to HAProxy")
    harness.wait_until(lambda: haproxy_status(info, "nodes_us-east", node) == "MAINT", 3,
                       what=f"{node} MAINT again after the reload")
    assert "applying the full state" in hc.log()
