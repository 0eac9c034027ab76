"""SPOP protocol conformance of our agents, driven by an independent Python
implementation of HAProxy's side (spop_util.py, written from SPOP.md).

Every agent in AGENTS gets the same tests: handshake variants, pipelined
NOTIFYs, many connections, and malformed input. A malformed frame must cost
only its own connection: the agent answers AGENT-DISCONNECT with the status
SPOP.md prescribes, while a healthy connection opened beforehand keeps being
answered and the process stays up.

ROUTE-AGENT: add build/route-agent to AGENTS (an entry is skipped while its
binary is not built).
"""
import os
import random
import socket
import struct
import subprocess
import time

import pytest

import harness
import spop_util as su
from spop_util import SpopClient, SpopError

ROOT = harness.ROOT
SLOW = harness.SLOW


# ---------------------------------------------------------------------------
# The agents under test.
#
# AgentSpec(name, argv, message, args, check)
#   argv(listen, idle_timeout_ms) -> argv list, or None if the binary is not built
#   message    the SPOE message name the agent handles
#   args       base (name, value) arguments of one message
#   check(vars, args) asserts on the txn-scope variables an ACK set, given
#              the arguments actually sent (args + ("seq", n))

class AgentSpec:
    def __init__(self, name, argv, message, args, check):
        self.name, self.argv, self.message, self.args, self.check = name, argv, message, args, check

    def __repr__(self):
        return self.name


def _built(name):
    try:
        return harness.bin_path(name)
    except FileNotFoundError:
        return None


def _echo_argv(listen, idle_ms):
    exe = _built("spop-echo-agent")
    if exe is None:
        return None
    argv = [exe, "--listen", listen, "--workers", "1"]
    if idle_ms:
        argv += ["--idle-timeout", str(idle_ms)]
    return argv


def _echo_check(vars_, args):
    assert vars_.get("agent") == "echo", vars_
    for k, v in args:
        assert vars_.get(k) == v, (k, v, vars_)


def _route_argv(listen, idle_ms):
    exe = _built("route-agent")
    if exe is None:
        return None
    argv = [exe, "--listen", listen, "--seed", os.path.join(ROOT, "haproxy-conf", "seed.conf"),
            "--workers", "1"]
    if idle_ms:
        argv += ["--idle-timeout", str(idle_ms)]
    return argv


def _route_check(vars_, args):
    """docs/architecture.md §2.3: backend always, project when the path carries an id."""
    backend = vars_.get("backend")
    assert isinstance(backend, str) and backend.startswith(("nodes_", "hubs_")), vars_
    assert vars_.get("why") in ("primary", "replica", "remote-dc", "pinned", "hub", "no-node", "no-hub"), vars_
    path = dict(args)["path"]
    if path.startswith("/2f1c0e5a-"):
        assert vars_.get("project") == path.split("/")[1], vars_


AGENTS = [
    AgentSpec("echo", _echo_argv, "echo",
              [("path", "/2f1c0e5a-9d4b-4c3e-8a7f-0123456789ab/files"), ("host", "example.test"),
               ("src", "127.0.0.1")], _echo_check),
    AgentSpec("route", _route_argv, "route",
              [("path", "/2f1c0e5a-9d4b-4c3e-8a7f-0123456789ab/files"), ("host", "example.test"),
               ("src", su.Typed(su.T_IPV4, "127.0.0.1"))], _route_check),
]


def _plain(v):
    """The value an agent echoes back for an argument (Typed -> its value)."""
    if isinstance(v, su.Typed):
        if v.type == su.T_IPV4:
            import ipaddress
            return ipaddress.IPv4Address(v.value)
        return v.value
    return v


