"""`node-shards N`: a datacenter's nodes spread over N HAProxy backends.

HAProxy 2.6 to 3.2 resolve `use-server %[var(...)]` by scanning every
server of the backend, for every request routed to a node (about 10 ns a
server: bench/results/node-backends.md), so one nodes_<dc> backend makes
routing slower as the datacenter grows. With `node-shards N` in the
directory, `seedctl haproxy` writes nodes_<dc>_0 .. nodes_<dc>_<N-1>, each
node in the one its name hashes to, and the route agent, healthcheckd and
the map cache all name that backend.

What it proves, on the real stack (HAProxy with haproxy.cfg and the
generated backends, two route agents, healthcheckd on the runtime API):
* every node is in exactly one backend of its datacenter, the one the
  directory says, and nodes_<dc> no longer exists;
* projects are served by the node `seedctl where` names, per-request and
  with the map cache;
* a node killed: healthcheckd puts it in MAINT in its own backend and its
  projects go to their replica, with no failed request;
* a node appended to the directory is added at run time to its backend and
  serves its projects, without a reload.
"""

import harness
import health_util as hu
import route_util as ru
import stack_util
from test_health_failover import served_by
from test_live_backends import all_served_by, servers_state, start_server
from test_route_map import show_map
from test_seedctl import seedctl

SLOW = harness.SLOW
SHARDS = 4
IDS = ru.random_ids(200, seed=23)


def start(stack, route_map=False, agent_args=()):
    ports = [harness.free_port() for _ in range(16)]
    text, addrs = ru.seed_text(ports, hubs=2, nodes=6)
    text = f"node-shards {SHARDS}\n" + text
    seed = stack.write("seed.conf", text)
    feed = stack.path("health.sock")
    stats = harness.free_port()
    hc = hu.start_healthcheckd(stack, seed, feed=feed, stats_port=stats,
                               haproxy_socks=[stack.path("haproxy.sock")])
    info = stack_util.start_stack(stack, seed, health_feed=feed, route_map=route_map, agent_args=agent_args)
    w = hu.Feed(feed)
    for name in addrs:
        w.wait_state(name, "up", timeout=5)
    hu.wait_wired(info.agent_stats_ports, stats)
    return info, seed, text, hc, w, addrs


def shard_of(info):
    """{node: backend} from HAProxy's `show servers state`."""
    return {srv: be for (be, srv) in servers_state(info) if srv.startswith("node")}


def test_nodes_in_their_shard_backends_and_routed(stack):
    info, seed, text, _hc, _w, addrs = start(stack)
    gen = open(info.gen_cfg).read()
    assert "\nbackend nodes_us-east\n" not in gen
    for dc in ("us-east", "eu-west"):
        for k in range(SHARDS):
            assert f"\nbackend nodes_{dc}_{k}\n" in gen
    where = shard_of(info)
    nodes = sorted(n for n in addrs if n.startswith("node"))
    assert sorted(where) == nodes                 # each node once, in one backend
    for node, be in where.items():
        dc = "us-east" if node.startswith("node1") else "eu-west"
        assert be.startswith(f"nodes_{dc}_"), (node, be)
        assert f"\nbackend {be}\n" in gen
    # the nodes really are spread (12 names over 2 x 4 backends)
    assert len(set(where.values())) >= 4, where

    chosen = ru.seedctl_where(seed, IDS, dc="us-east")
    for pid in IDS[:40]:
        assert served_by(info.http_port, f"/{pid}/x") == (200, chosen[pid][0]), pid


def test_map_cache_routes_into_shard_backends(stack):
    # --map-admit-first: every miss publishes (the doorkeeper's second-miss
    # rule is test_route_map.py's business; here it would make the set of
    # published projects depend on which agent each request reached)
    info, seed, _text, _hc, _w, _addrs = start(stack, route_map=True, agent_args=["--map-admit-first"])
    chosen = ru.seedctl_where(seed, IDS, dc="us-east")
    ids = IDS[:30]
    # Publishing is asynchronous (the agent drains its workers' rings every
    # 10 ms, then one batch), so wait for the maps to hold every project.
    for _ in range(2):
        for pid in ids:
            assert served_by(info.http_port, f"/{pid}/x") == (200, chosen[pid][0]), pid

    def entries():
        return {**show_map(info, 0), **show_map(info, 1)}
    harness.wait_until(lambda: set(ids) <= set(entries()), 5 * SLOW, interval=0.02,
                       what="every project in an agent's map")
    where = shard_of(info)
    for pid, value in entries().items():
        backend, node = value.split("/")
        assert where[node] == backend, (pid, value)
        assert node == chosen[pid][0], (pid, value)
    # and requests answered from the map reach the same nodes
    for pid in ids:
        assert served_by(info.http_port, f"/{pid}/x") == (200, chosen[pid][0]), pid


def test_node_killed_and_node_added_in_their_backends(stack):
    info, seed, text, _hc, w, _addrs = start(stack)
    chosen = ru.seedctl_where(seed, IDS, dc="us-east")
    pid = next(p for p in IDS if chosen[p][0].startswith("node1"))
    node = chosen[pid][0]
    replica = ru.seedctl_where(seed, [pid], dc="us-east", down=[node])[pid][0]
    backend = shard_of(info)[node]
    path = f"/{pid}/x"
    assert served_by(info.http_port, path) == (200, node)

    info.servers[node].kill()
    w.wait_state(node, "down", timeout=3)
    harness.wait_until(lambda: served_by(info.http_port, path) == (200, replica), 2, interval=0.01,
                       what=f"{pid} on its replica {replica}")
    harness.wait_until(lambda: servers_state(info)[(backend, node)]["admin"] & 1, 2,
                       what=f"{backend}/{node} in MAINT")

    port = harness.free_port()
    start_server(stack, info, "node17", port)
    new_text = text + f"node node17 127.0.0.1:{port} dc=us-east weight=10\n"
    side = stack.write("with17.conf", new_text)
    chosen17 = ru.seedctl_where(side, IDS, dc="us-east")
    ids = [p for p in IDS if chosen17[p][0] == "node17"][:5]
    assert ids, "no project on node17"
    ru.write_atomic(seed, new_text)
    harness.wait_until(lambda: all_served_by(info, ids, "node17"), 5 * SLOW, interval=0.02,
                       what="projects served by node17")
    be17 = shard_of(info)["node17"]
    assert be17.startswith("nodes_us-east_"), be17
    # the backend the directory computes for it: the one seedctl haproxy writes
    r = seedctl("haproxy", "--seed", side)
    assert r.returncode == 0, r.stderr
    block = r.stdout[:r.stdout.index("server node17 ")].rsplit("\nbackend ", 1)[1]
    assert block.split("\n", 1)[0] == be17
