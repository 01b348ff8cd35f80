"""The access events' path under load: the proxy's ring → the metrics sidecar. Counts stay exact
when the console access log is sampled, and every request is either printed or counted in a
"not shown" line. (Timings are bench/datapath.py's business, never asserted here.)"""

from __future__ import annotations

import http.client
import re
import threading
import time

import pytest

from tests.conftest import running_containers

pytestmark = pytest.mark.integration

HIDDEN = re.compile(r"^metrics: access log: (\d+) more requests in the last second not shown")


def metrics_total(port: int, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "meshctl_requests_total" and all(s.labels.get(k) == v for k, v in labels.items()))


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
    http_port = int(entry["urls"]["http"].rsplit(":", 1)[1].strip("/"))
    metrics_port = int(entry["urls"]["metrics"].rsplit(":", 1)[1].split("/")[0])
    before = metrics_total(metrics_port, code="404")
    threads = [threading.Thread(target=hammer, args=(http_port, f"/burst-{i}", 400)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    deadline = time.monotonic() + 10
    while metrics_total(metrics_port, code="404") < before + 1600 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metrics_total(metrics_port, code="404") == before + 1600
    time.sleep(2.5)   # the agent reports what a second left out when the next one starts
    total = metrics_total(metrics_port)
    [metrics] = [c for c in running_containers(engine, project) if c.label("role") == "metrics"]
    lines = list(engine.logs(metrics.id, follow=False))
    shown = [line for line in lines if '"GET ' in line]
    hidden = sum(int(m.group(1)) for m in map(HIDDEN.match, lines) if m)
    assert any("GET /burst-0 HTTP/1.1" in line for line in shown)
    assert len(shown) + hidden == total, (len(shown), hidden, total)
