"""Helpers for the TLS integration tests (tests/integration/test_tls_*.py).

    certs = make_certs(stack)                       # tls/make-certs.sh into <tmp>/certs
    front = start_front(stack, front="hitch")       # echo backend + HAProxy (accept-proxy,
                                                    # forwardfor, HSTS on TLS) + the TLS front:
                                                    # stunnel, hitch or HAProxy's own TLS
    restart_front(stack, front); roll_certificate(front)
    info, https_port, ca = start_stack_tls(stack, seed, "haproxy")   # the product haproxy.cfg
    rc, out = s_client(front.https_port, "-tls1_2", ca=front.ca_file)
    status, headers, body = https_get(front.https_port, "/", ca=front.ca_file,
                                      source="127.0.0.2")

stunnel and hitch are configured by tls/stunnel-conf.sh / tls/hitch-conf.sh and
started by tls/stunnel-run.sh / tls/hitch-run.sh, exactly as the demo does;
HAProxy's own TLS uses the bind line of haproxy.cfg's TLS FRONT block. Every listener is started by start_listener(),
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

# The TLS-path rules of haproxy-conf/haproxy.cfg in small: a request is TLS
# when it came with a PROXY header (stunnel, hitch) or on HAProxy's own TLS
# listener ({tls_bind}: the bind line of haproxy.cfg's TLS FRONT block, for
# the "haproxy" front); only those get HSTS. {plain_port}: plain HTTP.
FRONT_HAPROXY = """
global
    maxconn 2000
    stats socket {run_dir}/haproxy-tls.sock mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe_tls
    bind 127.0.0.1:{proxy_port} accept-proxy
    bind 127.0.0.1:{plain_port}
{tls_bind}
    option forwardfor
    http-request set-header X-Client-Port %[src_port]
    http-request set-var(txn.sg_tls) bool(1) if {{ fc_rcvd_proxy }} or {{ ssl_fc }}
    http-after-response set-header Strict-Transport-Security "max-age=63072000" if {{ var(txn.sg_tls) -m bool }}
    default_backend be_echo
backend be_echo
    server echo 127.0.0.1:{backend_port}
"""

FRONTS = ("stunnel", "hitch", "haproxy")


def haproxy_tls_bind(https_port, certs, run_dir):
    """haproxy.cfg's own `bind "${SG_HTTPS_BIND}" ssl ...` line, with the
    variables filled in: the tests check the product's policy line."""
    cfg = open(os.path.join(harness.ROOT, "haproxy-conf", "haproxy.cfg")).read()
    line = next(l for l in cfg.splitlines() if l.strip().startswith('bind "${SG_HTTPS_BIND}" ssl'))
    return (line.replace("${SG_HTTPS_BIND}", f"127.0.0.1:{https_port}")
                .replace("${SG_TLS_CRT}", os.path.join(certs, "server.pem"))
                .replace("${SG_TLS_TICKETS}", os.path.join(run_dir, "ticket.keys.haproxy")))


@dataclass
class Front:
    https_port: int
    proxy_port: int
    backend_port: int
    certs: str
    run_dir: str
    ca_file: str
    conf: str
    stunnel: harness.Proc       # the process that terminates TLS (stunnel, hitch or HAProxy)
    haproxy: harness.Proc
    front: str = "stunnel"
    plain_port: int = 0         # HAProxy's plain HTTP listener

    @property
    def tls(self):
        return self.stunnel


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
    # hitch's master hands its listeners to its workers and closes them.
    for p in [pid] + children(pid):
        fd_dir = f"/proc/{p}/fd"
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


def children(pid):
    """The direct children of pid."""
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return kids


def start_listener(stack, name, argv_for_port, port=None, tries=5, env=None):
    """Starts argv_for_port(port) and waits until that very process listens
    on port. If it exits first (port taken meanwhile), retries on a fresh
    port. Returns (Proc, port)."""
    last = ""
    for attempt in range(tries):
        port = port if (port is not None and attempt == 0) else harness.free_port()
        p = stack.start(name if attempt == 0 else f"{name}-retry{attempt}", argv_for_port(port), env=env)

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


