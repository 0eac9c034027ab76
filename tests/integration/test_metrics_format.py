"""Every /metrics endpoint is accepted by Prometheus' own checker, and the
monitoring files shipped with the package are valid and use metrics that
exist.

* route-agent and healthcheckd, started on loopback: `promtool check
  metrics` passes with no finding (HELP and TYPE on every family, units and
  suffixes by Prometheus conventions); seedgate_build_info and the process
  metrics are there.
* monitoring/seedgate-alerts.yml passes `promtool check rules`; the
  Grafana dashboard is valid JSON whose panels all query a metric that one
  of the endpoints (or HAProxy's exporter) serves.
"""
import json
import os
import re
import subprocess

import pytest

import harness
from harness import free_port, http_get, wait_until

MON = os.path.join(harness.ROOT, "monitoring")


def scrape(port):
    status, _, body = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(http_get(port, "/metrics")),
                                 10, interval=0.1, what=f"/metrics on {port}")
    return body.decode()


def promtool_check_metrics(text):
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).strip()


def endpoints(stack, broken_seed=False):
    """Starts healthcheckd and a route agent subscribed to it; returns their
    /metrics texts by daemon name. broken_seed: the directory is then
    rewritten with an error, so the texts carry the error families too."""
    seed = stack.write("seed.conf", f"dc a\nhub h1 127.0.0.1:{free_port()} dc=a\n"
                                    f"node n1 127.0.0.1:{free_port()} dc=a\n")
    feed = stack.path("feed.sock")
    hc_port, ra_port = free_port(), free_port()
    hc = stack.start("healthcheckd", [harness.bin_path("healthcheckd"), "--seed", seed, "--feed", feed,
                                      "--stats", f"127.0.0.1:{hc_port}"])
    stack.wait_unix(feed, hc)
    agent_port = free_port()
    # an empty key file (every project request 401): the access-control
    # families too
    keys = stack.write("auth.keys", "")
    ra = stack.start("route-agent", [harness.bin_path("route-agent"), "--seed", seed, "--health", feed,
                                     "--auth-keys", keys,
                                     "--listen", f"127.0.0.1:{agent_port}", "--stats", f"127.0.0.1:{ra_port}",
                                     # the map cache's families too (no HAProxy: it keeps retrying)
                                     "--haproxy-socket", stack.path("no-haproxy.sock"),
                                     "--map-file", stack.path("route-agent1.map")])
    stack.wait_port(agent_port, ra)
    ports = {"healthcheckd": hc_port, "route-agent": ra_port}
    if broken_seed:
        with open(seed, "a") as f:
            f.write("node n1 127.0.0.1:1 dc=nowhere\n")
        for port in ports.values():
            wait_until(lambda: 'seedgate_seed_last_error_info{' in scrape(port), 10,
                       what="the bad directory reported")
    return {name: scrape(port) for name, port in ports.items()}


@pytest.mark.parametrize("broken_seed", [False, True], ids=["good-seed", "bad-seed"])
def test_promtool_accepts_every_endpoint(stack, broken_seed):
    for name, text in endpoints(stack, broken_seed).items():
        rc, out = promtool_check_metrics(text)
        assert rc == 0 and out == "", f"{name}: promtool check metrics:\n{out}"
        families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
        for family in ("seedgate_build_info", "process_cpu_seconds_total", "process_resident_memory_bytes",
                       "process_open_fds", "process_max_fds", "process_start_time_seconds"):
            assert family in families, (name, family)
        assert re.search(r'^seedgate_build_info\{[^}]*version="[^"]+"[^}]*\} 1$', text, re.M), (name, text)
        # Every sample belongs to a family with HELP and TYPE.
        helps = set(re.findall(r"^# HELP (\S+) ", text, re.M))
        for line in text.splitlines():
            if line and not line.startswith("#"):
                m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
                base = re.sub(r"_(bucket|sum|count)$", "", m)
                assert (m in families or base in families) and (m in helps or base in helps), (name, line)


def test_alert_rules_pass_promtool():
    r = subprocess.run(["promtool", "check", "rules", os.path.join(MON, "seedgate-alerts.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 9 rules found" in r.stdout, r.stdout


def test_dashboard_and_rules_use_metrics_that_exist(stack):
    texts = endpoints(stack)
    served = set()
    for text in texts.values():
        served |= set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    dash = json.load(open(os.path.join(MON, "seedgate-dashboard.json")))
    assert dash["uid"] == "seedgate" and dash["panels"]
    exprs = []
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        exprs += [t["expr"] for t in panel["targets"]]
    exprs += re.findall(r"expr: (.*)", open(os.path.join(MON, "seedgate-alerts.yml")).read())
    exprs += open(os.path.join(MON, "seedgate-alerts.yml")).read().split("expr: |")[1:]
    for e in exprs:
        for name in re.findall(r"\b((?:seedgate|process)_[a-z_]+)", e):
            assert name in served, f"{name} (in {e!r}) is served by no endpoint"
    # The agent here has no HAProxy to publish its map to: exactly what
    # SeedgateMapCacheUnreachable fires on.
    assert re.search(r"^seedgate_route_map_connected 0$", texts["route-agent"], re.M)
    # and its key file loaded: SeedgateAuthKeysReloadFailed stays quiet
    assert re.search(r"^seedgate_auth_keys_last_reload_successful 1$", texts["route-agent"], re.M)
