"""Helpers for the route-agent tests: seed files, starting the agent,
asking it for decisions over SPOP (spop_util's client plays HAProxy),
reading /metrics and asking `seedctl where` for the expected answer.

Kept separate from harness.py (owned by the lead) and spop_util.py (owned by
SPOP-LOAD); only route-agent specifics live here.
"""
import os
import random
import re
import socket
import subprocess
import time
import urllib.request
import uuid

import harness
import spop_util as su

SLOW = harness.SLOW


def random_ids(n, seed=1):
    """n reproducible random project ids (RFC 4122 text, lower case)."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def seed_text(ports, *, dcs=("us-east", "eu-west"), hubs=1, nodes=3, replicas=2, pins=(),
              drain=(), extra=""):
    """A seed directory: for each dc `hubs` hubs hub<dc#><i> and `nodes` nodes
    node<dc#><i>, each on 127.0.0.1:<next port of ports>. `pins` are
    (project id, [node names]) pairs; `drain` names nodes with state=drain.
    Returns (text, {name: port})."""
    ports = iter(ports)
    lines = [f"replicas {replicas}"] + [f"dc {dc}" for dc in dcs]
    addrs = {}
    for k, dc in enumerate(dcs, 1):
        for i in range(1, hubs + 1):
            name = f"hub{k}{i}"
            addrs[name] = next(ports)
            lines.append(f"hub {name} 127.0.0.1:{addrs[name]} dc={dc} weight=10")
        for i in range(1, nodes + 1):
            name = f"node{k}{i}"
            addrs[name] = next(ports)
            st = " state=drain" if name in drain else ""
            lines.append(f"node {name} 127.0.0.1:{addrs[name]} dc={dc} weight=10{st}")
    for pid, names in pins:
        lines.append(f"project {pid} {' '.join(names)}")
    return "\n".join(lines) + "\n" + extra, addrs


def port_range(start=20000, n=64):
    """Ports for seed addresses the agent never connects to (it only
    computes routes): any numbers will do."""
    return list(range(start, start + n))


def write_atomic(path, text):
    """Replace a file by renaming a new one over it (what editors and
    deployment tools do)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def write_in_place(path, text):
    """Rewrite a file in place (truncate + write, same inode)."""
    with open(path, "w") as f:
        f.write(text)


class RouteAgent:
    """A started route-agent: process, SPOP port, stats port."""

    def __init__(self, stack, proc, port, stats_port, seed):
        self.stack, self.proc, self.port, self.stats_port, self.seed = stack, proc, port, stats_port, seed
        self._ids = iter(range(1, 1 << 62))

    def client(self, timeout=5.0):
        c = su.SpopClient(self.port, timeout=timeout * SLOW)
        c.hello()
        return c

    def decide(self, path, client=None, extra_args=(), omit_path=False):
        """One NOTIFY `route` and its ACK; returns the txn vars set."""
        own = client is None
        c = client or self.client()
        try:
            sid = next(self._ids)
            args = [] if omit_path else [("path", path)]
            args += [("host", "example.test"), ("src", su.Typed(su.T_IPV4, "127.0.0.1"))]
            args += list(extra_args)
            return su.ack_vars(c.call(sid, 1, [("route", args)]))
        finally:
            if own:
                c.close()

    def decide_many(self, paths, client=None):
        """All NOTIFYs in one write, then every ACK (in order); a list of
        txn var dicts."""
        own = client is None
        c = client or self.client()
        try:
            base = next(self._ids) * 100000
            data = b"".join(su.notify_frame(base + i, 1, [("route", [("path", p), ("host", "h"),
                                                                    ("src", su.Typed(su.T_IPV4, "127.0.0.1"))])])
                            for i, p in enumerate(paths))
            c.send(data)
            out = []
            for i in range(len(paths)):
                out.append(su.ack_vars(c.read_ack(base + i, 1)))
            return out
        finally:
            if own:
                c.close()

    def metrics(self):
        return read_metrics(self.stats_port)

    def log(self):
        return self.proc.log()

    def wait_log(self, pattern, timeout=5.0):
        """Wait until the agent's log matches the regex; returns the match."""
        rx = re.compile(pattern)
        return harness.wait_until(lambda: rx.search(self.log()), timeout, what=f"log /{pattern}/")


