"""Several complete proxies reading one seed directory in etcd, for the
integration tests of test_etcd_proxies.py.

    servers = start_servers(stack, text)        # one demo server per hub/node
    a = start_proxy(stack, "proxyA", "127.0.0.2", spec)
    b = start_proxy(stack, "proxyB", "127.0.0.3", spec)
    served_by(a, "/<id>/x")                     # X-Served-By through HAProxy A
    metrics(a.agent_stats[0], a.host)           # parse_metrics() of an agent

A proxy is what one proxy host runs (README, "Several proxies"): HAProxy
with the shipped haproxy.cfg and the backends `seedctl haproxy --seed
etcd://...` prints, two route agents and one healthcheckd driving that
HAProxy through its runtime API (--haproxy-socket) and feeding the agents.
Every listener of a proxy is on its own loopback address (127.0.0.2,
127.0.0.3, ...) and every file in its own directory under the test's temp
dir (HAProxy's sockets are named after SG_RUN_DIR, so two HAProxys need two
directories). The demo servers and etcd stay on 127.0.0.1. Processes belong
to the `stack` fixture: stopped by PID at teardown, logs printed on failure.
"""
import http.client
import os
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import List

import harness
import route_util as ru
import stack_util

SLOW = harness.SLOW


def port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_port(host, port, proc, timeout=10.0):
    """Waits until host:port accepts; fails at once (with its log) if proc
    exited meanwhile."""
    def ready():
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log()[-3000:]}")
        return port_open(host, port)
    harness.wait_until(ready, timeout, what=f"{proc.name} on {host}:{port}")


def metrics(port, host="127.0.0.1"):
    """parse_metrics() of GET http://host:port/metrics."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5 * SLOW) as r:
        return ru.parse_metrics(r.read().decode())


def seedctl(*args, timeout=60):
    """Runs build/seedctl ARGS; returns its stdout, failing the test with
    its stderr when it exits non-zero."""
    r = subprocess.run([harness.bin_path("seedctl"), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"seedctl {' '.join(map(str, args))}: exit {r.returncode}\n{r.stderr}"
    return r.stdout


def start_server(stack, name, addr, log_name=None):
    """One demo server (answers with X-Served-By: name) on addr host:port."""
    host, port = addr.rsplit(":", 1)
    p = stack.start(log_name or name, [harness.bin_path("demo-server"), "--name", name, "--listen", addr])
    wait_port(host, int(port), p)
    return p


def start_servers(stack, text):
    """A demo server for every hub and node line of a text directory."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 3 and f[0] in ("hub", "node"):
            out[f[1]] = start_server(stack, f[1], f[2])
    return out


@dataclass
class Proxy:
    name: str
    host: str                 # every listener of this proxy is on this loopback address
    dir: str                  # SG_RUN_DIR: haproxy.sock, node-fallback.sock, health.sock
    http_port: int
    haproxy: harness.Proc
    agents: List[harness.Proc]
    agent_stats: List[int]
    hc: harness.Proc
    hc_stats: int
    admin_sock: str

    def daemons(self):
        """(label, host, stats port) of every daemon's /metrics."""
        return ([(f"{self.name}/route-agent-{i + 1}", self.host, p) for i, p in enumerate(self.agent_stats)]
                + [(f"{self.name}/healthcheckd", self.host, self.hc_stats)])

    def admin(self, command):
        return stack_util.admin(self, command)

    def worker_pid(self):
        for line in self.admin("show info").splitlines():
            if line.startswith("Pid: "):
                return line[5:]
        return None

    def servers(self):
        """{(backend, server)} HAProxy holds, from `show servers state`."""
        out = set()
        for line in self.admin("show servers state").splitlines():
            f = line.split()
            if len(f) >= 19 and f[0].isdigit():
                out.add((f[1], f[3]))
        return out


