"""Helpers for the TLS integration tests (tests/integration/test_tls_*.py).

    certs = make_certs(stack)                       # tls/make-certs.sh into <tmp>/certs
    front = start_front(stack)                      # echo backend + HAProxy (accept-proxy,
                                                    # forwardfor, HSTS) + stunnel in front
    rc, out = s_client(front.https_port, "-tls1_2", ca=front.ca_file)
    status, headers, body = https_get(front.https_port, "/", ca=front.ca_file,
                                      source="127.0.0.2")

stunnel is configured by tls/stunnel-conf.sh and started by tls/stunnel-run.sh,
exactly as the demo does. Every listener is started by start_listener(),
which waits until that very process holds the listening socket (checked in
/proc) and moves to a fresh port if another process took the one it got. The backend is a small Python HTTP server that
answers with the X-Forwarded-For it received, so tests can see which client
address HAProxy learnt from the PROXY header.
"""
import http.client
import os
import socket
import ssl
import subprocess
from dataclasses import dataclass

import harness

TLS_DIR = os.path.join(harness.ROOT, "tls")

ECHO_BACKEND = r'''
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        xff = self.headers.get("X-Forwarded-For", "")
        body = ("xff=%s\n" % xff).encode()
        self.send_response(200)
        self.send_header("X-Seen-XFF", xff)
        self.send_header("X-Seen-Client-Port", self.headers.get("X-Client-Port", ""))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''

FRONT_HAPROXY = """
global
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe_tls
    bind 127.0.0.1:{proxy_port} accept-proxy
    option forwardfor
    http-request set-header X-Client-Port %[src_port]
    http-response set-header Strict-Transport-Security "max-age=63072000"
    default_backend be_echo
backend be_echo
    server echo 127.0.0.1:{backend_port}
"""


@dataclass
class Front:
    https_port: int
    proxy_port: int
    backend_port: int
    certs: str
    run_dir: str
    ca_file: str
    conf: str
    stunnel: harness.Proc
    haproxy: harness.Proc


def make_certs(stack, name="certs"):
    d = stack.path(name)
    r = subprocess.run([os.path.join(TLS_DIR, "make-certs.sh"), d], capture_output=True, text=True)
    assert r.returncode == 0, f"make-certs.sh failed:\n{r.stdout}{r.stderr}"
    return d


def listening_inodes(port):
    """Inodes of the sockets listening on TCP port (IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            pass
    return inodes


def owns_listener(pid, port):
    """True when process pid holds a socket listening on port. A port from
    harness.free_port() can be taken by another process (other suites run
    concurrently, load generators cycle through ephemeral ports) before our
    process binds it; then a plain connect test would reach a stranger."""
    inodes = listening_inodes(port)
    if not inodes:
        return False
    fd_dir = f"/proc/{pid}/fd"
    try:
        for fd in os.listdir(fd_dir):
            try:
                link = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    except OSError:
        pass
    return False


def start_listener(stack, name, argv_for_port, port=None, tries=5):
    """Starts argv_for_port(port) and waits until that very process listens
    on port. If it exits first (port taken meanwhile), retries on a fresh
    port. Returns (Proc, port)."""
    last = ""
    for attempt in range(tries):
        port = port if (port is not None and attempt == 0) else harness.free_port()
        p = stack.start(name if attempt == 0 else f"{name}-retry{attempt}", argv_for_port(port))

        def ready():
            if not p.alive():
                return "exited"
            return owns_listener(p.pid, port)
        try:
            if harness.wait_until(ready, 10.0, what=f"{name} listening on {port}") == "exited":
                last = p.log()[-2000:]
                continue
        except AssertionError:
            last = p.log()[-2000:]
            p.stop()
            continue
        return p, port
    raise AssertionError(f"{name} could not listen after {tries} tries:\n{last}")


def stunnel_conf(stack, accept_port, connect_port, certs, run_dir, extra=(), name="stunnel.conf"):
    argv = [os.path.join(TLS_DIR, "stunnel-conf.sh"), "--accept", f"127.0.0.1:{accept_port}",
            "--connect", f"127.0.0.1:{connect_port}", "--certs", certs, "--run", run_dir, *extra]
    r = subprocess.run(argv, capture_output=True, text=True)
    assert r.returncode == 0, f"stunnel-conf.sh failed:\n{r.stdout}{r.stderr}"
    return stack.write(name, r.stdout)


def start_stunnel(stack, certs, run_dir, connect_port, port=None, name="stunnel", extra=()):
    """stunnel (tls/stunnel-conf.sh + tls/stunnel-run.sh) listening on port
    (or a fresh one if that is taken). Returns (Proc, port, conf path)."""
    confs = {}

    def argv(p):
        confs[p] = stunnel_conf(stack, p, connect_port, certs, run_dir, extra, name=f"{name}-{p}.conf")
        return [os.path.join(TLS_DIR, "stunnel-run.sh"), confs[p]]
    proc, port = start_listener(stack, name, argv, port=port)
    return proc, port, confs[port]


def start_echo_backend(stack):
    script = stack.write("echo_backend.py", ECHO_BACKEND)
    _, port = start_listener(stack, "echo-backend", lambda p: ["/usr/bin/python3", script, p])
    return port


def start_haproxy(stack, cfg_template, **ports):
    """HAProxy -db on a config whose {proxy_port} is chosen here; checked
    with -c first. Returns (Proc, proxy_port)."""
    def argv(p):
        cfg = stack.write(f"haproxy-{p}.cfg", cfg_template.format(proxy_port=p, **ports))
        chk = subprocess.run([harness.HAPROXY, "-c", "-f", cfg], capture_output=True, text=True)
        assert chk.returncode == 0, f"haproxy -c failed:\n{chk.stdout}{chk.stderr}"
        return [harness.HAPROXY, "-db", "-f", cfg]
    return start_listener(stack, "haproxy", argv)


def start_front(stack, run_dir=None, stunnel_args=()):
    """Echo backend, HAProxy with accept-proxy, stunnel in front of it."""
    certs = make_certs(stack)
    backend_port = start_echo_backend(stack)
    hap, proxy_port = start_haproxy(stack, FRONT_HAPROXY, backend_port=backend_port)
    run_dir = run_dir or stack.path("run")
    st, https_port, conf = start_stunnel(stack, certs, run_dir, proxy_port, extra=stunnel_args)
    return Front(https_port=https_port, proxy_port=proxy_port, backend_port=backend_port,
                 certs=certs, run_dir=run_dir, ca_file=os.path.join(certs, "ca.crt"),
                 conf=conf, stunnel=st, haproxy=hap)


def s_client(port, *args, ca=None, servername="localhost", request=None, timeout=10):
    """Runs `openssl s_client` against 127.0.0.1:port. request (bytes) is sent
    with -ign_eof so that s_client waits for the answer (and TLS 1.3 session
    tickets). Returns (returncode, stdout+stderr text)."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", servername]
    if ca:
        argv += ["-CAfile", ca, "-verify_return_error"]
    if request is not None:
        argv.append("-ign_eof")
    argv += list(args)
    r = subprocess.run(argv, input=request if request is not None else b"",
                       capture_output=True, timeout=timeout * harness.SLOW)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def https_get(port, path="/", *, ca, sni="localhost", source=None, timeout=5.0, headers=None):
    """One HTTPS request verified against ca, optionally from a given source
    address (any 127/8 address works on Linux loopback). Returns
    (status, lower-cased headers, body, TLS version)."""
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                   source_address=(source, 0) if source else None)
    tls = ctx.wrap_socket(raw, server_hostname=sni)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.sock = tls
        conn.request("GET", path, headers=headers or {"Host": sni})
        r = conn.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body, tls.version()
    finally:
        tls.close()
