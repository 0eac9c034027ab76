"""The same TLS policy on each of the three fronts: stunnel and hitch in
front of HAProxy (PROXY protocol), and HAProxy's own TLS (`bind ... ssl`,
the line of haproxy.cfg's TLS FRONT block). Every test runs once per front.

What it proves, with `openssl s_client` and Python's ssl as clients:
* TLS 1.3 and TLS 1.2 ECDHE-ECDSA handshakes succeed, verified against the
  private CA, on X25519 and on P-256;
* TLS 1.0/1.1, RSA key exchange, DHE, CBC, NULL, TLS 1.3 suites outside the
  list and other groups are refused BY THE SERVER (the client offers them
  with @SECLEVEL=0 and gets the server's alert back);
* the backend sees the client's own address in X-Forwarded-For; HSTS is on
  TLS responses and not on plain HTTP ones;
* sessions resume (TLS 1.2 and 1.3), also across a restart of the front,
  because the ticket keys are kept in the run directory (tls/ticket-keys.sh);
  fresh keys do not resume; a rotation is taken at the next reload;
* a certificate roll under load (tls/README.md) fails no request, an
  established connection carries on, sessions resume across it;
* through the whole stack (stack_util, the product haproxy.cfg): a project
  request over TLS reaches the node `seedctl where` names first, with the
  client's address in X-Forwarded-For, and HSTS only on TLS.
"""
import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import uuid

import pytest

import harness
from harness import free_port
import tls_util
from tls_util import FRONTS, s_client, https_get

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"

# The suites the policy allows for TLS 1.2 with an ECDSA certificate.
TLS12_AEAD = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
              "ECDHE-ECDSA-CHACHA20-POLY1305"}


def need(front):
    if front == "hitch" and not (harness.have("hitch") or os.path.exists("/usr/sbin/hitch")):
        pytest.skip("hitch not installed (make deps)")


def brief_field(out, name):
    m = re.search(rf"^{re.escape(name)}: (.*)$", out, re.M)
    return m.group(1).strip() if m else None


