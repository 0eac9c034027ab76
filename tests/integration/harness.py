"""Integration-test harness: real processes on 127.0.0.1, one temp dir each.

Every test gets a `stack` fixture (see conftest.py). Through it a test starts
HAProxy, stunnel, our daemons and small servers; each process logs to its own
file in the test's temp dir, is stopped by its PID when the test ends, and
has its log printed when the test fails. Ports come from the kernel (bind to
port 0), so tests never collide with each other or with a running demo.

Kept deliberately small (hitch's tests are the model): start_*, wait_*, and
plain asserts in the tests. Area-specific helpers live in their own
modules next to the tests that use them (e.g. spop_client.py).
"""
import http.client
import os
import random
import shutil
from signal import SIGKILL, SIGTERM
import socket
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SEEDGATE_BUILD", os.path.join(ROOT, "build"))
ASAN = os.environ.get("SEEDGATE_ASAN") == "1"
# Sanitised binaries are several times slower; tests scale their waits.
SLOW = 3.0 if ASAN else 1.0
# The HAProxy binary every test runs: HAPROXY=/path/to/haproxy (e.g. a 3.x
# build) or the first haproxy on PATH. run-haproxy.sh and demo.sh read the
# same variable.
HAPROXY = os.environ.get("HAPROXY") or "haproxy"
# HAProxy refuses a unix socket path longer than 97 bytes (the kernel's
# sun_path holds 108; HAProxy keeps room for the temporary name it binds
# first). Measured with 2.6.12 and 3.5: 97 accepted, 98 "too long (max 97)".
HAPROXY_SOCK_MAX = 97


def check_socket_path(path, who="HAProxy"):
    """Fails the test at once, saying why, when path is too long to be a
    unix socket for HAProxy (a long TMPDIR or --basetemp): otherwise HAProxy
    refuses the configuration and the test times out waiting for a port."""
    n = len(os.fsencode(path))
    if n > HAPROXY_SOCK_MAX:
        raise AssertionError(
            f"unix socket path {path} is {n} bytes; {who} accepts at most {HAPROXY_SOCK_MAX} "
            f"(sun_path is 108 bytes): run the tests with a shorter temp dir, "
            f"e.g. TMPDIR=/tmp or pytest --basetemp=/tmp/sg")
    return path


def bin_path(name):
    """Path of a built binary (route-agent, healthcheckd, seedctl, tools)."""
    for cand in (os.path.join(BUILD, name), os.path.join(BUILD, "tests", name),
                 os.path.join(BUILD, "tools", name)):
        if os.path.exists(cand):
            return cand
    raise FileNotFoundError(f"{name} not built under {BUILD} (run make)")


