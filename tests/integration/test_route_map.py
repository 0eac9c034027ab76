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
import threading
import time

import harness
import health_util as hu
import route_util as ru
import stack_util
from test_health_failover import Load, served_by as get

SLOW = harness.SLOW
IDS = ru.random_ids(200, seed=11)


def show_map(info, i):
    """{project id: value} of agent i's map in HAProxy's current worker
    (the map's keys are "<id>/": haproxy.cfg looks up `path,bytes(1,37)`)."""
    out = stack_util.admin(info, f"show map {stack_util.map_path(info.env['SG_RUN_DIR'], i)}")
    entries = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3:
            assert len(f[1]) == 37 and f[1].endswith("/"), f"map key {f[1]!r} is not '<project id>/'"
            entries[f[1][:-1]] = f[2]
    return entries


def both_maps(info):
    a, b = show_map(info, 0), show_map(info, 1)
    for k, v in b.items():
        assert a.get(k, v) == v, f"the agents' maps disagree on {k}: {a[k]} / {v}"
    a.update(b)
    return a


def metric_sum(info, name, **labels):
    return sum(ru.metric(ru.read_metrics(p), name, **labels) or 0 for p in info.agent_stats_ports)


def start(stack, *, health=False, agent_args=(), nodes=3, agents=2, haproxy_env=None):
    ports = [harness.free_port() for _ in range(2 * (1 + nodes))]
    text, addrs = ru.seed_text(ports, hubs=1, nodes=nodes)
    seed = stack.write("seed.conf", text)
    feed = w = None
    if health:
        feed = stack.path("health.sock")
        hu.start_healthcheckd(stack, seed, feed=feed, haproxy_socks=[stack.path("haproxy.sock")])
    info = stack_util.start_stack(stack, seed, health_feed=feed, route_map=True, agent_args=agent_args,
                                  agents=agents, haproxy_env=haproxy_env)
    if health:
        w = hu.Feed(feed)
        for name in addrs:
            w.wait_state(name, "up", timeout=5)
        for port in info.agent_stats_ports:
            harness.wait_until(lambda p=port: ru.metric(ru.read_metrics(p), "seedgate_health_feed_connected") == 1,
                               5, what="route agents connected to the health feed")
    # the publishers reached HAProxy (their first batch cleared the maps)
    for port in info.agent_stats_ports:
        harness.wait_until(lambda p=port: ru.metric(ru.read_metrics(p), "seedgate_route_map_connected") == 1,
                           5, what="map publishers connected to HAProxy")
    return info, seed, text, addrs, w


def warm(info, pids):
    """Requests each project three times (an agent publishes a project on
    its second miss; with two agents, three misses give one of them two)
    until it is in a map; returns {pid: node}."""
    for pid in pids:
        for _ in range(3):
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
    # the lookup reads the path's bytes 1-37 ("<id>/"): a bare "/<id>" and
    # a first segment that only starts with an id both miss, and the agent
    # routes them: the project's node, and the hubs for what is no project
    pid = pids[0]
    assert get(info.http_port, f"/{pid}") == (200, placed[pid])
    status, by = get(info.http_port, f"/{pid}x/y")
    assert status == 200 and by.startswith("hub"), by
    assert stack_util.agent_decisions(info) == before + 2
    # HAProxy logs a request once its stream ends, maybe after the client
    # read the response: wait for every line
    hits = harness.wait_until(lambda: (lambda h: h if len(h) == len(pids) else None)(
        [l for l in info.haproxy.log().splitlines() if "/again " in l]), 2, what="the log lines of the hits")
    assert all(" map=nodes_us-east/" in l for l in hits), hits[:3]
    # a project asked for once is not published (the doorkeeper): a stream
    # of never-seen projects costs HAProxy no map write
    once = IDS[100]
    assert get(info.http_port, f"/{once}/x")[0] == 200
    # hub paths never enter a map
    assert get(info.http_port, "/")[0] == 200
    assert all(len(k) == 36 for k in both_maps(info))
    harness.wait_until(lambda: metric_sum(info, "seedgate_route_map_first_misses_total") >= len(pids) + 1, 2,
                       what="first misses counted")
    assert once not in both_maps(info)
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