class Agent:
    """A started agent: spec, process, port."""

    def __init__(self, spec, proc, port):
        self.spec, self.proc, self.port = spec, proc, port

    def client(self, timeout=5.0):
        return SpopClient(self.port, timeout=timeout * SLOW)

    def ready_client(self, **hello):
        c = self.client()
        c.hello(**hello)
        return c

    def messages(self, seq):
        return [(self.spec.message, list(self.spec.args) + [("seq", seq)])]

    def check_ack(self, ack, seq):
        sent = [(k, _plain(v)) for k, v in self.spec.args] + [("seq", seq)]
        self.spec.check(su.ack_vars(ack), sent)

    def assert_serving(self, healthy, seq=424242):
        """The healthy connection still gets ACKs, a new one too, and the
        process is alive."""
        ack = healthy.call(seq, 1, self.messages(seq))
        self.check_ack(ack, seq)
        with self.ready_client() as c:
            self.check_ack(c.call(seq + 1, 1, self.messages(seq + 1)), seq + 1)
        assert self.proc.alive(), f"{self.spec.name} died:\n{self.proc.log()}"


def start_agent(stack, spec, idle_ms=None):
    port = harness.free_port()
    argv = spec.argv(f"127.0.0.1:{port}", idle_ms)
    if argv is None:
        pytest.skip(f"{spec.name} agent not built")
    proc = stack.start(f"agent-{spec.name}", argv)
    stack.wait_port(port, proc)
    return Agent(spec, proc, port)


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def stop_and_check(proc):
    """SIGTERM the agent: it must exit 0 (graceful stop) with no sanitizer report."""
    rc = proc.stop()
    log = proc.log()
    assert rc == 0, f"{proc.name} exited {rc}:\n{log[-4000:]}"
    for mark in SANITIZER_MARKS:
        assert mark not in log, f"{proc.name}: {mark}\n{log[-4000:]}"


@pytest.fixture(params=AGENTS, ids=[a.name for a in AGENTS])
def agent(request, stack):
    a = start_agent(stack, request.param)
    yield a
    stop_and_check(a.proc)


@pytest.fixture
def echo_agent(stack):
    """The echo agent alone, for tests of what it echoes."""
    a = start_agent(stack, AGENTS[0])
    yield a
    stop_and_check(a.proc)


@pytest.fixture
def healthy(agent):
    """A connection opened (and used once) before the test's bad input."""
    c = agent.ready_client()
    agent.check_ack(c.call(1, 1, agent.messages(1)), 1)
    yield c
    c.close()


# ---------------------------------------------------------------------------
# spop_util itself, against SPOP.md's byte vectors (no agent needed)

VARINT_VECTORS = [
    (0, "00"), (239, "EF"), (240, "F0 00"), (300, "FC 03"), (2287, "FF 7F"),
    (2288, "F0 80 00"), (16380, "FC F0 06"), (2**32 - 1, "FF F0 FE FE 7E"),
]


@pytest.mark.parametrize("value,hexbytes", VARINT_VECTORS)
def test_util_varint_vectors(value, hexbytes):
    raw = bytes.fromhex(hexbytes)
    assert su.varint_encode(value) == raw
    assert su.varint_decode(raw) == (value, len(raw))


def test_util_varint_limits():
    assert len(su.varint_encode(-1)) == 10
    assert su.varint_decode(su.varint_encode(-1))[0] == 2**64 - 1
    for v in (241, 2289, 264431, 264432, 33818863, 33818864, 2**63, 2**64 - 1):
        assert su.varint_decode(su.varint_encode(v)) == (v, len(su.varint_encode(v)))
    with pytest.raises(SpopError):
        su.varint_decode(bytes.fromhex("F0"))              # truncated
    with pytest.raises(SpopError):
        su.varint_decode(bytes.fromhex("FF" + "FF" * 10 + "00"))  # 12 bytes
    with pytest.raises(SpopError):
        su.varint_decode(bytes.fromhex("FC 03"), 0, 1)       # end bounds the read


def test_util_healthcheck_hello_bytes():
    vec = bytes.fromhex("0000004e 01 00000001 00 00 12") + b"supported-versions" + \
        bytes.fromhex("08 03") + b"2.0" + bytes.fromhex("0e") + b"max-frame-size" + \
        bytes.fromhex("03 fcf006 0c") + b"capabilities" + bytes.fromhex("08 00 0b") + \
        b"healthcheck" + bytes.fromhex("11")
    assert su.hello_frame(16380, caps="", healthcheck=True) == vec


