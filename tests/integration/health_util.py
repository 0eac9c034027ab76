"""Helpers for the health-check integration tests: start healthcheckd, read
its feed (the same text lines route agents get, see healthcheck/hc_feed.h),
and put demo servers into failure modes.
"""
import http.client
import socket
import threading
import time

import harness
import route_util as ru


def start_healthcheckd(stack, seed, *, feed, haproxy_socks=(), stats_port=None, args=(),
                       name="healthcheckd"):
    """Starts build/healthcheckd with short test intervals by default
    (100 ms, fall 2, rise 2) and waits for its feed socket."""
    argv = [harness.bin_path("healthcheckd"), "--seed", seed, "--feed", feed,
            "--interval", "100ms", "--timeout", "300ms", "--fall", "2", "--rise", "2"]
    for s in haproxy_socks:
        argv += ["--haproxy-socket", s]
    if stats_port:
        argv += ["--stats", f"127.0.0.1:{stats_port}"]
    argv += [str(a) for a in args]
    p = stack.start(name, argv)
    stack.wait_unix(feed, p)
    return p


def wait_wired(agent_stats_ports, hc_stats_port, timeout=5):
    """Waits until every route agent is connected to healthcheckd's feed and
    healthcheckd to HAProxy's runtime API (metrics of each)."""
    for port in agent_stats_ports:
        harness.wait_until(lambda p=port: ru.metric(ru.read_metrics(p), "seedgate_health_feed_connected") == 1,
                           timeout, what="route agents connected to the health feed")
    harness.wait_until(lambda: ru.metric(ru.read_metrics(hc_stats_port), "seedgate_hc_haproxy_connected") == 1,
                       timeout, what="healthcheckd connected to HAProxy")


OPEN_FEEDS = []   # closed by the stack fixture after each test (conftest.py)


def close_feeds():
    while OPEN_FEEDS:
        OPEN_FEEDS.pop().close()


class Feed(threading.Thread):
    """A subscriber of the health feed that records every T line with the
    time it arrived: events [(monotonic, name, state, addr, reason)], and
    state {name: (state, reason)}. `snapshot` is set once E arrived."""

    def __init__(self, path, timeout=5.0):
        super().__init__(daemon=True)
        OPEN_FEEDS.append(self)
        self.path = path
        self.events = []
        self.state = {}
        self.since = {}
        self.addr = {}
        self.snapshot = threading.Event()
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX)
        harness.wait_until(lambda: self.sock.connect(path) is None, timeout,
                           what=f"feed {path}")
        self.start()
        harness.wait_until(self.snapshot.is_set, timeout, what="feed snapshot")

    def run(self):
        buf = b""
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    break
                buf += d
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._line(line.decode(errors="replace"))
        except OSError:
            pass
        self.closed.set()

    def _line(self, line):
        if line.startswith("E "):
            self.snapshot.set()
            return
        if not line.startswith("T "):
            return
        f = line.split(" ", 5)
        name, st, addr = f[1], f[2], f[3]
        reason = f[5] if len(f) > 5 else ""
        with self.lock:
            self.events.append((time.monotonic(), name, st, addr, reason))
            self.state[name] = (st, reason)
            self.since[name] = int(f[4])
            self.addr[name] = addr

    def get(self, name):
        with self.lock:
            return self.state.get(name, (None, ""))[0]

    def reason(self, name):
        with self.lock:
            return self.state.get(name, (None, ""))[1]

    def wait_state(self, name, st, timeout=5.0):
        harness.wait_until(lambda: self.get(name) == st, timeout, interval=0.01,
                           what=f"{name} {st} in the feed (now {self.get(name)}: {self.reason(name)})")
        with self.lock:
            for ev in reversed(self.events):
                if ev[1] == name and ev[2] == st:
                    return ev[0]
        return time.monotonic()

    def states_seen(self, name):
        with self.lock:
            return [(t, st, reason) for t, n, st, _a, reason in self.events if n == name]

    def close(self):
        """shutdown() wakes the reader; the socket is closed only once the
        thread has returned, so it never reads a reused descriptor."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.is_alive() and self is not threading.current_thread():
            self.join(5)
        self.sock.close()


def server_mode(port, mode):
    """Switches a demo server's answers: ok, 500, hang, close."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        c.request("POST", f"/__sg/mode?status={mode}")
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
    finally:
        c.close()
