"""stunnel in front of HAProxy, configured by tls/stunnel-conf.sh.

What it proves, with `openssl s_client` and Python's ssl as clients:
* TLS 1.3 and TLS 1.2 ECDHE-ECDSA handshakes succeed, verified against the
  private CA, on X25519 and on P-256;
* TLS 1.0/1.1, RSA key exchange, DHE, CBC, NULL and TLS 1.3 suites outside
  the list are refused BY THE SERVER (the client offers them with
  @SECLEVEL=0 and gets the server's alert back);
* the backend sees the client's own address (stunnel -> PROXY v1 -> HAProxy
  accept-proxy -> X-Forwarded-For), and HAProxy adds HSTS;
* sessions resume (TLS 1.2 and 1.3), also across a stunnel restart because
  the ticket keys are kept in the run directory; fresh keys do not resume;
* stunnel runs with the open-files soft limit raised to the hard limit;
* the whole stack (stack_util, the demo's haproxy.cfg): a project request
  over TLS reaches the node `seedctl where` names first.
"""
import os
import re
import uuid

import pytest

import harness
from harness import free_port
import tls_util
from tls_util import s_client, https_get

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"

# The suites stunnel-conf.sh allows for TLS 1.2 (all AEAD, all ECDHE).
TLS12_AEAD = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
              "ECDHE-ECDSA-CHACHA20-POLY1305"}


def brief_field(out, name):
    m = re.search(rf"^{re.escape(name)}: (.*)$", out, re.M)
    return m.group(1).strip() if m else None


def test_tls13_and_tls12_ecdhe_ecdsa_handshakes(stack):
    front = tls_util.start_front(stack)
    port, ca = front.https_port, front.ca_file

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

    # A data round trip over TLS 1.2 through stunnel and HAProxy.
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


def test_old_protocols_and_weak_suites_refused_by_server(stack):
    front = tls_util.start_front(stack)
    for name, args, alert in REFUSED:
        rc, out = s_client(front.https_port, *args)
        assert rc != 0, f"{name}: handshake succeeded:\n{out}"
        # The client did offer it (no client-side refusal)...
        assert "no protocols available" not in out and "no ciphers available" not in out, f"{name}:\n{out}"
        # ...and the refusal is the server's alert.
        assert alert in out, f"{name}: expected '{alert}' from the server:\n{out}"
    # The same client with an allowed suite still works: the refusals are about the suites.
    rc, out = s_client(front.https_port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384:@SECLEVEL=0")
    assert rc == 0, out


def test_backend_sees_client_address_and_hsts(stack):
    front = tls_util.start_front(stack)
    for source in ("127.0.0.2", "127.0.0.3"):
        status, hdrs, body, version = https_get(front.https_port, "/", ca=front.ca_file, source=source)
        assert status == 200, body
        assert version == "TLSv1.3"
        # stunnel itself connects from 127.0.0.1: only the PROXY header can carry this.
        assert hdrs["x-seen-xff"] == source, hdrs
        assert body == f"xff={source}\n".encode()
        hsts = hdrs.get("strict-transport-security", "")
        assert re.match(r"max-age=\d{7,}", hsts), hdrs


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
def test_session_resumption(stack, version):
    front = tls_util.start_front(stack)
    out1, out2 = resume(front.https_port, front.ca_file, version, stack.path("sess.pem"))
    assert re.search(r"^New, TLSv1\.[23]", out1, re.M), out1
    assert re.search(r"^Reused, TLSv1\.[23]", out2, re.M), out2


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_resumption_survives_stunnel_restart(stack, version):
    front = tls_util.start_front(stack)
    sess = stack.path("sess.pem")
    rc, out = s_client(front.https_port, version, "-sess_out", sess, ca=front.ca_file, request=REQUEST)
    assert re.search(r"^New, ", out, re.M), out

    # Restart with the same run directory: same ticket keys, session resumes.
    # (Same port unless another process took it meanwhile: resumption does
    # not depend on the port.)
    front.stunnel.stop()
    st2, port2, _ = tls_util.start_stunnel(stack, front.certs, front.run_dir, front.proxy_port,
                                           port=front.https_port, name="stunnel-2")
    rc, out = s_client(port2, version, "-sess_in", sess, ca=front.ca_file, request=REQUEST)
    assert "HTTP/1.1 200" in out, out
    assert re.search(r"^Reused, ", out, re.M), out

    # Control: a restart with a fresh run directory (new keys) cannot resume.
    st2.stop()
    st3, port3, _ = tls_util.start_stunnel(stack, front.certs, stack.path("run-fresh"), front.proxy_port,
                                           port=port2, name="stunnel-3")
    rc, out = s_client(port3, version, "-sess_in", sess, ca=front.ca_file, request=REQUEST)
    assert "HTTP/1.1 200" in out, out
    assert re.search(r"^New, ", out, re.M), out


def test_stunnel_open_files_limit_raised(stack):
    front = tls_util.start_front(stack)
    with open(f"/proc/{front.stunnel.pid}/limits") as f:
        line = next(l for l in f if l.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard, line
    # The generated configuration carries the policy the tests above rely on.
    conf = open(front.conf).read()
    assert re.search(r"^protocol = proxy$", conf, re.M)
    assert re.search(r"^sslVersionMin = TLSv1.2$", conf, re.M)
    assert re.search(r"^ticketKeySecret = [0-9a-f]{64}$", conf, re.M)


def test_project_request_over_tls_reaches_its_node(stack):
    stack_util = pytest.importorskip("stack_util")
    p = {n: free_port() for n in ("hub1", "c1", "c2", "c3")}
    seed = stack.write("seed.conf", f"""replicas 2
dc us-east
hub  hub1  127.0.0.1:{p['hub1']}  dc=us-east
node c1    127.0.0.1:{p['c1']}    dc=us-east
node c2    127.0.0.1:{p['c2']}    dc=us-east
node c3    127.0.0.1:{p['c3']}    dc=us-east
""")
    info = stack_util.start_stack(stack, seed, agents=1, stunnel=True)
    projects = [str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15) & ((1 << 128) - 1), version=4))
                for i in range(1, 7)]
    nodes = set()
    for pid in projects:
        want = stack_util.where(seed, pid)
        status, hdrs, body, version = https_get(info.https_port, f"/{pid}/files/a.txt",
                                                ca=info.ca_file, source="127.0.0.2")
        assert status == 200, body
        assert hdrs["x-served-by"] == want, (pid, hdrs, want)
        assert "strict-transport-security" in hdrs, hdrs
        nodes.add(want)
    assert nodes <= {"c1", "c2", "c3"} and len(nodes) >= 2, nodes
    status, hdrs, body, version = https_get(info.https_port, "/", ca=info.ca_file)
    assert status == 200 and hdrs["x-served-by"] == "hub1", hdrs