def agent_entries(info, i):
    return ru.metric(ru.read_metrics(info.agent_stats_ports[i]), "seedgate_route_map_entries")


def test_two_agents_each_fill_their_own_map(stack):
    info, seed, _text, _addrs, _w = start(stack)
    pids = IDS[:40]
    placed = warm(info, pids)
    # each map holds exactly what its own agent says it published, and the
    # two agree wherever both answered the same project
    for i in (0, 1):
        harness.wait_until(lambda i=i: agent_entries(info, i) == len(show_map(info, i)), 2,
                           what=f"agent {i + 1}'s map as it counts it")
    assert len(show_map(info, 0)) > 0 and len(show_map(info, 1)) > 0
    for pid in pids:
        assert placed[pid] == stack_util.where(seed, pid, dc="us-east"), pid
    assert metric_sum(info, "seedgate_route_map_api_errors_total", kind="command") == 0


def poll_change(info, pred, t0, what, timeout=1.0):
    """Polls the maps until pred(maps) holds; returns the seconds since t0."""
    harness.wait_until(lambda: pred(both_maps(info)), timeout, interval=0.002, what=what)
    return time.monotonic() - t0


def seed_generation_moved(info, gen):
    """The monotonic time at which every agent reports seed generation gen."""
    harness.wait_until(lambda: all(ru.metric(ru.read_metrics(p), "seedgate_seed_generation") == gen
                                   for p in info.agent_stats_ports), 3, interval=0.002,
                       what=f"seed generation {gen} in every agent")
    return time.monotonic()


def test_drain_and_directory_change_follow_within_100ms(stack):
    # one agent: every entry in one map, so the directory change below
    # changes more entries than the del threshold (64) and rebuilds
    info, seed, text, _addrs, _w = start(stack, agents=1)
    pids = IDS[:150]
    placed = warm(info, pids)
    on11 = [p for p in pids if placed[p] == "node11"]
    assert on11

    # a drain (seedctl drain writes state=drain): node11's projects move
    drained = "\n".join(l + " state=drain" if l.startswith("node node11 ") else l for l in text.splitlines()) + "\n"
    ru.write_atomic(seed, drained)
    t_applied = seed_generation_moved(info, 2)
    took = poll_change(info, lambda m: not any(v.endswith("/node11") for v in m.values()), t_applied,
                       "no entry names the drained node11")
    print(f"\ndrain of node11 ({len(on11)} of {len(pids)} entries): map followed within {1000 * took:.1f} ms "
          f"of the agents applying it")
    assert took < 0.1, took
    for p in on11[:5]:
        assert get(info.http_port, f"/{p}/d")[1] == stack_util.where(seed, p, dc="us-east")

    # a directory change: a new us-east node takes over part of the projects
    # (more than the del threshold: a versioned rebuild)
    port = harness.free_port()
    info.servers["node14"] = stack.start("node14", [harness.bin_path("demo-server"), "--name", "node14",
                                                    "--listen", f"127.0.0.1:{port}"])
    stack.wait_port(port, info.servers["node14"])
    stack_util.admin(info, f"add server nodes_us-east/node14 127.0.0.1:{port} weight 0")
    stack_util.admin(info, "enable server nodes_us-east/node14")
    grown = drained.replace("node node12 ", f"node node14 127.0.0.1:{port} dc=us-east weight=40\nnode node12 ", 1)
    want = {p: stack_util.where(grown_path(stack, grown), p, dc="us-east") for p in pids}
    movers = [p for p in pids if want[p] == "node14"]
    assert len(movers) > 64, len(movers)
    before = metric_sum(info, "seedgate_route_map_rebuilds_total")
    ru.write_atomic(seed, grown)
    t_applied = seed_generation_moved(info, 3)
    took = poll_change(info, lambda m: all(m.get(p, "/node14").endswith("/node14") for p in movers), t_applied,
                       "moved projects on node14 in the map")
    print(f"node14 added ({len(movers)} entries move, rebuilt): map followed within {1000 * took:.1f} ms")
    assert took < 0.1, took
    assert metric_sum(info, "seedgate_route_map_rebuilds_total") > before
    assert all(v.split("/")[1] == want[k] for k, v in both_maps(info).items())
    assert get(info.http_port, f"/{movers[0]}/n")[1] == "node14"