@pytest.mark.parametrize("front", FRONTS)
def test_tls13_and_tls12_ecdhe_ecdsa_handshakes(stack, front):
    need(front)
    f = tls_util.start_front(stack, front=front)
    port, ca = f.https_port, f.ca_file

    rc, out = s_client(port, "-brief", "-tls1_3", ca=ca)
    assert rc == 0, out
    assert brief_field(out, "Protocol version") == "TLSv1.3", out
    assert brief_field(out, "Signature type") == "ECDSA", out
    assert brief_field(out, "Verification") == "OK", out
    assert brief_field(out, "Server Temp Key").startswith("X25519"), out

    rc, out = s_client(port, "-brief", "-tls1_3", "-groups", "P-256", ca=ca)
    assert rc == 0, out
    assert "prime256v1" in brief_field(out, "Server Temp Key"), out

    rc, out = s_client(port, "-brief", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", ca=ca)
    assert rc == 0, out
    assert brief_field(out, "Protocol version") == "TLSv1.2", out
    assert brief_field(out, "Ciphersuite") == "ECDHE-ECDSA-AES128-GCM-SHA256", out
    assert brief_field(out, "Verification") == "OK", out

    # With the client's whole default list, the server still picks an AEAD suite.
    rc, out = s_client(port, "-brief", "-tls1_2", ca=ca)
    assert rc == 0, out
    assert brief_field(out, "Ciphersuite") in TLS12_AEAD, out

    # A data round trip over TLS 1.2 through the front and HAProxy.
    rc, out = s_client(port, "-tls1_2", "-groups", "P-256", ca=ca, request=REQUEST)
    assert "HTTP/1.1 200" in out, out


REFUSED = [
    ("tls1.0", ["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"], "alert protocol version"),
    ("tls1.1", ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"], "alert protocol version"),
    ("rsa-kx", ["-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:@SECLEVEL=0"],
     "alert handshake failure"),
    ("dhe", ["-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-CHACHA20-POLY1305"],
     "alert handshake failure"),
    ("cbc", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:"
             "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384"], "alert handshake failure"),
    ("null", ["-tls1_2", "-cipher", "ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0"], "alert handshake failure"),
    ("tls1.3-ccm", ["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256"],
     "alert handshake failure"),
    ("curve-p384", ["-tls1_3", "-groups", "P-384"], "alert handshake failure"),
]


@pytest.mark.parametrize("front", FRONTS)
def test_old_protocols_and_weak_suites_refused_by_server(stack, front):
    need(front)
    f = tls_util.start_front(stack, front=front)
    for name, args, alert in REFUSED:
        rc, out = s_client(f.https_port, *args)
        assert rc != 0, f"{name}: handshake succeeded:\n{out}"
        # The client did offer it (no client-side refusal)...
        assert "no protocols available" not in out and "no ciphers available" not in out, f"{name}:\n{out}"
        # ...and the refusal is the server's alert.
        assert alert in out, f"{name}: expected '{alert}' from the server:\n{out}"
    # The same client with an allowed suite still works: the refusals are about the suites.
    rc, out = s_client(f.https_port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384:@SECLEVEL=0")
    assert rc == 0, out


@pytest.mark.parametrize("front", FRONTS)
def test_backend_sees_client_address_hsts_on_tls_only(stack, front):
    need(front)
    f = tls_util.start_front(stack, front=front)
    for source in ("127.0.0.2", "127.0.0.3"):
        status, hdrs, body, version = https_get(f.https_port, "/", ca=f.ca_file, source=source)
        assert status == 200, body
        assert version == "TLSv1.3"
        # stunnel and hitch connect from 127.0.0.1: only the PROXY header
        # can carry this; HAProxy's own TLS sees the client itself.
        assert hdrs["x-seen-xff"] == source, hdrs
        assert body == f"xff={source}\n".encode()
        assert re.match(r"max-age=\d{7,}", hdrs.get("strict-transport-security", "")), hdrs
    status, hdrs, body = harness.http_get(f.plain_port, "/")
    assert status == 200 and "strict-transport-security" not in hdrs, hdrs


def resume(port, ca, version, sess):
    """New session saved to sess, then a second connection offering it.
    Returns (first output, second output)."""
    rc1, out1 = s_client(port, version, "-sess_out", sess, ca=ca, request=REQUEST)
    assert "HTTP/1.1 200" in out1, out1
    assert os.path.getsize(sess) > 0
    rc2, out2 = s_client(port, version, "-sess_in", sess, ca=ca, request=REQUEST)
    assert "HTTP/1.1 200" in out2, out2
    return out1, out2


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
@pytest.mark.parametrize("front", FRONTS)
def test_session_resumption(stack, front, version):
    need(front)
    f = tls_util.start_front(stack, front=front)
    out1, out2 = resume(f.https_port, f.ca_file, version, stack.path("sess.pem"))
    assert re.search(r"^New, TLSv1\.[23]", out1, re.M), out1
    assert re.search(r"^Reused, TLSv1\.[23]", out2, re.M), out2


def offer(f, version, sess):
    rc, out = s_client(f.https_port, version, "-sess_in", sess, ca=f.ca_file, request=REQUEST)
    assert "HTTP/1.1 200" in out, out
    return out


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
@pytest.mark.parametrize("front", FRONTS)
def test_resumption_survives_restart(stack, front, version):
    need(front)
    f = tls_util.start_front(stack, front=front)
    sess = stack.path("sess.pem")
    rc, out = s_client(f.https_port, version, "-sess_out", sess, ca=f.ca_file, request=REQUEST)
    assert re.search(r"^New, ", out, re.M), out

    # Restart with the same run directory: same ticket keys, session resumes.
    tls_util.restart_front(stack, f, name="2")
    out = offer(f, version, sess)
    assert re.search(r"^Reused, ", out, re.M), out

    # Control: a restart with a fresh run directory (new keys) cannot resume.
    fresh = stack.path("run-fresh")
    os.makedirs(fresh)
    tls_util.restart_front(stack, f, run_dir=fresh, name="3")
    out = offer(f, version, sess)
    assert re.search(r"^New, ", out, re.M), out


@pytest.mark.parametrize("front", FRONTS)
def test_ticket_key_rotation(stack, front):
    """tls/ticket-keys.sh --rotate, then the front takes the new key at its
    next (re)start: new tickets are made with it. HAProxy keeps the
    previous key for decryption, so its old tickets still resume; stunnel
    and hitch hold one key, so theirs need one full handshake."""
    need(front)
    f = tls_util.start_front(stack, front=front)
    old = stack.path("old.pem")
    rc, out = s_client(f.https_port, "-tls1_3", "-sess_out", old, ca=f.ca_file, request=REQUEST)
    assert re.search(r"^New, ", out, re.M), out
    subprocess.run([os.path.join(tls_util.TLS_DIR, "ticket-keys.sh"), "--rotate", f.run_dir], check=True)
    assert os.path.exists(os.path.join(f.run_dir, "ticket.keys.prev"))
    tls_util.restart_front(stack, f, name="rotated")
    out = offer(f, "-tls1_3", old)
    want = "Reused" if front == "haproxy" else "New"
    assert re.search(rf"^{want}, ", out, re.M), out
    # Tickets issued after the rotation resume.
    out1, out2 = resume(f.https_port, f.ca_file, "-tls1_3", stack.path("new.pem"))
    assert re.search(r"^Reused, ", out2, re.M), out2


class Load(threading.Thread):
    """Sequential HTTPS requests, each on a new connection (a full TLS
    handshake, so the certificate in use is what a new client gets), until
    stopped. Counts answers and failures; remembers the serials seen."""

    def __init__(self, f):
        super().__init__(daemon=True)
        self.f, self.ok, self.failed, self.serials = f, 0, [], set()
        self.stop_ev = threading.Event()
        self.ctx = ssl.create_default_context(cafile=f.ca_file)

    def one(self):
        raw = socket.create_connection(("127.0.0.1", self.f.https_port), timeout=5 * harness.SLOW)
        tls = self.ctx.wrap_socket(raw, server_hostname="localhost")
        try:
            self.serials.add(tls.getpeercert()["serialNumber"])
            conn = http.client.HTTPConnection("127.0.0.1", self.f.https_port)
            conn.sock = tls
            conn.request("GET", "/", headers={"Host": "localhost"})
            r = conn.getresponse()
            r.read()
            return r.status
        finally:
            tls.close()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                status = self.one()
                if status == 200:
                    self.ok += 1
                else:
                    self.failed.append(f"status {status}")
            except (OSError, ssl.SSLError, http.client.HTTPException) as e:
                self.failed.append(repr(e))

    def stop(self):
        self.stop_ev.set()
        self.join(30)


def listeners(port):
    """Listening TCP sockets on 127.0.0.1:port (from /proc/net/tcp)."""
    n = 0
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and local == f"0100007F:{port:04X}":
                n += 1
    return n


def test_hitch_reloads_reset_nothing(stack):
    """hitch's workers each listen with SO_REUSEPORT, and a retiring
    worker's close resets the connections queued on its socket (7 resets in
    15 reloads under 4 clients before libsg-hitch.so shared the manager's
    listener). One listening socket for all workers; 12 reloads under 4
    connecting clients fail nothing."""
    need("hitch")
    f = tls_util.start_front(stack, front="hitch")
    assert listeners(f.https_port) == 1
    loads = [Load(f) for _ in range(4)]
    for load in loads:
        load.start()
        stack.defer(load.stop)
    harness.wait_until(lambda: all(load.ok >= 5 for load in loads), 20.0, what="load running")
    for _ in range(12):
        f.stunnel.signal(signal.SIGHUP)
        before = sum(load.ok for load in loads)
        harness.wait_until(lambda: sum(load.ok for load in loads) >= before + 40, 20.0,
                           interval=0.02, what="load after the reload")
    for load in loads:
        load.stop()
    failed = sum((load.failed for load in loads), [])
    assert not failed, (len(failed), failed[:5])
    assert listeners(f.https_port) == 1
    assert f.tls.alive()


@pytest.mark.parametrize("front", FRONTS)
def test_certificate_roll_under_load(stack, front):
    """The procedure of tls/README.md under a stream of new connections,
    with a keep-alive connection open across the roll: 0 failed requests
    on every front. (stunnel re-binds the sockets it bound itself on
    SIGHUP, refusing connections meanwhile; stunnel-run.sh hands it its
    listening socket by socket activation, which it keeps.)"""
    need(front)
    f = tls_util.start_front(stack, front=front)
    ctx = ssl.create_default_context(cafile=f.ca_file)
    raw = socket.create_connection(("127.0.0.1", f.https_port), timeout=5)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    old_serial = tls.getpeercert()["serialNumber"]
    kept = http.client.HTTPConnection("127.0.0.1", f.https_port, timeout=5)
    kept.sock = tls

    def get_kept():
        kept.request("GET", "/", headers={"Host": "localhost"})
        r = kept.getresponse()
        r.read()
        return r.status
    assert get_kept() == 200
    sess = stack.path("sess.pem")
    rc, out = s_client(f.https_port, "-sess_out", sess, ca=f.ca_file, request=REQUEST)
    assert re.search(r"^New, ", out, re.M), out

    load = Load(f)
    load.start()
    stack.defer(load.stop)
    harness.wait_until(lambda: load.ok >= 20 or load.failed, 20.0, what="load running")
    assert not load.failed, load.failed[:5]
    tls_util.roll_certificate(f)
    harness.wait_until(lambda: len(load.serials) >= 2 or load.failed, 20.0,
                       interval=0.05, what="the new certificate served under load")
    before = load.ok
    harness.wait_until(lambda: load.ok >= before + 20 or load.failed, 20.0,
                       what="load after the roll")
    load.stop()
    assert not load.failed, load.failed[:5]
    assert old_serial in load.serials and len(load.serials) == 2, load.serials
    # The connection made before the roll still carries requests.
    assert get_kept() == 200
    assert get_kept() == 200
    kept.close()
    assert f.tls.alive()
    # Ticket keys unchanged: a session from before the roll resumes.
    out = offer(f, "-tls1_3", sess)
    assert re.search(r"^Reused, ", out, re.M), out


@pytest.mark.parametrize("front", FRONTS)
def test_project_request_over_tls_reaches_its_node(stack, front):
    need(front)
    stack_util = pytest.importorskip("stack_util")
    p = {n: free_port() for n in ("hub1", "c1", "c2", "c3")}
    seed = stack.write("seed.conf", f"""replicas 2
dc us-east
hub  hub1  127.0.0.1:{p['hub1']}  dc=us-east
node c1    127.0.0.1:{p['c1']}    dc=us-east
node c2    127.0.0.1:{p['c2']}    dc=us-east
node c3    127.0.0.1:{p['c3']}    dc=us-east
""")
    info, https_port, ca = tls_util.start_stack_tls(stack, seed, front)
    projects = [str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15) & ((1 << 128) - 1), version=4))
                for i in range(1, 7)]
    nodes = set()
    for pid in projects:
        want = stack_util.where(seed, pid)
        status, hdrs, body, version = https_get(https_port, f"/{pid}/files/a.txt",
                                                ca=ca, source="127.0.0.2")
        assert status == 200, body
        assert hdrs["x-served-by"] == want, (pid, hdrs, want)
        assert "strict-transport-security" in hdrs, hdrs
        nodes.add(want)
    assert nodes <= {"c1", "c2", "c3"} and len(nodes) >= 2, nodes
    status, hdrs, body, version = https_get(https_port, "/", ca=ca)
    assert status == 200 and hdrs["x-served-by"] == "hub1", hdrs
    # Plain HTTP through the same HAProxy: no HSTS.
    status, hdrs, body = harness.http_get(info.http_port, "/")
    assert status == 200 and "strict-transport-security" not in hdrs, hdrs


