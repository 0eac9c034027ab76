"""seedctl: check, where, stats and haproxy against the real binary.

`where` is checked against the placement properties (lists of the right
shape per dc, --down moves only the ids whose chosen node went down, to
their next usable entry), and the generated backends are loaded by HAProxy.
"""
import os
import random
import resource
import subprocess


import harness

ROOT = harness.ROOT
SEEDCTL = None


def seedctl(*args, stdin=None):
    global SEEDCTL
    if SEEDCTL is None:
        SEEDCTL = harness.bin_path("seedctl")
    return subprocess.run([SEEDCTL, *map(str, args)], input=stdin, capture_output=True, text=True,
                          timeout=60 * harness.SLOW)


def seed_text(nodes_per_dc=10, drain=(), pins=()):
    lines = ["replicas 2", "dc east", "dc west"]
    for dc, base in (("east", 1), ("west", 2)):
        lines.append(f"hub hub-{dc} 127.0.0.{base}:5000 dc={dc}")
        for i in range(nodes_per_dc):
            name = f"{dc[0]}{i}"
            state = " state=drain" if name in drain else ""
            lines.append(f"node {name} 127.0.0.{base}:{6000 + i} dc={dc}{state}")
    lines += [f"project {pid} {' '.join(ns)}" for pid, ns in pins]
    return "\n".join(lines) + "\n"


def random_ids(n, seed=1):
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        h = "%032x" % rnd.getrandbits(128)
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def where(seed, ids, *extra):
    r = seedctl("where", "--seed", seed, *extra, "-", stdin="\n".join(ids) + "\n")
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert len(rows) == len(ids)
    return rows


def test_help_everywhere():
    r = seedctl("--help")
    assert r.returncode == 0 and "where" in r.stdout and "haproxy" in r.stdout
    for cmd in ("check", "where", "stats", "haproxy"):
        r = seedctl(cmd, "--help")
        assert r.returncode == 0, cmd
        assert r.stdout.startswith(f"usage: seedctl {cmd}"), r.stdout
    assert seedctl("frob").returncode == 2


def test_check_good_and_bad(stack):
    r = seedctl("check", os.path.join(ROOT, "haproxy-conf", "seed.conf"))
    assert r.returncode == 0, r.stderr
    assert "ok: 2 datacenters, 4 hubs, 6 nodes (1 drained), 1 pins, replicas 2" in r.stdout
    bad = stack.write("bad.conf", "dc east\r\nnode n1 127.0.0.1:6001 dc=east\nnode n2 127.0.0.1:99999 dc=east\n")
    r = seedctl("check", bad)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{bad}:3: bad port '99999'"), r.stderr
    r = seedctl("check", stack.path("missing.conf"))
    assert r.returncode == 1 and "missing.conf" in r.stderr


