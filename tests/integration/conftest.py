"""pytest wiring: the `stack` fixture and log dumps on failure."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def stack(tmp_path, request):
    s = harness.Stack(tmp_path)
    yield s
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        sys.stderr.write("\n" + s.dump_logs() + "\n")
        request.node.add_report_section("call", "process logs", s.dump_logs())
    s.stop_all()
    import health_util  # noqa: E402 - closes the feed readers of this test
    health_util.close_feeds()
