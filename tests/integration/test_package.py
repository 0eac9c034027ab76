"""The Debian package, its systemd units and its man pages, as ops meet them.

* `make deb` builds build/seedgate_*.deb with dpkg-buildpackage/debhelper;
  `dpkg-deb` shows binaries, units, man pages, the HAProxy files and
  /etc/seedgate as conffiles where Debian expects them.
* The README's deploy section, followed as written in a root of its own:
  an overlay of this machine's / with a private upper layer (Debian 12 with
  the package's dependencies already there, and nothing of seedgate's), so
  dpkg's maintainer scripts, adduser and systemd-tmpfiles run for real
  inside it without touching the machine. `apt-get install ./build/...`,
  every unit passes `systemd-analyze verify`, the units' own commands are
  started as written in them (environment files, ExecStartPre, ExecStart,
  User=, Type=notify readiness on a NOTIFY_SOCKET, Debian's haproxy.service
  with seedgate's drop-in), a request is routed to the node `seedctl where`
  names, the agent's ExecReload reloads its directory, then `apt-get
  purge` leaves nothing behind. There is no systemd
  running here, so the sandboxing directives are checked by verify only.
  `make test-chroot` (not in make test: it downloads Debian) does the same
  install in a fresh debootstrap'ed Debian 12.
* `man -l` renders every page without a warning, and every flag of every
  binary's --help is in its man page and the other way round.
"""
import glob
import os
import re
import shlex
import shutil
import socket
import subprocess

import pytest

import harness
from harness import free_port, http_get, wait_until
import stack_util

