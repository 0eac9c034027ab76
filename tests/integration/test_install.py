"""`make install` gives a layout that works, and `make uninstall` removes it.

* DESTDIR=<tmp> PREFIX=/usr: the expected files, executable scripts, the
  installed haproxy.cfg's default SG_CONF_DIR is /usr/share/seedgate/
  haproxy-conf, the backend generator calls /usr/bin/seedctl, nothing
  refers to the clone or to DESTDIR; uninstall leaves no file behind.
* PREFIX=<tmp> (no DESTDIR, so the installed paths are real): the README's
  deploy steps from the installed files only, with no SEEDGATE_BUILD and
  no SG_CONF_DIR: seedctl check, generate the backends, haproxy -c, start
  HAProxy (-W), a route agent and healthcheckd on loopback, and one
  project request reaches the node `seedctl where` names.
* `make help` prints DESTDIR/PREFIX's value, not "$(DESTDIR)$(PREFIX)".
"""
import os
import stat
import subprocess
from types import SimpleNamespace

import harness
from harness import free_port, http_get, wait_until
import stack_util

PROJECT = "6f1d0c6e-2b7a-4f38-9a51-3c2e8d7b4a10"
BINS = ("route-agent", "healthcheckd", "seedctl")
CONF = ("haproxy.cfg", "spoe-route.conf", "seed.conf", "run-haproxy.sh", "gen-backends.sh",
        "seed-targets.sh")
TLS = ("make-certs.sh", "ticket-keys.sh", "stunnel-conf.sh", "stunnel-run.sh", "stunnel.conf.in",
       "hitch-conf.sh", "hitch-run.sh")