def hitch_conf(stack, accept_port, connect_port, certs, run_dir, name="hitch.conf"):
    argv = [os.path.join(TLS_DIR, "hitch-conf.sh"), "--accept", f"127.0.0.1:{accept_port}",
            "--connect", f"127.0.0.1:{connect_port}", "--certs", certs, "--run", run_dir,
            "--workers", "2", "--out", stack.path(name)]
    r = subprocess.run(argv, capture_output=True, text=True)
    assert r.returncode == 0, f"hitch-conf.sh failed:\n{r.stdout}{r.stderr}"
    return stack.path(name)


def start_hitch(stack, certs, run_dir, connect_port, port=None, name="hitch"):
    """hitch (tls/hitch-conf.sh + tls/hitch-run.sh). Returns (Proc, port, conf)."""
    confs = {}

    def argv(p):
        confs[p] = hitch_conf(stack, p, connect_port, certs, run_dir, name=f"{name}-{p}.conf")
        return [os.path.join(TLS_DIR, "hitch-run.sh"), confs[p], run_dir]
    env = {"SEEDGATE_BUILD": harness.bin_path("libsg-hitch.so").rsplit("/", 1)[0]}
    proc, port = start_listener(stack, name, argv, port=port, env=env)
    return proc, port, confs[port]


def start_tls(stack, front, certs, run_dir, connect_port, port=None, name=None):
    """The external TLS front named front ("stunnel" or "hitch")."""
    if front == "hitch":
        return start_hitch(stack, certs, run_dir, connect_port, port=port, name=name or "hitch")
    return start_stunnel(stack, certs, run_dir, connect_port, port=port, name=name or "stunnel")


def start_echo_backend(stack):
    script = stack.write("echo_backend.py", ECHO_BACKEND)
    _, port = start_listener(stack, "echo-backend", lambda p: ["/usr/bin/python3", script, p])
    return port


def start_haproxy(stack, cfg_template, name="haproxy", **ports):
    """HAProxy -db on a config whose {proxy_port} is chosen here; checked
    with -c first. Returns (Proc, proxy_port). FRONT_HAPROXY's other
    fields default to: no TLS bind, a fresh plain port, the test's dir."""
    ports.setdefault("tls_bind", "")
    ports.setdefault("run_dir", stack.dir)
    if "plain_port" not in ports:
        ports["plain_port"] = harness.free_port()

    def argv(p):
        cfg = stack.write(f"{name}-{p}.cfg", cfg_template.format(proxy_port=p, **ports))
        chk = subprocess.run([harness.HAPROXY, "-c", "-f", cfg], capture_output=True, text=True)
        assert chk.returncode == 0, f"haproxy -c failed:\n{chk.stdout}{chk.stderr}"
        return [harness.HAPROXY, "-db", "-f", cfg]
    return start_listener(stack, name, argv)


def start_echo_haproxy(stack, front, certs, run_dir, backend_port, https_port=None, name="haproxy"):
    """The echo HAProxy; for the "haproxy" front with haproxy.cfg's TLS bind
    on https_port (a fresh one if None). Returns (Proc, proxy_port, https_port)."""
    plain_port = harness.free_port()
    tls_bind, https = "", None
    if front == "haproxy":
        subprocess.run([os.path.join(TLS_DIR, "ticket-keys.sh"), run_dir], check=True)
        https = https_port or harness.free_port()
        tls_bind = haproxy_tls_bind(https, certs, run_dir)
    hap, proxy_port = start_haproxy(stack, FRONT_HAPROXY, name=name, backend_port=backend_port,
                                    plain_port=plain_port, tls_bind=tls_bind, run_dir=run_dir)
    hap.plain_port = plain_port
    return hap, proxy_port, https


