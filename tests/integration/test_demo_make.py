"""`make demo`'s script, haproxy-conf/demo.sh, run for real: in a temp
runtime dir, on free ports (so a user's demo on 8080 is not disturbed), with
a seed whose hubs and nodes listen on free ports.

Proves: it comes up and prints the URLs; a plain request reaches a hub of
the local datacenter; a project path reaches the node `seedctl where`
names (also over TLS through stunnel when the TLS scripts exist); every
process has DIR/<name>.pid with a live PID; SIGINT stops every one of them
and demo.sh exits 0; so does SIGTERM, also when the demo was started with
SIGINT ignored (nohup, CI runners); a second demo on the same runtime
directory refuses to start and names the first, which keeps running; when
any of its processes dies the demo says which and stops all the others;
HAProxy's own ALERT lines reach the demo's output at once; a runtime
directory too deep for unix sockets is refused up front; with --etcd
(`make demo ETCD=1`) the directory is in a local etcd the demo starts and
stops, and a node added with `seedctl put` serves its projects.

The demo is started with SIGINT restored to its default in the child
(preexec_fn): a test run whose parent ignores SIGINT would otherwise start
a demo that cannot trap it (bash cannot trap a signal ignored at entry).
"""
import os
import signal
import subprocess
import ssl
import http.client

import pytest

import etcd_util
import harness
from harness import free_port, http_get, wait_until
import route_util
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


