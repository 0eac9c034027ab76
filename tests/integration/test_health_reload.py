"""healthcheckd on its own (no HAProxy): seed directory reloads, hostnames,
HTTPS checks, the status table and the stats endpoint.

What it proves: a rewritten seed directory (inotify) adds new targets and
forgets removed ones while targets that stay keep their state and "since";
a broken file changes nothing and is counted; SIGHUP reloads; a hostname is
resolved (c-ares) and the checked address is published; an HTTPS check
passes against a server whose certificate matches check-sni and fails with
a name mismatch otherwise; `healthcheckd --status` prints the table; -c
rejects a bad seed with file:line.
"""
import http.server
import os
import signal
import ssl
import subprocess
import threading

import harness
import health_util as hu
import route_util as ru
import tls_util


def demo(stack, name, port):
    p = stack.start(name, [harness.bin_path("demo-server"), "--name", name,
                           "--listen", f"127.0.0.1:{port}"])
    stack.wait_port(port, p)
    return p


def write_seed(path, lines):
    ru.write_atomic(path, "replicas 2\ndc a\n" + "\n".join(lines) + "\n")


def test_reload_adds_forgets_and_keeps_state(stack):
    ports = {n: harness.free_port() for n in ("h1", "n1", "n2", "n3")}
    procs = {n: demo(stack, n, p) for n, p in ports.items()}
    line = {"h1": f"hub h1 127.0.0.1:{ports['h1']} dc=a",
            "n1": f"node n1 127.0.0.1:{ports['n1']} dc=a",
            "n2": f"node n2 127.0.0.1:{ports['n2']} dc=a",
            "n3": f"node n3 127.0.0.1:{ports['n3']} dc=a"}
    seed = stack.path("seed.conf")
    write_seed(seed, [line["h1"], line["n1"], line["n2"]])
    feed, stats = stack.path("feed.sock"), harness.free_port()
    hc = hu.start_healthcheckd(stack, seed, feed=feed, stats_port=stats)
    w = hu.Feed(feed)
    for n in ("h1", "n1", "n2"):
        w.wait_state(n, "up")
    procs["n2"].kill()
    w.wait_state("n2", "down")
    since_n2 = w.since["n2"]

    write_seed(seed, [line["h1"], line["n2"], line["n3"]])     # n1 out, n3 in
    w.wait_state("n3", "up", timeout=3)
    w2 = hu.Feed(feed)
    assert set(w2.state) == {"h1", "n2", "n3"}, w2.state
    assert w2.get("n2") == "down" and w2.since["n2"] == since_n2, (w2.state, w2.since)

    ru.write_in_place(seed, "replicas 2\ndc a\nbogus line\n")
    harness.wait_until(lambda: ru.metric(ru.read_metrics(stats), "seedgate_seed_reloads_total",
                                         result="error") >= 1, 3, what="broken seed counted")
    assert "seed.conf:3" in hc.log()
    assert set(hu.Feed(feed).state) == {"h1", "n2", "n3"}

    ok = ru.metric(ru.read_metrics(stats), "seedgate_seed_reloads_total", result="ok")
    write_seed(seed, [line["h1"], line["n2"], line["n3"]])
    # Let the reload this edit triggers finish first: a SIGHUP during a
    # reload is folded into it ("changed during a reload").
    harness.wait_until(lambda: ru.metric(ru.read_metrics(stats), "seedgate_seed_reloads_total",
                                         result="ok") > ok, 3, what="reload after the fix")
    ok = ru.metric(ru.read_metrics(stats), "seedgate_seed_reloads_total", result="ok")
    hc.signal(signal.SIGHUP)
    harness.wait_until(lambda: ru.metric(ru.read_metrics(stats), "seedgate_seed_reloads_total",
                                         result="ok") > ok, 3, what="SIGHUP reload")
    assert "reloaded the seed directory (SIGHUP)" in hc.log()

    out = subprocess.run([harness.bin_path("healthcheckd"), "--status", "--feed", feed],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    rows = {l.split()[0]: l.split() for l in out.stdout.splitlines()[1:]}
    assert set(rows) == {"h1", "n2", "n3"}
    assert rows["n2"][3] == "down" and "refused" in out.stdout
    assert rows["h1"][1:4] == ["hub", "a", "up"]
    # seedctl health is the ops-facing spelling of the same table.
    ctl = subprocess.run([harness.bin_path("seedctl"), "health", "--feed", feed],
                         capture_output=True, text=True, timeout=10)
    assert ctl.returncode == 0, ctl.stderr
    ctl_rows = {l.split()[0]: l.split()[1:4] for l in ctl.stdout.splitlines()[1:]}
    assert ctl_rows == {n: r[1:4] for n, r in rows.items()}, ctl.stdout
    gone = subprocess.run([harness.bin_path("seedctl"), "health", "--feed", stack.path("none.sock"),
                           "--timeout", "500"], capture_output=True, text=True, timeout=10)
    assert gone.returncode == 1 and "none.sock" in gone.stderr

    m = ru.read_metrics(stats)
    assert ru.metric(m, "seedgate_hc_target_up", target="n2") == 0
    assert ru.metric(m, "seedgate_hc_target_up", target="n3", kind="node", dc="a") == 1
    assert ru.metric(m, "seedgate_hc_feed_subscribers") >= 2


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


def test_hostname_and_https_checks(stack):
    certs = tls_util.make_certs(stack)
    https_port, plain_port = harness.free_port(), harness.free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", https_port), _Hello)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(certs, "server.crt"), os.path.join(certs, "server.key"))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        demo(stack, "h1", plain_port)
        seed = stack.path("seed.conf")
        write_seed(seed, [f"hub h1 localhost:{plain_port} dc=a",
                          f"node s1 127.0.0.1:{https_port} dc=a check=https check-sni=localhost",
                          f"node s2 127.0.0.1:{https_port} dc=a check=https check-sni=wrong.example"])
        chk = subprocess.run([harness.bin_path("healthcheckd"), "-c", "--seed", seed],
                             capture_output=True, text=True)
        assert chk.returncode == 0, chk.stderr
        feed = stack.path("feed.sock")
        hu.start_healthcheckd(stack, seed, feed=feed, args=["--ca-file", os.path.join(certs, "ca.crt"),
                                                            "--timeout", "1s"])
        w = hu.Feed(feed)
        w.wait_state("h1", "up")
        assert w.addr["h1"] == f"127.0.0.1:{plain_port}", w.addr
        w.wait_state("s1", "up")
        assert "HTTP 200" in w.reason("s1"), w.reason("s1")
        w.wait_state("s2", "down")
        assert "TLS" in w.reason("s2") and "name" in w.reason("s2"), w.reason("s2")
    finally:
        srv.shutdown()


def test_check_mode_rejects_bad_seed(stack):
    seed = stack.write("bad.conf", "replicas 2\ndc a\nnode n1 127.0.0.1:1 dc=a check=smoke\n")
    r = subprocess.run([harness.bin_path("healthcheckd"), "-c", "--seed", seed],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "bad.conf:3" in r.stderr, r.stderr
    r = subprocess.run([harness.bin_path("healthcheckd"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--haproxy-socket" in r.stdout
