"""haproxy-conf/ and tls/ hardening, against real HAProxy and stunnel.

* run-haproxy.sh shows HAProxy's own ALERT lines (file:line) when the
  configuration check fails, and exits 1 at once;
* a test dir too deep for HAProxy's unix sockets (over 97 bytes) fails
  start_stack() at once with the path, its length and what to do;
* tls/stunnel-conf.sh --out writes the configuration (ticket secrets) 0600,
  0640 for the group given with --group; --user/--group make stunnel run
  unprivileged, and it still serves;
* the shipped default (SG_USER/SG_GROUP haproxy) runs HAProxy's worker
  unprivileged, and the node fallback socket still reaches the hubs;
* through stunnel (TLS) the hub cookie is Secure and HttpOnly and HSTS is
  sent; on plain HTTP the cookie is HttpOnly only and there is no HSTS,
  also on HAProxy's own error responses.
"""
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile

import pytest

import harness
from harness import free_port, http_get
import stack_util
import tls_util

RUN_HAPROXY = os.path.join(stack_util.CONF_DIR, "run-haproxy.sh")


def seed_text(p):
    return f"""replicas 2
dc us-east
hub  h1  127.0.0.1:{p['h1']}  dc=us-east
hub  h2  127.0.0.1:{p['h2']}  dc=us-east
node n1  127.0.0.1:{p['n1']}  dc=us-east
node n2  127.0.0.1:{p['n2']}  dc=us-east
"""


def write_seed(stack):
    return stack.write("seed.conf", seed_text({n: free_port() for n in ("h1", "h2", "n1", "n2")}))


def test_run_haproxy_shows_alerts_of_a_broken_backends_file(stack):
    bad = stack.write("backends.cfg", "backend hubs_us-east\n    server only-a-name\n")
    env = dict(os.environ, SG_RUN_DIR=stack.dir, SG_USER="root", SG_GROUP="root",
               HAPROXY=harness.HAPROXY)
    r = subprocess.run([RUN_HAPROXY, bad], capture_output=True, text=True, env=env,
                       timeout=30 * harness.SLOW)
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert "ALERT" in out and f"{bad}:2" in out, out
    assert "configuration check failed" in out, out


def test_socket_path_too_long_is_said_before_anything_starts(stack, tmp_path):
    deep = tmp_path / ("d" * max(1, 90 - len(str(tmp_path))))
    deep.mkdir()
    inner = harness.Stack(deep)
    try:
        with pytest.raises(AssertionError) as e:
            stack_util.start_stack(inner, write_seed(stack))
        msg = str(e.value)
        path = os.path.join(str(deep), "haproxy.sock")
        assert f"{path} is {len(path)} bytes" in msg and "at most 97" in msg, msg
        assert "TMPDIR" in msg, msg
        assert not inner.procs
    finally:
        inner.stop_all()
    # Exactly at the limit is accepted by HAProxy itself.
    ok = "/" + "x" * 96
    assert harness.check_socket_path(ok) == ok


