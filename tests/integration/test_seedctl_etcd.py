"""seedctl against a real 3-member etcd cluster on loopback: import/export,
single-record edits, the guards that keep concurrent writers from mixing,
errors naming their key, and register's lease.

One cluster serves the whole module (starting three members costs seconds);
every test works under its own key prefix.
"""
import os
import random
import signal
import subprocess
import time

import pytest

import harness
import etcd_util
# the seedctl runner and the where/ids helpers of the file-based tests
from test_seedctl import random_ids, seedctl, where

pytestmark = pytest.mark.skipif(not etcd_util.have_etcd(), reason="etcd not installed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    st = harness.Stack(tmp_path_factory.mktemp("etcd"))
    try:
        c = etcd_util.EtcdCluster(st)
        yield c
    finally:
        st.stop_all()


_prefixes = iter(range(1, 10 ** 6))


@pytest.fixture
def prefix():
    return f"/sgtest/p{next(_prefixes)}"


def seed_text(nodes_per_dc=10, drain=(), pins=(), extra=()):
    lines = ["replicas 2", "check-defaults check=tcp interval=2s", "dc east", "dc west"]
    for dc, base in (("east", 1), ("west", 2)):
        lines.append(f"hub hub-{dc} 127.0.0.{base}:5000 dc={dc}")
        for i in range(nodes_per_dc):
            name = f"{dc[0]}{i}"
            state = " state=drain" if name in drain else ""
            lines.append(f"node {name} 127.0.0.{base}:{6000 + i} dc={dc} weight={1 + i % 5}{state}")
    lines += [f"project {pid} {' '.join(ns)}" for pid, ns in pins]
    lines += list(extra)
    head, tail = lines[:4], lines[4:]
    random.Random(7).shuffle(tail)          # record order must not matter
    return "\n".join(head + tail) + "\n"


def import_text(stack, cluster, prefix, text, name="seed.conf"):
    path = stack.write(name, text)
    r = seedctl("import", "--etcd", cluster.spec(prefix), path)
    assert r.returncode == 0, r.stderr
    return path


def generations(cluster, prefix):
    return {k[len(prefix) + 3:].split("/", 1)[0] for k in cluster.get_prefix(prefix + "/g/")}


def test_help_lists_every_flag():
    r = seedctl("--help")
    assert r.returncode == 0
    for cmd in ("import", "export", "put", "del", "drain", "register", "check", "where"):
        assert cmd in r.stdout
    flags = {"import": ["--etcd"], "export": ["--etcd", "--no-live", "--out"], "put": ["--etcd"],
             "del": ["--etcd"], "drain": ["--etcd", "--undrain"], "register": ["--etcd", "--ttl"],
             "check": ["--seed"]}
    for cmd, fl in flags.items():
        r = seedctl(cmd, "--help")
        assert r.returncode == 0, cmd
        for f in fl:
            assert f in r.stdout, (cmd, f)
    assert seedctl("import").returncode == 2
    assert seedctl("register", "--etcd", "127.0.0.1:1/x", "node a 1.2.3.4:5 dc=a").returncode == 2


def test_import_export_round_trip(stack, cluster, prefix):
    """1200+ records (several 128-op batches, two range pages): export gives the same
    decisions as the file for 1000 ids, from every dc, and re-importing the
    export changes nothing."""
    ids = random_ids(1000)
    pins = [(ids[3].upper(), ["e1", "w2"]), (ids[10], ["w0"])]
    text = seed_text(nodes_per_dc=600, drain=("e3", "w4"), pins=pins)
    path = import_text(stack, cluster, prefix, text)
    spec = cluster.spec(prefix)
    assert generations(cluster, prefix) == {cluster.get(prefix + "/current").decode()}

    r = seedctl("export", "--etcd", spec)
    assert r.returncode == 0, r.stderr
    first = r.stdout
    exported = stack.write("exported.conf", first)
    for dc in ("east", "west"):
        want = where(path, ids, "--dc", dc)
        assert where(spec, ids, "--dc", dc) == want
        assert where(exported, ids, "--dc", dc) == want
        assert where(exported, ids, "--dc", dc, "--down", "e1,w0") == where(path, ids, "--dc", dc, "--down", "e1,w0")

    # the other readers of --seed take etcd too (records come in key order
    # from etcd, in file order from the file: same lines, maybe reordered)
    hf, he = seedctl("haproxy", "--seed", path), seedctl("haproxy", "--seed", spec)
    assert hf.returncode == 0 and he.returncode == 0, he.stderr
    assert sorted(hf.stdout.splitlines()[1:]) == sorted(he.stdout.splitlines()[1:])
    sf = seedctl("stats", "--seed", path, "--samples", "2000")
    se = seedctl("stats", "--seed", spec, "--samples", "2000")
    assert se.returncode == 0 and sorted(se.stdout.splitlines()) == sorted(sf.stdout.splitlines())

    old = cluster.get(prefix + "/current").decode()
    r = seedctl("import", "--etcd", spec, exported)
    assert r.returncode == 0, r.stderr
    new = cluster.get(prefix + "/current").decode()
    assert new != old
    assert generations(cluster, prefix) == {new}, "the old generation is deleted"
    assert where(spec, ids) == where(path, ids)
    r2 = seedctl("export", "--etcd", spec.replace("etcd://", ""), "--out", stack.path("again.conf"))
    assert r2.returncode == 0, r2.stderr
    with open(stack.path("again.conf")) as f:
        assert f.read().split("\n", 1)[1] == first.split("\n", 1)[1]


def test_import_bad_file_writes_nothing(stack, cluster, prefix):
    spec = cluster.spec(prefix)
    bad = stack.write("bad.conf", "dc a\nnode n1 127.0.0.1:1 dc=a\nnode n2 127.0.0.1:2 dc=b\n")
    rev = cluster.revision()
    r = seedctl("import", "--etcd", spec, bad)
    assert r.returncode == 1
    assert r.stderr.strip() == f"{bad}:3: unknown datacenter 'b'"
    assert cluster.revision() == rev, "nothing written"
    assert cluster.get_prefix(prefix + "/") == {}

    import_text(stack, cluster, prefix, seed_text())
    before = cluster.get_prefix(prefix + "/")
    rev = cluster.revision()
    assert seedctl("import", "--etcd", spec, bad).returncode == 1
    assert seedctl("import", "--etcd", spec, stack.path("missing.conf")).returncode == 1
    assert cluster.revision() == rev
    assert cluster.get_prefix(prefix + "/") == before


def test_import_over_a_hand_written_generation(stack, cluster, prefix):
    """PREFIX/current set by hand to a number above etcd's revision: the
    import's generation is still above the one in use (so it can never be
    written into it, whatever revision the import reads at)."""
    text = seed_text(nodes_per_dc=2)
    far = str(cluster.revision() + 10 ** 6)
    cluster.write_directory(prefix, text, gen=far)
    path = import_text(stack, cluster, prefix, seed_text(nodes_per_dc=3))
    now = cluster.get(prefix + "/current").decode()
    assert int(now) == int(far) + 1
    assert generations(cluster, prefix) == {now}
    assert where(cluster.spec(prefix), random_ids(50)) == where(path, random_ids(50))


def test_concurrent_imports_one_wins(stack, cluster, prefix):
    """Import A is frozen (SIGSTOP) while it writes its generation; import B
    runs to the end; A is thawed. Exactly one of them switched, the directory
    is exactly the winner's file, and the loser's generation is gone."""
    spec = cluster.spec(prefix)
    import_text(stack, cluster, prefix, seed_text(nodes_per_dc=2))
    a_text = seed_text(nodes_per_dc=1500)            # ~24 batches: a wide window
    b_text = seed_text(nodes_per_dc=3, extra=["hub hub-b 127.0.0.9:5000 dc=east"])
    a_path = stack.write("a.conf", a_text)
    b_path = stack.write("b.conf", b_text)
    ids = random_ids(300, seed=5)
    caught = False
    for attempt in range(10):
        old = cluster.get(prefix + "/current").decode()
        a = subprocess.Popen([harness.bin_path("seedctl"), "import", "--etcd", spec, a_path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def a_writing():
                if a.poll() is not None:
                    return "exited"
                return "writing" if generations(cluster, prefix) - {old} else None
            state = harness.wait_until(a_writing, 30, interval=0.005, what="import A writing")
            if state == "writing":
                os.kill(a.pid, signal.SIGSTOP)
                caught = cluster.get(prefix + "/current").decode() == old
                rb = seedctl("import", "--etcd", spec, b_path)
                os.kill(a.pid, signal.SIGCONT)
            out_a, err_a = a.communicate(timeout=120 * harness.SLOW)
        finally:
            if a.poll() is None:
                a.kill()
                a.wait()
        if state != "writing":
            continue                                  # A was too fast: try again
        wins = [a.returncode == 0, rb.returncode == 0]
        assert sum(wins) == 1, (out_a, err_a, rb.stdout, rb.stderr)
        winner = a_path if wins[0] else b_path
        loser_err = rb.stderr if wins[0] else err_a
        assert "nothing switched" in loser_err
        assert len(generations(cluster, prefix)) == 1, "the loser removed its generation"
        assert where(spec, ids) == where(winner, ids)
        if caught:
            break
    assert caught, "never caught import A before its switch"


def test_put_del_drain(stack, cluster, prefix):
    spec = cluster.spec(prefix)
    ids = random_ids(400, seed=3)
    text = seed_text(pins=[(ids[0], ["e1", "w1"])])
    path = import_text(stack, cluster, prefix, text)
    gen = cluster.get(prefix + "/current").decode()

    r = seedctl("put", "--etcd", spec, "node e99 127.0.0.1:6099 dc=east weight=50")
    assert r.returncode == 0, r.stderr
    assert cluster.get(f"{prefix}/g/{gen}/node/e99") == b"node e99 127.0.0.1:6099 dc=east weight=50"
    with_e99 = stack.write("with.conf", text + "node e99 127.0.0.1:6099 dc=east weight=50\n")
    assert where(spec, ids) == where(with_e99, ids)

    # invalid results are refused, naming the key; nothing is written
    rev = cluster.revision()
    r = seedctl("put", "--etcd", spec, "node e98 127.0.0.1:6098 dc=north")
    assert r.returncode == 1
    assert r.stderr.strip() == f"{prefix}/g/{gen}/node/e98: unknown datacenter 'north'"
    r = seedctl("del", "--etcd", spec, "node", "e1")
    assert r.returncode == 1
    assert r.stderr.strip() == f"{prefix}/g/{gen}/project/{ids[0]}: pin to unknown node 'e1'"
    r = seedctl("del", "--etcd", spec, "dc", "west")
    assert r.returncode == 1 and "unknown datacenter 'west'" in r.stderr
    r = seedctl("put", "--etcd", spec, "node e0 127.0.0.1:1 dc=east\nnode x 127.0.0.1:2 dc=east")
    assert r.returncode == 1 and "line break in value" in r.stderr
    assert seedctl("del", "--etcd", spec, "node", "nope").returncode == 1
    assert cluster.revision() == rev

    # drain: the node keeps its place, nothing goes to it
    r = seedctl("drain", "--etcd", spec, "e99")
    assert r.returncode == 0, r.stderr
    assert cluster.get(f"{prefix}/g/{gen}/node/e99").endswith(b"state=drain")
    chosen = [row[1] for row in where(spec, ids)]
    assert "e99" not in chosen
    assert any("e99" in row[2:] for row in where(spec, ids)), "still on the lists"
    r = seedctl("drain", "--etcd", spec, "--undrain", "e99")
    assert r.returncode == 0, r.stderr
    assert where(spec, ids) == where(with_e99, ids)

    # a new dc goes last; del takes it away again
    assert seedctl("put", "--etcd", spec, "dc south").returncode == 0
    assert cluster.get(f"{prefix}/g/{gen}/dc/0003") == b"dc south"
    assert seedctl("del", "--etcd", spec, "dc", "south").returncode == 0
    assert seedctl("del", "--etcd", spec, "node", "e99").returncode == 0
    assert where(spec, ids) == where(path, ids)
    assert seedctl("put", "--etcd", spec, "replicas 3").returncode == 0
    assert cluster.get(f"{prefix}/g/{gen}/replicas") == b"replicas 3"
    assert generations(cluster, prefix) == {gen}


def test_put_without_directory(cluster, prefix):
    r = seedctl("put", "--etcd", cluster.spec(prefix), "dc a")
    assert r.returncode == 1 and "seedctl import" in r.stderr


def test_malformed_values_reported_with_their_key(stack, cluster, prefix):
    spec = cluster.spec(prefix)
    import_text(stack, cluster, prefix, seed_text())
    gen = cluster.get(prefix + "/current").decode()
    assert seedctl("check", "--seed", spec).returncode == 0
    cases = [
        (f"{prefix}/g/{gen}/node/e0", "node e5 127.0.0.1:6000 dc=east",
         f"{prefix}/g/{gen}/node/e0: the node's name in the value differs from the key"),
        (f"{prefix}/g/{gen}/node/e0", "node e0 127.0.0.1:6000 dc=east\nnode sneaky 127.0.0.1:1 dc=east",
         f"{prefix}/g/{gen}/node/e0: line break in value (a value is exactly one line)"),
        (f"{prefix}/g/{gen}/hub/hub-east", "node hub-east 127.0.0.1:5000 dc=east",
         f"{prefix}/g/{gen}/hub/hub-east: value is not a 'hub' line"),
        (f"{prefix}/g/{gen}/dc/0002", "dc east",
         f"{prefix}/g/{gen}/dc/0002: duplicate dc 'east' (first at {prefix}/g/{gen}/dc/0001)"),
        (f"{prefix}/g/{gen}/node/e0", "node e0 127.0.0.1:0 dc=east",
         f"{prefix}/g/{gen}/node/e0: bad port '0' (1-65535)"),
        (f"{prefix}/g/{gen}/dc/2", "dc north", f"{prefix}/g/{gen}/dc/2: dc position must be 4 digits, 0001-9999"),
    ]
    for key, value, msg in cases:
        good = cluster.get(key)
        cluster.etcdctl("put", key, value)
        r = seedctl("check", "--seed", spec)
        assert r.returncode == 1
        assert r.stderr.strip() == msg
        r = seedctl("where", "--seed", spec, random_ids(1)[0])
        assert r.returncode == 1 and r.stderr.strip() == msg
        if good is None:
            cluster.delete(key)
        else:
            cluster.put(key, good)
        assert seedctl("check", "--seed", spec).returncode == 0
    cluster.put(prefix + "/current", "0x7")
    r = seedctl("check", "--seed", spec)
    assert r.returncode == 1 and r.stderr.strip() == f"{prefix}/current: bad generation '0x7' (a decimal number)"


def test_endpoint_failover_and_errors(stack, cluster, prefix):
    import_text(stack, cluster, prefix, seed_text())
    dead = harness.free_port()
    spec = f"etcd://127.0.0.1:{dead}," + cluster.spec(prefix)[len("etcd://"):]
    r = seedctl("check", "--seed", spec)
    assert r.returncode == 0, r.stderr
    r = seedctl("check", "--seed", f"etcd://127.0.0.1:{dead}{prefix}")
    assert r.returncode == 1
    assert r.stderr.strip() == f"seedctl: etcd at 127.0.0.1:{dead}: connection refused"
    r = seedctl("check", "--seed", "etcd://127.0.0.1:2379")
    assert r.returncode == 1 and "no key prefix" in r.stderr


def start_register(stack, cluster, prefix, record, ttl, name="register"):
    return stack.start(name, [harness.bin_path("seedctl"), "register", "--etcd", cluster.spec(prefix),
                              "--ttl", ttl, record])


def test_register_lease(stack, cluster, prefix):
    spec = cluster.spec(prefix)
    import_text(stack, cluster, prefix, seed_text())
    key = f"{prefix}/live/node/reg1"
    ttl = 2
    rec = "node reg1 127.0.0.1:7001 dc=west weight=30"

    reg = start_register(stack, cluster, prefix, rec, ttl)
    harness.wait_until(lambda: cluster.get(key) == rec.encode(), 10, what="registered")
    r = seedctl("check", "--seed", spec)
    assert r.returncode == 0 and "21 nodes" in r.stdout, r.stdout
    # kept alive well past its TTL
    deadline = time.monotonic() + 3 * ttl
    while time.monotonic() < deadline:
        assert cluster.get(key) == rec.encode()
        assert reg.alive()
        time.sleep(0.2)
    # the name is taken: by the generation, or by this live lease
    r = seedctl("register", "--etcd", spec, "--ttl", "5", "node reg1 127.0.0.1:7002 dc=west")
    assert r.returncode == 1 and "registered by another lease" in r.stderr
    r = seedctl("register", "--etcd", spec, "--ttl", "5", "hub e1 127.0.0.1:7002 dc=west")
    assert r.returncode == 1 and "is in generation" in r.stderr
    r = seedctl("register", "--etcd", spec, "--ttl", "5", "node reg2 127.0.0.1:7002 dc=nowhere")
    assert r.returncode == 1 and f"{prefix}/live/node/reg2: unknown datacenter 'nowhere'" in r.stderr
    # generation writers cannot take the name either
    r = seedctl("put", "--etcd", spec, "node reg1 127.0.0.1:7003 dc=west")
    assert r.returncode == 1 and "duplicate name 'reg1'" in r.stderr

    # deleted behind its back: written again under a new lease
    cluster.delete(key)
    harness.wait_until(lambda: cluster.get(key) == rec.encode(), 10, what="re-registered")

    # SIGTERM: revoked at once, exit 0
    assert reg.stop(signal.SIGTERM) == 0
    assert cluster.get(key) is None
    assert "unregistered" in reg.log()

    # SIGKILL: gone when the lease expires, within TTL + 1 s
    reg = start_register(stack, cluster, prefix, rec, ttl, name="register2")
    harness.wait_until(lambda: cluster.get(key) == rec.encode(), 10, what="registered again")
    reg.kill()
    t0 = time.monotonic()
    harness.wait_until(lambda: cluster.get(key) is None, ttl + 1, interval=0.05, what="lease expiry")
    assert time.monotonic() - t0 <= (ttl + 1) * harness.SLOW


def lease_of(cluster, key):
    kvs = cluster.call("/v3/kv/range", {"key": etcd_util._b64(key)}).get("kvs", [])
    return int(kvs[0].get("lease", 0)) if kvs else None


def test_register_survives_partition(stack, cluster, prefix):
    """A register cut off from etcd longer than its TTL (frozen: no
    keepalive reaches etcd) loses its record; back in touch, it notices
    within TTL/3 and registers again under a new lease."""
    import_text(stack, cluster, prefix, seed_text(nodes_per_dc=2))
    key = f"{prefix}/live/node/part1"
    ttl = 2
    reg = start_register(stack, cluster, prefix, "node part1 127.0.0.1:7201 dc=east", ttl)
    harness.wait_until(lambda: lease_of(cluster, key), 10, what="registered")
    first = lease_of(cluster, key)
    thaw = etcd_util.stop_start(reg)
    try:
        harness.wait_until(lambda: lease_of(cluster, key) is None, ttl + 2, interval=0.05,
                           what="lease expired while frozen")
    finally:
        thaw()
    harness.wait_until(lambda: lease_of(cluster, key) not in (None, first), 10, what="registered again")
    assert "vanished" in reg.log()
    assert reg.stop(signal.SIGTERM) == 0
    assert lease_of(cluster, key) is None


def test_export_without_live_records(stack, cluster, prefix):
    spec = cluster.spec(prefix)
    import_text(stack, cluster, prefix, seed_text(nodes_per_dc=2))
    reg = start_register(stack, cluster, prefix, "hub hub-live 127.0.0.1:7100 dc=east", 5)
    harness.wait_until(lambda: cluster.get(f"{prefix}/live/hub/hub-live") is not None, 10, what="registered")
    full = seedctl("export", "--etcd", spec)
    gen_only = seedctl("export", "--etcd", spec, "--no-live")
    assert full.returncode == 0 and gen_only.returncode == 0
    assert "hub hub-live 127.0.0.1:7100 dc=east" in full.stdout
    assert "hub-live" not in gen_only.stdout
    # re-importing the generation alone keeps the registered hub valid
    path = stack.write("gen.conf", gen_only.stdout)
    assert seedctl("import", "--etcd", spec, path).returncode == 0
    # a file that takes the registered name is refused, naming both keys
    clash = stack.write("clash.conf", gen_only.stdout + "node hub-live 127.0.0.1:1 dc=east\n")
    r = seedctl("import", "--etcd", spec, clash)
    assert r.returncode == 1 and "duplicate name 'hub-live'" in r.stderr, r.stderr
    assert reg.stop(signal.SIGTERM) == 0


def test_ring_scale_in_etcd(stack, cluster, prefix):
    """`ring-scale` is a directory setting like `replicas`: a file with it
    imports (it used to fail with "out of memory splitting the directory"),
    places projects as the file does, exports back, and put/del change it
    under its own key, refused with that key when out of range."""
    spec = cluster.spec(prefix)
    ids = random_ids(300, seed=5)
    text = "ring-scale 4\n" + seed_text()
    path = import_text(stack, cluster, prefix, text)
    gen = cluster.get(prefix + "/current").decode()
    assert cluster.get(f"{prefix}/g/{gen}/ring-scale") == b"ring-scale 4"
    assert where(spec, ids) == where(path, ids)
    r = seedctl("export", "--etcd", spec)
    assert r.returncode == 0, r.stderr
    assert "\nring-scale 4\n" in r.stdout

    r = seedctl("put", "--etcd", spec, "ring-scale 9")
    assert r.returncode == 1
    assert r.stderr.strip() == f"{prefix}/g/{gen}/ring-scale: bad ring-scale '9' (0-8)"
    assert seedctl("put", "--etcd", spec, "ring-scale 6").returncode == 0
    six = stack.write("six.conf", "ring-scale 6\n" + seed_text())
    assert where(spec, ids) == where(six, ids)
    assert seedctl("del", "--etcd", spec, "ring-scale").returncode == 0
    plain = stack.write("plain.conf", seed_text())
    assert where(spec, ids) == where(plain, ids)