PROJECT = "6f1d0c6e-2b7a-4f38-9a51-3c2e8d7b4a10"
MAN = os.path.join(harness.ROOT, "man")
UNITS = ("route-agent@.service", "healthcheckd.service", "seedctl-register@.service")
PKG_FILES = (
    "usr/bin/route-agent", "usr/bin/healthcheckd", "usr/bin/seedctl",
    "lib/systemd/system/route-agent@.service", "lib/systemd/system/healthcheckd.service",
    "lib/systemd/system/seedctl-register@.service", "lib/systemd/system/haproxy.service.d/seedgate.conf",
    "usr/lib/tmpfiles.d/seedgate.conf", "usr/libexec/seedgate/haproxy-admin-socket",
    "usr/share/man/man8/route-agent.8.gz", "usr/share/man/man8/healthcheckd.8.gz",
    "usr/share/man/man8/seedctl.8.gz", "usr/share/man/man5/seed.conf.5.gz",
    "usr/share/man/man7/seedgate.7.gz",
    "usr/share/seedgate/haproxy-conf/haproxy.cfg", "usr/share/seedgate/haproxy-conf/spoe-route.conf",
    "usr/share/seedgate/monitoring/seedgate-alerts.yml", "usr/share/seedgate/monitoring/seedgate-dashboard.json",
    "usr/share/seedgate/monitoring/prometheus-scrape.yml", "usr/share/seedgate/haproxy-conf/prometheus.cfg",
    "etc/seedgate/seed.conf", "etc/seedgate/route-agent-1.env", "etc/seedgate/route-agent-2.env",
    "etc/seedgate/healthcheckd.env", "etc/seedgate/haproxy.env", "etc/seedgate/register.env.example",
)
CONFFILES = sorted("/" + f for f in PKG_FILES if f.startswith("etc/"))


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)
    assert r.returncode == 0, f"{argv} failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def deb():
    """The package: SEEDGATE_DEB when given (make test-chroot), else `make deb`."""
    if os.environ.get("SEEDGATE_DEB"):
        return os.environ["SEEDGATE_DEB"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    run(["make", "-s", "-C", harness.ROOT, f"B={harness.BUILD}", "deb"], env=env, timeout=900)
    debs = glob.glob(os.path.join(harness.BUILD, "seedgate_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


def test_deb_contents_and_conffiles(deb, tmp_path):
    listing = run(["dpkg-deb", "-c", deb])
    paths = {line.split()[-1].lstrip("./") for line in listing.splitlines()}
    missing = [f for f in PKG_FILES if f not in paths]
    assert not missing, missing
    # Nothing of the build tree or the tests is shipped.
    assert not [p for p in paths if "/tests/" in p or "build/" in p], paths
    run(["dpkg-deb", "-e", deb, str(tmp_path / "ctl")])
    assert sorted((tmp_path / "ctl" / "conffiles").read_text().split()) == CONFFILES
    control = (tmp_path / "ctl" / "control").read_text()
    assert "Package: seedgate" in control and "adduser" in control, control


# ---------------------------------------------------------------------------
# man pages and --help

def roff_text(path):
    """A man page's source with roff escapes for '-' and fonts undone."""
    text = open(path).read().replace("\\-", "-")
    return re.sub(r"\\f[BIRP]", "", text)


FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")


def flags(text):
    return set(FLAG.findall(text))


def help_text(binary, *args):
    r = subprocess.run([harness.bin_path(binary), *args, "--help"], capture_output=True, text=True, timeout=10)
    return r.stdout + r.stderr


SEEDCTL_CMDS = ("check", "where", "stats", "haproxy", "health", "import", "export", "put", "del",
                "drain", "register", "token")


@pytest.mark.parametrize("binary", ["route-agent", "healthcheckd", "seedctl"])
def test_every_help_flag_is_in_the_man_page_and_back(binary):
    text = help_text(binary)
    if binary == "seedctl":
        for cmd in SEEDCTL_CMDS:
            text += help_text(binary, cmd)
    page = roff_text(os.path.join(MAN, f"{binary}.8"))
    h, m = flags(text), flags(page)
    assert len(h) > 5, (binary, text)
    assert h - m == set(), f"{binary}: in --help, not in {binary}(8): {sorted(h - m)}"
    assert m - h == set(), f"{binary}: in {binary}(8), not in --help: {sorted(m - h)}"


def test_man_pages_render_without_warnings():
    pages = sorted(glob.glob(os.path.join(MAN, "*.[0-9]")))
    assert {os.path.basename(p) for p in pages} == {
        "route-agent.8", "healthcheckd.8", "seedctl.8", "seed.conf.5", "seedgate.7"}
    for p in pages:
        r = subprocess.run(["man", "--warnings", "-l", p], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat"))
        assert r.returncode == 0 and r.stderr == "", (p, r.stderr)
        assert len(r.stdout.splitlines()) > 20, (p, r.stdout)


# ---------------------------------------------------------------------------
# Type=notify: the daemons say READY=1 on $NOTIFY_SOCKET themselves

class NotifySocket:
    """systemd's side of sd_notify: a datagram socket that collects states."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)      # the daemons may run as another user
        self.sock.setblocking(False)
        self.states = []

    def ready(self):
        try:
            while True:
                self.states += self.sock.recv(4096).decode().split("\n")
        except BlockingIOError:
            pass
        return "READY=1" in self.states

    def close(self):
        self.sock.close()


def test_route_agent_and_healthcheckd_notify_ready(stack):
    seed = stack.write("seed.conf", f"dc a\nhub h1 127.0.0.1:{free_port()} dc=a check=none\n"
                                    f"node n1 127.0.0.1:{free_port()} dc=a check=none\n")
    for name, argv in (
            ("healthcheckd", [harness.bin_path("healthcheckd"), "--seed", seed, "--feed", stack.path("feed.sock")]),
            ("route-agent", [harness.bin_path("route-agent"), "--seed", seed, "--listen", f"127.0.0.1:{free_port()}"])):
        ns = NotifySocket(stack.path(f"notify-{name}.sock"))
        stack.defer(ns.close)
        proc = stack.start(name, argv, env=dict(os.environ, NOTIFY_SOCKET=ns.path))
        wait_until(ns.ready, 10, what=f"{name} READY=1")
        assert proc.alive()
        proc.stop()
        ns.ready()
        assert "STOPPING=1" in ns.states, ns.states


# ---------------------------------------------------------------------------
# The README's deploy section in a root of its own

README_STEPS = (
    "apt-get install ./build/seedgate_*.deb",
    "seedctl check /etc/seedgate/seed.conf",
    "seedctl haproxy --seed /etc/seedgate/seed.conf --out /etc/seedgate/backends.cfg",
    "systemctl enable --now healthcheckd route-agent@1 route-agent@2",
    "systemctl restart haproxy",
    "apt-get purge seedgate",
)


class OverlayRoot:
    """This machine's / under a private, throw-away upper layer, with /proc and
    /dev bound in: a root where dpkg and the daemons run chrooted."""

    def __init__(self, base):
        self.base = base
        self.path = os.path.join(base, "root")
        self.mounts = []
        for d in ("upper", "work", "root"):
            os.makedirs(os.path.join(base, d))
        self._mount(["-t", "overlay", "overlay", "-o",
                     f"lowerdir=/,upperdir={base}/upper,workdir={base}/work"], self.path)
        for d in ("proc", "dev"):
            self._mount(["--bind", f"/{d}"], os.path.join(self.path, d))

    def _mount(self, args, target):
        run(["mount", *args, target])
        self.mounts.append(target)

    def close(self):
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-l", m], capture_output=True, timeout=60)
        self.mounts = []

    def p(self, path):
        return os.path.join(self.path, path.lstrip("/"))

    def sh(self, cmd, check=True):
        r = subprocess.run(["chroot", self.path, "sh", "-c", cmd], capture_output=True, text=True,
                           timeout=600, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if check:
            assert r.returncode == 0, f"{cmd} ({r.returncode}):\n{r.stdout}{r.stderr}"
        return r


def read_env_file(path):
    env = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k] = v[1:-1] if len(v) > 1 and v[0] == v[-1] and v[0] in "\"'" else v
    return env


def unit_service(root, name, instance=None, extra_env=None):
    """The [Service] settings of unit NAME in ROOT, drop-ins applied, %i and the
    environment expanded as systemd does: ${VAR} is one word, a lone $VAR
    is split into words. Returns (env, {'ExecStartPre': [argv...], ...}, user)."""
    unit_dir = root.p("/lib/systemd/system")
    files = [os.path.join(unit_dir, name)]
    files += sorted(glob.glob(os.path.join(unit_dir, name.replace("@" + (instance or ""), "@") + ".d", "*.conf")))
    env, cmds, user, section = dict(extra_env or {}), {}, None, None
    for f in files:
        for raw in open(f):
            line = raw.strip()
            if line.startswith("["):
                section = line
                continue
            if section != "[Service]" or not line or line.startswith("#") or "=" not in line:
                continue
            key, val = line.split("=", 1)
            val = val.replace("%i", instance or "")
            if key == "EnvironmentFile":
                optional = val.startswith("-")
                path = root.p(val.lstrip("-"))
                if os.path.exists(path):
                    env.update(read_env_file(path))
                else:
                    assert optional, path
            elif key == "Environment":
                for word in shlex.split(val):
                    k, v = word.split("=", 1)
                    env[k] = v
            elif key == "User":
                user = val
            elif key.startswith("Exec"):
                if val == "":
                    cmds[key] = []
                else:
                    cmds.setdefault(key, []).append(val)

    def expand(cmd):
        argv = []
        for word in shlex.split(cmd):
            m = re.fullmatch(r"\$(\w+)", word)
            if m:
                argv += env.get(m.group(1), "").split()
            else:
                argv.append(re.sub(r"\$\{(\w+)\}", lambda mm: env.get(mm.group(1), ""), word))
        return argv
    return env, {k: [expand(c) for c in v] for k, v in cmds.items()}, user


def start_unit(stack, root, name, instance=None):
    """Starts a unit's commands as systemd would (without its sandbox):
    ExecStartPre to completion, ExecStart with NOTIFY_SOCKET until READY=1,
    then ExecStartPost."""
    env, cmds, user = unit_service(root, name, instance)
    label = name.replace("@.service", f"@{instance}").replace(".service", "")
    chroot = ["chroot"] + ([f"--userspec={user}:{user}"] if user else []) + [root.path]
    penv = dict(os.environ, **env)
    for argv in cmds.get("ExecStartPre", []):
        run(chroot + argv, env=penv)
    assert len(cmds["ExecStart"]) == 1, cmds
    ns = NotifySocket(root.p(f"/run/notify-{label}.sock"))
    stack.defer(ns.close)
    proc = stack.start(label, chroot + cmds["ExecStart"][0],
                       env=dict(penv, NOTIFY_SOCKET=f"/run/notify-{label}.sock"))
    wait_until(lambda: ns.ready() or not proc.alive(), 15, what=f"{label} READY=1")
    assert proc.alive(), proc.log()
    for argv in cmds.get("ExecStartPost", []):
        run(["chroot", root.path] + argv, env=penv)
    return proc


def test_readme_deploy_with_the_package(deb, stack):
    readme = open(os.path.join(harness.ROOT, "README.md")).read()
    deploy = readme[readme.index("## Deploying"):]
    for step in README_STEPS:
        assert step in deploy, f"README's deploy section lost: {step}"
    assert not os.path.exists("/etc/seedgate"), "this machine has seedgate installed: not a clean base"

    root = OverlayRoot(stack.path("ovl"))
    stack.defer(root.close)
    os.makedirs(root.p("/root/build"), exist_ok=True)
    shutil.copy(deb, root.p("/root/build/"))

    # Install, as the README says (man-db's index rebuild, the slow part
    # of any install, is switched off in the root the Debian way).
    root.sh("rm -f /var/lib/man-db/auto-update")
    root.sh("cd /root && apt-get install -y ./build/seedgate_*.deb")
    for f in PKG_FILES:
        assert os.path.exists(root.p(f)), f
    assert root.sh("id -u seedgate").stdout.strip().isdigit()
    st = os.stat(root.p("/run/seedgate"))
    assert st.st_uid == int(root.sh("id -u seedgate").stdout), "tmpfiles did not make /run/seedgate"
    assert os.path.exists(root.p("/etc/seedgate/backends.cfg")), "postinst generated no backends"
    assert "/etc/seedgate/route-agent-1.env" in root.sh("dpkg-query --showformat='${Conffiles}' -W seedgate").stdout

    # Every unit, as installed, passes systemd-analyze verify (templates
    # through an instance; haproxy.service with seedgate's drop-in).
    root.sh("systemd-analyze verify route-agent@1.service healthcheckd.service "
            "seedctl-register@node1.service haproxy.service")
    root.sh("man -w route-agent healthcheckd seedctl seed.conf seedgate")

    # Configure /etc/seedgate: a seed directory of demo servers, free ports.
    p = {n: free_port() for n in ("h1", "h2", "n1", "n2")}
    demo = harness.bin_path("demo-server")
    for n, port in p.items():
        srv = stack.start(n, [demo, "--name", n, "--listen", f"127.0.0.1:{port}"])
        stack.wait_port(port, srv)
    with open(root.p("/etc/seedgate/seed.conf"), "w") as f:
        f.write("replicas 2\ndc us-east\n" + "".join(
            f"{'hub' if n[0] == 'h' else 'node'} {n} 127.0.0.1:{port} dc=us-east\n" for n, port in p.items()))
    root.sh("seedctl check /etc/seedgate/seed.conf")
    root.sh("seedctl haproxy --seed /etc/seedgate/seed.conf --out /etc/seedgate/backends.cfg")
    ports = {k: free_port() for k in ("http", "proxy", "a1", "a2", "s1", "s2", "hc", "prom")}

    def edit(name, subst):
        path = root.p(f"/etc/seedgate/{name}")
        text = open(path).read()
        for old, key in subst.items():
            assert old in text, (name, old)
            text = text.replace(old, f"127.0.0.1:{ports[key]}")
        open(path, "w").write(text)
    edit("route-agent-1.env", {"127.0.0.1:12345": "a1", "127.0.0.1:9101": "s1"})
    edit("route-agent-2.env", {"127.0.0.1:12346": "a2", "127.0.0.1:9102": "s2"})
    edit("healthcheckd.env", {"127.0.0.1:9110": "hc"})
    edit("haproxy.env", {"127.0.0.1:8080": "http", "127.0.0.1:8081": "proxy",
                         "127.0.0.1:12345": "a1", "127.0.0.1:12346": "a2", "127.0.0.1:8405": "prom"})

    # Start the units' commands in their order (healthcheckd, the agents,
    # then HAProxy through Debian's unit and seedgate's drop-in).
    procs = [start_unit(stack, root, "healthcheckd.service"),
             start_unit(stack, root, "route-agent@.service", "1"),
             start_unit(stack, root, "route-agent@.service", "2"),
             start_unit(stack, root, "haproxy.service")]
    sock = root.p("/run/seedgate/haproxy.sock")
    assert os.stat(sock).st_gid == int(root.sh("id -g seedgate").stdout), "admin socket not group seedgate"
    stack_util.wait_agents_up(type("I", (), {"admin_sock": sock})())

    # Route a request, as the README's last step: the node seedctl names.
    node = stack_util.where(root.p("/etc/seedgate/seed.conf"), PROJECT)
    status, hdrs, body = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(
        http_get(ports["http"], f"/{PROJECT}/files")), 15, interval=0.1, what="routed request")
    assert hdrs["x-served-by"] == node, (hdrs, body)
    # `systemctl reload route-agent@1`: the unit's ExecReload, with its
    # $MAINPID, reloads the directory.
    def reloads_ok():
        text = http_get(ports["s1"], "/metrics")[2].decode()
        return int(re.search(r'^seedgate_seed_reloads_total\{result="ok"\} (\d+)', text, re.M).group(1))
    before = reloads_ok()
    _, cmds, _ = unit_service(root, "route-agent@.service", "1", {"MAINPID": str(procs[1].pid)})
    for argv in cmds["ExecReload"]:
        run(["chroot", root.path] + argv)
    wait_until(lambda: reloads_ok() > before, 10, what="route-agent@1 reloaded by ExecReload")
    # Every /metrics of the deployment answers, HAProxy's exporter included.
    for k in ("s1", "s2", "hc", "prom"):
        status, _, body = http_get(ports[k], "/metrics")
        assert status == 200 and body, (k, status)
    for proc in reversed(procs):
        proc.stop()

    # Remove, then purge: nothing of the package is left in the root.
    root.sh("apt-get remove -y seedgate")
    assert not os.path.exists(root.p("/usr/bin/route-agent"))
    assert os.path.exists(root.p("/etc/seedgate/seed.conf")), "remove must keep the conffiles"
    root.sh("apt-get purge -y seedgate")
    for f in PKG_FILES + ("etc/seedgate", "var/lib/seedgate"):
        assert not os.path.exists(root.p(f)), f
    assert root.sh("id seedgate", check=False).returncode != 0, "purge left the system user"


# ---------------------------------------------------------------------------
# make test-chroot: a fresh Debian 12 from the archive (minutes; not in make test)

@pytest.mark.skipif(not os.environ.get("SEEDGATE_CHROOT"), reason="make test-chroot runs it (debootstrap)")
def test_chroot_fresh_debian_install_and_purge(deb, tmp_path):
    """debootstrap a minimal Debian 12, `apt-get install ./seedgate_*.deb`
    there (dependencies from the archive), check the files, units and user,
    then purge."""
    root = str(tmp_path / "bookworm")
    run(["debootstrap", "--variant=minbase", "bookworm", root], timeout=1800)
    mounts = []
    try:
        for d in ("proc", "dev"):
            run(["mount", "--bind", f"/{d}", os.path.join(root, d)])
            mounts.append(os.path.join(root, d))
        shutil.copy("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf"))
        os.makedirs(os.path.join(root, "root/build"), exist_ok=True)
        shutil.copy(deb, os.path.join(root, "root/build/"))

        def sh(cmd):
            return run(["chroot", root, "sh", "-c", cmd], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                       timeout=1800)
        sh("apt-get update -q && cd /root && apt-get install -y ./build/seedgate_*.deb systemd man-db")
        for f in PKG_FILES:
            assert os.path.exists(os.path.join(root, f)), f
        sh("id seedgate && test -d /run/seedgate && test -s /etc/seedgate/backends.cfg")
        sh("systemd-analyze verify route-agent@1.service healthcheckd.service seedctl-register@n.service")
        sh("seedctl check /etc/seedgate/seed.conf && route-agent -c --seed /etc/seedgate/seed.conf")
        sh("apt-get purge -y seedgate")
        for f in PKG_FILES + ("etc/seedgate",):
            assert not os.path.exists(os.path.join(root, f)), f
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", m], timeout=60)
