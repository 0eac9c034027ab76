"""A node registered in etcd by `seedctl register --ttl 2` (its record lives
under PREFIX/live/ on a lease), behind the real stack (HAProxy, two route
agents reading etcd, demo servers).

What it proves: the agents route the registered node's projects to it; when
the register process is SIGKILLed (no revoke: the lease must expire), the
node leaves the directory within TTL + 1 s and its projects move to their
replica, with 0 failed GETs through HAProxy; the directory was imported
with `seedctl import`.
"""
import subprocess
import time

import pytest

import etcd_util
import harness
import route_util as ru
import stack_util

SLOW = harness.SLOW
PREFIX = "/sg/reg"
TTL = 2

pytestmark = pytest.mark.skipif(not etcd_util.have_etcd(), reason="etcd not installed")


def test_killed_register_leaves_within_ttl(stack):
    cluster = etcd_util.EtcdCluster(stack)
    ports = [harness.free_port() for _ in range(9)]
    text, addrs = ru.seed_text(ports[:8], hubs=1, nodes=3)
    reg_port = ports[8]
    reg_line = f"node nodeR 127.0.0.1:{reg_port} dc=us-east weight=10"
    # HAProxy's backends and the demo servers come from the full file; etcd
    # holds the directory without nodeR, which registers itself
    full = stack.write("seed-full.conf", text + reg_line + "\n")
    base = stack.write("seed-base.conf", text)
    r = subprocess.run([harness.bin_path("seedctl"), "import", "--etcd", cluster.spec(PREFIX), base],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info = stack_util.start_stack(stack, full, agent_seed=cluster.spec(PREFIX))

    reg = stack.start("register", [harness.bin_path("seedctl"), "register", "--etcd", cluster.spec(PREFIX),
                                   "--ttl", str(TTL), reg_line])
    ids = ru.random_ids(400, seed=21)
    with_r = ru.seedctl_where(full, ids)
    without_r = ru.seedctl_where(base, ids)
    mine = [pid for pid in ids if with_r[pid][0] == "nodeR"]
    assert len(mine) >= 10, "nodeR should be primary for some projects"
    # registered: its projects reach it through HAProxy
    for pid in mine[:5]:
        harness.wait_until(lambda pid=pid: stack_util.served_by(info.http_port, f"/{pid}/x") == "nodeR", 10.0,
                           what="registered node routed to")

    load = stack_util.Load(info.http_port, [f"/{pid}/x" for pid in mine] + ["/"])
    load.start()
    stack.defer(load.stop)
    try:
        harness.wait_until(lambda: load.ok > 50, 10.0, what="load running")
        t0 = time.monotonic()
        reg.kill()            # SIGKILL: nothing revokes the lease, it must expire
        probe = mine[0]
        harness.wait_until(lambda: stack_util.served_by(info.http_port, f"/{probe}/x") == without_r[probe][0],
                           TTL + 1.0, interval=0.02, what=f"nodeR gone within TTL + 1 s ({TTL + 1} s)")
        took = time.monotonic() - t0
        assert cluster.get(f"{PREFIX}/live/node/nodeR") is None
        for pid in mine:      # every project on its replica
            harness.wait_until(lambda pid=pid: stack_util.served_by(info.http_port, f"/{pid}/x") == without_r[pid][0],
                               2.0, what=f"{pid} on its replica")
        n = load.ok
        harness.wait_until(lambda: load.ok > n + 100, 20.0, what="requests after the move")
    finally:
        load.stop()
    assert not load.failures, load.failures[:5]
    print(f"nodeR left the directory {took:.2f} s after its register was killed (TTL {TTL} s)")
