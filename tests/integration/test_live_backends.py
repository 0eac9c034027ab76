"""HAProxy follows the seed directory live: healthcheckd applies every change
of the directory through the runtime API, without a HAProxy reload.

What it proves, on the demo's stack (stack_util.start_stack: the real
HAProxy with haproxy.cfg and `seedctl haproxy`'s backends, two route agents)
with healthcheckd driving HAProxy (--haproxy-socket):
* a node appended to the seed file serves its projects (those whose primary
  it is, per `seedctl where`) within 1 s, with the same HAProxy worker; and
  after a HAProxy reload (SIGUSR2) the new worker, started from the older
  backends file, gets the added server again and routing holds;
* a node removed from the seed under load: its project moves to its replica
  with no failed GET, and the server is deleted from HAProxy; one with a
  request stuck on it is deleted once healthcheckd shut its sessions down
  after the 10 s grace period;
* a hostname node added is given the address healthcheckd resolved;
* a refused command (a new datacenter has no backend) is logged with the
  server and counted;
* a hub re-weighted, a hub and a node drained, a node moved to another port:
  `show servers state` / `show stat` say so;
* the reload detector survives a peer that accepts and never answers on the
  socket path: it times out, reconnects, and reaches the real HAProxy that
  takes the path over later.
Checks run every 100 ms (health_util defaults).
"""
import http.client
import os
import socket
import threading
import time

import harness
import health_util as hu
import route_util as ru
import stack_util
from test_health_failover import Load, haproxy_pid, haproxy_status, served_by
from test_health_failover import start_all as failover_start_all

SLOW = harness.SLOW
IDS = ru.random_ids(200, seed=11)


def start_all(stack):
    """test_health_failover's stack (2 hubs and 3 nodes per dc, healthcheckd
    on HAProxy's socket, everything up), and the seed's text."""
    info, seed, _feed, hc, w, _addrs, stats = failover_start_all(stack)
    with open(seed) as f:
        return info, seed, f.read(), hc, w, stats


def servers_state(info):
    """{(backend, server): {"addr", "port", "weight", "admin"}} from `show servers state`."""
    out = {}
    for line in stack_util.admin(info, "show servers state").splitlines():
        f = line.split()
        if len(f) >= 19 and f[0].isdigit():
            out[(f[1], f[3])] = {"addr": f[4], "admin": int(f[6]), "weight": int(f[7]), "port": int(f[18])}
    return out


def current_sessions(info, backend, server):
    for row in stack_util.admin(info, "show stat").splitlines():
        f = row.split(",")
        if len(f) > 4 and f[0] == backend and f[1] == server:
            return int(f[4] or 0)           # scur
    return None


def failed_commands(stats):
    return ru.metric(ru.read_metrics(stats), "seedgate_hc_haproxy_commands_failed_total")


def projects_on(stack, text, node, dc="us-east", n=len(IDS)):
    """Project ids whose first choice in dc is node, for the seed text."""
    side = stack.write("where.conf", text)
    chosen = ru.seedctl_where(side, IDS, dc=dc)
    ids = [pid for pid in IDS if chosen[pid][0] == node][:n]
    assert ids, f"no project on {node}"
    return ids


def start_server(stack, info, name, port, log_name=None):
    p = stack.start(log_name or name, [harness.bin_path("demo-server"), "--name", name,
                                       "--listen", f"127.0.0.1:{port}"])
    stack.wait_port(port, p)
    info.servers[name] = p
    return p


def all_served_by(info, ids, node):
    return all(served_by(info.http_port, f"/{pid}/x") == (200, node) for pid in ids)


def reload_haproxy(info):
    """SIGUSR2 to the master (resent: a master still starting ignores it)."""
    worker = haproxy_pid(info)
    for _ in range(5):
        stack_util.reload_haproxy(info)
        try:
            harness.wait_until(lambda: haproxy_pid(info) not in (None, worker), 1, what="a new HAProxy worker")
            return haproxy_pid(info)
        except AssertionError:
            continue
    raise AssertionError("HAProxy did not reload")


