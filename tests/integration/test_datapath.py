"""The access events' path under load: the proxy's ring → the metrics sidecar. Counts stay exact
when the console access log is sampled, and every request is either printed or counted in a
"not shown" line. (Timings are bench/datapath.py's business, never asserted here.)"""

from __future__ import annotations

import http.client
import re
import threading

import pytest

from tests.support import eventually, metric_sum, port_of, running_containers

pytestmark = pytest.mark.integration

HIDDEN = re.compile(r"^metrics: access log: (\d+) more requests in the last second not shown")


def metrics_total(port: int, **labels: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    return metric_sum(conn.getresponse().read().decode(), "meshctl_requests_total", **labels)


def hammer(port: int, path: str, count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(count):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.getheader("connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.close()


def test_counts_stay_exact_and_every_request_is_shown_or_summed(detached_hello, engine):
    _, project, entry = detached_hello
    http_port, metrics_port = port_of(entry["urls"]["http"]), port_of(entry["urls"]["metrics"])
    before = metrics_total(metrics_port, code="404")
    threads = [threading.Thread(target=hammer, args=(http_port, f"/burst-{i}", 400)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    eventually(lambda: metrics_total(metrics_port, code="404") >= before + 1600, 10, 0.2)
    assert metrics_total(metrics_port, code="404") == before + 1600
    [metrics] = [c for c in running_containers(engine, project) if c.label("role") == "metrics"]

    def every_request_shown_or_summed() -> list[str]:
        total = metrics_total(metrics_port)
        lines = list(engine.logs(metrics.id, follow=False))
        shown = [line for line in lines if '"GET ' in line]
        hidden = sum(int(m.group(1)) for m in map(HIDDEN.match, lines) if m)
        assert len(shown) + hidden == total, (len(shown), hidden, total)
        return shown
    # The agent reports what a second left out when the next second starts: until then, poll.
    shown = eventually(every_request_shown_or_summed, 10, 0.2, ignore=(AssertionError,))
    assert any("GET /burst-0 HTTP/1.1" in line for line in shown)