def start_proxy(stack, name, host, spec, dc="us-east", hc_args=()):
    """Starts one proxy host's daemons on loopback address `host`, all
    reading the directory at `spec` (etcd://...). Returns a Proxy once
    HAProxy listens, both agents are UP in it, they hold healthcheckd's
    feed and healthcheckd holds HAProxy's runtime API."""
    assert host.startswith("127."), "loopback addresses only"
    run = stack.path(name)
    os.makedirs(run, exist_ok=True)
    for sock in ("haproxy.sock", "node-fallback.sock", "health.sock"):
        harness.check_socket_path(os.path.join(run, sock))
    admin_sock = os.path.join(run, "haproxy.sock")
    feed = os.path.join(run, "health.sock")
    backends = os.path.join(run, "backends.cfg")
    seedctl("haproxy", "--seed", spec, "--out", backends)

    hc_stats = harness.free_port()
    hc = stack.start(f"{name}-healthcheckd", [
        harness.bin_path("healthcheckd"), "--seed", spec, "--seed-cache", os.path.join(run, "hc.seed-cache"),
        "--feed", feed, "--haproxy-socket", admin_sock, "--stats", f"{host}:{hc_stats}",
        "--interval", "100ms", "--timeout", "300ms", "--fall", "2", "--rise", "2", *map(str, hc_args)])
    stack.wait_unix(feed, hc, timeout=10.0)

    agent_ports = [harness.free_port() for _ in range(2)]
    agent_stats = [harness.free_port() for _ in range(2)]
    agents = []
    for i in range(2):
        p = stack.start(f"{name}-route-agent-{i + 1}", [
            harness.bin_path("route-agent"), "--listen", f"{host}:{agent_ports[i]}", "--seed", spec,
            "--seed-cache", os.path.join(run, f"route-agent-{i + 1}.seed-cache"),
            "--stats", f"{host}:{agent_stats[i]}", "--health", feed])
        agents.append(p)
    for i, p in enumerate(agents):
        wait_port(host, agent_ports[i], p)

    http_port = harness.free_port()
    env = {
        "SG_HTTP_BIND": f"{host}:{http_port}",
        "SG_PROXY_BIND": f"{host}:{harness.free_port()}",
        "SG_RUN_DIR": run,
        "SG_CONF_DIR": stack_util.CONF_DIR,
        "SG_AGENT1": f"{host}:{agent_ports[0]}",
        "SG_AGENT2": f"{host}:{agent_ports[1]}",
        "SG_DC": dc,
        "SG_ROUTE_CACHE": "0",
        # as in stack_util: a loaded machine must not fail requests open to
        # the hubs, which would make exact-node assertions flaky
        "SG_SPOE_PROCESSING": f"{int(100 * SLOW)}ms",
        "SG_USER": "root",
        "SG_GROUP": "root",
        "HAPROXY": harness.HAPROXY,
    }
    hap = stack.start(f"{name}-haproxy", [os.path.join(stack_util.CONF_DIR, "run-haproxy.sh"), backends],
                      env=env)
    wait_port(host, http_port, hap)
    px = Proxy(name=name, host=host, dir=run, http_port=http_port, haproxy=hap, agents=agents,
               agent_stats=agent_stats, hc=hc, hc_stats=hc_stats, admin_sock=admin_sock)
    stack_util.wait_agents_up(px)
    for label, h, port in px.daemons():
        want = "seedgate_hc_haproxy_connected" if label.endswith("healthcheckd") else "seedgate_health_feed_connected"
        harness.wait_until(lambda h=h, port=port, want=want: ru.metric(metrics(port, h), want) == 1, 10.0,
                           what=f"{label}: {want}")
    return px


def served_by(px, path, conn=None):
    """X-Served-By of one GET through px's HAProxy (200 required). On a
    fresh connection, or on conn (an http.client.HTTPConnection kept alive
    by the caller)."""
    return stack_util.served_by(px.http_port, path, conn, host=px.host)


def served_many(px, ids):
    """{id: X-Served-By} for GET /<id>/x of every id, over one kept-alive
    connection (reopened if HAProxy closes it)."""
    out = {}
    c = http.client.HTTPConnection(px.host, px.http_port, timeout=5 * SLOW)
    try:
        for pid in ids:
            try:
                out[pid] = served_by(px, f"/{pid}/x", c)
            except (http.client.HTTPException, OSError):
                c.close()
                c = http.client.HTTPConnection(px.host, px.http_port, timeout=5 * SLOW)
                out[pid] = served_by(px, f"/{pid}/x", c)
    finally:
        c.close()
    return out


def revisions(proxies):
    """{daemon label: seedgate_seed_revision} over every daemon of proxies."""
    return {label: ru.metric(metrics(port, host), "seedgate_seed_revision")
            for px in proxies for label, host, port in px.daemons()}


def metric_all(proxies, name):
    """[value of metric name] over every daemon of proxies."""
    return [ru.metric(metrics(port, host), name) for px in proxies for _l, host, port in px.daemons()]


class Load:
    """Client threads doing GETs through every proxy in a loop, a fresh
    connection each time, until finish(): records every failure (time,
    proxy, path, why) and counts successes. Started at construction;
    registered with stack.defer so a failing test still joins them."""

    def __init__(self, stack, proxies, paths, threads_per_proxy=1):
        self.paths = paths
        self.ok = 0
        self.failures = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(px, k), daemon=True)
                        for px in proxies for k in range(threads_per_proxy)]
        for t in self.threads:
            t.start()
        stack.defer(self.finish)

    def _run(self, px, k):
        i = k
        while not self._stop.is_set():
            path = self.paths[i % len(self.paths)]
            i += 1
            try:
                served_by(px, path)
                with self.lock:
                    self.ok += 1
            except Exception as exc:  # noqa: BLE001 - every failure is reported
                with self.lock:
                    self.failures.append((time.monotonic(), px.name, path, repr(exc)))

    def wait_more(self, n, timeout=20.0, what="requests"):
        """Waits until n more requests succeeded than now."""
        start = self.ok
        harness.wait_until(lambda: self.ok >= start + n, timeout, interval=0.05, what=f"{n} more {what}")

    def finish(self):
        self._stop.set()
        for t in self.threads:
            t.join(10 * SLOW)
        return self.failures