def test_util_ack_example():
    vec = bytes.fromhex("0000001b 67 00000001 05 01 01 03 02 07") + b"backend" + \
        bytes.fromhex("08 07") + b"be_blue"
    f = su.parse_frame(vec[4:])
    assert struct.unpack(">I", vec[:4])[0] == len(vec) - 4
    assert (f.type, f.flags, f.stream, f.frame) == (su.ACK, 1, 5, 1)
    assert su.ack_vars(f) == {"backend": "be_blue"}
    assert su.encode_data(False) == b"\x01" and su.encode_data(True) == b"\x11"


# ---------------------------------------------------------------------------
# Handshake

def test_hello_26_and_31_capabilities(agent):
    for caps in ("pipelining,async", "pipelining"):
        with agent.client() as c:
            kv = c.hello(16380, caps=caps, engine_id="8A2C0F15-6D5E-4A6B-9C3F-0D1E2F3A4B5C")
            assert kv["version"] == "2.0"
            assert 256 <= kv["max-frame-size"] <= 16380
            agent_caps = [x.strip() for x in kv["capabilities"].split(",")]
            assert "pipelining" in agent_caps, kv
            # Announcing async loses ACKs with 2.6 (SPOP.md "Where others stumbled").
            assert "async" not in agent_caps, kv
            agent.check_ack(c.call(7, 1, agent.messages(7)), 7)


def test_hello_frame_size_negotiation(agent):
    with agent.client() as c:        # HAProxy's limit above any agent's: agent picks its own
        kv = c.hello(0xFFFFFFFF)
        assert 256 <= kv["max-frame-size"]
    with agent.client() as c:        # the smallest legal value is accepted as is
        kv = c.hello(256)
        assert kv["max-frame-size"] == 256
        # ACKs must fit in 256 bytes too (SpopClient checks every frame it reads).
        agent.check_ack(c.call(3, 1, agent.messages(3)), 3)


def test_healthcheck_hello(agent, healthy):
    with agent.client() as c:
        c.send(su.hello_frame(16380, caps="", healthcheck=True))
        f = c.read_frame()
        assert f is not None and f.type == su.AGENT_HELLO, f
        kv = f.kv()
        assert kv["version"] == "2.0"
        assert 256 <= kv["max-frame-size"] <= 16380
        assert "capabilities" in kv           # even when empty: 3.1's check needs it
        assert c.read_eof(), "agent must close after a health-check AGENT-HELLO, no DISCONNECT"
    agent.assert_serving(healthy)


def test_haproxy_disconnect(agent, healthy):
    with agent.ready_client() as c:
        agent.check_ack(c.call(9, 1, agent.messages(9)), 9)
        c.send(su.haproxy_disconnect_frame(su.ST_NORMAL, "stopping"))
        status, _msg = c.expect_disconnect()
        assert status == su.ST_NORMAL
    agent.assert_serving(healthy)


def test_bare_close_is_normal(agent, healthy):
    for _ in range(5):
        c = agent.ready_client()
        c.notify(11, 1, agent.messages(11))
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()                              # RST with a NOTIFY in flight
    agent.assert_serving(healthy)


# ---------------------------------------------------------------------------
# Malformed input: one DISCONNECT status each, the rest keeps going

def _notify_body(stream, frame_id, payload, flags=su.FLAG_FIN, type_=su.NOTIFY):
    return bytes([type_]) + struct.pack(">I", flags) + su.varint_encode(stream) + \
        su.varint_encode(frame_id) + payload


def _prefixed(body):
    return struct.pack(">I", len(body)) + body


def _after_hello(agent, raw, hello=None):
    c = agent.ready_client(**(hello or {}))
    c.send(raw)
    return c


def _expect_status(c, status):
    try:
        got, msg = c.expect_disconnect()
    finally:
        c.close()
    assert got == status, f"expected DISCONNECT status {status}, got {got} ({msg!r})"


