"""route-agent and healthcheckd reading their seed directory from a real
3-member etcd cluster on loopback (etcd_util.EtcdCluster), with
--seed etcd://HOST:PORT,.../PREFIX.

What it proves: a directory written into etcd gives the same decisions as
the same text file; a change is followed within 1 s (route-agent and
healthcheckd); with one member killed (the one the agent watches) changes
still propagate; a watch whose revision was compacted away is recovered by
a re-list; a daemon restarted while every member is down starts from its
local copy, says so, and resumes following etcd when it returns;
malformed values (bad record, unknown dc, garbage bytes, key/name
mismatch) are reported with their key and change nothing.
"""
import os
import random
import re
import signal
import socket
import subprocess
import time

import pytest

import etcd_util
import harness
import health_util
import route_util as ru

SLOW = harness.SLOW
PREFIX = "/sg/test"

pytestmark = pytest.mark.skipif(not etcd_util.have_etcd(), reason="etcd not installed")


def seed(pins=()):
    """2 dcs x (1 hub + 3 nodes) on addresses the agent never dials."""
    text, _ = ru.seed_text(ru.port_range(21000), pins=pins)
    return text


def route_key(v):
    return (v.get("backend"), v.get("server"), v.get("why"))


def decisions(agent, ids):
    return [route_key(v) for v in agent.decide_many(["/" + i for i in ids])]


def revision_metric(agent):
    return ru.metric(agent.metrics(), "seedgate_seed_revision")


def start_etcd_agent(stack, cluster, name="route-agent", members=None, extra=()):
    cache = stack.path(f"{name}.seed-cache")
    return ru.start_agent(stack, cluster.spec(PREFIX, members), name=name,
                          extra=["--seed-cache", cache, *extra])


def node_line(text, name):
    return next(line for line in text.splitlines() if line.startswith(f"node {name} "))


def wait_revision(agent, rev, timeout=5.0):
    """Until the agent uses etcd revision rev or later."""
    harness.wait_until(lambda: revision_metric(agent) >= rev, timeout,
                       what=f"agent at etcd revision {rev}")


@pytest.fixture
def cluster(stack):
    return etcd_util.EtcdCluster(stack)


