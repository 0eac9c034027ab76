"""healthcheckd and DNS: a seed address given by host name is resolved with
c-ares (here against the test's own DNS server, --dns-servers), re-resolved
when the record's TTL runs out; an address change is pushed on the feed like
a state change and applied to HAProxy with `set server B/S addr`; a failed
resolution keeps the last address and is reported (log, feed reason,
seedgate_hc_dns_resolutions_total{result="error"})."""
import socket
import struct
from types import SimpleNamespace

import harness
import health_util as hu
import route_util as ru
import stack_util

NAME = "n1.seedgate.test"


class TinyDNS(harness.SocketThread):
    """Answers A queries for NAME with self.ip (TTL 0) on a UDP loopback port;
    AAAA and other names get an empty NOERROR answer; with self.fail set,
    every query gets SERVFAIL. Stopped and joined at the stack's teardown,
    after healthcheckd, which keeps querying it until then."""

    def __init__(self, stack):
        super().__init__()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.ip = "127.0.0.1"
        self.fail = False
        self.queries = 0
        stack.defer(self.stop)
        self.start()

    def serve_once(self):
        q, peer = self.sock.recvfrom(512)
        if len(q) < 12:
            return
        self.queries += 1
        qid = q[:2]
        i, labels = 12, []
        while i < len(q) and q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
            i += 1 + q[i]
        question = q[12:i + 5]
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0] if i + 3 <= len(q) else 0
        name = ".".join(labels).lower()
        if self.fail:
            self.sock.sendto(qid + struct.pack("!HHHHH", 0x8182, 1, 0, 0, 0) + question, peer)
            return
        answers = b""
        if name == NAME and qtype == 1:
            answers = (struct.pack("!HHHIH", 0xC00C, 1, 1, 0, 4) + socket.inet_aton(self.ip))
        flags = 0x8180
        self.sock.sendto(qid + struct.pack("!HHHHH", flags, 1, 1 if answers else 0, 0, 0)
                         + question + answers, peer)


def demo(stack, name, addr, port):
    p = stack.start(name, [harness.bin_path("demo-server"), "--name", name, "--listen", f"{addr}:{port}"])
    harness.wait_until(lambda: harness.port_open(port, host=addr), 5, what=f"{name} on {addr}:{port}")
    return p


def test_address_change_is_pushed_and_failures_keep_the_last_address(stack):
    dns = TinyDNS(stack)
    port, hub_port, http_port = harness.free_port(), harness.free_port(), harness.free_port()
    demo(stack, "n1-at-1", "127.0.0.1", port)
    demo(stack, "n1-at-2", "127.0.0.2", port)
    demo(stack, "h1", "127.0.0.1", hub_port)
    seed = stack.write("seed.conf", f"replicas 1\ndc a\nhub h1 127.0.0.1:{hub_port} dc=a\n"
                                    f"node n1 {NAME}:{port} dc=a\n")
    admin = stack.path("admin.sock")
    stack.haproxy(f"""
global
    stats socket {admin} level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend f
    bind 127.0.0.1:{http_port}
    default_backend nodes_a
backend nodes_a
    # as seedctl haproxy writes it: nodes weigh 0 (healthcheckd keeps them
    # so), use-server reaches them
    use-server n1 if TRUE
    server n1 127.0.0.1:{port} weight 0
backend hubs_a
    server h1 127.0.0.1:{hub_port}
""", wait_ports=(http_port,))
    feed, stats = stack.path("feed.sock"), harness.free_port()
    hc = hu.start_healthcheckd(stack, seed, feed=feed, haproxy_socks=(admin,), stats_port=stats,
                               args=("--dns-servers", f"127.0.0.1:{dns.port}",
                                     "--dns-min-ttl", "100ms", "--dns-retry", "100ms"))
    w = hu.Feed(feed)
    w.wait_state("n1", "up")
    assert w.addr["n1"] == f"127.0.0.1:{port}"

    def haproxy_addr():
        out = stack_util.admin(SimpleNamespace(admin_sock=admin), "show servers state nodes_a")
        rows = [l.split() for l in out.splitlines() if l[:1].isdigit() and len(l.split()) > 4]
        return rows[0][4] if rows else None           # srv_addr

    def served_by():
        return harness.http_get(http_port, "/x")[1].get("x-served-by")

    # The record now names another address: pushed on the feed and to HAProxy.
    dns.ip = "127.0.0.2"
    harness.wait_until(lambda: w.addr.get("n1") == f"127.0.0.2:{port}", 5,
                       what="address change on the feed")
    assert w.get("n1") == "up"
    harness.wait_until(lambda: haproxy_addr() == "127.0.0.2", 5, what="set server addr in HAProxy")
    assert served_by() == "n1-at-2"
    assert f"address 127.0.0.2:{port} (from {NAME})" in hc.log()

    # The resolver fails: the last address stays, the failure is reported.
    dns.fail = True
    harness.wait_until(lambda: ru.metric(ru.read_metrics(stats), "seedgate_hc_dns_resolutions_total",
                                         result="error") >= 1, 5, what="failed resolution counted")
    harness.wait_until(lambda: f"resolving {NAME} failed" in hc.log(), 5, what="failure logged")
    assert f"keeping 127.0.0.2:{port}" in hc.log()
    harness.wait_until(lambda: "dns:" in w.state["n1"][1], 5, what="failure on the feed")
    assert w.addr["n1"] == f"127.0.0.2:{port}" and w.get("n1") == "up"
    assert haproxy_addr() == "127.0.0.2" and served_by() == "n1-at-2"

    # Back: resolution resumes and follows the record again.
    dns.fail, dns.ip = False, "127.0.0.1"
    harness.wait_until(lambda: w.addr.get("n1") == f"127.0.0.1:{port}", 5,
                       what="address follows the record again")
    harness.wait_until(lambda: haproxy_addr() == "127.0.0.1", 5, what="HAProxy back on 127.0.0.1")
    assert served_by() == "n1-at-1"