def test_frame_over_max_frame_size(agent, healthy):
    c = agent.ready_client(max_frame_size=1024)
    mfs = c.max_frame_size
    # exactly max-frame-size is allowed; a message the agent does not handle
    # still gets its (empty) ACK. Grow the padding until the body is mfs long.
    for extra in range(mfs, 0, -1):
        body = _notify_body(21, 1, su.encode_messages([("pad", [("x", b"\0" * extra)])]))
        if len(body) <= mfs:
            break
    assert len(body) == mfs, (len(body), mfs)
    c.send(_prefixed(body))
    ack = c.read_ack(21, 1)
    assert ack.actions() == []
    # one byte more: status 3, announced by the length prefix alone
    c.send(struct.pack(">I", mfs + 1) + body + b"\0")
    _expect_status(c, su.ST_TOO_BIG)
    # before HELLO: a huge length prefix must not be waited for (nor allocated)
    c = agent.client()
    c.send(struct.pack(">I", 0x7FFFFFF0) + b"\x01\x00\x00\x00\x01\x00\x00")
    _expect_status(c, su.ST_TOO_BIG)
    agent.assert_serving(healthy)


def test_truncated_varint(agent, healthy):
    # stream-id starts a 2-byte varint and the frame ends
    _expect_status(_after_hello(agent, _prefixed(bytes([su.NOTIFY]) + struct.pack(">I", 1) + b"\xF0")),
                   su.ST_INVALID)
    # inside the payload: an argument's INT64 varint cut by the frame's end
    payload = su.encode_string("echo") + b"\x01" + su.encode_string("n") + b"\x04\xFC"
    _expect_status(_after_hello(agent, _prefixed(_notify_body(5, 1, payload))), su.ST_INVALID)
    agent.assert_serving(healthy)


def test_string_past_frame_end(agent, healthy):
    # message name claims 50 bytes, 3 follow
    payload = su.varint_encode(50) + b"abc"
    _expect_status(_after_hello(agent, _prefixed(_notify_body(5, 1, payload))), su.ST_INVALID)
    # an argument's string value runs past the end
    payload = su.encode_string(agent.spec.message) + b"\x01" + su.encode_string("path") + \
        b"\x08" + su.varint_encode(200) + b"/x"
    _expect_status(_after_hello(agent, _prefixed(_notify_body(5, 1, payload))), su.ST_INVALID)
    # NB-ARGS says 3, the frame holds 1
    payload = su.encode_string(agent.spec.message) + b"\x03" + su.encode_kv([("path", "/x")])
    _expect_status(_after_hello(agent, _prefixed(_notify_body(5, 1, payload))), su.ST_INVALID)
    agent.assert_serving(healthy)


def test_notify_before_hello(agent, healthy):
    # doc/SPOE.txt: the HELLO handshake comes first; anything else is an
    # invalid frame (HAProxy's spoa-example answers status 4 as well).
    c = agent.client()
    c.send(su.notify_frame(1, 1, agent.messages(1)))
    _expect_status(c, su.ST_INVALID)
    agent.assert_serving(healthy)


def test_unknown_frame_type_skipped(agent, healthy):
    c = agent.ready_client()
    c.send(_prefixed(_notify_body(0, 0, b"whatever", type_=42)) +
           _prefixed(_notify_body(0, 0, su.encode_kv([("k", 1)]), type_=200)))
    agent.check_ack(c.call(31, 1, agent.messages(31)), 31)
    c.close()
    agent.assert_serving(healthy)


def test_fragment_without_fin(agent, healthy):
    msg = su.encode_messages(agent.messages(5))
    c = _after_hello(agent, _prefixed(_notify_body(5, 1, msg, flags=0)))
    _expect_status(c, su.ST_FRAG_NOT_SUPPORTED)
    agent.assert_serving(healthy)


HELLO_ERRORS = [
    ("no-version", dict(omit=("supported-versions",)), su.ST_NO_VSN),
    ("no-max-frame-size", dict(omit=("max-frame-size",)), su.ST_NO_FRAME_SIZE),
    ("no-capabilities", dict(omit=("capabilities",)), su.ST_NO_CAP),
    ("version-1.0", dict(versions="1.0"), su.ST_BAD_VSN),
    ("max-frame-size-255", dict(max_frame_size=255), su.ST_BAD_FRAME_SIZE),
]


@pytest.mark.parametrize("case,kw,status", HELLO_ERRORS, ids=[h[0] for h in HELLO_ERRORS])
def test_bad_hello(agent, healthy, case, kw, status):
    c = agent.client()
    c.send(su.hello_frame(**kw))
    _expect_status(c, status)
    agent.assert_serving(healthy)


