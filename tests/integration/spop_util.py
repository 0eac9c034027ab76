"""HAProxy's side of SPOP 2.0, written in Python from /work/shared/SPOP.md and
HAProxy's doc/SPOE.txt (not from our C codec), so that tests cross-check the
C library instead of mirroring it.

Pieces, smallest first:
  varint_encode / varint_decode      HAProxy "peers" varints (not LEB128)
  Typed, encode_data / decode_data   typed data (type in the low nibble)
  encode_kv / decode_kv              KV lists (names carry no type byte)
  build_frame / parse_frame          <len:4><type:1><flags:4><sid><fid><payload>
  hello_frame, notify_frame,
  haproxy_disconnect_frame           what HAProxy sends
  decode_actions                     ACK payloads (set-var / unset-var)
  SpopClient                         a blocking client with timeouts

Everything raises SpopError on malformed input; nothing here logs.
"""
import ipaddress
import socket
import struct
import time

# Frame types (SPOP.md "Frames")
UNSET = 0
HAPROXY_HELLO = 1
HAPROXY_DISCONNECT = 2
NOTIFY = 3
AGENT_HELLO = 101
AGENT_DISCONNECT = 102
ACK = 103

FLAG_FIN = 0x1
FLAG_ABORT = 0x2

# Typed data (SPOP.md "Typed data")
T_NULL, T_BOOL, T_INT32, T_UINT32, T_INT64, T_UINT64, T_IPV4, T_IPV6, T_STR, T_BIN = range(10)

# Action scopes
SCOPE_PROC, SCOPE_SESS, SCOPE_TXN, SCOPE_REQ, SCOPE_RES = range(5)
SCOPE_NAMES = {0: "proc", 1: "sess", 2: "txn", 3: "req", 4: "res"}

# DISCONNECT status codes
ST_NORMAL = 0
ST_IO = 1
ST_TIMEOUT = 2
ST_TOO_BIG = 3
ST_INVALID = 4
ST_NO_VSN = 5
ST_NO_FRAME_SIZE = 6
ST_NO_CAP = 7
ST_BAD_VSN = 8
ST_BAD_FRAME_SIZE = 9
ST_FRAG_NOT_SUPPORTED = 10
ST_INTERLACED_FRAMES = 11
ST_FRAMEID_NOTFOUND = 12
ST_RES_ALLOC = 13
ST_UNKNOWN = 99

VARINT_MAX_BYTES = 10
U64 = (1 << 64) - 1


class SpopError(Exception):
    """Malformed SPOP input, or a peer that did not behave."""


# ---------------------------------------------------------------------------
# Varints

def varint_encode(value):
    """Encode an integer as a peers varint. Negative values are sent as their
    uint64 two's complement (SPOP.md: -1 takes 10 bytes)."""
    if value < 0:
        value &= U64
    if value > U64:
        raise SpopError(f"varint out of range: {value}")
    if value < 240:
        return bytes([value])
    out = bytearray([(value | 0xF0) & 0xFF])
    value = (value - 240) >> 4
    while value >= 128:
        out.append((value | 0x80) & 0xFF)
        value = (value - 128) >> 7
    out.append(value)
    return bytes(out)


def varint_decode(buf, off=0, end=None):
    """Decode a varint at buf[off:end]. Returns (value, new offset). Raises
    SpopError when it runs past `end` or is longer than 10 bytes."""
    if end is None:
        end = len(buf)
    if off >= end:
        raise SpopError("truncated varint")
    value = buf[off]
    off += 1
    if value < 240:
        return value, off
    shift = 4
    nbytes = 1
    while True:
        if off >= end:
            raise SpopError("truncated varint")
        if nbytes >= VARINT_MAX_BYTES:
            raise SpopError("varint longer than 10 bytes")
        b = buf[off]
        off += 1
        nbytes += 1
        value += b << shift
        shift += 7
        if b < 128:
            break
    if value > U64:
        raise SpopError("varint overflows 64 bits")
    return value, off


# ---------------------------------------------------------------------------
# Typed data

class Typed:
    """A value with an explicit SPOP type, for when Python's type is not
    enough (UINT32, INT32, UINT64, or a raw type byte with flags)."""

    __slots__ = ("type", "value", "flags")

    def __init__(self, type_, value=None, flags=0):
        self.type, self.value, self.flags = type_, value, flags

    def __eq__(self, other):
        return isinstance(other, Typed) and (self.type, self.value, self.flags) == \
            (other.type, other.value, other.flags)

    def __repr__(self):
        return f"Typed({self.type}, {self.value!r})"


def encode_string(s):
    """A name or string body: varint length + bytes, no type byte."""
    if isinstance(s, str):
        s = s.encode()
    return varint_encode(len(s)) + bytes(s)