def start_demo(stack, argv, name="demo", sigint=signal.SIG_DFL, env=None):
    """Like stack.start(), with SIGINT set to `sigint` in the child before
    exec (SIG_DFL: trappable whatever our own parent did; SIG_IGN: what
    nohup or a CI runner gives)."""
    log_path = stack.path(f"{name}.log")
    full_env = dict(os.environ, SEEDGATE_BUILD=harness.BUILD)
    full_env.update(env or {})
    with open(log_path, "ab") as logf:
        popen = subprocess.Popen([str(a) for a in argv], stdout=logf, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=stack.dir, env=full_env,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    proc = harness.Proc(name, argv, log_path, popen)
    stack.procs.append(proc)
    return proc


def write_seed(stack):
    p = {n: free_port() for n in ("h1", "h2", "heu", "n1", "n2", "n3", "neu")}
    return stack.write("seed.conf", f"""replicas 2
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


def demo_argv(seed, run, http_port=None, https_port=None):
    return [DEMO, "--seed", seed, "--dir", run, "--http", http_port or free_port(),
            "--https", https_port or free_port(), "--proxy", free_port(),
            "--agents", f"{free_port()},{free_port()}",
            "--agent-stats", f"{free_port()},{free_port()}", "--hc-stats", free_port()]


def wait_ready(demo):
    # Generous: the demo makes an RSA key and starts a dozen processes, on
    # a machine other test runs share (30 s was seen to run out).
    wait_until(lambda: "stops everything" in demo.log() or not demo.alive(), 120,
               interval=0.1, what="demo.sh ready")
    assert demo.alive(), demo.log()


def read_pids(run):
    """{name: pid} of every DIR/<name>.pid but demo.pid."""
    pids = {}
    for f in os.listdir(run):
        if f.endswith(".pid") and f not in ("demo.pid", "stunnel.pid"):
            with open(os.path.join(run, f)) as fh:
                pids[f[:-4]] = int(fh.read().strip())
    return pids


def haproxy_workers(master):
    with open(f"/proc/{master}/task/{master}/children") as f:
        return [int(x) for x in f.read().split()]


def stop_and_check(demo, sig, run, pids, workers):
    """sig to the demo: it exits 0 and every process it started is gone."""
    demo.signal(sig)
    assert demo.popen.wait(60 * harness.SLOW) == 0, demo.log()
    assert_all_stopped(run, pids, workers)


def assert_all_stopped(run, pids, workers):
    for n, pid in pids.items():
        assert not pid_alive(pid), f"{n} ({pid}) still running"
    for pid in workers:
        assert not pid_alive(pid), f"haproxy worker {pid} still running"
    assert not [f for f in os.listdir(run) if f.endswith(".pid") and f != "stunnel.pid"]
def test_demo_sh_runs_and_stops(stack):
    seed = write_seed(stack)
    run = stack.path("demo")
    http_port, https_port = free_port(), free_port()
    demo = start_demo(stack, demo_argv(seed, run, http_port, https_port))
    wait_ready(demo)
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
    workers = haproxy_workers(pids["haproxy"])
    assert workers
    stop_and_check(demo, signal.SIGINT, run, pids, workers)


def test_demo_stops_on_sigterm_even_with_sigint_ignored(stack):
    """nohup / CI: SIGINT ignored at entry cannot be trapped by bash; the
    demo says so, and SIGTERM stops everything cleanly."""
    seed = write_seed(stack)
    run = stack.path("demo")
    demo = start_demo(stack, demo_argv(seed, run), sigint=signal.SIG_IGN)
    wait_ready(demo)
    assert "SIGINT ignored" in demo.log() and f"kill -TERM {demo.pid}" in demo.log()
    pids = read_pids(run)
    workers = haproxy_workers(pids["haproxy"])
    assert workers
    stop_and_check(demo, signal.SIGTERM, run, pids, workers)


def test_second_demo_on_same_dir_refuses_and_first_keeps_running(stack):
    seed = write_seed(stack)
    run = stack.path("demo")
    http_port = free_port()
    first = start_demo(stack, demo_argv(seed, run, http_port))
    wait_ready(first)
    pids = read_pids(run)
    second = start_demo(stack, demo_argv(seed, run), name="demo-2")
    assert second.popen.wait(60 * harness.SLOW) == 1, second.log()
    msg = second.log()
    assert "already running" in msg and run in msg and f"pid {first.pid}" in msg, msg
    # The first demo lost nothing: its pid files, its processes, its proxy.
    assert first.alive() and read_pids(run) == pids
    for n, pid in pids.items():
        assert pid_alive(pid), n
    status, hdrs, _ = http_get(http_port, "/")
    assert status == 200 and hdrs["x-served-by"] in ("h1", "h2")
    with open(os.path.join(run, "demo.pid")) as f:
        assert int(f.read()) == first.pid
    first.signal(signal.SIGINT)
    assert first.popen.wait(60 * harness.SLOW) == 0, first.log()


def test_demo_stops_everything_when_one_process_dies(stack):
    seed = write_seed(stack)
    run = stack.path("demo")
    demo = start_demo(stack, demo_argv(seed, run))
    wait_ready(demo)
    pids = read_pids(run)
    workers = haproxy_workers(pids["haproxy"])
    os.kill(pids["route-agent-2"], signal.SIGKILL)
    assert demo.popen.wait(60 * harness.SLOW) == 1, demo.log()
    assert f"route-agent-2 (pid {pids['route-agent-2']}) exited (killed by SIGKILL)" in demo.log(), demo.log()
    assert_all_stopped(run, pids, workers)


def test_demo_shows_haproxy_alerts_and_fails_fast(stack):
    """A HAProxy that refuses its configuration: the demo exits 1 with
    HAProxy's own ALERT line in its output, without waiting for a port."""
    seed = write_seed(stack)
    run = stack.path("demo")
    fake = stack.write("fake-haproxy", "#!/bin/sh\n"
                       "echo '[ALERT]    (1) : config : parsing [backends.cfg:7] : fake refusal' >&2\n"
                       "exit 1\n")
    os.chmod(fake, 0o755)
    demo = start_demo(stack, demo_argv(seed, run), env={"HAPROXY": fake})
    assert demo.popen.wait(120 * harness.SLOW) == 1, demo.log()
    out = demo.log()
    assert "haproxy (pid" in out and "exited (exit status 1) before listening" in out, out
    assert "parsing [backends.cfg:7] : fake refusal" in out, out
    assert "configuration check failed" in out, out
    assert "after 10 s" not in out, out


def test_demo_refuses_a_runtime_dir_too_deep_for_unix_sockets(stack):
    seed = write_seed(stack)
    run = os.path.join(stack.dir, "d" * max(1, 100 - len(stack.dir)))
    demo = start_demo(stack, demo_argv(seed, run))
    assert demo.popen.wait(60 * harness.SLOW) == 1, demo.log()
    out = demo.log()
    sock = os.path.join(run, "node-fallback.sock")
    assert f"unix socket path {os.path.join(run, 'haproxy.sock')}" in out or sock in out, out
    assert "at most 97" in out and "--dir" in out, out
    assert not os.path.exists(os.path.join(run, "route-agent-1.pid")), out


def test_demo_etcd_mode_follows_seedctl_put(stack):
    """`make demo ETCD=1` (demo.sh --etcd): a local etcd started by the demo
    holds the imported seed, every daemon follows it; a project is routed
    to the node `seedctl where --seed etcd://` names; a node added with
    `seedctl put` serves its projects (HAProxy gets its server live); SIGTERM
    stops everything, etcd included."""
    if not etcd_util.have_etcd():
        pytest.skip("etcd not installed")
    seed = write_seed(stack)
    run = stack.path("demo")
    http_port, etcd_port = free_port(), free_port()
    demo = start_demo(stack, demo_argv(seed, run, http_port) + ["--etcd", "--etcd-ports", f"{etcd_port},{free_port()}"])
    wait_ready(demo)
    spec = f"etcd://127.0.0.1:{etcd_port}/seedgate/demo"
    assert f"seedctl put --etcd {spec}" in demo.log(), demo.log()
    pids = read_pids(run)
    assert "etcd" in pids and pid_alive(pids["etcd"])

    node = stack_util.where(spec, PROJECT)
    assert node == stack_util.where(seed, PROJECT)
    status, hdrs, _ = http_get(http_port, f"/{PROJECT}/x")
    assert status == 200 and hdrs["x-served-by"] == node

    # a new node: its server, then one record in etcd
    n9 = free_port()
    stack.start("n9", [harness.bin_path("demo-server"), "--name", "n9", "--listen", f"127.0.0.1:{n9}"])
    stack.wait_port(n9)
    line = f"node n9 127.0.0.1:{n9} dc=us-east weight=10"
    with open(seed) as f:
        side = stack.write("with-n9.conf", f.read() + line + "\n")
    ids = [pid for pid, v in route_util.seedctl_where(side, route_util.random_ids(200, seed=5)).items()
           if v[0] == "n9"][:3]
    assert ids, "n9 should be primary for some projects"
    r = subprocess.run([harness.bin_path("seedctl"), "put", "--etcd", spec, line], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    for pid in ids:
        wait_until(lambda pid=pid: http_get(http_port, f"/{pid}/x")[1].get("x-served-by") == "n9", 10,
                   interval=0.05, what=f"{pid} served by n9")

    workers = haproxy_workers(pids["haproxy"])
    stop_and_check(demo, signal.SIGTERM, run, pids, workers)