def test_random_bytes(agent, healthy):
    rng = random.Random(0x5EED)
    # 1) well-framed random bodies posing as a HELLO: a non-zero status each
    for _ in range(20):
        n = rng.randint(5, 200)
        body = bytes([su.HAPROXY_HELLO]) + bytes(rng.getrandbits(8) for _ in range(n))
        c = agent.client(timeout=3.0)
        c.send(_prefixed(body))
        got, msg = c.expect_disconnect()
        c.close()
        assert got != su.ST_NORMAL, (body.hex(), msg)
    # 2) raw garbage, then EOF: any DISCONNECT carries a non-zero status and
    #    the connection ends
    for _ in range(20):
        c = agent.client(timeout=3.0)
        garbage = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400)))
        c.send(garbage)
        c.sock.shutdown(socket.SHUT_WR)
        while True:
            try:
                f = c.read_frame()
            except SpopError:          # the agent may cut a frame short only if it was closing
                break
            if f is None:
                break
            if f.type == su.AGENT_DISCONNECT:
                assert f.kv()["status-code"] != su.ST_NORMAL, garbage.hex()
        c.close()
    # 3) garbage after a good HELLO
    for _ in range(20):
        c = agent.ready_client()
        garbage = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400)))
        c.send(garbage)
        c.sock.shutdown(socket.SHUT_WR)
        try:
            while (f := c.read_frame(timeout=3.0 * SLOW)) is not None:
                if f.type == su.AGENT_DISCONNECT:
                    assert f.kv()["status-code"] != su.ST_NORMAL, garbage.hex()
        except SpopError:
            pass
        c.close()
    agent.assert_serving(healthy)


# ---------------------------------------------------------------------------
# NOTIFY / ACK

def test_empty_notify_gets_empty_ack(agent, healthy):
    ack = healthy.call(77, 3, [])
    assert ack.payload == b"" and ack.flags & su.FLAG_FIN
    # an unknown message is acknowledged without actions as well
    ack = healthy.call(78, 1, [("no-such-message", [("a", 1)])])
    assert ack.actions() == []


def test_ack_bytes_match_spop_md(echo_agent):
    agent = echo_agent
    with agent.ready_client() as c:
        ack = c.call(5, 1, [("echo", [("backend", "be_blue")])])
    assert bytes.fromhex("01 03 02 07") + b"backend" + bytes.fromhex("08 07") + b"be_blue" in ack.payload


def test_echo_typed_values(echo_agent):
    agent = echo_agent
    import ipaddress
    args = [("s", "str"), ("b", b"\x00\xff"), ("t", True), ("f", False), ("n", None),
            ("neg", -1), ("big", 2**62), ("u32", su.Typed(su.T_UINT32, 4000000000)),
            ("v4", ipaddress.IPv4Address("10.1.2.3")), ("v6", ipaddress.IPv6Address("2001:db8::1")),
            ("", "anonymous")]
    with agent.ready_client() as c:
        ack = c.call(2**40 + 3, 1, [("echo", args)])
    acts = {a.name: a for a in ack.actions()}
    for k, v in args:
        if v is None:    # a NULL value either unsets the variable or sets NULL
            assert k in acts
            continue
        assert k in acts, (k, acts)
        assert acts[k].value == _plain(v), (k, acts[k])
        assert acts[k].scope == su.SCOPE_TXN


def _pipelined(agent, c, ids):
    """Write one NOTIFY per (stream, frame) id pair in ONE write and check
    that every ACK matches an outstanding NOTIFY, with its own content."""
    out = bytearray()
    outstanding = {}
    for i, (sid, fid) in enumerate(ids):
        out += su.notify_frame(sid, fid, agent.messages(i))
        outstanding[(sid, fid)] = i
    assert len(outstanding) == len(ids)
    c.send(bytes(out))
    while outstanding:
        ack = c.read_ack()
        key = (ack.stream, ack.frame)
        assert key in outstanding, f"ACK {key} matches no outstanding NOTIFY"
        agent.check_ack(ack, outstanding.pop(key))