def start_front(stack, run_dir=None, stunnel_args=(), front="stunnel"):
    """Echo backend, HAProxy with accept-proxy, and the TLS front: stunnel
    or hitch in front of HAProxy, or HAProxy's own TLS listener."""
    certs = make_certs(stack)
    backend_port = start_echo_backend(stack)
    run_dir = run_dir or stack.path("run")
    os.makedirs(run_dir, exist_ok=True)
    hap, proxy_port, https_port = start_echo_haproxy(stack, front, certs, run_dir, backend_port)
    if front == "haproxy":
        tls, conf = hap, None
    elif front == "hitch":
        tls, https_port, conf = start_hitch(stack, certs, run_dir, proxy_port)
    else:
        tls, https_port, conf = start_stunnel(stack, certs, run_dir, proxy_port, extra=stunnel_args)
    return Front(https_port=https_port, proxy_port=proxy_port, backend_port=backend_port,
                 certs=certs, run_dir=run_dir, ca_file=os.path.join(certs, "ca.crt"),
                 conf=conf, stunnel=tls, haproxy=hap, front=front, plain_port=hap.plain_port)


def restart_front(stack, f, run_dir=None, name="2"):
    """Stops the TLS front of f and starts it again on the same port (a
    fresh one if another process took it), with run_dir's ticket keys
    (default: the same as before). Updates f and returns it."""
    run_dir = run_dir or f.run_dir
    f.stunnel.stop()
    if f.front == "haproxy":
        hap, proxy_port, https = start_echo_haproxy(stack, "haproxy", f.certs, run_dir, f.backend_port,
                                                    https_port=f.https_port, name=f"haproxy-{name}")
        f.stunnel = f.haproxy = hap
        f.https_port, f.proxy_port = https, proxy_port
    else:
        proc, port, conf = start_tls(stack, f.front, f.certs, run_dir, f.proxy_port, port=f.https_port,
                                     name=f"{f.front}-{name}")
        f.stunnel, f.https_port, f.conf = proc, port, conf
    return f


def admin(sock_path, command, payload=None):
    """One command on HAProxy's runtime API; payload goes after `<<`."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5 * harness.SLOW)
        s.connect(sock_path)
        text = command if payload is None else f"{command} <<\n{payload.rstrip()}\n"
        s.sendall(text.encode() + b"\n")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    return out.decode(errors="replace")


def roll_certificate(f):
    """tls/README.md's roll: new files by rename (make-certs.sh), then
    stunnel/hitch SIGHUP, or HAProxy's `set ssl cert` + `commit ssl cert`."""
    import signal
    r = subprocess.run([os.path.join(TLS_DIR, "make-certs.sh"), f.certs], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if f.front == "haproxy":
        pem = os.path.join(f.certs, "server.pem")
        sock = os.path.join(f.run_dir, "haproxy-tls.sock")
        out = admin(sock, f"set ssl cert {pem}", open(pem).read())
        assert "Transaction created" in out or "Transaction updated" in out, out
        out = admin(sock, f"commit ssl cert {pem}")
        assert "Success" in out, out
    else:
        f.stunnel.signal(signal.SIGHUP)


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


def start_stack_tls(stack, seed, front, agents=1):
    """The whole stack (stack_util.start_stack: the product haproxy.cfg)
    with the TLS front named front. Returns (StackInfo, https_port, ca)."""
    import stack_util
    certs = make_certs(stack)
    run_dir = stack.path("run")
    os.makedirs(run_dir, exist_ok=True)
    if front == "haproxy":
        subprocess.run([os.path.join(TLS_DIR, "ticket-keys.sh"), run_dir], check=True)
        https_port = harness.free_port()
        env = {"SG_HTTPS_BIND": f"127.0.0.1:{https_port}",
               "SG_TLS_CRT": os.path.join(certs, "server.pem"),
               "SG_TLS_TICKETS": os.path.join(run_dir, "ticket.keys.haproxy")}
        info = stack_util.start_stack(stack, seed, agents=agents, haproxy_env=env)
        stack.wait_port(https_port, info.haproxy, timeout=10.0)
    else:
        info = stack_util.start_stack(stack, seed, agents=agents)
        _, https_port, _ = start_tls(stack, front, certs, run_dir, info.proxy_port)
    return info, https_port, os.path.join(certs, "ca.crt")