def public_dir(stack):
    """A fresh dir under /tmp that an unprivileged process can traverse
    (pytest's own temp dirs are 0700 root), removed at teardown, after
    every process is stopped."""
    d = tempfile.mkdtemp(prefix="sg-", dir="/tmp")
    os.chmod(d, 0o711)
    stack.defer(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def stunnel_conf_argv(certs, run, out, *extra):
    return [os.path.join(tls_util.TLS_DIR, "stunnel-conf.sh"), "--accept", f"127.0.0.1:{free_port()}",
            "--connect", f"127.0.0.1:{free_port()}", "--certs", certs, "--run", run, "--out", out, *extra]


def test_stunnel_conf_with_secrets_is_private(stack):
    certs = tls_util.make_certs(stack)
    out = stack.path("stunnel.conf")
    # Even under a permissive umask the file is 0600.
    r = subprocess.run(stunnel_conf_argv(certs, stack.path("run"), out), capture_output=True,
                       text=True, preexec_fn=lambda: os.umask(0o022))
    assert r.returncode == 0, r.stderr
    assert mode_of(out) == 0o600
    assert re.search(r"^ticketKeySecret = [0-9a-f]{64}$", open(out).read(), re.M)
    assert not re.search(r"^set(uid|gid) =", open(out).read(), re.M)
    assert not [f for f in os.listdir(stack.dir) if ".tmp." in f]


@pytest.mark.skipif(not (harness.have("stunnel4") and os.geteuid() == 0), reason="needs stunnel4 and root")
def test_stunnel_runs_unprivileged(stack):
    try:
        user = pwd.getpwnam("stunnel4")
        group = grp.getgrnam("stunnel4").gr_name
    except KeyError:
        pytest.skip("no stunnel4 user (Debian package stunnel4 creates it)")
    certs = tls_util.make_certs(stack)
    backend_port = tls_util.start_echo_backend(stack)
    hap, proxy_port = tls_util.start_haproxy(stack, tls_util.FRONT_HAPROXY, backend_port=backend_port)
    # The pid file is written after the drop: the run dir is stunnel4's.
    run = os.path.join(public_dir(stack), "run")
    os.makedirs(run)
    os.chown(run, user.pw_uid, user.pw_gid)
    out = stack.path("stunnel.conf")

    def argv(port):
        r = subprocess.run([os.path.join(tls_util.TLS_DIR, "stunnel-conf.sh"), "--accept", f"127.0.0.1:{port}",
                            "--connect", f"127.0.0.1:{proxy_port}", "--certs", certs, "--run", run,
                            "--out", out, "--user", "stunnel4", "--group", group],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return [os.path.join(tls_util.TLS_DIR, "stunnel-run.sh"), out]
    st, port = tls_util.start_listener(stack, "stunnel", argv)
    assert mode_of(out) == 0o640 and os.stat(out).st_gid == grp.getgrnam(group).gr_gid

    # stunnel-run.sh binds the port before stunnel starts: wait for the drop.
    def uids():
        with open(f"/proc/{st.pid}/status") as f:
            return [int(u) for u in next(line for line in f if line.startswith("Uid:")).split()[1:]]
    harness.wait_until(lambda: all(u == user.pw_uid for u in uids()), 10.0,
                       what=f"stunnel running as {user.pw_name}")
    status, _h, _b, _v = tls_util.https_get(port, "/", ca=os.path.join(certs, "ca.crt"))
    assert status == 200


def worker_uids(master_pid):
    with open(f"/proc/{master_pid}/task/{master_pid}/children") as f:
        workers = [int(x) for x in f.read().split()]
    uids = []
    for w in workers:
        with open(f"/proc/{w}/status") as f:
            uids.append(int(next(line for line in f if line.startswith("Uid:")).split()[1]))
    return uids


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_haproxy_worker_unprivileged_and_fallback_works(stack):
    try:
        hap_uid = pwd.getpwnam("haproxy").pw_uid
    except KeyError:
        pytest.skip("no haproxy user (Debian package haproxy creates it)")
    # The worker connects to SG_RUN_DIR/node-fallback.sock after the drop:
    # the run dir must be traversable by it (pytest's dirs are 0700), as
    # /run/seedgate must be in production. Processes stay the fixture's.
    seed = write_seed(stack)
    inner = harness.Stack(public_dir(stack))
    inner.procs = stack.procs
    info = stack_util.start_stack(inner, seed, agents=1,
                                  haproxy_env={"SG_USER": "haproxy", "SG_GROUP": "haproxy"})
    uids = harness.wait_until(lambda: worker_uids(info.haproxy.pid), 10, what="haproxy worker")
    assert uids and all(u == hap_uid for u in uids), uids
    # A project whose node HAProxy holds down goes to the hubs through the
    # fallback socket, which the unprivileged worker must be able to use.
    project = "6f1d0c6e-2b7a-4f38-9a51-3c2e8d7b4a10"
    node = stack_util.where(seed, project)
    status, hdrs, _ = http_get(info.http_port, f"/{project}/x")
    assert status == 200 and hdrs["x-served-by"] == node
    stack_util.admin(info, f"disable server nodes_us-east/{node}")
    for _ in range(3):
        status, hdrs, body = http_get(info.http_port, f"/{project}/x")
        assert status == 200 and hdrs["x-served-by"] in ("h1", "h2"), (status, hdrs, body)


def cookie_of(hdrs_list):
    return [v for k, v in hdrs_list if k.lower() == "set-cookie" and v.startswith("SGHUB=")]


def get_all_headers(port, path="/", tls_ca=None):
    """(status, [(name, value)...]) so that repeated Set-Cookie lines stay apart."""
    import http.client
    import ssl
    if tls_ca:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5,
                                           context=ssl.create_default_context(cafile=tls_ca))
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": "localhost"})
        r = conn.getresponse()
        r.read()
        return r.status, r.getheaders()
    finally:
        conn.close()


def test_hsts_and_secure_cookie_only_over_tls(stack):
    seed = write_seed(stack)
    info = stack_util.start_stack(stack, seed, agents=1, stunnel=True)

    # Over TLS (stunnel -> PROXY -> HAProxy): HSTS, cookie Secure + HttpOnly.
    status, hdrs = get_all_headers(info.https_port, "/", tls_ca=info.ca_file)
    assert status == 200
    names = [k.lower() for k, _ in hdrs]
    assert "strict-transport-security" in names, hdrs
    (cookie,) = cookie_of(hdrs)
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert "secure" in attrs and "httponly" in attrs, cookie
    assert attrs.count("secure") == 1 and attrs.count("httponly") == 1, cookie

    # Plain HTTP: no HSTS, cookie HttpOnly but not Secure (it must come back).
    status, hdrs = get_all_headers(info.http_port, "/")
    assert status == 200
    assert "strict-transport-security" not in [k.lower() for k, _ in hdrs], hdrs
    (cookie,) = cookie_of(hdrs)
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert "httponly" in attrs and "secure" not in attrs, cookie

    # curl, as a user would: the same over TLS and plain.
    if harness.have("curl"):
        r = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null", "--cacert", info.ca_file,
                            f"https://localhost:{info.https_port}/"], capture_output=True, text=True,
                           timeout=20)
        assert re.search(r"^strict-transport-security:", r.stdout, re.M | re.I), r.stdout
        assert re.search(r"^set-cookie: SGHUB=[^\r\n]*; Secure", r.stdout, re.M | re.I), r.stdout
        r = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null",
                            f"http://127.0.0.1:{info.http_port}/"], capture_output=True, text=True,
                           timeout=20)
        assert not re.search(r"^strict-transport-security:", r.stdout, re.M | re.I), r.stdout
        assert not re.search(r"secure", r.stdout, re.I), r.stdout

    # HAProxy's own answers follow the same rule: every hub down -> 503.
    for name in ("h1", "h2"):
        stack_util.admin(info, f"disable server hubs_us-east/{name}")
    status, hdrs = get_all_headers(info.https_port, "/", tls_ca=info.ca_file)
    assert status == 503 and "strict-transport-security" in [k.lower() for k, _ in hdrs], hdrs
    status, hdrs = get_all_headers(info.http_port, "/")
    assert status == 503 and "strict-transport-security" not in [k.lower() for k, _ in hdrs], hdrs