_given_ports = set()


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on, for a server to bind.

    Chosen below the kernel's ephemeral range: a port the kernel hands out
    with bind(0) is also what it hands out as the SOURCE port of outgoing
    connections (HAProxy to a backend, a client to HAProxy), so between our
    check and the server's bind another connection could take it. Below the
    range only listeners compete, and each port is given out once per run."""
    lo, hi = _ephemeral_range()
    top = min(lo - 1, 32000)
    for _ in range(2000):
        port = random.randint(10000, top)
        if port in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    raise RuntimeError("no free port found")


def wait_until(pred, timeout=5.0, interval=0.02, what="condition"):
    """Poll pred() until it returns a truthy value; raise after timeout."""
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - report the last error
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Proc:
    """One started process: its argv, log file and PID."""

    def __init__(self, name, argv, log_path, popen):
        self.name, self.argv, self.log_path, self.popen = name, argv, log_path, popen

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, sig=SIGTERM, timeout=5.0):
        """Stop by PID: sig, then SIGKILL after timeout. Returns the exit code."""
        if self.alive():
            try:
                os.kill(self.pid, sig)
                return self.popen.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, SIGKILL)
        return self.popen.wait()

    def kill(self):
        return self.stop(SIGKILL)


class Stack:
    """The processes and files of one test. Created by the `stack` fixture."""

    def __init__(self, tmpdir):
        self.dir = str(tmpdir)
        self.procs = []
        self.cleanups = []

    def defer(self, fn):
        """Runs fn() at teardown, after every process is stopped (so a helper
        thread that serves them, a DNS or feed peer, is stopped last). Later
        registrations run first. Returns fn."""
        self.cleanups.append(fn)
        return fn

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def start(self, name, argv, env=None, cwd=None):
        """Start argv with stdout+stderr to <tmp>/<name>.log."""
        log_path = self.path(f"{name}.log")
        logf = open(log_path, "ab")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        popen = subprocess.Popen([str(a) for a in argv], stdout=logf, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=cwd or self.dir, env=full_env)
        logf.close()
        p = Proc(name, argv, log_path, popen)
        self.procs.append(p)
        return p

    def wait_port(self, port, proc=None, timeout=5.0):
        def ready():
            if proc is not None and not proc.alive():
                raise AssertionError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log()}")
            return port_open(port)
        wait_until(ready, timeout, what=f"port {port}")

    def wait_unix(self, path, proc=None, timeout=5.0):
        def ready():
            if proc is not None and not proc.alive():
                raise AssertionError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log()}")
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return True
        wait_until(ready, timeout, what=f"unix socket {path}")

    def haproxy(self, cfg_text, name="haproxy", extra_cfgs=(), wait_ports=()):
        """Check then start HAProxy (foreground, -db) with cfg_text."""
        cfg = self.write(f"{name}.cfg", cfg_text)
        argv = [HAPROXY, "-db", "-f", cfg]
        for extra in extra_cfgs:
            argv += ["-f", extra]
        chk = subprocess.run(argv[:1] + ["-c"] + argv[2:], capture_output=True, text=True)
        assert chk.returncode == 0, f"haproxy -c failed:\n{chk.stdout}{chk.stderr}"
        p = self.start(name, argv)
        for port in wait_ports:
            self.wait_port(port, p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            try:
                p.stop(timeout=3.0)
            except Exception:  # noqa: BLE001 - teardown must reach every process
                pass
        # Helper threads are joined before their sockets are closed: a thread
        # still blocked in recv() on a descriptor that another test reuses
        # would read that test's data (a feed line stolen by a leftover DNS
        # thread made test_health_failover time out by chance).
        while self.cleanups:
            fn = self.cleanups.pop()
            try:
                fn()
            except Exception:  # noqa: BLE001 - teardown must reach every helper
                pass

    def dump_logs(self):
        out = []
        for p in self.procs:
            out.append(f"----- {p.name} (pid {p.pid}, exit {p.popen.returncode}) {p.log_path}")
            out.append(p.log()[-6000:])
        return "\n".join(out)


class SocketThread(threading.Thread):
    """A helper thread that serves one socket and can be stopped for real:
    the socket gets a short timeout, `serve_once()` is called until stop()
    is asked, and stop() joins the thread BEFORE closing the socket, so no
    thread is ever left blocked on a descriptor number the next test may
    reuse. Subclasses set self.sock before calling start()."""

    POLL = 0.1

    def __init__(self):
        super().__init__(daemon=True)
        self._stop_ev = threading.Event()

    def run(self):
        self.sock.settimeout(self.POLL)
        while not self._stop_ev.is_set():
            try:
                if self.serve_once() is False:
                    break
            except socket.timeout:
                continue
            except OSError:
                break

    def serve_once(self):
        raise NotImplementedError

    def stop(self):
        self._stop_ev.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(5)
        try:
            self.sock.close()
        except OSError:
            pass


def http_get(port, path="/", headers=None, host="127.0.0.1", timeout=5.0, method="GET"):
    """One request on a fresh connection: (status, headers dict lower-cased, body bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        conn.close()


def have(cmd):
    return shutil.which(cmd) is not None
