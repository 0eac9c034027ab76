"""`make demo`'s script, haproxy-conf/demo.sh, run for real: in a temp
runtime dir, on free ports (so a user's demo on 8080 is not disturbed), with
a seed whose hubs and nodes listen on free ports.

Proves: it comes up and prints the URLs; a plain request reaches a hub of
the local datacenter; a project path reaches the node `seedctl where`
names (also over TLS through stunnel when the TLS scripts exist); every
process has DIR/<name>.pid with a live PID; SIGINT stops every one of them
and demo.sh exits 0.
"""
import os
import signal
import subprocess
import ssl
import http.client

import harness
from harness import free_port, http_get, wait_until
import stack_util

DEMO = os.path.join(stack_util.CONF_DIR, "demo.sh")
PROJECT = "6f1d0c6e-2b7a-4f38-9a51-3c2e8d7b4a10"


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_demo_sh_runs_and_stops(stack):
    p = {n: free_port() for n in ("h1", "h2", "heu", "n1", "n2", "n3", "neu")}
    seed = stack.write("seed.conf", f"""replicas 2
dc us-east
dc eu-west
hub  h1   127.0.0.1:{p['h1']}  dc=us-east
hub  h2   127.0.0.1:{p['h2']}  dc=us-east
hub  heu  127.0.0.1:{p['heu']} dc=eu-west
node n1   127.0.0.1:{p['n1']}  dc=us-east
node n2   127.0.0.1:{p['n2']}  dc=us-east
node n3   127.0.0.1:{p['n3']}  dc=us-east
node neu  127.0.0.1:{p['neu']} dc=eu-west
""")
    run = stack.path("demo")
    http_port, https_port, proxy_port = free_port(), free_port(), free_port()
    argv = [DEMO, "--seed", seed, "--dir", run, "--http", http_port, "--https", https_port,
            "--proxy", proxy_port, "--agents", f"{free_port()},{free_port()}",
            "--agent-stats", f"{free_port()},{free_port()}", "--hc-stats", free_port()]
    demo = stack.start("demo", argv, env={"SEEDGATE_BUILD": harness.BUILD})
    wait_until(lambda: "Ctrl-C stops everything" in demo.log() or not demo.alive(), 30,
               interval=0.1, what="demo.sh ready")
    assert demo.alive(), demo.log()
    out = demo.log()
    assert f"http://127.0.0.1:{http_port}/" in out

    # a hub of the local datacenter answers plain requests
    for _ in range(4):
        status, hdrs, _ = http_get(http_port, "/")
        assert status == 200 and hdrs["x-served-by"] in ("h1", "h2")
    # a project goes to the node seedctl where names
    node = stack_util.where(seed, PROJECT)
    assert node in ("n1", "n2", "n3")
    status, hdrs, body = http_get(http_port, f"/{PROJECT}/notebook")
    assert status == 200 and hdrs["x-served-by"] == node, (hdrs, body)

    tls = os.path.exists(os.path.join(run, "stunnel.pid"))
    if tls:
        ctx = ssl.create_default_context(cafile=os.path.join(run, "certs", "ca.crt"))
        c = http.client.HTTPSConnection("127.0.0.1", https_port, context=ctx, timeout=5)
        c.request("GET", f"/{PROJECT}/x")
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 200 and r.getheader("X-Served-By") == node
        assert r.getheader("Strict-Transport-Security") == "max-age=63072000"

    # a pid file for every process, each a live process
    names = ["h1", "h2", "heu", "n1", "n2", "n3", "neu", "route-agent-1", "route-agent-2", "haproxy"]
    if tls:
        names.append("stunnel")
    if os.path.exists(os.path.join(harness.BUILD, "healthcheckd")):
        names.append("healthcheckd")
    pids = {}
    for n in names:
        with open(os.path.join(run, f"{n}.pid")) as f:
            pids[n] = int(f.read().strip())
        assert pid_alive(pids[n]), n
    # haproxy.pid is the master: it has worker children
    with open(f"/proc/{pids['haproxy']}/task/{pids['haproxy']}/children") as f:
        workers = [int(x) for x in f.read().split()]
    assert workers

    demo.signal(signal.SIGINT)
    assert demo.popen.wait(20 * harness.SLOW) == 0, demo.log()
    for n, pid in pids.items():
        assert not pid_alive(pid), f"{n} ({pid}) still running"
    for pid in workers:
        assert not pid_alive(pid), f"haproxy worker {pid} still running"
    assert not [f for f in os.listdir(run) if f.endswith(".pid") and f != "stunnel.pid"]