def decode_string(buf, off, end):
    """Returns (bytes, new offset); SpopError if the bytes run past end."""
    n, off = varint_decode(buf, off, end)
    if n > end - off:
        raise SpopError(f"string of {n} bytes runs past the frame's end")
    return bytes(buf[off:off + n]), off + n


def encode_data(v):
    """Typed data for a Python value: None -> NULL, bool -> BOOL, int ->
    INT64 (what HAProxy sends), str -> STRING, bytes -> BINARY, ip addresses
    -> IPV4/IPV6, Typed -> its explicit type."""
    if isinstance(v, Typed):
        t, val, fl = v.type, v.value, v.flags
        hdr = bytes([(fl << 4) | t])
        if t == T_NULL:
            return hdr
        if t == T_BOOL:
            return bytes([((fl | (1 if val else 0)) << 4) | T_BOOL])
        if t in (T_INT32, T_UINT32, T_INT64, T_UINT64):
            return hdr + varint_encode(val)
        if t == T_IPV4:
            return hdr + ipaddress.IPv4Address(val).packed
        if t == T_IPV6:
            return hdr + ipaddress.IPv6Address(val).packed
        if t in (T_STR, T_BIN):
            return hdr + encode_string(val)
        raise SpopError(f"cannot encode type {t}")
    if v is None:
        return bytes([T_NULL])
    if isinstance(v, bool):
        return bytes([0x11 if v else 0x01])
    if isinstance(v, int):
        return bytes([T_INT64]) + varint_encode(v)
    if isinstance(v, str):
        return bytes([T_STR]) + encode_string(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes([T_BIN]) + encode_string(bytes(v))
    if isinstance(v, ipaddress.IPv4Address):
        return bytes([T_IPV4]) + v.packed
    if isinstance(v, ipaddress.IPv6Address):
        return bytes([T_IPV6]) + v.packed
    raise SpopError(f"cannot encode {type(v).__name__}")


def _signed(v, bits):
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


def decode_data(buf, off, end):
    """Returns (python value, type, new offset). Strings come back as str
    when they are UTF-8, integers as Python ints (INT32/INT64 signed)."""
    if off >= end:
        raise SpopError("truncated typed data")
    b = buf[off]
    off += 1
    t, fl = b & 0x0F, b >> 4
    if t == T_NULL:
        return None, t, off
    if t == T_BOOL:
        return bool(fl & 1), t, off
    if t in (T_INT32, T_UINT32, T_INT64, T_UINT64):
        v, off = varint_decode(buf, off, end)
        if t == T_INT64:
            v = _signed(v, 64)
        elif t == T_INT32:
            v = _signed(v & 0xFFFFFFFF, 32)
        return v, t, off
    if t == T_IPV4:
        if end - off < 4:
            raise SpopError("truncated ipv4")
        return ipaddress.IPv4Address(bytes(buf[off:off + 4])), t, off + 4
    if t == T_IPV6:
        if end - off < 16:
            raise SpopError("truncated ipv6")
        return ipaddress.IPv6Address(bytes(buf[off:off + 16])), t, off + 16
    if t in (T_STR, T_BIN):
        s, off = decode_string(buf, off, end)
        if t == T_STR:
            try:
                return s.decode(), t, off
            except UnicodeDecodeError:
                return s, t, off
        return s, t, off
    raise SpopError(f"unknown data type {t}")


# ---------------------------------------------------------------------------
# KV lists

def encode_kv(items):
    """items: iterable of (name, value) pairs, or a dict."""
    if isinstance(items, dict):
        items = items.items()
    return b"".join(encode_string(k) + encode_data(v) for k, v in items)


def decode_kv(buf, off=0, end=None):
    """Decode a whole KV list up to end. Returns a dict name(str) -> value."""
    if end is None:
        end = len(buf)
    out = {}
    while off < end:
        name, off = decode_string(buf, off, end)
        value, _t, off = decode_data(buf, off, end)
        out[name.decode(errors="replace")] = value
    return out


# ---------------------------------------------------------------------------
# Frames

class Frame:
    """One received frame: type, flags, stream id, frame id, payload bytes."""

    __slots__ = ("type", "flags", "stream", "frame", "payload")

    def __init__(self, type_, flags, stream, frame_id, payload):
        self.type, self.flags, self.stream, self.frame, self.payload = \
            type_, flags, stream, frame_id, payload

    def kv(self):
        return decode_kv(self.payload)

    def actions(self):
        return decode_actions(self.payload)

    def __repr__(self):
        return (f"Frame(type={self.type}, flags={self.flags:#x}, sid={self.stream}, "
                f"fid={self.frame}, payload={bytes(self.payload)[:64]!r})")


def build_frame(type_, payload=b"", stream=0, frame_id=0, flags=FLAG_FIN):
    """A complete frame with its 4-byte big-endian length prefix."""
    body = bytes([type_]) + struct.pack(">I", flags) + varint_encode(stream) + \
        varint_encode(frame_id) + payload
    return struct.pack(">I", len(body)) + body


def parse_frame(body):
    """Parse a frame body (without the length prefix)."""
    if len(body) < 5:
        raise SpopError(f"frame of {len(body)} bytes is too short")
    type_ = body[0]
    flags = struct.unpack(">I", bytes(body[1:5]))[0]
    stream, off = varint_decode(body, 5)
    frame_id, off = varint_decode(body, off)
    return Frame(type_, flags, stream, frame_id, bytes(body[off:]))


def hello_frame(max_frame_size=16380, caps="pipelining", versions="2.0", healthcheck=False,
                engine_id=None, omit=(), extra=()):
    """HAPROXY-HELLO. `omit` names keys to leave out (tests of the agent's
    checks); `extra` adds (name, value) pairs."""
    items = [("supported-versions", versions),
             ("max-frame-size", Typed(T_UINT32, max_frame_size)),
             ("capabilities", caps)]
    if engine_id is not None:
        items.append(("engine-id", engine_id))
    if healthcheck:
        items.append(("healthcheck", True))
    items = [(k, v) for k, v in items if k not in omit] + list(extra)
    return build_frame(HAPROXY_HELLO, encode_kv(items))


def encode_messages(messages):
    """messages: iterable of (name, args) with args a list of (name, value)
    pairs (or a dict). NB-ARGS is one unsigned byte."""
    out = bytearray()
    for name, args in messages:
        if isinstance(args, dict):
            args = list(args.items())
        if len(args) > 255:
            raise SpopError("more than 255 args")
        out += encode_string(name) + bytes([len(args)]) + encode_kv(args)
    return bytes(out)


def decode_messages(buf, off=0, end=None):
    """NOTIFY payload -> list of (name, [(arg name, value), ...])."""
    if end is None:
        end = len(buf)
    out = []
    while off < end:
        name, off = decode_string(buf, off, end)
        if off >= end:
            raise SpopError("message without NB-ARGS")
        nargs = buf[off]
        off += 1
        args = []
        for _ in range(nargs):
            k, off = decode_string(buf, off, end)
            v, _t, off = decode_data(buf, off, end)
            args.append((k.decode(errors="replace"), v))
        out.append((name.decode(errors="replace"), args))
    return out


def notify_frame(stream, frame_id, messages):
    return build_frame(NOTIFY, encode_messages(messages), stream, frame_id)


def haproxy_disconnect_frame(status=ST_NORMAL, message="normal"):
    return build_frame(HAPROXY_DISCONNECT,
                       encode_kv([("status-code", Typed(T_UINT32, status)), ("message", message)]))


class Action:
    """A decoded ACK action."""

    __slots__ = ("kind", "scope", "name", "value", "vtype")

    def __init__(self, kind, scope, name, value=None, vtype=None):
        self.kind, self.scope, self.name, self.value, self.vtype = kind, scope, name, value, vtype

    def __repr__(self):
        return f"Action({self.kind} {SCOPE_NAMES.get(self.scope, self.scope)}.{self.name}={self.value!r})"


def decode_actions(buf, off=0, end=None):
    """ACK payload -> list of Action. SET-VAR = 01 03 scope name value,
    UNSET-VAR = 02 02 scope name."""
    if end is None:
        end = len(buf)
    out = []
    while off < end:
        if end - off < 3:
            raise SpopError("truncated action")
        kind, nargs, scope = buf[off], buf[off + 1], buf[off + 2]
        off += 3
        name, off = decode_string(buf, off, end)
        name = name.decode(errors="replace")
        if kind == 1:
            if nargs != 3:
                raise SpopError(f"set-var with {nargs} args")
            value, vt, off = decode_data(buf, off, end)
            out.append(Action("set-var", scope, name, value, vt))
        elif kind == 2:
            if nargs != 2:
                raise SpopError(f"unset-var with {nargs} args")
            out.append(Action("unset-var", scope, name))
        else:
            raise SpopError(f"unknown action type {kind}")
    return out


def ack_vars(frame, scope=SCOPE_TXN):
    """Set-var actions of one scope as a dict name -> value."""
    return {a.name: a.value for a in frame.actions() if a.kind == "set-var" and a.scope == scope}


# ---------------------------------------------------------------------------
# Blocking client

class SpopClient:
    """One connection to an agent, playing HAProxy. Blocking, with a
    per-call timeout (seconds). `target` is a TCP port on 127.0.0.1, a
    (host, port) pair, or a unix socket path."""

    def __init__(self, target, timeout=5.0):
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.max_frame_size = None
        if isinstance(target, int):
            target = ("127.0.0.1", target)
        if isinstance(target, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(target)
        except OSError:
            self.sock.close()
            raise

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Read more bytes into the buffer; False on EOF/reset."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("read timed out")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_frame(self, timeout=None):
        """The next frame, or None on a clean EOF (or reset) at a frame
        boundary. Raises SpopError on EOF inside a frame, socket.timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < 4:
            if not self._fill(deadline):
                if self.buf:
                    raise SpopError(f"EOF inside a length prefix ({bytes(self.buf)!r})")
                return None
        n = struct.unpack(">I", bytes(self.buf[:4]))[0]
        if n == 0:
            raise SpopError("agent sent a zero-length frame")
        if self.max_frame_size is not None and n > self.max_frame_size:
            raise SpopError(f"agent frame of {n} bytes exceeds max-frame-size {self.max_frame_size}")
        while len(self.buf) < 4 + n:
            if not self._fill(deadline):
                raise SpopError(f"EOF inside a frame ({len(self.buf) - 4}/{n} bytes)")
        body = bytes(self.buf[4:4 + n])
        del self.buf[:4 + n]
        return parse_frame(body)

    def read_eof(self, timeout=None):
        """True when the agent closes without sending anything more."""
        f = self.read_frame(timeout)
        if f is not None:
            raise SpopError(f"expected EOF, got {f!r}")
        return True

    def hello(self, max_frame_size=16380, caps="pipelining", healthcheck=False, **kw):
        """Send HAPROXY-HELLO and return the AGENT-HELLO's KV dict. Checks
        the three mandatory items (SPOP.md "Handshake")."""
        self.send(hello_frame(max_frame_size, caps, healthcheck=healthcheck, **kw))
        f = self.read_frame()
        if f is None:
            raise SpopError("EOF instead of AGENT-HELLO")
        if f.type == AGENT_DISCONNECT:
            kv = f.kv()
            raise SpopError(f"AGENT-DISCONNECT instead of AGENT-HELLO: {kv}")
        if f.type != AGENT_HELLO:
            raise SpopError(f"expected AGENT-HELLO, got {f!r}")
        if f.stream != 0 or f.frame != 0 or not f.flags & FLAG_FIN:
            raise SpopError(f"bad AGENT-HELLO metadata {f!r}")
        kv = f.kv()
        for key in ("version", "max-frame-size", "capabilities"):
            if key not in kv:
                raise SpopError(f"AGENT-HELLO without {key}: {kv}")
        mfs = kv["max-frame-size"]
        if not 256 <= mfs <= max_frame_size:
            raise SpopError(f"AGENT-HELLO max-frame-size {mfs} outside [256, {max_frame_size}]")
        self.max_frame_size = mfs
        return kv

    def notify(self, stream, frame_id, messages):
        self.send(notify_frame(stream, frame_id, messages))

    def read_ack(self, stream=None, frame_id=None, timeout=None):
        """The next frame, which must be an ACK (with these ids if given)."""
        f = self.read_frame(timeout)
        if f is None:
            raise SpopError("EOF instead of ACK")
        if f.type == AGENT_DISCONNECT:
            raise SpopError(f"AGENT-DISCONNECT instead of ACK: {f.kv()}")
        if f.type != ACK:
            raise SpopError(f"expected ACK, got {f!r}")
        if stream is not None and (f.stream, f.frame) != (stream, frame_id):
            raise SpopError(f"ACK ids ({f.stream}, {f.frame}) != NOTIFY ids ({stream}, {frame_id})")
        return f

    def call(self, stream, frame_id, messages):
        """NOTIFY then its ACK; returns the ACK frame."""
        self.notify(stream, frame_id, messages)
        return self.read_ack(stream, frame_id)

    def expect_disconnect(self, timeout=None):
        """Read until AGENT-DISCONNECT, then require EOF. Returns
        (status-code, message). Frames before it (ACKs for earlier NOTIFYs)
        are skipped. Raises if the agent closes without a DISCONNECT."""
        while True:
            f = self.read_frame(timeout)
            if f is None:
                raise SpopError("agent closed without AGENT-DISCONNECT")
            if f.type == AGENT_DISCONNECT:
                break
        if (f.stream, f.frame) != (0, 0):
            raise SpopError(f"AGENT-DISCONNECT with ids ({f.stream}, {f.frame})")
        kv = f.kv()
        if "status-code" not in kv or "message" not in kv:
            raise SpopError(f"AGENT-DISCONNECT without status-code/message: {kv}")
        msg = kv["message"]
        if isinstance(msg, str):
            msg_len = len(msg.encode())
        else:
            msg_len = len(msg)
        if msg_len > 255:
            raise SpopError(f"AGENT-DISCONNECT message of {msg_len} bytes")
        self.read_eof(timeout)
        return kv["status-code"], msg