def test_check_notes_a_crowded_node_backend(stack):
    """A node backend above 64 nodes gets a note (HAProxy 2.6-3.2 scan a
    backend's servers per routed request) naming it and the node-shards that
    would fix it; the check still passes, and stdout is unchanged."""
    nodes = "".join(f"node n{i} 127.0.0.1:{6000 + i} dc=a\n" for i in range(300))
    crowded = stack.write("crowded.conf", "dc a\n" + nodes)
    r = seedctl("check", crowded)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{crowded}: ok: 1 datacenters, 0 hubs, 300 nodes (0 drained), 0 pins, replicas 2\n"
    assert r.stderr.startswith("seedctl: note: nodes_a holds 300 nodes;"), r.stderr
    assert "`node-shards 8` keeps each node backend near 64" in r.stderr, r.stderr
    sharded = stack.write("sharded.conf", "node-shards 8\ndc a\n" + nodes)
    r = seedctl("check", sharded)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    small = stack.write("small.conf", "dc a\n" + nodes.split("node n64 ")[0])
    r = seedctl("check", small)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def run_limited(args, limit_mb):
    """seedctl ARGS in an address space of limit_mb (not under ASan, whose
    shadow memory needs terabytes of it)."""
    limit = limit_mb << 20
    pre = None if harness.ASAN else (lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    return subprocess.run([harness.bin_path("seedctl"), *map(str, args)], capture_output=True, text=True,
                          timeout=60 * harness.SLOW, preexec_fn=pre)


def big_seed(stack, name, nodes, weight=None, scale=None):
    lines = ([f"ring-scale {scale}"] if scale is not None else []) + ["dc a"]
    w = f" weight={weight}" if weight else ""
    lines += [f"node n{i:06d} 10.{i >> 16}.{(i >> 8) & 255}.{i & 255}:6000 dc=a{w}" for i in range(nodes)]
    return stack.write(name, "\n".join(lines) + "\n")


def test_check_refuses_over_budget(stack):
    """8000 nodes of weight=256 need 524 M ring points (8.3 GB of rings once):
    the parser refuses the file from arithmetic alone, with the fix, before
    building anything: check (no rings) and where (rings) both fail with the
    message inside a 32 MB address space."""
    seed = big_seed(stack, "over.conf", 8000, weight=256)
    want = (f"{seed}:1: dc 'a' needs 524288000 ring points (the directory 524288000 in all), over the "
            "budget of 33554432 (2^25): lower weights or set `ring-scale N`; N=4 would fit\n")
    r = run_limited(["check", seed], 32)
    assert r.returncode == 1 and r.stderr == want, r.stderr
    r = run_limited(["where", "--seed", seed, "2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"], 32)
    assert r.returncode == 1 and r.stderr == want, r.stderr


def test_big_dir_with_ring_scale(stack):
    """100k default-weight nodes need 256 M points at the default scale and
    are refused (N=5 would fit); with `ring-scale 3` (8 M points) check
    accepts them within 64 MB of address space (it builds no rings) and
    where, which builds the ring, within 256 MB."""
    seed = big_seed(stack, "big.conf", 100000)
    r = run_limited(["check", seed], 64)
    assert r.returncode == 1 and "needs 256000000 ring points" in r.stderr and "N=5 would fit" in r.stderr, \
        r.stderr
    seed = big_seed(stack, "scaled.conf", 100000, scale=3)
    r = run_limited(["check", seed], 64)
    assert r.returncode == 0, r.stderr
    assert "ok: 1 datacenters, 0 hubs, 100000 nodes" in r.stdout
    r = run_limited(["where", "--seed", seed, "2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"], 256)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f\tn0"), r.stdout


def test_where_lists_and_down(stack):
    seed = stack.write("seed.conf", seed_text())
    ids = random_ids(3000)
    rows = where(seed, ids)
    for pid, row in zip(ids, rows):
        assert row[0] == pid
        chosen, prefs = row[1], row[2:]
        assert len(prefs) == 4 and chosen == prefs[0]
        assert prefs[0][0] == "e" and prefs[1][0] == "e" and prefs[0] != prefs[1]
        assert prefs[2][0] == "w" and prefs[3][0] == "w" and prefs[2] != prefs[3]
    # from the other dc: west part first, same lists per dc
    west = where(seed, ids, "--dc", "west")
    for a, b in zip(rows, west):
        assert b[2:4] == a[4:6] and b[4:6] == a[2:4]

    # --down moves exactly the ids whose chosen node is down, to the next entry
    moved = 0
    down_rows = where(seed, ids, "--down", "e3")
    for a, b in zip(rows, down_rows):
        assert b[2:] == a[2:], "the preference list itself does not depend on health"
        if a[1] == "e3":
            moved += 1
            assert b[1] == a[3]
        else:
            assert b[1] == a[1]
    assert 0.05 < moved / len(ids) < 0.20        # ~1/10 of the primaries
    # every local replica down -> remote dc; everything down -> hubs
    all_east = ",".join(f"e{i}" for i in range(10))
    for a, b in zip(rows, where(seed, ids[:200], "--down", all_east)):
        assert b[1] == a[4]
    every = all_east + "," + ",".join(f"w{i}" for i in range(10))
    assert {r[1] for r in where(seed, ids[:50], "--down", every)} == {"hubs_east"}
    assert {r[1] for r in where(seed, ids[:50], "--down", every + ",hub-east")} == {"hubs_west"}


def test_where_drain_pin_and_ids(stack):
    pid = "2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
    seed = stack.write("seed.conf", seed_text(drain=("e0",), pins=[(pid, ("w1", "e5"))]))
    r = seedctl("where", "--seed", seed, pid.upper())
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{pid}\te5\te5\tw1\n"
    r = seedctl("where", "--seed", seed, "--dc", "west", pid)
    assert r.stdout == f"{pid}\tw1\tw1\te5\n"
    for row in where(seed, random_ids(500, seed=2)):
        assert row[1] != "e0"
    r = seedctl("where", "--seed", seed, "not-an-id", pid)
    assert r.returncode == 1 and "bad project id 'not-an-id'" in r.stderr
    assert r.stdout.startswith(pid)
    assert seedctl("where", "--seed", seed, "--dc", "mars", pid).returncode != 0
    assert seedctl("where", "--seed", seed, "--down", "ghost", pid).returncode != 0


def test_where_node_removal_is_stable(stack):
    """Same property as the C test, through the CLI: a node leaving only
    changes the lists that contained it."""
    full = stack.write("full.conf", seed_text())
    text = seed_text().replace("node e7 127.0.0.1:6007 dc=east\n", "")
    less = stack.write("less.conf", text)
    ids = random_ids(5000, seed=3)
    for a, b in zip(where(full, ids), where(less, ids)):
        if "e7" not in a[2:4]:
            assert a[2:4] == b[2:4]
        elif a[2] == "e7":
            assert b[2] == a[3]


def test_stats(stack):
    seed = stack.write("seed.conf", seed_text())
    r = seedctl("stats", "--seed", seed, "--samples", "20000", "--dc", "east")
    assert r.returncode == 0, r.stderr
    rows = [l.split("\t") for l in r.stdout.splitlines() if not l.startswith("#")]
    assert [row[0] for row in rows] == [f"e{i}" for i in range(10)]
    assert sum(int(row[2]) for row in rows) == 20000
    for row in rows:
        assert 0.85 < float(row[5]) < 1.15
    r = seedctl("stats", "--seed", seed, "--samples", "1000")
    assert r.stdout.count("# dc ") == 4
    # the ring-scale the file places with (docs/seed-directory.md)
    assert ("# ring east: ring-scale 8 (256 points per unit of weight), 25600 points; each step of "
            "ring-scale moves about half of the primaries\n") in r.stdout, r.stdout
    seed = stack.write("scaled.conf", "ring-scale 5\n" + seed_text())
    r = seedctl("stats", "--seed", seed, "--samples", "1000", "--dc", "west")
    assert "# ring west: ring-scale 5 (32 points per unit of weight), 3200 points;" in r.stdout, r.stdout


def test_haproxy_backends_load(stack):
    seed = stack.write("seed.conf", seed_text(drain=("e1",)).replace(
        "hub hub-west 127.0.0.2:5000 dc=west", "hub hub-west 127.0.0.2:5000 dc=west state=drain\n"
        "hub hub-w2 localhost:5001 dc=west"))
    out = stack.path("backends.cfg")
    r = seedctl("haproxy", "--seed", seed, "--out", out, "--server-opts", "check inter 1s")
    assert r.returncode == 0, r.stderr
    text = open(out).read()
    assert text.startswith(f"# generated by seedctl from {seed}")
    for be in ("hubs_east", "nodes_east", "hubs_west", "nodes_west"):
        assert f"\nbackend {be}\n" in text
    # drained hub: weight 0; nodes: always weight 0 (use-server only)
    assert "server hub-west 127.0.0.2:5000 weight 0 init-addr last,libc,none pool-purge-delay 1s check inter 1s" in text
    assert "server e1 127.0.0.1:6001 weight 0 init-addr last,libc,none pool-purge-delay 1s check inter 1s" in text
    assert "server hub-w2 localhost:5001 weight 10 init-addr last,libc,none pool-purge-delay 1s" in text
    # the final backends: dynamic cookies, node guards and the fallback backup
    assert text.count("cookie SGHUB insert indirect nocache dynamic\n") == 2
    assert 'dynamic-cookie-key "seedgate"' in text
    # per-request and map-cache modes (two each), and the map hit's own rule
    assert text.count("use-server %[var(txn.route.server)] if { var(txn.route.server) -m found }") == 4
    assert text.count("use-server %[var(txn.sg_dest),field(2,/)] if { var(txn.sg_dest) -m found }") == 2
    assert text.count('server sg_hubs_fallback "unix@${SG_RUN_DIR}/node-fallback.sock" backup') == 2
    assert " cookie hub" not in text     # 2.6 refuses "cookie" on servers added at run time
    assert not [f for f in os.listdir(stack.dir) if ".tmp." in f]
    port = harness.free_port()
    cfg = f"""
global
    log stderr format raw local0 err
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{port}
    use_backend nodes_east if {{ path_beg /n }}
    default_backend hubs_east
"""
    p = stack.haproxy(cfg, extra_cfgs=[out], wait_ports=[port])
    assert p.alive()
    # stdout variant: same text minus nothing
    r = seedctl("haproxy", "--seed", seed, "--server-opts", "check inter 1s")
    assert r.stdout == text


def test_haproxy_refuses_what_would_break_the_file(stack):
    seed = stack.write("seed.conf", seed_text(nodes_per_dc=2))
    r = seedctl("haproxy", "--seed", seed, "--cookie-key", 'a"b')
    assert r.returncode == 2 and "--cookie-key" in r.stderr
    r = seedctl("haproxy", "--seed", seed, "--server-opts", "check\nbackend evil")
    assert r.returncode == 2 and "one line" in r.stderr
    reserved = stack.write("reserved.conf", seed_text(nodes_per_dc=2) + "node sg_hubs_fallback 127.0.0.1:7000 dc=east\n")
    r = seedctl("haproxy", "--seed", reserved)
    assert r.returncode == 1 and "reserved" in r.stderr, r.stderr
    r = seedctl("haproxy", "--seed", seed, "--cookie-key", "k3y")
    assert r.returncode == 0 and 'dynamic-cookie-key "k3y"' in r.stdout
    # deterministic: the same seed gives the same bytes
    assert seedctl("haproxy", "--seed", seed).stdout == seedctl("haproxy", "--seed", seed).stdout