def start_agent(stack, seed, *, name="route-agent", dc=None, workers=1, stats=True, health=None,
                listen=None, extra=()):
    """Start route-agent on a free port (or `listen`), wait until it answers."""
    port = harness.free_port()
    argv = [harness.bin_path("route-agent"), "--listen", listen or f"127.0.0.1:{port}",
            "--seed", seed, "--workers", str(workers)]
    stats_port = None
    if stats:
        stats_port = harness.free_port()
        argv += ["--stats", f"127.0.0.1:{stats_port}"]
    if dc:
        argv += ["--dc", dc]
    if health:
        argv += ["--health", health]
    argv += list(extra)
    proc = stack.start(name, argv)
    if listen and listen.startswith(("/", "unix:")):
        stack.wait_unix(listen.split(":", 1)[-1] if listen.startswith("unix:") else listen, proc)
    else:
        stack.wait_port(port, proc)
    if stats_port:
        stack.wait_port(stats_port, proc)
    return RouteAgent(stack, proc, port, stats_port, seed)


_METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def parse_metrics(text):
    """Prometheus text -> {(name, frozenset of (label, value))): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC.match(line)
        assert m, f"bad metrics line {line!r}"
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def read_metrics(port, path="/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5 * SLOW) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return parse_metrics(r.read().decode())


def metric(m, name, **labels):
    """One value from parse_metrics' dict (0 when absent)."""
    want = set(labels.items())
    total = 0.0
    for (n, ls), v in m.items():
        if n == name and want <= set(ls):
            total += v
    return total


def seedctl_where(seed, ids, dc=None, down=()):
    """{id: [chosen, pref...]} from `seedctl where` (ROUTER's tool, the same
    library calls as the agent, but an independent process and code path
    from the wire)."""
    argv = [harness.bin_path("seedctl"), "where", "--seed", seed]
    if dc:
        argv += ["--dc", dc]
    if down:
        argv += ["--down", ",".join(down)]
    argv.append("-")
    r = subprocess.run(argv, input="\n".join(ids) + "\n", capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        f = line.split("\t")
        out[f[0]] = f[1:]
    assert len(out) == len(set(ids)), r.stdout[:500]
    return out


def wait_decision(agent, path, pred, timeout=1.0, what="decision"):
    """Ask repeatedly until pred(vars) holds; returns (vars, seconds taken).
    `timeout` is the functional deadline (scaled for sanitizer builds)."""
    t0 = time.monotonic()
    deadline = t0 + timeout * SLOW
    c = agent.client()
    try:
        last = None
        while time.monotonic() < deadline:
            last = agent.decide(path, client=c)
            if pred(last):
                return last, time.monotonic() - t0
            time.sleep(0.01)
    finally:
        c.close()
    raise AssertionError(f"{what}: not within {timeout * SLOW:.2f}s (last answer {last})")


class FeedServer:
    """Plays healthcheckd's feed side (healthcheck/hc_feed.h text protocol)
    on a unix socket, so that the agent's health handling can be driven
    target by target. Single subscriber at a time; blocking, run from the
    test thread."""

    def __init__(self, path):
        self.path = path
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(path)
        self.lsock.listen(4)
        self.lsock.settimeout(5 * SLOW)
        self.conn = None

    def accept(self, snapshot):
        """Accept the agent and send H, the snapshot {name: state}, E."""
        self.conn, _ = self.lsock.accept()
        lines = ["H seedgate-health 1"]
        for name, st in snapshot.items():
            lines.append(f"T {name} {st} - {int(time.time() * 1000)} test")
        lines.append(f"E {len(snapshot)}")
        self.conn.sendall(("\n".join(lines) + "\n").encode())

    def send(self, name, state):
        self.conn.sendall(f"T {name} {state} - {int(time.time() * 1000)} test\n".encode())

    def drop(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def close(self):
        self.drop()
        self.lsock.close()