def grown_path(stack, text):
    return stack.write("seed-next.conf", text)


def test_haproxy_reload_under_load_misroutes_nothing(stack):
    info, seed, _text, _addrs, _w = start(stack)
    pids = IDS[:20]
    placed = warm(info, pids)
    bad, ok = [], [0]
    stop = False

    def run(k):
        i = k
        while not stop:
            p = pids[i % len(pids)]
            i += 1
            try:
                st, by = get(info.http_port, f"/{p}/r")
            except OSError as e:
                st, by = repr(e), None
            if st != 200 or by != placed[p]:
                bad.append((p, st, by))
            else:
                ok[0] += 1
    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(3)]
    for t in threads:
        t.start()
    harness.wait_until(lambda: ok[0] > 50, 5, what="load running")
    old = stack_util.admin(info, "show info")
    stack_util.reload_haproxy(info)
    harness.wait_until(lambda: stack_util.admin(info, "show info").split("Pid: ")[1].split()[0] !=
                       old.split("Pid: ")[1].split()[0], 5, what="a new HAProxy worker")
    harness.wait_until(lambda: metric_sum(info, "seedgate_route_map_resets_total", cause="reload") >= 2, 5,
                       what="both publishers noticed the new worker")
    harness.wait_until(lambda: all(p in both_maps(info) for p in pids), 5, what="the new worker's maps filled")
    n = ok[0]
    harness.wait_until(lambda: ok[0] > n + 50, 5, what="load after the maps are filled")
    stop = True
    for t in threads:
        t.join(10)
    print(f"\nHAProxy reloaded under load: {ok[0]} GETs on the right node, {len(bad)} failed or misrouted")
    assert not bad, bad[:5]


def test_map_never_exceeds_its_cap_and_hot_projects_stay(stack):
    # one agent, and every hit tells it (SG_MAP_TOUCH_EVERY=1): which
    # entries are recent is then exact, not sampled
    info, _seed, _text, _addrs, _w = start(stack, agent_args=["--map-max", "8"], agents=1,
                                           haproxy_env={"SG_MAP_TOUCH_EVERY": "1"})
    hot = IDS[0]
    cold = IDS[1:41]
    biggest = 0
    assert get(info.http_port, f"/{hot}/h")[0] == 200
    for p in cold:
        for _ in range(2):              # published on its second miss
            assert get(info.http_port, f"/{p}/c")[0] == 200
        for _ in range(3):
            assert get(info.http_port, f"/{hot}/h")[0] == 200
        biggest = max(biggest, len(show_map(info, 0)))
    harness.wait_until(lambda: metric_sum(info, "seedgate_route_map_evictions_total") > 0, 2, what="evictions")
    print(f"\ncap 8: largest map seen {biggest} entries; evictions "
          f"{metric_sum(info, 'seedgate_route_map_evictions_total')}, touches "
          f"{metric_sum(info, 'seedgate_route_map_touches_total')}")
    assert biggest <= 8
    assert metric_sum(info, "seedgate_route_map_touches_total") > 0
    assert agent_entries(info, 0) <= 8
    assert show_map(info, 1) == {}
    assert hot in show_map(info, 0)


def test_every_project_asked_for_twice_is_published(stack):
    # The doorkeeper once kept one hash per slot: two projects sharing a
    # slot, asked for in turn, wiped each other's first miss forever and
    # were never published (30 of the bench's 1000 hot projects went to the
    # agent on every request). A small cap makes a small doorkeeper, where
    # 60 projects share slots for sure.
    info, _seed, _text, _addrs, _w = start(stack, agent_args=["--map-max", "100"], agents=1)
    pids = ru.random_ids(60, seed=23)
    for _ in range(3):
        for p in pids:
            assert get(info.http_port, f"/{p}/r")[0] == 200
    harness.wait_until(lambda: len(show_map(info, 0)) == len(pids), 3,
                       what="every project asked for in turn published")
    missing = set(pids) - set(show_map(info, 0))
    assert not missing, f"never published: {sorted(missing)}"
    assert metric_sum(info, "seedgate_route_map_first_misses_total") <= len(pids)