def test_node_added_is_served_live_and_after_a_haproxy_reload(stack):
    info, seed, text, hc, w, stats = start_all(stack)
    worker = haproxy_pid(info)
    port = harness.free_port()
    start_server(stack, info, "node14", port)
    new_text = text + f"node node14 127.0.0.1:{port} dc=us-east weight=10\n"
    ids = projects_on(stack, new_text, "node14")
    assert not any(served_by(info.http_port, f"/{pid}/x")[1] == "node14" for pid in ids)

    t0 = time.monotonic()
    ru.write_atomic(seed, new_text)
    # one project polled closely: when does the change reach HAProxy?
    harness.wait_until(lambda: served_by(info.http_port, f"/{ids[0]}/x") == (200, "node14"), 5,
                       interval=0.005, what=f"{ids[0]} served by node14")
    took = time.monotonic() - t0
    # then every project whose primary node14 is
    harness.wait_until(lambda: all_served_by(info, ids, "node14"), 5, interval=0.01,
                       what=f"{len(ids)} projects served by node14")
    took_all = time.monotonic() - t0
    print(f"\nnode14 appended to the seed: served after {1000 * took:.0f} ms; all {len(ids)} of the "
          f"{len(IDS)} sampled us-east projects whose primary it is checked served by it at "
          f"{1000 * took_all:.0f} ms; same HAProxy worker {worker}")
    assert took <= 1.0 * SLOW, f"took {took:.2f} s"
    assert haproxy_pid(info) == worker, "HAProxy was reloaded"
    row = servers_state(info)[("nodes_us-east", "node14")]
    assert (row["addr"], row["port"], row["weight"]) == ("127.0.0.1", port, 0)
    assert "node14" not in open(info.gen_cfg).read()     # only the runtime API knows it

    # A reload starts a worker from the backends file, which lacks node14:
    # healthcheckd notices the new worker and adds it again.
    t0 = time.monotonic()
    new_worker = reload_haproxy(info)
    harness.wait_until(lambda: ("nodes_us-east", "node14") in servers_state(info), 5,
                       what="node14 in the new worker")
    harness.wait_until(lambda: all_served_by(info, ids, "node14"), 5, interval=0.01,
                       what="projects on node14 after the reload")
    print(f"HAProxy reloaded (worker {worker} -> {new_worker}): node14 added again and serving "
          f"after {1000 * (time.monotonic() - t0):.0f} ms")
    assert failed_commands(stats) == 0, hc.log()


def test_node_removed_under_load_moves_to_its_replica(stack):
    info, seed, text, hc, w, stats = start_all(stack)
    pid = projects_on(stack, text, "node12", n=1)[0]
    new_text = "".join(l for l in text.splitlines(True) if not l.startswith("node node12 "))
    replica = ru.seedctl_where(stack.write("after.conf", new_text), [pid], dc="us-east")[pid][0]
    path = f"/{pid}/x"
    assert served_by(info.http_port, path) == (200, "node12")

    load = Load(info.http_port, path)
    time.sleep(0.3)
    t0 = time.monotonic()
    ru.write_atomic(seed, new_text)
    harness.wait_until(lambda: served_by(info.http_port, path) == (200, replica), 5, interval=0.01,
                       what=f"{pid} on {replica}")
    moved = time.monotonic() - t0
    # del server waits for node12's connections (idle ones included) to end
    harness.wait_until(lambda: ("nodes_us-east", "node12") not in servers_state(info), 20,
                       interval=0.1, what="node12 deleted from HAProxy")
    deleted = time.monotonic() - t0
    time.sleep(0.3)
    results = load.finish()
    failed = [r for r in results if r[2] != 200]
    print(f"\nnode12 removed from the seed under load: {pid} on {replica} after {1000 * moved:.0f} ms, "
          f"server deleted after {1000 * deleted:.0f} ms; {len(results)} GETs, {len(failed)} failed, "
          f"served by {sorted({r[3] for r in results})}")
    assert not failed, failed[:5]
    assert "nodes_us-east/node12 removed" in hc.log()
    assert failed_commands(stats) == 0, hc.log()


