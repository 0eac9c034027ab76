"""Soak: the whole stack under steady load while things keep going wrong.

Skipped by `make test`; `make soak` runs it (SEEDGATE_SOAK=1), for
SEEDGATE_SOAK_SECONDS (default 240). The real HAProxy, two route agents and
healthcheckd (feeding both the agents and HAProxy's runtime API) serve a
2-datacenter seed directory while client threads send GETs, a mix of
project and hub paths, on keep-alive connections. Every few seconds one
fault, in rotation: a node server killed (and restarted 3 s later), a route
agent killed with SIGKILL (and restarted), the seed directory edited (a pin
added or removed, renamed into place), HAProxy reloaded (SIGUSR2), and
healthcheckd killed and restarted.

What ops count on, asserted at the end: not one failed GET; every daemon
still running; no descriptor leak in the route agents, healthcheckd or the
HAProxy master (counts after the run within a small margin of those after
warm-up); route-agent memory not growing without bound.
"""
import http.client
import os
import random
import threading
import time

import pytest

import harness
import health_util as hu
import route_util as ru
import stack_util

SOAK = os.environ.get("SEEDGATE_SOAK") == "1"
SECONDS = float(os.environ.get("SEEDGATE_SOAK_SECONDS", "240"))

pytestmark = pytest.mark.skipif(not SOAK, reason="soak test: run with make soak (SEEDGATE_SOAK=1)")


class KeepAliveLoad(threading.Thread):
    """GETs in a loop on one keep-alive connection (re-opened when the
    server closes it); every non-200 answer or exception is a failure."""

    def __init__(self, port, paths, seed):
        super().__init__(daemon=True)
        self.port, self.paths = port, paths
        self.rng = random.Random(seed)
        self.stop_evt = threading.Event()
        self.ok = 0
        self.retried = 0
        self.failures = []

    def run(self):
        conn = None
        while not self.stop_evt.is_set():
            path = self.rng.choice(self.paths)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    self.failures.append((time.time(), path, r.status))
                else:
                    self.ok += 1
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                # The server closed an idle keep-alive connection (HAProxy
                # reload, timeout) before this request was read: a client
                # retries a GET on a fresh connection, as browsers do.
                conn.close()
                conn = None
                self.retried += 1
                try:
                    c2 = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    c2.request("GET", path)
                    r = c2.getresponse()
                    r.read()
                    c2.close()
                    if r.status == 200:
                        self.ok += 1
                    else:
                        self.failures.append((time.time(), path, r.status))
                except Exception as exc2:  # noqa: BLE001 - every failure is reported
                    self.failures.append((time.time(), path, f"{exc!r} then {exc2!r}"))
            except Exception as exc:  # noqa: BLE001
                self.failures.append((time.time(), path, repr(exc)))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def stop(self):
        self.stop_evt.set()
        self.join(15)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_soak_faults_under_load(stack):
    ports = [harness.free_port() for _ in range(8)]
    text, _ = ru.seed_text(ports, hubs=1, nodes=3)
    seed = stack.write("seed.conf", text)
    feed = stack.path("health.sock")
    info = stack_util.start_stack(stack, seed, health_feed=feed)
    hc_argv = [harness.bin_path("healthcheckd"), "--seed", seed, "--feed", feed,
               "--haproxy-socket", info.admin_sock, "--interval", "200ms", "--timeout", "300ms",
               "--rise", "2", "--fall", "2"]
    hc = stack.start("healthcheckd", hc_argv)
    stack.wait_unix(feed, hc)
    hu.Feed(feed)

    ids = ru.random_ids(400, seed=77)
    paths = [f"/{pid}/f" for pid in ids] + ["/", "/app", "/api/v1/x"] * 20
    loads = [KeepAliveLoad(info.http_port, paths, seed=i) for i in range(4)]
    for ld in loads:
        ld.start()

    time.sleep(5)                          # warm-up: connections, pools, caches
    def watched():
        return {"agent1": info.agent_procs[0].pid, "agent2": info.agent_procs[1].pid,
                "healthcheckd": hc.pid, "haproxy-master": info.haproxy.pid}
    fds_before = {k: fd_count(p) for k, p in watched().items()}
    rss_before = rss_kb(info.agent_procs[0].pid)

    nodes = [n for n in info.servers if n.startswith("node1")]
    faults = ["node", "agent", "seed", "reload", "healthcheckd"]
    pinned = ids[0]
    deadline = time.monotonic() + SECONDS
    step = 0
    try:
        while time.monotonic() < deadline:
            fault = faults[step % len(faults)]
            if fault == "node":
                name = nodes[step % len(nodes)]
                old = info.servers[name]
                old.kill()
                time.sleep(3)
                info.servers[name] = stack.start(name, old.argv)
                stack.wait_port(info.server_ports[name], info.servers[name])
            elif fault == "agent":
                # Only agent 2 is killed: agent 1 lives through the whole run
                # (HAProxy reloads, feed restarts) and is checked for leaks.
                i = 1
                info.agent_procs[i].kill()
                time.sleep(1)
                argv = info.agent_argvs[i]
                p = stack.start(f"route-agent-{i + 1}", argv)
                stack.wait_port(info.agent_ports[i], p, timeout=10.0)
                info.agent_procs[i] = p
            elif fault == "seed":
                pin = f"project {pinned} node13 node11\n" if step % 2 else ""
                ru.write_atomic(seed, text + pin)
            elif fault == "reload":
                stack_util.reload_haproxy(info)
            elif fault == "healthcheckd":
                hc.kill()
                time.sleep(1)
                hc = stack.start("healthcheckd", hc_argv)
                stack.wait_unix(feed, hc)
            step += 1
            time.sleep(2)
        time.sleep(3)                      # let the last fault settle
    finally:
        for ld in loads:
            ld.stop()

    total_ok = sum(ld.ok for ld in loads)
    failures = [f for ld in loads for f in ld.failures]
    retried = sum(ld.retried for ld in loads)
    print(f"soak: {SECONDS:.0f} s, {step} faults, {total_ok} GETs answered, {len(failures)} failed, "
          f"{retried} re-sent after an idle keep-alive close")
    assert total_ok > 0
    assert not failures, failures[:10]
    for p in info.agent_procs + [hc, info.haproxy]:
        assert p.alive(), f"{p.name} died:\n{p.log()[-3000:]}"
    stack_util.wait_agents_up(info)
    fds_after = {k: fd_count(p) for k, p in watched().items()}
    print(f"soak: descriptors before {fds_before} after {fds_after}")
    # Restarted processes start afresh; the survivors must not leak.
    for k in ("agent1", "haproxy-master"):
        assert fds_after[k] <= fds_before[k] + 10, (k, fds_before[k], fds_after[k])
    rss_after = rss_kb(info.agent_procs[0].pid)
    print(f"soak: route-agent-1 RSS {rss_before} kB -> {rss_after} kB")
    assert rss_after < rss_before * 1.5 + 4096, (rss_before, rss_after)
    assert fd_count(hc.pid) < 200