def test_certificate_roll_keeps_established_connections(stack):
    """The procedure of tls/README.md: new files by rename, then SIGHUP."""
    import http.client
    import signal
    import socket
    import ssl
    import subprocess

    front = tls_util.start_front(stack)
    ctx = ssl.create_default_context(cafile=front.ca_file)

    def connect():
        raw = socket.create_connection(("127.0.0.1", front.https_port), timeout=5)
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        conn = http.client.HTTPConnection("127.0.0.1", front.https_port, timeout=5)
        conn.sock = tls
        return conn, tls.getpeercert()["serialNumber"]

    def get(conn):
        conn.request("GET", "/", headers={"Host": "localhost"})
        r = conn.getresponse()
        r.read()
        return r.status

    old_conn, old_serial = connect()
    assert get(old_conn) == 200
    sess = stack.path("sess.pem")
    rc, out = s_client(front.https_port, "-sess_out", sess, ca=front.ca_file, request=REQUEST)
    assert re.search(r"^New, ", out, re.M), out
    r = subprocess.run([os.path.join(tls_util.TLS_DIR, "make-certs.sh"), front.certs],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    front.stunnel.signal(signal.SIGHUP)

    def new_serial():
        conn, serial = connect()
        conn.close()
        return serial if serial != old_serial else None
    harness.wait_until(new_serial, 5.0, interval=0.1, what="stunnel serving the new certificate")
    # The connection made before the roll still carries requests.
    assert get(old_conn) == 200
    assert get(old_conn) == 200
    old_conn.close()
    assert front.stunnel.alive()
    # Ticket keys unchanged: a session from before the roll resumes.
    rc, out = s_client(front.https_port, "-sess_in", sess, ca=front.ca_file, request=REQUEST)
    assert re.search(r"^Reused, ", out, re.M), out