def test_reweight_drain_and_address_change_reach_haproxy(stack):
    info, seed, text, hc, w, stats = start_all(stack)
    pid = projects_on(stack, text, "node11", n=1)[0]
    old_port = info.server_ports["node11"]
    new_port = harness.free_port()
    old_proc = info.servers["node11"]
    start_server(stack, info, "node11", new_port, log_name="node11-moved")
    lines = []
    for line in text.splitlines():
        if line.startswith("hub hub11 "):
            line = line.replace("weight=10", "weight=30")
        if line.startswith("hub hub12 ") or line.startswith("node node13 "):
            line += " state=drain"
        if line.startswith("node node11 "):
            line = line.replace(f":{old_port} ", f":{new_port} ")
        lines.append(line)
    new_text = "\n".join(lines) + "\n"
    assert "weight=30" in new_text and f":{new_port} " in new_text
    ru.write_atomic(seed, new_text)

    def applied():
        st = servers_state(info)
        return (st[("hubs_us-east", "hub11")]["weight"] == 30 and
                st[("hubs_us-east", "hub12")]["weight"] == 0 and
                st[("nodes_us-east", "node11")]["port"] == new_port and
                haproxy_status(info, "hubs_us-east", "hub12") == "DRAIN" and
                haproxy_status(info, "nodes_us-east", "node13") == "DRAIN")
    harness.wait_until(applied, 5, what="weights, drain and address in HAProxy")
    st = servers_state(info)
    print(f"\nre-weighted/drained/moved: hub11 weight {st[('hubs_us-east', 'hub11')]['weight']}, "
          f"hub12 weight {st[('hubs_us-east', 'hub12')]['weight']} "
          f"({haproxy_status(info, 'hubs_us-east', 'hub12')}), node13 "
          f"{haproxy_status(info, 'nodes_us-east', 'node13')}, node11 port {old_port} -> {new_port}")
    old_proc.kill()        # the old process would answer as node11 too
    harness.wait_until(lambda: served_by(info.http_port, f"/{pid}/x") == (200, "node11"), 5,
                       what=f"{pid} on node11 at its new address")
    assert failed_commands(stats) == 0, hc.log()


class SilentPeer(harness.SocketThread):
    """Listens on a unix socket path, accepts, never answers, and holds every
    connection open until stopped (joined first, then everything closed)."""

    def __init__(self, path):
        super().__init__()
        self.held = []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(16)
        self.start()

    def serve_once(self):
        conn, _ = self.sock.accept()
        self.held.append(conn)

    def stop(self):
        super().stop()
        for c in self.held:
            c.close()


def test_reload_detector_survives_a_peer_that_never_answers(stack):
    ports = [harness.free_port() for _ in range(12)]
    text, addrs = ru.seed_text(ports, hubs=1, nodes=2)
    seed = stack.write("seed.conf", text)
    sock_path = stack.path("haproxy.sock")
    peer = SilentPeer(sock_path)
    stack.defer(peer.stop)
    feed, stats = stack.path("health.sock"), harness.free_port()
    hc = hu.start_healthcheckd(stack, seed, feed=feed, stats_port=stats, haproxy_socks=[sock_path])

    def m(name, **labels):
        return ru.metric(ru.read_metrics(stats), name, **labels)
    harness.wait_until(lambda: len(peer.held) >= 2, 5, what="session and probe on the silent peer")
    harness.wait_until(lambda: m("seedgate_hc_haproxy_timeouts_total", what="probe") >= 1, 5,
                       what="the probe timed out")
    # A real HAProxy takes the path over (it renames its socket over it);
    # the silent peer keeps every connection it got open.
    info = stack_util.start_stack(stack, seed, health_feed=feed)
    node = "node11"
    info.servers[node].kill()
    harness.wait_until(lambda: haproxy_status(info, "nodes_us-east", node) == "MAINT", 10,
                       what=f"{node} MAINT in the real HAProxy")
    print(f"\nsilent peer: {len(peer.held)} connections held, "
          f"{m('seedgate_hc_haproxy_timeouts_total', what='probe'):.0f} probe and "
          f"{m('seedgate_hc_haproxy_timeouts_total', what='session'):.0f} session timeouts; "
          f"then the real HAProxy got the state")
    assert os.path.exists(sock_path)
    assert "probe unanswered" in hc.log()


