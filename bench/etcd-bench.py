#!/usr/bin/python3
"""etcd seed directory benchmark (bench/bench-etcd.sh runs it; see there).

1. Propagation: a 3-member etcd cluster on loopback, AGENTS route agents
   reading a small directory from it. CHANGES times: drain (or undrain) the
   node a project is routed to, and time from sending the write to EVERY
   agent answering the new decision over SPOP (each agent polled on its own
   connection). Median, p90, p99, max.
2. Large directory: 10k nodes (weight 10, 2 dcs), 100k pins and 4 hubs
   written into etcd; an agent started on it: initial sync time (start to
   "started"), the same for the same text file, one-record update time (a
   drain: full re-list + rebuild + swap, write to routing by it), and the
   RSS of the agent holding it (etcd vs file).
Prints a markdown report on stdout.
"""
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import etcd_util  # noqa: E402
import harness  # noqa: E402
import route_util as ru  # noqa: E402

AGENTS = int(os.environ.get("AGENTS", "2"))
CHANGES = int(os.environ.get("CHANGES", "100"))
BIG_NODES = int(os.environ.get("BIG_NODES", "10000"))
BIG_PINS = int(os.environ.get("BIG_PINS", "100000"))
PREFIX = "/bench/sg"


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_agent(stack, seed, name, extra=()):
    """Starts an agent, returns (RouteAgent, seconds from exec to its
    'started' log line)."""
    t0 = time.monotonic()
    port, stats = harness.free_port(), harness.free_port()
    argv = [harness.bin_path("route-agent"), "--listen", f"127.0.0.1:{port}", "--seed", seed,
            "--stats", f"127.0.0.1:{stats}", *extra]
    proc = stack.start(name, argv)
    harness.wait_until(lambda: "started: listening" in proc.log() or not proc.alive(), 600, interval=0.005,
                       what=f"{name} started")
    took = time.monotonic() - t0
    assert proc.alive(), proc.log()
    return ru.RouteAgent(stack, proc, port, stats, seed), took


def wait_all(agents, clients, path, pred, timeout=30.0):
    """Polls every agent until pred(vars) holds for each; returns the time
    the last one got there (monotonic)."""
    done = [None] * len(agents)
    deadline = time.monotonic() + timeout
    while None in done:
        if time.monotonic() > deadline:
            raise AssertionError(f"agents did not follow within {timeout}s")
        for i, a in enumerate(agents):
            if done[i] is None and pred(a.decide(path, client=clients[i])):
                done[i] = time.monotonic()
    return max(done)


def node_line(text, name):
    return next(x for x in text.splitlines() if x.startswith(f"node {name} "))


def propagation(stack, cluster):
    text, _ = ru.seed_text(ru.port_range(22000), hubs=1, nodes=3)
    cluster.write_directory(PREFIX, text)
    agents = [start_agent(stack, cluster.spec(PREFIX), f"agent-{i}",
                          ["--seed-cache", stack.path(f"agent-{i}.cache")])[0] for i in range(AGENTS)]
    clients = [a.client() for a in agents]
    ids = ru.random_ids(CHANGES, seed=99)
    lat, put_lat = [], []
    try:
        for i in range(CHANGES):
            path = "/" + ids[i]
            node = agents[0].decide(path, client=clients[0])["server"]
            t0 = time.monotonic()
            cluster.put(f"{PREFIX}/g/1/node/{node}", node_line(text, node) + " state=drain")
            put_lat.append(time.monotonic() - t0)
            t1 = wait_all(agents, clients, path, lambda v, n=node: v.get("server") not in (None, n))
            lat.append(t1 - t0)
            cluster.put(f"{PREFIX}/g/1/node/{node}", node_line(text, node))   # back, not timed
            wait_all(agents, clients, path, lambda v, n=node: v.get("server") == n)
    finally:
        for c in clients:
            c.close()
        for a in agents:
            a.proc.stop()
    return lat, put_lat


def big_text():
    rng = random.Random(1)
    out = ["replicas 2", "dc us-east", "dc eu-west"]
    for i in range(4):
        out.append(f"hub hub{i} 10.0.0.{i + 1}:80 dc={'us-east' if i < 2 else 'eu-west'}")
    for i in range(BIG_NODES):
        out.append(f"node n{i} 10.{1 + i // 60000}.{(i // 250) % 240}.{i % 250 + 1}:80 "
                   f"dc={'us-east' if i % 2 == 0 else 'eu-west'}")
    for _ in range(BIG_PINS):
        pid = uuid.UUID(int=rng.getrandbits(128), version=4)
        a, b = rng.sample(range(BIG_NODES), 2)
        out.append(f"project {pid} n{a} n{b}")
    return "\n".join(out) + "\n"