def test_frames_split_byte_by_byte(agent, healthy):
    """HELLO and NOTIFY dribbled one byte per write (TCP may split frames
    anywhere), then two NOTIFYs whose boundary falls mid-write."""
    with agent.client() as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in su.hello_frame():
            c.send(bytes([b]))
            time.sleep(0.0005)
        f = c.read_frame()
        assert f is not None and f.type == su.AGENT_HELLO, f
        for b in su.notify_frame(3, 1, agent.messages(3)):
            c.send(bytes([b]))
        agent.check_ack(c.read_ack(3, 1), 3)
        two = su.notify_frame(4, 1, agent.messages(4)) + su.notify_frame(5, 1, agent.messages(5))
        cut = len(two) // 2 + 3
        c.send(two[:cut])
        time.sleep(0.05)
        c.send(two[cut:])
        got = {c.read_ack().stream, c.read_ack().stream}
        assert got == {4, 5}
    agent.assert_serving(healthy)


def test_several_messages_in_one_notify(echo_agent):
    a = echo_agent
    with a.ready_client() as c:
        ack = c.call(9, 1, [("echo", [("first", "1")]), ("unknown", [("x", 1)]), ("echo", [("second", "2")])])
    v = su.ack_vars(ack)
    assert v.get("first") == "1" and v.get("second") == "2" and v.get("agent") == "echo", v


def test_more_args_than_kept(echo_agent):
    """More arguments than the runtime keeps (16): the message still parses
    and the NOTIFY gets its ACK; the next NOTIFY on the connection too."""
    a = echo_agent
    args = [(f"a{i}", i) for i in range(40)]
    with a.ready_client() as c:
        ack = c.call(1, 1, [("echo", args)])
        v = su.ack_vars(ack)
        assert v.get("agent") == "echo" and v.get("a0") == 0, v
        for k, val in v.items():
            if k != "agent":
                assert dict(args)[k] == val
        a.check_ack(c.call(2, 1, a.messages(2)), 2)


def test_ack_fits_negotiated_frame_size(echo_agent):
    """With max-frame-size 256, a NOTIFY that fits but whose echo would not:
    the ACK still fits in 256 bytes (actions that do not fit are left out)
    and the connection keeps working."""
    a = echo_agent
    args = [(f"k{i:02d}", f"v{i:07d}") for i in range(15)]
    with a.ready_client(max_frame_size=256) as c:
        assert c.max_frame_size == 256
        notify = su.notify_frame(1, 1, [("echo", args)])
        assert len(notify) - 4 <= 256
        c.send(notify)
        ack = c.read_ack(1, 1)           # read_frame rejects a frame over 256 bytes
        v = su.ack_vars(ack)
        assert 0 < len(v) < len(args) + 1, v
        for k, val in v.items():
            assert k == "agent" or dict(args)[k] == val
        a.check_ack(c.call(2, 1, a.messages(2)), 2)


def test_200_connections_two_workers(stack):
    """The same 200 connections spread over two workers sharing one socket."""
    spec = AGENTS[0]
    port = harness.free_port()
    argv = spec.argv(f"127.0.0.1:{port}", None)
    if argv is None:
        pytest.skip("echo agent not built")
    argv[argv.index("--workers") + 1] = "2"
    proc = stack.start("agent-echo-2w", argv)
    stack.wait_port(port, proc)
    a = Agent(spec, proc, port)
    _many_connections(a, 200)
    stop_and_check(proc)


