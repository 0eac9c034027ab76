"""A real etcd cluster on loopback for the integration tests, and a small
client for it over etcd's v3 JSON gateway (the same gateway the daemons
use), so tests can write directories, kill members and compact history.

    cluster = EtcdCluster(stack)            # 3 members, started and healthy
    spec = cluster.spec("/sg/test")         # "etcd://127.0.0.1:P1,...:P3/sg/test"
    cluster.write_directory("/sg/test", seed_text)   # generation "1", current -> 1
    cluster.put("/sg/test/g/1/node/n1", "node n1 127.0.0.1:7001 dc=us-east")
    rev = cluster.revision()
    cluster.compact(rev)
    cluster.kill(0); cluster.restart(0)     # SIGKILL one member / start it again
    cluster.kill_all(); cluster.restart_all()

Every member listens on 127.0.0.1 only (client and peer ports from
harness.free_port()), keeps its data dir in the test's temp dir and runs
with --heartbeat-interval 50 --election-timeout 500 so that elections after a
kill take well under a second. Members are processes of the `stack`
fixture: stopped by PID at teardown, logs printed when a test fails.

The layout (seeddir/seeddir.h): PREFIX/current holds the generation in use;
PREFIX/g/<GEN>/{replicas,check-defaults,dc/NNNN,hub/NAME,node/NAME,
project/UUID} one text line each; PREFIX/live/{node,hub}/NAME written under a
lease. records_from_text() splits a text directory the same way
`seedctl import` does, for tests that run before seedctl can.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import harness

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


def have_etcd():
    return os.path.exists(ETCD) and os.path.exists(ETCDCTL)


def _b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def _unb64(s):
    return base64.b64decode(s or "")


def prefix_end(key):
    """The range end that covers every key starting with key (etcd's rule:
    the key with its last byte incremented)."""
    b = bytearray(key.encode() if isinstance(key, str) else key)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\0"


class EtcdError(Exception):
    pass


class EtcdCluster:
    """N etcd members on 127.0.0.1 with their own data dirs under the stack's
    temp dir. Started (and waited for) by the constructor."""

    def __init__(self, stack, members=3, progress_interval=None, name="etcd", start=True):
        self.stack = stack
        self.name = name
        self.n = members
        self.client_ports = [harness.free_port() for _ in range(members)]
        self.peer_ports = [harness.free_port() for _ in range(members)]
        self.token = f"{name}-{uuid.uuid4().hex[:12]}"
        self.progress_interval = progress_interval
        self.procs = [None] * members
        self.argvs = [self._argv(i) for i in range(members)]
        if start:
            self.start()

    # -- members -----------------------------------------------------------
    def member_name(self, i):
        return f"{self.name}{i + 1}"

    def _argv(self, i):
        cluster = ",".join(f"{self.member_name(k)}=http://127.0.0.1:{self.peer_ports[k]}"
                           for k in range(self.n))
        client = f"http://127.0.0.1:{self.client_ports[i]}"
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        argv = [ETCD, "--name", self.member_name(i),
                "--data-dir", self.stack.path(f"{self.member_name(i)}.data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", self.token,
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--log-level", "warn", "--logger", "zap"]
        if self.progress_interval:
            argv += ["--experimental-watch-progress-notify-interval", self.progress_interval]
        return argv

    def start(self, timeout=20.0):
        for i in range(self.n):
            self._start_member(i)
        self.wait_healthy(timeout)

    def _start_member(self, i):
        self.procs[i] = self.stack.start(self.member_name(i), self.argvs[i])

    @property
    def endpoints(self):
        """Client addresses "127.0.0.1:PORT" of every member (alive or not)."""
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    def spec(self, prefix="/seedgate/test", members=None):
        """The --seed argument naming this cluster: every member, or the
        indexes in `members`."""
        idx = range(self.n) if members is None else members
        return "etcd://" + ",".join(self.endpoints[i] for i in idx) + prefix

    def alive(self, i):
        return self.procs[i] is not None and self.procs[i].alive()

    def kill(self, i, wait_leader=True):
        """SIGKILL member i (by PID). While a quorum is left, waits until the
        survivors have a leader again, so the test's next write does not
        wait out an election."""
        if self.procs[i] is not None:
            self.procs[i].kill()
        alive = [k for k in range(self.n) if self.alive(k)]
        if wait_leader and len(alive) > self.n // 2:
            for k in alive:
                harness.wait_until(lambda k=k: self._member_ok(k), 20.0, interval=0.1,
                                   what=f"etcd member {self.member_name(k)} has a leader")

    def stop(self, i):
        if self.procs[i] is not None:
            self.procs[i].stop()

    def kill_all(self):
        for i in range(self.n):
            self.kill(i, wait_leader=False)

    def restart(self, i, wait=True, timeout=20.0):
        """Starts member i again on its data dir (it rejoins the cluster)."""
        if self.alive(i):
            return
        self._start_member(i)
        if wait:
            harness.wait_until(lambda: self._member_ok(i), timeout, interval=0.1,
                               what=f"etcd member {self.member_name(i)} healthy")

    def restart_all(self, timeout=20.0):
        for i in range(self.n):
            if not self.alive(i):
                self._start_member(i)
        self.wait_healthy(timeout)

    def _member_ok(self, i):
        if not self.alive(i):
            raise AssertionError(f"{self.member_name(i)} exited:\n{self.procs[i].log()[-3000:]}")
        # a linearizable read through this member: it answers only once the
        # cluster has a leader and the member has caught up
        self.call("/v3/kv/range", {"key": _b64("health-probe")}, members=[i], timeout=1.0,
                  attempt=1.0)
        return True

    def wait_healthy(self, timeout=20.0):
        for i in range(self.n):
            if self.procs[i] is not None and self.alive(i):
                harness.wait_until(lambda i=i: self._member_ok(i), timeout, interval=0.1,
                                   what=f"etcd member {self.member_name(i)} healthy")

    def signal(self, i, sig):
        self.procs[i].signal(sig)

    # -- client over the v3 JSON gateway ----------------------------------
    def call(self, path, body, members=None, timeout=10.0, attempt=2.0):
        """POST body (a dict) to path on a live member; returns the decoded
        JSON. A member that does not answer within `attempt` seconds (no
        leader yet after a kill) is skipped and the members are tried in turn
        until `timeout`. Raises EtcdError with etcd's message when etcd
        answers with an error, or when no member answered in time."""
        deadline = time.monotonic() + timeout * harness.SLOW
        last = None
        while True:
            idx = [i for i in (range(self.n) if members is None else members) if self.alive(i)]
            if not idx:
                raise EtcdError("no etcd member is running")
            for i in idx:
                req = urllib.request.Request(f"http://{self.endpoints[i]}{path}",
                                             data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=min(attempt, timeout)) as r:
                        out = json.loads(r.read() or b"{}")
                except urllib.error.HTTPError as e:
                    try:
                        msg = json.loads(e.read()).get("error", str(e))
                    except ValueError:
                        msg = str(e)
                    last = EtcdError(f"{path}: {msg}")
                    continue
                except OSError as e:
                    last = EtcdError(f"{path} on {self.endpoints[i]}: {e}")
                    continue
                if "error" in out:
                    raise EtcdError(f"{path}: {out['error']}")
                return out
            if time.monotonic() >= deadline:
                raise last
            time.sleep(0.05)

    def revision(self):
        """The cluster's current revision."""
        return int(self.call("/v3/kv/range", {"key": _b64("\0"), "count_only": True})
                   ["header"]["revision"])

    def put(self, key, value, lease=0, members=None, timeout=10.0):
        """Writes one key; value is str or bytes (any bytes). members: only
        through these (e.g. around a frozen one). Returns the revision of
        the write."""
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        return int(self.call("/v3/kv/put", body, members=members, timeout=timeout)["header"]["revision"])

    def delete(self, key, prefix=False):
        body = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        return int(self.call("/v3/kv/deleterange", body)["header"]["revision"])

    def get(self, key):
        """The value of key as bytes, or None."""
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        return _unb64(kvs[0].get("value")) if kvs else None

    def get_prefix(self, prefix):
        """{key: value bytes} of every key under prefix."""
        out = self.call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        return {_unb64(kv["key"]).decode(errors="replace"): _unb64(kv.get("value"))
                for kv in out.get("kvs", [])}

    def txn_put(self, items, delete_prefixes=(), compare=None):
        """One transaction: puts every (key, value) of items and deletes every
        prefix in delete_prefixes. compare: optional (key, value) that must
        hold for the transaction to apply. Returns (succeeded, revision)."""
        ops = [{"request_delete_range": {"key": _b64(p), "range_end": _b64(prefix_end(p))}}
               for p in delete_prefixes]
        ops += [{"request_put": {"key": _b64(k), "value": _b64(v)}} for k, v in items]
        body = {"success": ops}
        if compare is not None:
            body["compare"] = [{"key": _b64(compare[0]), "target": "VALUE", "result": "EQUAL",
                                "value": _b64(compare[1])}]
        out = self.call("/v3/kv/txn", body)
        return bool(out.get("succeeded")), int(out["header"]["revision"])

    def compact(self, rev, physical=True):
        self.call("/v3/kv/compaction", {"revision": str(rev), "physical": physical}, timeout=10.0)

    def grant(self, ttl):
        """A new lease of ttl seconds; returns its id."""
        return int(self.call("/v3/lease/grant", {"TTL": str(ttl)})["ID"])

    def revoke(self, lease):
        self.call("/v3/lease/revoke", {"ID": str(lease)})

    def etcdctl(self, *args, check=True, timeout=20.0):
        """Runs etcdctl (API v3) against the live members; returns stdout."""
        eps = ",".join(f"http://{self.endpoints[i]}" for i in range(self.n) if self.alive(i))
        r = subprocess.run([ETCDCTL, "--endpoints", eps, *map(str, args)], capture_output=True,
                           text=True, env=dict(os.environ, ETCDCTL_API="3"), timeout=timeout)
        if check and r.returncode != 0:
            raise EtcdError(f"etcdctl {' '.join(map(str, args))}: {r.stderr.strip()}")
        return r.stdout

    # -- directories -------------------------------------------------------
    def write_directory(self, prefix, text, gen="1", batch=128):
        """Writes text (a valid text directory) as generation gen under
        prefix, then switches PREFIX/current to gen and deletes every other
        generation, the way `seedctl import` does. Returns the revision of
        the switch."""
        recs = records_from_text(prefix, gen, text)
        self.delete(f"{prefix}/g/{gen}/", prefix=True)
        for k in range(0, len(recs), batch):
            self.txn_put(recs[k:k + batch])
        rev = self.put(f"{prefix}/current", gen)
        for key in {k.split("/g/", 1)[1].split("/", 1)[0]
                    for k in self.get_prefix(f"{prefix}/g/")} - {gen}:
            self.delete(f"{prefix}/g/{key}/", prefix=True)
        return rev


def records_from_text(prefix, gen, text):
    """[(key, value)] of a text directory in the etcd layout. Comments and
    blank lines are dropped; dc positions follow file order; project ids are
    lower-cased in the key."""
    out, ndc = [], 0
    base = f"{prefix}/g/{gen}"
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        f = line.split()
        kw = f[0]
        if kw in ("replicas", "check-defaults"):
            out.append((f"{base}/{kw}", line))
        elif kw == "dc":
            ndc += 1
            out.append((f"{base}/dc/{ndc:04d}", line))
        elif kw in ("hub", "node"):
            out.append((f"{base}/{kw}/{f[1]}", line))
        elif kw == "project":
            out.append((f"{base}/project/{f[1].lower()}", line))
        else:
            raise ValueError(f"records_from_text: unknown keyword {kw!r}")
    return out


def stop_start(proc, sig_stop=signal.SIGSTOP):
    """Freezes a daemon (SIGSTOP); returns a function that thaws it."""
    proc.signal(sig_stop)
    return lambda: proc.signal(signal.SIGCONT)


def wait_revision_at_least(cluster, rev, timeout=5.0):
    harness.wait_until(lambda: cluster.revision() >= rev, timeout, what=f"etcd revision >= {rev}")


def now():
    return time.monotonic()
