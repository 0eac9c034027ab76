"""route-agent on its own (no HAProxy): command line, decisions over SPOP
checked against `seedctl where`, reloads (SIGHUP, file edits, broken files),
the health feed, /metrics and a graceful SIGTERM."""
import os
import re
import signal
import subprocess
import time

import pytest

import harness
import route_util as ru
import spop_util as su

AGENT = None


def agent_bin():
    return harness.bin_path("route-agent")


def write_seed(stack, name="seed.conf", **kw):
    text, addrs = ru.seed_text(ru.port_range(), **kw)
    return stack.write(name, text), addrs


# ---------------------------------------------------------------------------
# Command line

def test_help_lists_every_option():
    r = subprocess.run([agent_bin(), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    for opt in ("--listen", "--seed", "--dc", "--workers", "--health", "--stats",
                "--max-frame-size", "--idle-timeout", "-c", "--syslog"):
        assert opt in r.stdout, opt


def test_usage_errors_exit_2(stack):
    seed, _ = write_seed(stack)
    for argv in ([], ["--listen", "127.0.0.1:1"], ["--seed", seed],
                 ["--seed", seed, "--listen", "127.0.0.1:1", "--workers", "0"],
                 ["--seed", seed, "--listen", "127.0.0.1:1", "--bogus"]):
        r = subprocess.run([agent_bin()] + argv, capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (argv, r.stderr)
        assert r.stderr.strip(), argv


def test_check_mode_good_and_bad(stack):
    seed, _ = write_seed(stack)
    r = subprocess.run([agent_bin(), "-c", "--seed", seed], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout and "us-east" in r.stdout

    r = subprocess.run([agent_bin(), "-c", "--seed", seed, "--dc", "eu-west"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0 and "eu-west" in r.stdout

    r = subprocess.run([agent_bin(), "-c", "--seed", seed, "--dc", "mars"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert "mars" in r.stderr and seed in r.stderr

    text = open(seed).read().splitlines()
    text.insert(4, "frobnicate everything")        # line 5
    bad = stack.write("bad.conf", "\n".join(text) + "\n")
    r = subprocess.run([agent_bin(), "-c", "--seed", bad], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert re.search(re.escape(bad) + r":5: ", r.stderr), r.stderr

    r = subprocess.run([agent_bin(), "-c", "--seed", stack.path("missing.conf")], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1 and "missing.conf" in r.stderr


def test_bad_seed_at_start_exits_1(stack):
    bad = stack.write("bad.conf", "replicas 2\ndc a\nnode n1 127.0.0.1:1 dc=b\n")
    p = stack.start("agent", [agent_bin(), "--listen", f"127.0.0.1:{harness.free_port()}", "--seed", bad])
    assert p.popen.wait(10 * harness.SLOW) == 1
    assert re.search(re.escape(bad) + r":3: ", p.log()), p.log()


# ---------------------------------------------------------------------------
# Decisions

@pytest.mark.parametrize("dc,workers", [("us-east", 1), ("eu-west", 2)])
def test_project_paths_go_to_the_node_seedctl_names(stack, dc, workers):
    seed, addrs = write_seed(stack)
    agent = ru.start_agent(stack, seed, dc=dc, workers=workers)
    ids = ru.random_ids(200, seed=7)
    want = ru.seedctl_where(seed, ids, dc=dc)
    # Pipelined: the 200 NOTIFYs go out in one write.
    got = agent.decide_many([f"/{pid}/files/x.txt?y=1" for pid in ids])
    for pid, v in zip(ids, got):
        assert v["backend"] == f"nodes_{dc}", v
        assert v["server"] == want[pid][0], (pid, v, want[pid])
        assert v["project"] == pid
        assert v["why"] == "primary"
        assert v["server"].startswith("node1" if dc == "us-east" else "node2")
    # Bare "/<uuid>" and upper case ids route the same, with the canonical id.
    pid = ids[0]
    for path in (f"/{pid}", f"/{pid.upper()}/", f"/{pid}?q=1"):
        v = agent.decide(path)
        assert (v["server"], v["project"], v["why"]) == (want[pid][0], pid, "primary"), (path, v)


def test_other_paths_go_to_the_local_hubs(stack):
    seed, _ = write_seed(stack)
    agent = ru.start_agent(stack, seed, dc="eu-west")
    for path in ("/", "/static/app.js", "/api/v1/projects", "/not-a-uuid/x",
                 "/2f1c0e5a-9d4b-4c3e-8a7f-0123456789a/short", "//2f1c0e5a-9d4b-4c3e-8a7f-0123456789ab",
                 "", "x" * 1000):
        v = agent.decide(path)
        assert v == {"backend": "hubs_eu-west", "why": "hub"}, (path, v)
    # No path argument at all, and a NULL (failed sample) path.
    assert agent.decide(None, omit_path=True) == {"backend": "hubs_eu-west", "why": "hub"}
    assert agent.decide(None) == {"backend": "hubs_eu-west", "why": "hub"}
    assert ru.metric(agent.metrics(), "seedgate_route_missing_path_total") == 2


def test_pins_drain_and_unix_listener(stack):
    ids = ru.random_ids(3, seed=11)
    seed, _ = write_seed(stack, pins=[(ids[0], ["node23", "node12"])], drain=("node11", "node12", "node13"))
    sock = stack.path("agent.sock")
    agent = ru.start_agent(stack, seed, listen=sock, stats=False)
    agent.port = sock
    v = agent.decide(f"/{ids[0]}/x")
    assert (v["backend"], v["server"], v["why"]) == ("nodes_eu-west", "node23", "pinned"), v
    # Every us-east node drains: projects go to eu-west's replicas.
    want = ru.seedctl_where(seed, ids[1:])
    for pid in ids[1:]:
        v = agent.decide(f"/{pid}")
        assert (v["backend"], v["server"], v["why"]) == ("nodes_eu-west", want[pid][0], "remote-dc"), v


def sess_actions(agent, client, path, sid):
    """One NOTIFY `route-sess` (the decision cache's message); returns the
    ACK's actions as (kind, scope, name, value) tuples, in order."""
    args = [("path", path), ("host", "example.test"), ("src", su.Typed(su.T_IPV4, "127.0.0.1"))]
    ack = client.call(sid, 1, [("route-sess", args)])
    return [(a.kind, a.scope, a.name, a.value) for a in ack.actions()]


def test_route_sess_answers_in_scope_sess(stack):
    # route-sess makes route's decision but writes the connection's cache
    # entry: scope SESS (1), two variables: dest = "<backend>/<node>/<why>"
    # (one variable, so a node name cannot outlive its answer), then key,
    # the first path segment as HAProxy's path,field(2,/) yields it.
    seed, _ = write_seed(stack)
    agent = ru.start_agent(stack, seed, dc="us-east")
    pid = ru.random_ids(1, seed=31)[0]
    node = ru.seedctl_where(seed, [pid], dc="us-east")[pid][0]
    S = su.SCOPE_SESS
    assert S == 1
    with agent.client() as c:
        acts = sess_actions(agent, c, f"/{pid}/files/x.txt", 1)
        assert acts == [("set-var", S, "dest", f"nodes_us-east/{node}/primary"),
                        ("set-var", S, "key", pid)], acts
        # a hub answer: no node name in the entry
        acts = sess_actions(agent, c, "/static/app.js", 2)
        assert acts == [("set-var", S, "dest", "hubs_us-east//hub"), ("set-var", S, "key", "static")], acts
        # the key is the raw segment (HAProxy compares it with the path)
        acts = sess_actions(agent, c, f"/{pid.upper()}", 3)
        assert acts == [("set-var", S, "dest", f"nodes_us-east/{node}/primary"),
                        ("set-var", S, "key", pid.upper())], acts
        # "/" has an empty first segment; no '/' at all, or a segment longer
        # than 48 bytes, is never cached: the key is unset
        assert sess_actions(agent, c, "/", 4)[-1] == ("set-var", S, "key", ""), "/"
        for sid, path in enumerate(("", "nothing", "/" + "x" * 49 + "/y"), 5):
            acts = sess_actions(agent, c, path, sid)
            assert acts == [("set-var", S, "dest", "hubs_us-east//hub"), ("unset-var", S, "key", None)], (path, acts)
        assert sess_actions(agent, c, "/" + "x" * 48, 9)[-1] == ("set-var", S, "key", "x" * 48)
        # `route` on the same connection still answers in scope TXN, as before
        ack = c.call(10, 1, [("route", [("path", f"/{pid}"), ("host", "h"),
                                         ("src", su.Typed(su.T_IPV4, "127.0.0.1"))])])
        assert [(a.kind, a.scope, a.name) for a in ack.actions()] == [
            ("set-var", su.SCOPE_TXN, n) for n in ("backend", "server", "project", "why")]
    # both messages count as decisions
    assert ru.metric(agent.metrics(), "seedgate_route_decisions_total", why="primary") == 3


def test_route_sess_fits_the_smallest_frame(stack):
    # The longest route-sess answer (32-byte names, a 48-byte key) fits a
    # 256-byte max-frame-size: the key is never dropped while the answer it
    # names was replaced.
    dc, hub, node = "d" * 32, "h" * 32, "n" * 32
    text = (f"replicas 1\ndc {dc}\nhub {hub} 127.0.0.1:20001 dc={dc}\n"
            f"node {node} 127.0.0.1:20002 dc={dc}\n")
    seed = stack.write("long.conf", text)
    agent = ru.start_agent(stack, seed)
    pid = ru.random_ids(1, seed=33)[0]
    with su.SpopClient(agent.port) as c:
        c.hello(max_frame_size=256)
        acts = sess_actions(agent, c, f"/{pid}/" + "y" * 60, 1)
        assert acts == [("set-var", su.SCOPE_SESS, "dest", f"nodes_{dc}/{node}/primary"),
                        ("set-var", su.SCOPE_SESS, "key", pid)], acts
        acts = sess_actions(agent, c, "/" + "k" * 48 + "/z", 2)
        assert acts == [("set-var", su.SCOPE_SESS, "dest", f"hubs_{dc}//hub"),
                        ("set-var", su.SCOPE_SESS, "key", "k" * 48)], acts


def test_route_sess_without_a_path_is_never_cached(stack):
    # A route-sess message without a path argument routes to the hubs and
    # unsets the key: HAProxy asks again on the next request.
    seed, _ = write_seed(stack)
    agent = ru.start_agent(stack, seed, dc="us-east")
    with agent.client() as c:
        args = [("host", "h"), ("src", su.Typed(su.T_IPV4, "127.0.0.1"))]   # no path at all
        acts = [(a.kind, a.scope, a.name, a.value) for a in c.call(1, 1, [("route-sess", args)]).actions()]
    assert acts == [("set-var", su.SCOPE_SESS, "dest", "hubs_us-east//hub"),
                    ("unset-var", su.SCOPE_SESS, "key", None)], acts


# ---------------------------------------------------------------------------
# Reloads

def test_sighup_reload(stack):
    # The agent's seed path is a symlink into another directory: editing the
    # target there produces no inotify event in the link's directory, so
    # only SIGHUP can make the agent see the change.
    os.mkdir(stack.path("real"))
    os.mkdir(stack.path("etc"))
    ids = ru.random_ids(1, seed=3)
    real, _ = write_seed(stack, "real/seed.conf")
    link = stack.path("etc", "seed.conf")
    os.symlink(real, link)
    agent = ru.start_agent(stack, link)
    before = agent.decide(f"/{ids[0]}")
    assert before["why"] == "primary"
    text, _ = ru.seed_text(ru.port_range(), pins=[(ids[0], ["node21"])])
    ru.write_in_place(real, text)
    time.sleep(0.3)
    assert agent.decide(f"/{ids[0]}") == before
    agent.proc.signal(signal.SIGHUP)
    v, _ = ru.wait_decision(agent, f"/{ids[0]}", lambda v: v.get("why") == "pinned")
    assert v["server"] == "node21"
    agent.wait_log(r"SIGHUP")
    agent.wait_log(r"seed reloaded: .* generation 2")
    m = agent.metrics()
    assert ru.metric(m, "seedgate_seed_reloads_total", result="ok") == 1
    assert ru.metric(m, "seedgate_seed_generation") == 2


@pytest.mark.parametrize("write", [ru.write_in_place, ru.write_atomic], ids=["in-place", "rename"])
def test_file_edit_reloads_within_one_second(stack, write):
    ids = ru.random_ids(2, seed=5)
    seed, _ = write_seed(stack)
    agent = ru.start_agent(stack, seed)
    base = agent.decide(f"/{ids[0]}")
    assert base["why"] == "primary"

    # A pin added: decisions follow within 1 s.
    text, _ = ru.seed_text(ru.port_range(), pins=[(ids[0], ["node22"])])
    write(seed, text)
    v, took = ru.wait_decision(agent, f"/{ids[0]}", lambda v: v.get("why") == "pinned")
    assert v["server"] == "node22" and v["backend"] == "nodes_eu-west"
    # One edit, one reload (the debounce merges the editor's events).
    time.sleep(0.4)
    m = agent.metrics()
    assert ru.metric(m, "seedgate_seed_reloads_total", result="ok") == 1
    assert ru.metric(m, "seedgate_seed_generation") == 2

    # A broken file: the previous directory stays, the error names file:line.
    broken = text + "node node99 127.0.0.1:1 dc=nowhere\n"
    nlines = broken.count("\n")
    write(seed, broken)
    agent.wait_log(re.escape(seed) + rf":{nlines}: ", timeout=2)
    agent.wait_log(r"seed reload failed, keeping generation 2")
    assert agent.decide(f"/{ids[0]}") == v
    time.sleep(0.4)
    m = agent.metrics()
    assert ru.metric(m, "seedgate_seed_reloads_total", result="error") == 1
    assert ru.metric(m, "seedgate_seed_generation") == 2

    # Fixed again (the pin removed): back to the computed placement.
    text, _ = ru.seed_text(ru.port_range())
    write(seed, text)
    ru.wait_decision(agent, f"/{ids[0]}", lambda v: v == base)
    assert agent.proc.alive()


def test_reload_that_drops_the_local_dc_is_refused(stack):
    seed, _ = write_seed(stack)
    agent = ru.start_agent(stack, seed, dc="eu-west")
    text, _ = ru.seed_text(ru.port_range(), dcs=("us-east", "ap-south"))
    ru.write_atomic(seed, text)
    agent.wait_log(r"seed reload failed.*'eu-west'")
    assert agent.decide("/")["backend"] == "hubs_eu-west"


# ---------------------------------------------------------------------------
# Health feed

def test_health_feed_moves_projects_and_survives_feed_loss(stack):
    ids = ru.random_ids(40, seed=9)
    seed, _ = write_seed(stack)
    feed = ru.FeedServer(stack.path("health.sock"))
    try:
        agent = ru.start_agent(stack, seed, health=feed.path)
        everyone = {n: "up" for n in ("hub11", "hub21", "node11", "node12", "node13",
                                      "node21", "node22", "node23")}
        feed.accept(everyone)
        agent.wait_log(r"health feed .* connected")
        assert ru.metric(agent.metrics(), "seedgate_health_feed_connected") == 1
        want = ru.seedctl_where(seed, ids)
        victim = want[ids[0]][0]
        mine = [pid for pid in ids if want[pid][0] == victim]
        alt = ru.seedctl_where(seed, mine, down=(victim,))

        feed.send(victim, "down")
        for pid in mine:
            v, _ = ru.wait_decision(agent, f"/{pid}", lambda v: v.get("server") != victim, timeout=1.0)
            assert (v["server"], v["why"]) == (alt[pid][0], "replica"), (pid, v)
        assert ru.metric(agent.metrics(), "seedgate_health_targets_down") == 1

        # Drain counts as not routable, like down.
        feed.send(victim, "up")
        ru.wait_decision(agent, f"/{mine[0]}", lambda v: v.get("server") == victim)
        feed.send(victim, "drain")
        ru.wait_decision(agent, f"/{mine[0]}", lambda v: v.get("server") != victim)
        # ... but a drain is not a failure: counted apart, not as down.
        harness.wait_until(lambda: ru.metric(agent.metrics(), "seedgate_health_targets_drain") == 1, 2,
                           what="drain gauge")
        assert ru.metric(agent.metrics(), "seedgate_health_targets_down") == 0
        assert "health: 0 of 8 targets down (was 0), 1 draining" in agent.log(), agent.log()[-2000:]

        # Feed lost: the last known state stays, the gauge says so.
        feed.drop()
        agent.wait_log(r"health feed .* lost")
        harness.wait_until(lambda: ru.metric(agent.metrics(), "seedgate_health_feed_connected") == 0)
        assert agent.decide(f"/{mine[0]}")["server"] != victim

        # Reconnected with a fresh snapshot that has the node up again.
        feed.accept(everyone)
        ru.wait_decision(agent, f"/{mine[0]}", lambda v: v.get("server") == victim, timeout=3.0)

        # Local hubs down: the other datacenter's hubs answer.
        feed.send("hub11", "down")
        v, _ = ru.wait_decision(agent, "/", lambda v: v["backend"] == "hubs_eu-west")
        assert v["why"] == "hub"
        feed.send("hub21", "down")
        v, _ = ru.wait_decision(agent, "/", lambda v: v["why"] == "no-hub")
        assert v["backend"] == "hubs_us-east"
    finally:
        feed.close()


def test_health_is_remapped_on_reload(stack):
    ids = ru.random_ids(30, seed=13)
    seed, _ = write_seed(stack)
    feed = ru.FeedServer(stack.path("health.sock"))
    try:
        agent = ru.start_agent(stack, seed, health=feed.path)
        feed.accept({"node12": "down"})
        agent.wait_log(r"health feed .* connected")
        # A reload that reorders and adds targets: node12 must stay down.
        text, _ = ru.seed_text(ru.port_range(), nodes=4)
        lines = text.splitlines()
        ru.write_atomic(seed, "\n".join(lines[:3] + lines[3:][::-1]) + "\n")
        agent.wait_log(r"generation 2")
        want = ru.seedctl_where(seed, ids, down=("node12",))
        for pid in ids:
            v = agent.decide(f"/{pid}")
            assert v["server"] == want[pid][0] != "node12", (pid, v, want[pid])
    finally:
        feed.close()


# ---------------------------------------------------------------------------
# Metrics and stop

def test_metrics_count_decisions_and_connections(stack):
    seed, _ = write_seed(stack)
    agent = ru.start_agent(stack, seed, workers=2)
    m0 = agent.metrics()
    for name in ("seedgate_route_decisions_total", "seedgate_spop_disconnects_total",
                 "seedgate_spop_connections_total", "seedgate_spop_connections",
                 "seedgate_seed_reloads_total", "seedgate_health_feed_connected"):
        assert any(n == name for n, _ in m0), name
    assert ru.metric(m0, "seedgate_health_feed_connected") == 0
    ids = ru.random_ids(50, seed=21)
    clients = [agent.client() for _ in range(3)]
    for c in clients:
        agent.decide_many([f"/{pid}" for pid in ids] + ["/", "/index.html"], client=c)
    m1 = agent.metrics()
    assert ru.metric(m1, "seedgate_route_decisions_total", why="primary") - \
        ru.metric(m0, "seedgate_route_decisions_total", why="primary") == 150
    assert ru.metric(m1, "seedgate_route_decisions_total", why="hub") - \
        ru.metric(m0, "seedgate_route_decisions_total", why="hub") == 6
    assert ru.metric(m1, "seedgate_spop_connections_total") >= 3
    assert ru.metric(m1, "seedgate_spop_connections") >= 3
    for c in clients:
        c.close()
    harness.wait_until(lambda: ru.metric(agent.metrics(), "seedgate_spop_connections") == 0)

    # A malformed frame is counted by DISCONNECT status.
    import spop_util as su
    with su.SpopClient(agent.port) as c:
        c.hello()
        c.send(su.build_frame(su.NOTIFY, b"\x05route\x09", 1, 1))
        status, _ = c.expect_disconnect()
    assert status != 0
    m2 = agent.metrics()
    assert ru.metric(m2, "seedgate_spop_disconnects_total", status=str(status)) == 1

    import urllib.error
    with pytest.raises(urllib.error.HTTPError) as e:
        ru.read_metrics(agent.stats_port, "/nope")
    assert e.value.code == 404


def test_sigterm_exits_0_with_clients_connected(stack):
    seed, _ = write_seed(stack)
    agent = ru.start_agent(stack, seed, workers=2)
    c = agent.client()
    assert agent.decide("/", client=c)["why"] == "hub"
    agent.proc.signal(signal.SIGTERM)
    assert agent.proc.popen.wait(10 * harness.SLOW) == 0
    log = agent.log()
    assert "stopping (SIGTERM)" in log and "stopped" in log
    c.close()


def test_sigterm_as_soon_as_the_port_opens_exits_0(stack):
    """A supervisor may signal the agent the moment its port answers; the
    signal watchers must already be in place (they once were installed after
    the listeners, and SIGTERM then killed the agent by default action)."""
    seed, _ = write_seed(stack)
    for i in range(5):
        port = harness.free_port()
        p = stack.start(f"agent{i}", [harness.bin_path("route-agent"), "--listen",
                                      f"127.0.0.1:{port}", "--seed", seed])
        harness.wait_until(lambda: harness.port_open(port), 5, interval=0.001,
                           what="agent port")
        p.signal(signal.SIGTERM)
        assert p.popen.wait(10 * harness.SLOW) == 0, p.log()
