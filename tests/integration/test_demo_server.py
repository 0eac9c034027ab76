"""build/tools/demo-server, the hub/node stand-in: it answers with its
name, keeps connections alive, answers pipelined requests in order, echoes
websocket frames after a correct RFC 6455 handshake, and can be told to
fail (500, hang, close) and to recover, for the health-check tests."""
import base64
import hashlib
import http.client
import os
import re
import signal
import socket
import subprocess

import harness
from harness import free_port, http_get


def start(stack, name="srv1"):
    port = free_port()
    p = stack.start(name, [harness.bin_path("demo-server"), "--name", name,
                           "--listen", f"127.0.0.1:{port}"])
    stack.wait_port(port, p)
    return p, port


def recv_until(s, n_responses):
    data = b""
    while data.count(b"HTTP/1.1 ") < n_responses or not data.endswith(b"\n"):
        d = s.recv(65536)
        if not d:
            break
        data += d
    return data


def test_answers_with_name_path_and_xff(stack):
    _, port = start(stack)
    status, hdrs, body = http_get(port, "/some/path?q=1", headers={"X-Forwarded-For": "10.1.2.3"})
    assert status == 200
    assert hdrs["x-served-by"] == "srv1"
    assert body == b"srv1 /some/path?q=1 xff=10.1.2.3\n"
    status, _, body = http_get(port, "/health")
    assert status == 200 and body == b"ok\n"
    status, hdrs, body = http_get(port, "/x", method="HEAD")
    assert status == 200 and body == b"" and hdrs["content-length"] == str(len("srv1 /x xff=-\n"))


def test_keepalive_and_pipelining(stack):
    _, port = start(stack)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        # keep-alive: two requests one after the other on one connection
        for i in range(2):
            s.sendall(f"GET /k{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert f"srv1 /k{i} xff=-".encode() in recv_until(s, 1)
        # pipelined, with a request body to skip, answered in order
        s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                  b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    bodies = re.findall(rb"srv1 /[a-z]+ xff=-\n", data)
    assert bodies == [b"srv1 /a xff=-\n", b"srv1 /b xff=-\n", b"srv1 /c xff=-\n"], data
    assert data.count(b"X-Served-By: srv1") == 3


def test_websocket_echo(stack):
    _, port = start(stack, "node7")
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101 ")
        want = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        assert b"Sec-WebSocket-Accept: " + want + b"\r\n" in head
        assert b"X-Served-By: node7" in head
        for payload in (b"hi", b"x" * 300):          # 7-bit and 16-bit lengths
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if len(payload) < 126:
                hdr = bytes([0x82, 0x80 | len(payload)])
            else:
                hdr = bytes([0x82, 0x80 | 126]) + len(payload).to_bytes(2, "big")
            s.sendall(hdr + mask + masked)
            want_hdr = hdr[:1] + bytes([hdr[1] & 0x7F]) + hdr[2:]
            echo = b""
            while len(echo) < len(want_hdr) + len(payload):
                d = s.recv(4096)
                assert d
                echo += d
            assert echo == want_hdr + payload            # unmasked, same opcode
        # close frame echoed, then the server closes
        mask = os.urandom(4)
        s.sendall(bytes([0x88, 0x82]) + mask + bytes(b ^ mask[i] for i, b in enumerate(b"\x03\xe8")))
        assert s.recv(16) == b"\x88\x02\x03\xe8"
        assert s.recv(16) == b""


def test_failure_modes_and_sigterm(stack):
    p, port = start(stack)
    assert http_get(port, "/__sg/mode?status=500", method="POST")[0] == 200
    status, hdrs, _ = http_get(port, "/health")
    assert status == 500 and hdrs["x-served-by"] == "srv1"
    assert http_get(port, "/__sg/mode?status=hang", method="POST")[0] == 200
    try:
        http_get(port, "/health", timeout=0.5)
        raise AssertionError("hang mode answered")
    except socket.timeout:
        pass
    assert http_get(port, "/__sg/mode?status=close", method="POST")[0] == 200
    try:
        http_get(port, "/health")
        raise AssertionError("close mode answered")
    except (ConnectionError, http.client.RemoteDisconnected):
        pass
    assert http_get(port, "/__sg/mode?status=ok", method="POST")[0] == 200
    assert http_get(port, "/health")[0] == 200
    assert p.stop(signal.SIGTERM) == 0


def test_fail_status_flag_and_help(stack):
    port = free_port()
    p = stack.start("failing", [harness.bin_path("demo-server"), "--name", "f", "--listen",
                                f"127.0.0.1:{port}", "--fail-status", "503"])
    stack.wait_port(port, p)
    assert http_get(port, "/health")[0] == 503
    r = subprocess.run([harness.bin_path("demo-server"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--listen" in r.stdout
    r = subprocess.run([harness.bin_path("demo-server"), "--name", "x"], capture_output=True, text=True)
    assert r.returncode == 2


def test_many_tiny_pipelined_requests(stack):
    # More answers than the output buffer holds at once: the server must
    # come back to the rest of the input after each write.
    _, port = start(stack)
    n = 1500
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n" * n + b"GET /last HTTP/1.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    assert data.count(b"HTTP/1.1 200 OK") == n + 1
    assert data.endswith(b"srv1 /last xff=-\n")