@pytest.mark.parametrize("front", ["stunnel", "hitch"])
def test_open_files_limit_raised(stack, front):
    """stunnel and hitch size their connection caps from RLIMIT_NOFILE: the
    run scripts raise the soft limit to the hard one (HAProxy sizes itself
    from its maxconn)."""
    need(front)
    f = tls_util.start_front(stack, front=front)
    with open(f"/proc/{f.tls.pid}/limits") as fh:
        line = next(l for l in fh if l.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard, line


def test_hitch_refuses_to_start_without_valid_ticket_keys(stack):
    """libsg-hitch.so: a malformed key file is an error at start, not a
    hitch that silently forgets every session at its next restart."""
    need("hitch")
    certs = tls_util.make_certs(stack)
    run_dir = stack.path("run")
    conf = tls_util.hitch_conf(stack, free_port(), free_port(), certs, run_dir)
    with open(os.path.join(run_dir, "ticket.keys"), "w") as fh:
        fh.write("not hex\n")
    env = dict(os.environ, SEEDGATE_BUILD=os.path.dirname(harness.bin_path("libsg-hitch.so")))
    r = subprocess.run([os.path.join(tls_util.TLS_DIR, "hitch-run.sh"), conf, run_dir],
                       capture_output=True, text=True, env=env, timeout=30 * harness.SLOW)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "want two lines of 64 hex digits" in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("front", ["hitch", "haproxy"])
def test_demo_tls_front_switch(stack, front):
    """`make demo TLS_FRONT=...` (demo.sh --tls-front): the chosen front
    serves TLS on --https with the demo's certificates, a project reaches
    its node with HSTS, and the demo stops it with everything else.
    (stunnel, the default, is covered by test_demo_make.py.)"""
    need(front)
    import test_demo_make as dm
    seed = dm.write_seed(stack)
    run = stack.path("demo")
    http_port, https_port = free_port(), free_port()
    demo = dm.start_demo(stack, dm.demo_argv(seed, run, http_port, https_port) + ["--tls-front", front])
    dm.wait_ready(demo)
    assert f"TLS front: {front}" in demo.log(), demo.log()
    node = stack_util_where(seed, dm.PROJECT)
    seen = []

    def reaches_node():
        # The demo waits 15 ms for the route agent, then fails open to the
        # hubs: on a loaded machine a request may do so. What is tested
        # here is the TLS front, so ask until the node answers.
        status, hdrs, body, version = https_get(https_port, f"/{dm.PROJECT}/x",
                                                ca=os.path.join(run, "certs", "ca.crt"), source="127.0.0.2")
        seen.append((status, hdrs.get("x-served-by")))
        assert status == 200, (hdrs, body)
        assert hdrs.get("strict-transport-security") == "max-age=63072000", hdrs
        assert b"xff=127.0.0.2" in body, body
        return hdrs["x-served-by"] == node
    harness.wait_until(reaches_node, 30.0, interval=0.2, what=f"{node} answering over TLS ({seen[-3:]})")
    assert not os.path.exists(os.path.join(run, "stunnel.pid"))
    procs = [front] if front == "hitch" else []
    pids = {n: int(open(os.path.join(run, f"{n}.pid")).read()) for n in procs + ["haproxy"]}
    demo.signal(signal.SIGTERM)
    assert demo.popen.wait(60 * harness.SLOW) == 0, demo.log()
    for n, pid in pids.items():
        assert not dm.pid_alive(pid), f"{n} ({pid}) still running"


def stack_util_where(seed, project):
    import stack_util
    return stack_util.where(seed, project)