def large(stack, cluster):
    text = big_text()
    path = stack.write("big.conf", text)
    t0 = time.monotonic()
    r = subprocess.run([harness.bin_path("seedctl"), "import", "--etcd", cluster.spec(PREFIX + "big"), path],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr
    import_s = time.monotonic() - t0
    res = {"import_s": import_s, "bytes": len(text), "lines": text.count("\n")}
    # file first, then etcd (one agent at a time: the machine is small)
    a, res["file_start_s"] = start_agent(stack, path, "big-file")
    res["file_rss_mb"] = rss_kb(a.proc.pid) / 1024
    a.proc.stop()
    starts, rss = [], []
    for k in range(3):
        a, took = start_agent(stack, cluster.spec(PREFIX + "big"), f"big-etcd-{k}",
                              ["--seed-cache", stack.path(f"big-{k}.cache")])
        starts.append(took)
        time.sleep(1.0)        # the local copy is written after the start
        rss.append(rss_kb(a.proc.pid) / 1024)
        if k < 2:
            a.proc.stop()
    res["etcd_start_s"] = starts
    res["etcd_rss_mb"] = statistics.median(rss)
    # one-record updates on the big directory (under the generation import made current)
    gen = cluster.get(f"{PREFIX}big/current").decode()
    c = a.client()
    ids = ru.random_ids(5, seed=5)
    upd = []
    try:
        for pid in ids:
            p = "/" + pid
            node = a.decide(p, client=c)["server"]
            line = node_line(text, node)
            t0 = time.monotonic()
            cluster.put(f"{PREFIX}big/g/{gen}/node/{node}", line + " state=drain")
            upd.append(wait_all([a], [c], p, lambda v, n=node: v.get("server") not in (None, n), 120) - t0)
            cluster.put(f"{PREFIX}big/g/{gen}/node/{node}", line)
            wait_all([a], [c], p, lambda v, n=node: v.get("server") == n, 120)
    finally:
        c.close()
    res["update_s"] = upd
    res["rss_after_updates_mb"] = rss_kb(a.proc.pid) / 1024
    m = re.findall(r"seed reloaded: .*", a.log())
    res["reloads"] = len(m)
    a.proc.stop()
    return res


def main():
    tmp = tempfile.mkdtemp(prefix="bench-etcd.")
    stack = harness.Stack(tmp)
    try:
        cluster = etcd_util.EtcdCluster(stack)
        lat, put_lat = propagation(stack, cluster)
        big = large(stack, cluster)
    except BaseException:
        sys.stderr.write(stack.dump_logs()[-8000:] + "\n")
        raise
    finally:
        stack.stop_all()
        subprocess.run(["rm", "-rf", tmp])
    ms = [x * 1000 for x in lat]
    print(f"- propagation: {CHANGES} changes (a drain each), {AGENTS} agents, 3-member etcd on loopback")
    print()
    print("| write -> every agent routing by it | median | p90 | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    print(f"| ms | {statistics.median(ms):.1f} | {pct(ms, 90):.1f} | {pct(ms, 99):.1f} | {max(ms):.1f} |")
    print(f"| (of which the write's commit, ms) | {statistics.median(put_lat) * 1000:.1f} | "
          f"{pct(put_lat, 90) * 1000:.1f} | {pct(put_lat, 99) * 1000:.1f} | {max(put_lat) * 1000:.1f} |")
    print()
    print(f"- large directory: {BIG_NODES} nodes (weight 10, 2 dcs), {BIG_PINS} pins, 4 hubs: "
          f"{big['lines']} lines, {big['bytes'] / 1e6:.1f} MB of text; `seedctl import` took "
          f"{big['import_s']:.1f} s")
    print()
    print("| | value |")
    print("|---|---:|")
    print(f"| agent start, seed FILE (to `started`) | {big['file_start_s']:.2f} s |")
    print(f"| agent start, seed in etcd (initial sync, 3 runs) | "
          f"{' / '.join(f'{x:.2f}' for x in big['etcd_start_s'])} s |")
    print(f"| one-record update (drain) -> agent routing by it, 5 runs | "
          f"{' / '.join(f'{x:.2f}' for x in big['update_s'])} s |")
    print(f"| RSS, agent holding it from the FILE | {big['file_rss_mb']:.0f} MB |")
    print(f"| RSS, agent holding it from etcd (median of 3) | {big['etcd_rss_mb']:.0f} MB |")
    print(f"| RSS after 10 one-record updates | {big['rss_after_updates_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