def make(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    r = subprocess.run(["make", "-s", "-C", harness.ROOT, f"B={harness.BUILD}", *args],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, f"make {' '.join(args)} failed:\n{r.stdout}{r.stderr}"
    return r.stdout


def files_under(top):
    return sorted(os.path.relpath(os.path.join(d, f), top)
                  for d, _, fs in os.walk(top) for f in fs)


def test_destdir_layout_and_uninstall(stack):
    dest = stack.path("dest")
    make("install", f"DESTDIR={dest}", "PREFIX=/usr")
    usr = os.path.join(dest, "usr")
    share = os.path.join(usr, "share", "seedgate")
    for b in BINS:
        assert os.access(os.path.join(usr, "bin", b), os.X_OK), b
    for d, names in (("haproxy-conf", CONF), ("tls", TLS)):
        for n in names:
            p = os.path.join(share, d, n)
            assert os.path.isfile(p), p
            assert bool(os.stat(p).st_mode & stat.S_IXUSR) == n.endswith(".sh"), p
    cfg = open(os.path.join(share, "haproxy-conf", "haproxy.cfg")).read()
    assert 'presetenv SG_CONF_DIR    "/usr/share/seedgate/haproxy-conf"' in cfg
    gen = open(os.path.join(share, "haproxy-conf", "gen-backends.sh")).read()
    assert "/usr/bin/seedctl" in gen
    # hitch's ticket-key library, where the installed hitch-run.sh looks.
    assert os.path.isfile(os.path.join(usr, "lib", "seedgate", "libsg-hitch.so"))
    hitch_run = open(os.path.join(share, "tls", "hitch-run.sh")).read()
    assert 'so_dirs="/usr/lib/seedgate"' in hitch_run
    # Nothing installed leads back to the clone, its build tree or DESTDIR.
    for rel in files_under(share):
        text = open(os.path.join(share, rel), errors="replace").read()
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for bad in (harness.ROOT, harness.BUILD, dest, "SEEDGATE_BUILD", "../build"):
            assert bad not in code, (rel, bad)

    make("uninstall", f"DESTDIR={dest}", "PREFIX=/usr")
    assert files_under(dest) == []
    assert not os.path.exists(share)
    assert not os.path.exists(os.path.join(usr, "share", "doc", "seedgate"))


def test_make_help_prints_the_install_dir():
    out = make("help", "DESTDIR=/stage", "PREFIX=/opt/sg")
    assert "/stage/opt/sg" in out and "$(DESTDIR)" not in out, out


def test_readme_deploy_steps_from_installed_files(stack):
    prefix = stack.path("prefix")
    make("install", f"PREFIX={prefix}")
    bindir = os.path.join(prefix, "bin")
    conf = os.path.join(prefix, "share", "seedgate", "haproxy-conf")
    run = stack.path("run")
    os.makedirs(run)
    # The deploy runs from the installed files alone: no build tree, no
    # SG_CONF_DIR (the installed haproxy.cfg knows where its SPOE file is).
    env = {k: v for k, v in os.environ.items() if k not in ("SEEDGATE_BUILD", "SG_CONF_DIR", "SEEDCTL")}
    env["PATH"] = bindir + ":" + env.get("PATH", "")

    p = {n: free_port() for n in ("h1", "h2", "n1", "n2")}
    seed = stack.write("seed.conf", f"""replicas 2
dc us-east
hub  h1  127.0.0.1:{p['h1']}  dc=us-east
hub  h2  127.0.0.1:{p['h2']}  dc=us-east
node n1  127.0.0.1:{p['n1']}  dc=us-east
node n2  127.0.0.1:{p['n2']}  dc=us-east
""")
    demo = harness.bin_path("demo-server")
    for name, port in p.items():
        srv = stack.start(name, [demo, "--name", name, "--listen", f"127.0.0.1:{port}"])
        stack.wait_port(port, srv)

    # 1. check the seed directory
    r = subprocess.run(["seedctl", "check", seed], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    # 2. generate the backends, as the README writes it (and the same bytes
    #    through the kept wrapper, which must call the installed seedctl)
    backends = stack.path("backends.cfg")
    r = subprocess.run(["seedctl", "haproxy", "--seed", seed, "--out", backends],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    wrapped = stack.path("backends-wrapper.cfg")
    r = subprocess.run([os.path.join(conf, "gen-backends.sh"), "--seed", seed, "--out", wrapped],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert open(wrapped).read() == open(backends).read()
    # 3. HAProxy with both files, as the README writes it
    http_port, agent_port = free_port(), free_port()
    hap_env = dict(env, SG_HTTP_BIND=f"127.0.0.1:{http_port}", SG_PROXY_BIND=f"127.0.0.1:{free_port()}",
                   SG_RUN_DIR=run, SG_AGENT1=f"127.0.0.1:{agent_port}", SG_AGENT2=f"127.0.0.1:{agent_port}",
                   SG_DC="us-east", SG_USER="root", SG_GROUP="root",
                   SG_SPOE_PROCESSING=f"{int(500 * harness.SLOW)}ms")
    argv = [harness.HAPROXY, "-f", os.path.join(conf, "haproxy.cfg"), "-f", backends]
    r = subprocess.run([argv[0], "-c", *argv[1:]], capture_output=True, text=True, env=hap_env)
    assert r.returncode == 0, r.stdout + r.stderr
    # 4. a route agent, 5. healthcheckd feeding it and HAProxy
    feed = os.path.join(run, "health.sock")
    hc = stack.start("healthcheckd", [os.path.join(bindir, "healthcheckd"), "--seed", seed, "--feed", feed,
                                      "--haproxy-socket", os.path.join(run, "haproxy.sock"),
                                      "--stats", f"127.0.0.1:{free_port()}"], env=env)
    stack.wait_unix(feed, hc)
    agent = stack.start("route-agent", [os.path.join(bindir, "route-agent"), "--listen", f"127.0.0.1:{agent_port}",
                                        "--seed", seed, "--dc", "us-east", "--health", feed,
                                        "--stats", f"127.0.0.1:{free_port()}"], env=env)
    stack.wait_port(agent_port, agent)
    hap = stack.start("haproxy", [argv[0], "-W", "-db", *argv[1:]], env=hap_env)
    stack.wait_port(http_port, hap, timeout=10.0)
    stack_util.wait_agents_up(SimpleNamespace(admin_sock=os.path.join(run, "haproxy.sock"), haproxy=hap,
                                              http_port=http_port))

    # One routed request: the project's node, as seedctl where says.
    node = stack_util.where(seed, PROJECT)
    status, hdrs, body = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(
        http_get(http_port, f"/{PROJECT}/files")), 10, interval=0.1, what="routed request")
    assert hdrs["x-served-by"] == node and hdrs["x-served-by"] in ("n1", "n2"), (hdrs, body)
    assert hc.alive() and agent.alive() and hap.alive()

    for proc in (hap, agent, hc):
        proc.stop()

    # The installed hitch launcher finds the installed ticket-key library
    # (it then stops at the missing ticket keys: nothing is started).
    r = subprocess.run([os.path.join(prefix, "share", "seedgate", "tls", "hitch-run.sh"),
                        stack.path("no-hitch.conf"), run], capture_output=True, text=True, env=env)
    if "hitch not installed" not in r.stderr:
        assert r.returncode == 1 and "ticket.keys missing" in r.stderr, r.stderr
    make("uninstall", f"PREFIX={prefix}")
    assert files_under(prefix) == []