def test_refused_commands_are_logged_with_the_server_and_counted(stack):
    info, seed, text, hc, w, stats = start_all(stack)
    # a new datacenter has no backends in HAProxy until the file is
    # regenerated and HAProxy reloaded: "add server" is refused
    port = harness.free_port()
    start_server(stack, info, "node31", port)
    ru.write_atomic(seed, text.replace("dc eu-west\n", "dc eu-west\ndc ap-south\n") +
                    f"node node31 127.0.0.1:{port} dc=ap-south weight=10\n")
    harness.wait_until(lambda: ru.metric(ru.read_metrics(stats), "seedgate_hc_haproxy_commands_failed_total",
                                         command="add server") == 1, 5, what="the failed add counted")
    line = [l for l in hc.log().splitlines() if "add server nodes_ap-south/node31" in l]
    assert line and "No such backend" in line[0], hc.log()
    print(f"\n{line[0]}")


def test_hostname_node_added_gets_the_resolved_address(stack):
    """HAProxy does not resolve servers added at run time: healthcheckd adds
    it in maintenance and pushes the address its resolver found, then the
    verdict."""
    info, seed, text, hc, w, stats = start_all(stack)
    port = harness.free_port()
    start_server(stack, info, "node15", port)
    new_text = text + f"node node15 localhost:{port} dc=us-east weight=10\n"
    ids = projects_on(stack, new_text, "node15", n=3)
    ru.write_atomic(seed, new_text)
    harness.wait_until(lambda: all_served_by(info, ids, "node15"), 5, interval=0.02,
                       what=f"{len(ids)} projects served by node15 (localhost)")
    row = servers_state(info)[("nodes_us-east", "node15")]
    assert (row["addr"], row["port"]) == ("127.0.0.1", port), row
    assert failed_commands(stats) == 0, hc.log()


def test_removed_node_with_a_stuck_request_is_shut_down_after_the_grace_period(stack):
    """del server is refused while the node has a connection; after 10 s
    healthcheckd shuts its sessions down and the server goes."""
    info, seed, text, hc, w, stats = start_all(stack)
    pid = projects_on(stack, text, "node12", n=1)[0]
    hu.server_mode(info.server_ports["node12"], "hang")
    result = {}

    def stuck_get():
        try:
            result["answer"] = harness.http_get(info.http_port, f"/{pid}/x", timeout=30)[0]
        except (OSError, http.client.HTTPException) as e:
            result["answer"] = f"error {e}"
    t = threading.Thread(target=stuck_get, daemon=True)
    t.start()
    stack.defer(lambda: t.join(10))
    harness.wait_until(lambda: current_sessions(info, "nodes_us-east", "node12") == 1, 5,
                       what="the stuck request on node12")
    t0 = time.monotonic()
    ru.write_atomic(seed, "".join(l for l in text.splitlines(True) if not l.startswith("node node12 ")))
    harness.wait_until(lambda: ru.metric(ru.read_metrics(stats), "seedgate_hc_haproxy_removals_pending") == 1,
                       5, what="node12 waiting for its connection")
    harness.wait_until(lambda: ("nodes_us-east", "node12") not in servers_state(info), 20, interval=0.1,
                       what="node12 deleted after the grace period")
    took = time.monotonic() - t0
    t.join(10)
    print(f"\nnode12 removed with a stuck request: deleted after {took:.1f} s; the stuck request "
          f"got: {result.get('answer')}")
    assert took >= 9.5
    assert "shutting its sessions down" in hc.log()
    assert ru.metric(ru.read_metrics(stats), "seedgate_hc_haproxy_removals_pending") == 0
    assert failed_commands(stats) == 0, hc.log()