def test_pipelined_1000_notifies_26_ids(agent):
    base = 0x7FFF_FFF0          # 2.6: the stream's unique id (big), frame ids from 1
    ids = [(base + i // 4, 1 + i % 4) for i in range(1000)]
    with agent.ready_client(caps="pipelining,async") as c:
        _pipelined(agent, c, ids)


def test_pipelined_1000_notifies_31_ids(agent):
    ids = [(2 * i + 1, 1) for i in range(1000)]      # 3.1+: small odd ids
    with agent.ready_client(caps="pipelining") as c:
        _pipelined(agent, c, ids)


def test_200_concurrent_connections(agent):
    _many_connections(agent, 200)


def _many_connections(agent, n_conns):
    conns = []
    try:
        for _ in range(n_conns):
            conns.append(agent.client(timeout=10.0))
        for c in conns:
            c.send(su.hello_frame())
        for c in conns:
            f = c.read_frame()
            assert f is not None and f.type == su.AGENT_HELLO, f
            c.max_frame_size = f.kv()["max-frame-size"]
        for n, c in enumerate(conns):
            c.send(b"".join(su.notify_frame(1000 * n + k, 1, agent.messages(k)) for k in range(3)))
        for n, c in enumerate(conns):
            seen = set()
            for _ in range(3):
                ack = c.read_ack()
                k = ack.stream - 1000 * n
                assert 0 <= k < 3 and ack.frame == 1 and k not in seen, ack
                seen.add(k)
                agent.check_ack(ack, k)
    finally:
        for c in conns:
            c.close()
    assert agent.proc.alive()


@pytest.mark.parametrize("spec", AGENTS, ids=[a.name for a in AGENTS])
def test_idle_timeout(stack, spec):
    idle_ms = 300
    a = start_agent(stack, spec, idle_ms=idle_ms)
    idle = a.ready_client()
    busy = a.ready_client()
    t0 = time.monotonic()
    seq = 0
    # busy: a NOTIFY every 100 ms keeps its connection open past the timeout
    while time.monotonic() - t0 < 4 * idle_ms / 1000:
        seq += 1
        a.check_ack(busy.call(seq, 1, a.messages(seq)), seq)
        time.sleep(0.1)
    # idle: closed by now, by a DISCONNECT (timeout or normal) or bare EOF
    f = idle.read_frame(timeout=(idle_ms / 1000 + 2) * SLOW)
    if f is not None:
        assert f.type == su.AGENT_DISCONNECT, f
        assert f.kv()["status-code"] in (su.ST_NORMAL, su.ST_TIMEOUT), f.kv()
        assert idle.read_eof()
    elapsed = time.monotonic() - t0
    assert elapsed < (idle_ms / 1000 + 3) * SLOW
    a.check_ack(busy.call(seq + 1, 1, a.messages(seq + 1)), seq + 1)
    idle.close()
    busy.close()
    stop_and_check(a.proc)


def test_unix_socket_listener(stack):
    spec = AGENTS[0]
    path = stack.path("agent.sock")
    argv = spec.argv(path, None)
    if argv is None:
        pytest.skip("echo agent not built")
    proc = stack.start("agent-unix", argv)
    stack.wait_unix(path, proc)
    a = Agent(spec, proc, None)
    with SpopClient(path, timeout=5.0 * SLOW) as c:
        c.hello()
        a.check_ack(c.call(1, 1, a.messages(1)), 1)
    if _built("spop-load"):              # the load generator speaks unix sockets too
        r, kv = _run_load(["-c", 2, "-d", 4, "-n", 100, "-m", "echo", "--check-actions", f"unix:{path}"])
        assert r.returncode == 0 and int(kv["decisions"]) == 100, r.stdout + r.stderr
    stop_and_check(proc)


# ---------------------------------------------------------------------------
# The load generator, functionally (speed is measured by bench/bench-spop.sh)

def test_spop_load_against_echo(stack):
    load = _built("spop-load")
    if load is None:
        pytest.skip("spop-load not built")
    a = start_agent(stack, AGENTS[0])
    r = subprocess.run([load, "-T", "2", "-c", "4", "-d", "8", "-t", "1", "--message", "echo", "--check-actions",
                        f"127.0.0.1:{a.port}"], capture_output=True, text=True, timeout=30 * SLOW)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    kv = dict(line.split("=", 1) for line in r.stdout.split() if "=" in line)
    assert int(kv["errors"]) == 0, out
    assert int(kv["decisions"]) > 0, out
    stop_and_check(a.proc)


class _PyAgent:
    """A small threaded agent in Python for checking spop-load's side of the
    wire with the independent decoder: records every NOTIFY's messages and
    answers each batch of NOTIFYs in reverse order (pipelining allows any
    order). `corrupt` = a NOTIFY count after which one ACK gets a wrong
    frame-id."""

    def __init__(self, corrupt=None):
        import threading
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.hellos, self.messages, self.disconnects, self.errors = [], [], [], []
        self.corrupt = corrupt
        self.lock = threading.Lock()
        self.threads = []
        self.stopping = threading.Event()
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        import threading
        self.lsock.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(None)
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, s):
        buf = bytearray()
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return
                buf += chunk
                out, acks = [], []
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", bytes(buf[:4]))[0]:
                    n = struct.unpack(">I", bytes(buf[:4]))[0]
                    f = su.parse_frame(bytes(buf[4:4 + n]))
                    del buf[:4 + n]
                    if f.type == su.HAPROXY_HELLO:
                        self.hellos.append(f.kv())
                        out.append(su.build_frame(su.AGENT_HELLO, su.encode_kv(
                            [("version", "2.0"), ("max-frame-size", su.Typed(su.T_UINT32, 16380)),
                             ("capabilities", "pipelining")])))
                    elif f.type == su.NOTIFY:
                        assert f.flags == su.FLAG_FIN, f
                        with self.lock:
                            self.messages.append(su.decode_messages(f.payload))
                            bad = self.corrupt is not None and len(self.messages) == self.corrupt
                        acks.append(su.build_frame(su.ACK, b"\x01\x03\x02" + su.encode_string("agent") +
                                                   su.encode_data("py"), f.stream,
                                                   f.frame + (1000 if bad else 0)))
                    elif f.type == su.HAPROXY_DISCONNECT:
                        self.disconnects.append(f.kv())
                        s.sendall(b"".join(out + acks[::-1]) + su.build_frame(
                            su.AGENT_DISCONNECT, su.encode_kv([("status-code", su.Typed(su.T_UINT32, 0)),
                                                               ("message", "bye")])))
                        return
                s.sendall(b"".join(out + acks[::-1]))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(exc))
        finally:
            s.close()

    def close(self):
        # join the acceptor before closing its socket (never leave a thread
        # blocked on a descriptor number that may be reused)
        self.stopping.set()
        self.acceptor.join(5)
        self.lsock.close()