def test_same_decisions_as_the_file(stack, cluster):
    ids = ru.random_ids(300, seed=7)
    text = seed(pins=[(ids[0], ["node12", "node21"])])
    rev = cluster.write_directory(PREFIX, text)
    path = stack.write("seed.conf", text)
    a_etcd = start_etcd_agent(stack, cluster)
    a_file = ru.start_agent(stack, path, name="route-agent-file")
    assert decisions(a_etcd, ids) == decisions(a_file, ids)
    assert a_etcd.decide("/" + ids[0])["why"] == "pinned"
    harness.wait_until(lambda: ru.metric(a_etcd.metrics(), "seedgate_seed_etcd_connected") == 1, 5.0,
                       what="watch established")
    m = a_etcd.metrics()
    assert ru.metric(m, "seedgate_seed_revision") == rev
    assert ru.metric(m, "seedgate_seed_source_info", kind="etcd") == 1
    assert ru.metric(a_file.metrics(), "seedgate_seed_revision") == 1     # a file: generation
    # the local copy is the same directory, text form
    harness.wait_until(lambda: os.path.exists(stack.path("route-agent.seed-cache")), 5.0,
                       what="local copy written")
    a_copy = ru.start_agent(stack, stack.path("route-agent.seed-cache"), name="route-agent-copy")
    assert decisions(a_copy, ids) == decisions(a_file, ids)
    # -c judges what etcd holds
    r = subprocess.run([harness.bin_path("route-agent"), "-c", "--seed", cluster.spec(PREFIX)],
                               capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "2 datacenters, 2 hubs, 6 nodes, 1 pins" in r.stdout
    # healthcheckd: the same targets
    hc = health_util.start_healthcheckd(stack, cluster.spec(PREFIX), feed=stack.path("feed.sock"),
                                        args=["--seed-cache", stack.path("hc.seed-cache")])
    harness.wait_until(lambda: "checking 8 targets" in hc.log(), 10.0, what="healthcheckd loaded")


def test_change_followed_within_a_second(stack, cluster):
    ids = ru.random_ids(50, seed=3)
    text = seed()
    cluster.write_directory(PREFIX, text)
    agent = start_etcd_agent(stack, cluster)
    hc = health_util.start_healthcheckd(stack, cluster.spec(PREFIX), feed=stack.path("feed.sock"),
                                        args=["--seed-cache", stack.path("hc.seed-cache")])
    pid = ids[0]
    v = agent.decide("/" + pid)
    node = v["server"]
    # drain the project's primary: its projects go to their next entry
    rev = cluster.put(f"{PREFIX}/g/1/node/{node}", node_line(text, node) + " state=drain")
    v2, took = ru.wait_decision(agent, "/" + pid, lambda x: x.get("server") not in (None, node),
                                timeout=1.0, what="drain followed")
    assert v2["why"] in ("replica", "remote-dc"), v2
    wait_revision(agent, rev)
    harness.wait_until(lambda: re.search(rf"reloaded the seed directory \(etcd revision {rev}\)", hc.log()),
                       1.0, what="healthcheckd followed")
    # and back
    cluster.put(f"{PREFIX}/g/1/node/{node}", node_line(text, node))
    ru.wait_decision(agent, "/" + pid, lambda x: x.get("server") == node, timeout=1.0, what="undrain")


def test_one_member_killed_changes_still_propagate(stack, cluster):
    ids = ru.random_ids(50, seed=4)
    text = seed()
    cluster.write_directory(PREFIX, text)
    # member 0 first: the agent lists and watches there
    agent = start_etcd_agent(stack, cluster)
    pid = ids[1]
    node = agent.decide("/" + pid)["server"]
    cluster.kill(0)
    cluster.put(f"{PREFIX}/g/1/node/{node}", node_line(text, node) + " state=drain")
    ru.wait_decision(agent, "/" + pid, lambda x: x.get("server") not in (None, node),
                     timeout=5.0, what="change after a member was killed")
    # once moved, the next change is followed within a second again
    harness.wait_until(lambda: ru.metric(agent.metrics(), "seedgate_seed_etcd_connected") == 1, 5.0)
    cluster.put(f"{PREFIX}/g/1/node/{node}", node_line(text, node))
    ru.wait_decision(agent, "/" + pid, lambda x: x.get("server") == node, timeout=1.0,
                     what="next change with a member down")


def test_compacted_watch_is_recovered_by_a_relist(stack, cluster):
    ids = ru.random_ids(50, seed=5)
    text = seed()
    cluster.write_directory(PREFIX, text)
    agent = start_etcd_agent(stack, cluster)
    pid = ids[2]
    node = agent.decide("/" + pid)["server"]
    # Freeze the agent, take its watch away (its member dies), write, and
    # compact past everything it saw: when it wakes, its watch can only be
    # reopened from a compacted revision, so it must list again.
    agent.proc.signal(signal.SIGSTOP)
    try:
        cluster.kill(0)
        for k in range(5):
            cluster.put(f"{PREFIX}/g/1/node/{node}", node_line(text, node) + f" weight={11 + k}")
        cluster.put(f"{PREFIX}/g/1/node/{node}", node_line(text, node) + " state=drain")
        cluster.compact(cluster.revision())
    finally:
        agent.proc.signal(signal.SIGCONT)
    ru.wait_decision(agent, "/" + pid, lambda x: x.get("server") not in (None, node), timeout=10.0,
                     what="state after compaction")
    agent.wait_log(r"compacted", timeout=5.0)
    wait_revision(agent, cluster.revision())


def test_restart_while_etcd_is_down_starts_from_the_local_copy(stack, cluster):
    ids = ru.random_ids(100, seed=6)
    text = seed()
    rev = cluster.write_directory(PREFIX, text)
    agent = start_etcd_agent(stack, cluster)
    hc_args = ["--seed-cache", stack.path("hc.seed-cache")]
    hc = health_util.start_healthcheckd(stack, cluster.spec(PREFIX), feed=stack.path("feed.sock"), args=hc_args)
    before = decisions(agent, ids)
    harness.wait_until(lambda: os.path.exists(stack.path("route-agent.seed-cache"))
                       and os.path.exists(stack.path("hc.seed-cache")), 5.0, what="local copies written")
    cluster.kill_all()
    # the running agent keeps serving and says etcd is gone
    harness.wait_until(lambda: ru.metric(agent.metrics(), "seedgate_seed_etcd_connected") == 0, 5.0)
    assert decisions(agent, ids) == before
    agent.wait_log(r"seed: etcd: .*keeping etcd revision %d" % rev, timeout=5.0)
    m = agent.metrics()
    assert ru.metric(m, "seedgate_seed_sync_errors_total") >= 1
    assert ru.metric(m, "seedgate_seed_revision") == rev
    # restarted while etcd is down: the local copy, said so
    agent.proc.stop()
    agent2 = start_etcd_agent(stack, cluster, name="route-agent")
    agent2.wait_log(r"starting from the local copy .*route-agent\.seed-cache \(etcd revision %d\)" % rev)
    assert decisions(agent2, ids) == before
    m = agent2.metrics()
    assert ru.metric(m, "seedgate_seed_from_local_copy") == 1
    assert ru.metric(m, "seedgate_seed_revision") == rev
    # healthcheckd too (its copy has no rings to build: ROUTER_LOAD_NO_RINGS)
    hc.stop()
    hc2 = health_util.start_healthcheckd(stack, cluster.spec(PREFIX), feed=stack.path("feed2.sock"),
                                         args=hc_args, name="healthcheckd-2")
    harness.wait_until(lambda: re.search(r"starting from the local copy .*hc\.seed-cache \(etcd revision %d\)"
                                         % rev, hc2.log()), 5.0, what="healthcheckd from its local copy")
    assert "checking 8 targets" in hc2.log()
    # etcd returns: the agent syncs and follows changes again
    cluster.restart_all()
    harness.wait_until(lambda: ru.metric(agent2.metrics(), "seedgate_seed_etcd_connected") == 1, 15.0,
                       what="agent reconnected")
    # the watch runs as soon as the listing is in; the directory built from
    # it replaces the local copy a moment later
    harness.wait_until(lambda: ru.metric(agent2.metrics(), "seedgate_seed_from_local_copy") == 0, 10.0,
                       what="agent on etcd's directory again")
    pid = ids[0]
    node = agent2.decide("/" + pid)["server"]
    cluster.put(f"{PREFIX}/g/1/node/{node}", node_line(text, node) + " state=drain")
    ru.wait_decision(agent2, "/" + pid, lambda x: x.get("server") not in (None, node), timeout=1.0,
                     what="change after etcd returned")


def test_no_etcd_and_no_local_copy_is_a_clear_error(stack, cluster):
    cluster.kill_all()
    r = subprocess.run([harness.bin_path("route-agent"), "--listen", f"127.0.0.1:{harness.free_port()}",
                                "--seed", cluster.spec(PREFIX), "--seed-cache", stack.path("none.seed")],
                               capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "Couldn't connect to server" in r.stderr and "no usable local copy" in r.stderr, r.stderr


@pytest.mark.parametrize("key,value,message", [
    ("g/1/node/bad", "node bad 127.0.0.1:21900 dc=nowhere", "unknown datacenter 'nowhere'"),
    ("g/1/node/bad", b"\xff\xfe garbage \x00\x01", ""),
    ("g/1/node/bad", "node other 127.0.0.1:21900 dc=us-east", ""),
    ("g/1/hub/bad", "hub bad 127.0.0.1 dc=us-east", ""),
    ("g/1/project/not-a-uuid", "project not-a-uuid node11", ""),
])
def test_malformed_values_are_reported_with_their_key(stack, cluster, key, value, message):
    ids = ru.random_ids(100, seed=8)
    text = seed()
    rev = cluster.write_directory(PREFIX, text)
    agent = start_etcd_agent(stack, cluster)
    hc = health_util.start_healthcheckd(stack, cluster.spec(PREFIX), feed=stack.path("feed.sock"),
                                        args=["--seed-cache", stack.path("hc.seed-cache")])
    before = decisions(agent, ids)
    cluster.put(f"{PREFIX}/{key}", value)
    full = re.escape(f"{PREFIX}/{key}: ") + re.escape(message)
    agent.wait_log(r"seed reload failed, keeping generation 1 .*: " + full, timeout=5.0)
    harness.wait_until(lambda: re.search(r"reload \(etcd revision \d+\) failed.*: " + full, hc.log()),
                       5.0, what="healthcheckd reports the key")
    assert decisions(agent, ids) == before
    m = agent.metrics()
    assert ru.metric(m, "seedgate_seed_revision") == rev
    assert ru.metric(m, "seedgate_seed_sync_errors_total") >= 1
    assert ru.metric(m, "seedgate_seed_reloads_total", result="error") >= 1
    # removing the bad key heals it: the next directory loads
    cluster.delete(f"{PREFIX}/{key}")
    harness.wait_until(lambda: ru.metric(agent.metrics(), "seedgate_seed_reloads_total", result="ok") >= 1,
                       5.0, what="good directory again")
    assert decisions(agent, ids) == before


@pytest.mark.parametrize("rng_seed", [12, 34, 56])
def test_incremental_updates_match_a_fresh_listing(stack, cluster, rng_seed):
    """Changes are applied to the last listing, not re-listed: after a
    random series of puts and deletes (nodes, pins, drains, registered
    nodes under live/), in bursts and one by one, the agent routes exactly
    like an agent that listed the final directory from scratch."""
    rng = random.Random(rng_seed)
    ids = ru.random_ids(300, seed=13)
    text = seed()
    cluster.write_directory(PREFIX, text)
    agent = start_etcd_agent(stack, cluster)
    g = f"{PREFIX}/g/1"
    nodes = {line.split()[1]: line for line in text.splitlines() if line.startswith("node ")}
    extra, pins, live = [], {}, []
    port = 21500
    rev = 0
    for step in range(40):
        op = rng.choice(["add", "del", "pin", "unpin", "drain", "live", "unlive"])
        if op == "add":
            port += 1
            name = f"x{port}"
            extra.append(name)
            rev = cluster.put(f"{g}/node/{name}", f"node {name} 127.0.0.1:{port} dc={rng.choice(['us-east', 'eu-west'])}")
        elif op == "del" and extra:
            name = extra.pop(rng.randrange(len(extra)))
            if any(name in v for v in pins.values()):
                extra.append(name)
                continue
            rev = cluster.delete(f"{g}/node/{name}")
        elif op == "pin":
            pid = rng.choice(ids)
            pins[pid] = rng.sample(sorted(nodes), 2)
            rev = cluster.put(f"{g}/project/{pid}", f"project {pid} {' '.join(pins[pid])}")
        elif op == "unpin" and pins:
            pid = rng.choice(sorted(pins))
            del pins[pid]
            rev = cluster.delete(f"{g}/project/{pid}")
        elif op == "drain":
            name = rng.choice(sorted(nodes))
            st = rng.choice(["", " state=drain"])
            rev = cluster.put(f"{g}/node/{name}", nodes[name] + st)
        elif op == "live":
            port += 1
            name = f"l{port}"
            live.append(name)
            rev = cluster.put(f"{PREFIX}/live/node/{name}", f"node {name} 127.0.0.1:{port} dc=us-east")
        elif op == "unlive" and live:
            rev = cluster.delete(f"{PREFIX}/live/node/{live.pop(rng.randrange(len(live)))}")
        if rng.random() < 0.3:
            time.sleep(0.08)     # let some changes be applied one by one, others in bursts
    rev = max(rev, cluster.put(f"{g}/replicas", "replicas 3"))
    wait_revision(agent, rev, timeout=10.0)
    fresh = start_etcd_agent(stack, cluster, name="route-agent-fresh")
    assert revision_metric(fresh) == revision_metric(agent) == rev
    assert decisions(agent, ids) == decisions(fresh, ids)
    assert "seed reload failed" not in agent.log()


def test_file_source_deleted_file_and_metrics(stack):
    """The same source serves --seed FILE: a deleted seed file is logged
    once and the last good directory stays; both daemons show the seed
    metrics (a generation counter, the last error) on /metrics."""
    ids = ru.random_ids(50, seed=14)
    path = stack.write("seed.conf", seed())
    agent = ru.start_agent(stack, path)
    hc_stats = harness.free_port()
    hc = health_util.start_healthcheckd(stack, path, feed=stack.path("feed.sock"), stats_port=hc_stats)
    before = decisions(agent, ids)
    os.unlink(path)
    msg = f"seed file {path} deleted: keeping the last good directory"
    agent.wait_log(re.escape(msg))
    harness.wait_until(lambda: msg in hc.log(), 5.0, what="healthcheckd says the file is gone")
    assert decisions(agent, ids) == before
    for m in (agent.metrics(), ru.read_metrics(hc_stats)):
        assert ru.metric(m, "seedgate_seed_source_info", kind="file") == 1
        assert ru.metric(m, "seedgate_seed_revision") == 1
        assert ru.metric(m, "seedgate_seed_sync_errors_total") >= 1
        assert ru.metric(m, "seedgate_seed_last_error_info", error=msg) == 1
    agent.proc.signal(signal.SIGHUP)         # still gone: not said again
    time.sleep(0.3)
    assert agent.log().count(msg) == 1
    stack.write("seed.conf", seed())
    harness.wait_until(lambda: ru.metric(agent.metrics(), "seedgate_seed_revision") == 2, 5.0,
                       what="file back")


def test_silent_watch_is_reopened_elsewhere(stack, cluster):
    """A member that stops answering without closing anything (SIGSTOP:
    the kernel keeps its TCP connections, even keepalives, alive) leaves
    the agent's watch silent. After 30 s without a byte the agent reopens
    the watch on the next member from its last revision, and follows the
    change made meanwhile."""
    ids = ru.random_ids(20, seed=15)
    text = seed()
    cluster.write_directory(PREFIX, text)
    agent = start_etcd_agent(stack, cluster)      # lists and watches on member 0
    pid = ids[0]
    node = agent.decide("/" + pid)["server"]
    cluster.signal(0, signal.SIGSTOP)
    try:
        # write through the live members only (member 0 would not answer)
        rev = cluster.put(f"{PREFIX}/g/1/node/{node}", node_line(text, node) + " state=drain",
                          members=[1, 2], timeout=30.0)
        ru.wait_decision(agent, "/" + pid, lambda x: x.get("server") not in (None, node), timeout=45.0,
                         what="change followed after the silence bound")
        wait_revision(agent, rev)
        assert "seed reload failed" not in agent.log()
    finally:
        cluster.signal(0, signal.SIGCONT)


def test_sigterm_during_the_first_sync_is_honoured(stack):
    """etcd accepts connections but never answers: the first sync waits
    (up to 10 s), then the agent starts from its local copy. A SIGTERM
    sent meanwhile stops it then, instead of being lost."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)                 # the kernel accepts; nobody answers
    stack.defer(silent.close)
    cache = stack.write("copy.seed", seed())
    port = harness.free_port()
    p = stack.start("route-agent", [harness.bin_path("route-agent"), "--listen", f"127.0.0.1:{port}",
                                    "--seed", f"etcd://127.0.0.1:{silent.getsockname()[1]}{PREFIX}",
                                    "--seed-cache", cache])
    # its first request arriving proves its signal handlers are in place
    silent.settimeout(10 * SLOW)
    conn, _ = silent.accept()
    stack.defer(conn.close)
    p.signal(signal.SIGTERM)
    assert p.popen.wait(30 * SLOW) == 0
    log = p.log()
    assert "starting from the local copy" in log and "stopping (SIGTERM)" in log, log


def test_writes_right_after_a_generation_switch_are_kept(stack, cluster):
    """A new generation imported (written beside the one in use, then
    PREFIX/current switched, then the old one deleted) and written to at
    once: whatever the timing against the agent's re-list, the agent ends
    routing like a fresh listing of the final directory."""
    ids = ru.random_ids(200, seed=16)
    text = seed()
    cluster.write_directory(PREFIX, text)
    agent = start_etcd_agent(stack, cluster)
    nodes = {line.split()[1]: line for line in text.splitlines() if line.startswith("node ")}
    for gen in ("2", "3", "4"):
        cluster.write_directory(PREFIX, text, gen=gen)
        for k, name in enumerate(sorted(nodes)[:4]):
            rev = cluster.put(f"{PREFIX}/g/{gen}/node/{name}",
                              nodes[name] + (" state=drain" if (k + int(gen)) % 2 else ""))
    wait_revision(agent, rev, timeout=10.0)
    fresh = start_etcd_agent(stack, cluster, name="route-agent-fresh")
    assert decisions(agent, ids) == decisions(fresh, ids)
