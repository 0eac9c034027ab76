"""The whole stack (real HAProxy with the shipped haproxy-conf, two route
agents, demo servers: stack_util.start_stack) with the agents reading the
seed directory from a real 3-member etcd cluster.

What it proves: with every etcd member killed under load, routing goes on
with the last good directory (0 failed requests, projects still on their
nodes), the agents report etcd as gone in /metrics; when etcd returns they
follow changes again (a drained node's projects move, still 0 failed
requests).
"""

import pytest

import etcd_util
import harness
import route_util as ru
import stack_util

SLOW = harness.SLOW
PREFIX = "/sg/stack"

pytestmark = pytest.mark.skipif(not etcd_util.have_etcd(), reason="etcd not installed")


def agents_metric(info, name):
    return [ru.metric(ru.read_metrics(p), name) for p in info.agent_stats_ports]


def test_all_members_down_routing_goes_on(stack):
    cluster = etcd_util.EtcdCluster(stack)
    ports = [harness.free_port() for _ in range(8)]
    text, _ = ru.seed_text(ports, hubs=1, nodes=3)
    seed = stack.write("seed.conf", text)
    cluster.write_directory(PREFIX, text)
    info = stack_util.start_stack(stack, seed, agent_seed=cluster.spec(PREFIX))
    ids = ru.random_ids(40, seed=11)
    want = ru.seedctl_where(seed, ids)
    paths = [f"/{pid}/x" for pid in ids] + ["/"]
    for pid in ids:
        assert stack_util.served_by(info.http_port, f"/{pid}/x") == want[pid][0]

    load = stack_util.Load(info.http_port, paths)
    load.start()
    stack.defer(load.stop)
    try:
        harness.wait_until(lambda: load.ok > 50, 10.0, what="load running")
        cluster.kill_all()
        harness.wait_until(lambda: agents_metric(info, "seedgate_seed_etcd_connected") == [0, 0], 10.0,
                           what="agents see etcd gone")
        n = load.ok
        harness.wait_until(lambda: load.ok > n + 200, 20.0, what="requests while etcd is down")
        for pid in ids:      # still on their nodes: the last good directory
            assert stack_util.served_by(info.http_port, f"/{pid}/x") == want[pid][0]

        cluster.restart_all()
        harness.wait_until(lambda: agents_metric(info, "seedgate_seed_etcd_connected") == [1, 1], 15.0,
                           what="agents reconnected")
        # a change after the outage is followed: drain a primary
        node = want[ids[0]][0]
        line = next(x for x in text.splitlines() if x.startswith(f"node {node} "))
        rev = cluster.put(f"{PREFIX}/g/1/node/{node}", line + " state=drain")
        moved = ru.seedctl_where(seed, ids, down=[node])
        harness.wait_until(lambda: min(agents_metric(info, "seedgate_seed_revision")) >= rev, 5.0,
                           what="both agents at the new revision")
        harness.wait_until(lambda: stack_util.served_by(info.http_port, f"/{ids[0]}/x") == moved[ids[0]][0], 5.0,
                           what="drain followed through HAProxy")
        n = load.ok
        harness.wait_until(lambda: load.ok > n + 100, 20.0, what="requests after the change")
    finally:
        load.stop()
    assert not load.failures, load.failures[:5]
    for pid in ids:
        assert load.last[f"/{pid}/x"] == moved[pid][0], (pid, load.last[f"/{pid}/x"], moved[pid])