def _run_load(args, timeout=30):
    load = _built("spop-load")
    if load is None:
        pytest.skip("spop-load not built")
    r = subprocess.run([load] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout * SLOW)
    kv = dict(tok.split("=", 1) for tok in r.stdout.strip().splitlines()[-1].split() if "=" in tok) \
        if r.stdout.strip() else {}
    return r, kv


def test_spop_load_wire_format():
    import ipaddress
    import re
    agent = _PyAgent()
    try:
        r, kv = _run_load(["-c", 3, "-d", 5, "-n", 300, "-p", 50, "-i", 4, "--host", "h.test", "--check-actions",
                           f"127.0.0.1:{agent.port}"])
    finally:
        agent.close()
    assert r.returncode == 0, r.stdout + r.stderr
    assert int(kv["decisions"]) == 300 and int(kv["errors"]) == 0, r.stdout
    assert not agent.errors, agent.errors
    assert len(agent.hellos) == 3 and len(agent.disconnects) == 3
    for h in agent.hellos:
        assert h == {"supported-versions": "2.0", "max-frame-size": 16380, "capabilities": "pipelining"}
    assert len(agent.messages) == 300
    ids, other = set(), 0
    for msgs in agent.messages:
        assert len(msgs) == 1
        name, args = msgs[0]
        assert name == "route" and [k for k, _ in args] == ["path", "host", "src"], msgs
        d = dict(args)
        assert d["host"] == "h.test" and isinstance(d["src"], ipaddress.IPv4Address)
        m = re.fullmatch(r"/([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})/.*", d["path"])
        if m:
            ids.add(m.group(1))
        else:
            assert d["path"] == "/other", d
            other += 1
    assert 1 <= len(ids) <= 4 and 0 < other < 300, (ids, other)


def test_spop_load_detects_wrong_ack_ids():
    agent = _PyAgent(corrupt=50)
    try:
        r, kv = _run_load(["-c", 1, "-d", 4, "-n", 200, f"127.0.0.1:{agent.port}"])
    finally:
        agent.close()
    assert r.returncode == 1, r.stdout + r.stderr
    assert int(kv["errors"]) >= 1 and "bad ids 1" in r.stdout, r.stdout
