"""meshctl stat, top and tap: the agent's recent past (sidecars/metrics/recent.py) fed with lines in
the formats meshctl ships, its pod-local endpoint over a real socket, and the CLI's side
(runtime/observe.py): merging the agents' rows, tap's filters."""

from __future__ import annotations

import io
import sys
import threading
from http.server import ThreadingHTTPServer

from meshctl.runtime.observe import TapFilter, merge_stat
from meshctl.sidecars import ACCESS_LOG_FORMAT
from tests.support import metrics_agent
from tests.support import HTTP_VALUES, render_log_line
import contextlib

agent = metrics_agent()
recent = sys.modules[agent.RecentEvents.__module__]     # recent.py, as agent.py imported it


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def access(path="/hello", code=200, ms=3, method="GET", frontend="proxy~", caller=None, state="----"):
    """An access line as the proxy writes it: `caller` set: through the mesh listener (mTLS), whose
    format ends with the caller's certificate name."""
    text = render_log_line(ACCESS_LOG_FORMAT, {**HTTP_VALUES, "ft": "mesh_in~" if caller else frontend,
                                               "ST": code, "Ta": ms, "tsc": state, "r": f"{method} {path} HTTP/1.1"})
    return f"{text} {caller}" if caller else text


def event(source="web", code=200, ms=3, path="/hello", method="GET"):
    return ("http", "inbound", source, "", method, path, code, ms, 100, bool(source), False, "")


def test_percentiles_are_nearest_rank_over_whole_milliseconds():
    latencies = {1: 50, 2: 45, 10: 4, 250: 1}
    assert recent.percentile(latencies, 0.50) == 1
    assert recent.percentile(latencies, 0.95) == 2
    assert recent.percentile(latencies, 0.99) == 10
    assert recent.percentile(latencies, 1.0) == 250
    assert recent.percentile({}, 0.5) is None


def test_a_window_sums_the_seconds_inside_it_and_old_seconds_are_dropped():
    clock = Clock()
    store = recent.RecentEvents(keep=600, clock=clock)
    store.add([event(), event(), event()])
    clock.now += 30
    store.add([event(), event(code=503)])
    assert store.stat("api", 20)[0]["requests"] == 2
    row = store.stat("api", 60)[0]
    assert row["requests"] == 5 and row["success_rate"] == 80.0 and row["rps"] == round(5 / 60, 3)
    clock.now += 600
    store.add([event()])
    assert store.stat("api", 600)[0]["requests"] == 1 and len(store.seconds) == 1


def test_stat_counts_a_known_load_from_the_proxys_lines():
    stats = agent.AccessStats(recent.RecentEvents(clock=Clock()))
    lines = [access(caller="web", code=500 if i % 10 == 0 else 200, ms=i % 7) for i in range(200)]
    lines += [access(code=200, ms=40)] * 3                                  # from the host's port
    lines += [access(caller="intruder", code=403, state="PR--")] * 2        # refused by allow
    stats.record_lines(lines)
    rows = {(r["source"], r["destination"]): r for r in stats.recent.stat("api", 60)}
    service, web = rows[("", "")], rows[("web", "api")]
    assert service["requests"] == 205 and service["denied"] == 2
    assert web["requests"] == 200 and web["success_rate"] == 90.0 and web["mtls"] is True
    assert web["p50_ms"] == 3 and web["p99_ms"] == 6
    assert rows[("intruder", "api")]["denied"] == 2


def test_routes_are_by_method_and_path_without_the_query_busiest_first():
    stats = agent.AccessStats(recent.RecentEvents(clock=Clock()))
    stats.record_lines([access("/orders?id=1", caller="web"), access("/orders?id=2", caller="web"), access("/orders"),
                        access("/healthz"), access("/orders", method="POST", code=500, caller="web")])
    routes = stats.recent.routes("api", 10)
    assert [(r["method"], r["path"], r["requests"]) for r in routes] == [
        ("GET", "/orders", 3), ("GET", "/healthz", 1), ("POST", "/orders", 1)]
    assert routes[0]["callers"] == ["host", "web"] and routes[2]["success_rate"] == 0.0


def test_routes_beyond_the_limit_are_counted_together():
    store = recent.RecentEvents(clock=Clock())
    store.add([event(path=f"/item/{i}") for i in range(recent.MAX_ROUTES + 5)])
    routes = store.routes("api", 10)
    assert len(routes) == recent.MAX_ROUTES + 1
    assert routes[0]["path"] == "(other paths)" and routes[0]["requests"] == 5


def test_a_tap_gets_the_events_after_it_listens_and_none_after_it_stops():
    store = recent.RecentEvents(clock=Clock())
    store.add([event(path="/before")])
    tap = store.listen()
    store.add([event(path="/after"), ("http", "outbound", "", "kv", "GET", "/x", 200, 1, 5, False, False, "")])
    queue, ready = tap
    assert ready.is_set()
    records = [recent.tap_record("api", at, e) for at, e in queue]
    assert [(r["path"], r["source"], r["destination"]) for r in records] == [("/after", "web", "api"),
                                                                            ("/x", "api", "kv")]
    store.stop_listening(tap)
    queue.clear()
    store.add([event()])
    assert not queue


def test_a_tap_line_carries_the_trace_id_of_its_request():
    """The trace id comes from the span field of the proxy's line, so a tap line leads to `meshctl trace ID`."""
    counter = agent.AccessStats()
    tap = counter.recent.listen()
    counter.record_lines([access(path="/traced", caller="web")])
    [(at, event_)] = list(tap[0])
    record = recent.tap_record("api", at, event_)
    assert record["path"] == "/traced"
    assert record["trace_id"] == HTTP_VALUES["var(txn.trace_id)"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    counter.recent.stop_listening(tap)


def serve_local(store):
    server = ThreadingHTTPServer(("127.0.0.1", 0), recent.make_local_handler(store, "api"))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_local_reader_copies_routes_and_a_live_tap():
    store = recent.RecentEvents()
    store.add([event(path="/a")])
    server = serve_local(store)
    port = server.server_address[1]
    out = io.BytesIO()
    recent.read_local(port, "/routes?window=5", out)
    assert b'"path": "/a"' in out.getvalue()

    class Lines(io.RawIOBase):
        """stdout that closes (as a stopped tap's) once the event made after "{}" came."""
        def __init__(self):
            self.lines = []

        def write(self, data):
            self.lines.append(bytes(data))
            if len(self.lines) == 1:
                store.add([event(path="/live")])
            if b"/live" in data:
                raise BrokenPipeError
            return len(data)

    sink = Lines()
    with contextlib.suppress(BrokenPipeError):
        recent.read_local(port, "/tap", sink)
    assert sink.lines[0] == b"{}\n" and b'"path": "/live"' in sink.lines[-1]
    assert all(not line.strip() for line in sink.lines[1:-1])     # only "still there?" lines between
    server.shutdown()


def test_tap_filters():
    request = {"source": "web", "method": "POST", "path": "/orders/7", "status": 503}
    assert TapFilter().matches(request)
    assert TapFilter(caller="web", path="/orders", method="post", status="5xx").matches(request)
    assert TapFilter(status="503").matches(request)
    assert not TapFilter(status="4xx").matches(request)
    assert not TapFilter(status="404").matches(request)
    assert not TapFilter(caller="host").matches(request)
    assert not TapFilter(path="/items").matches(request)
    assert not TapFilter(method="GET").matches(request)


def test_an_edge_is_shown_as_its_callee_saw_it_and_the_callers_side_only_without_one():
    def row(service, direction, source, destination, requests):
        return {"service": service, "kind": "http", "direction": direction, "source": source,
                "destination": destination, "requests": requests}
    answers = {"web": [row("web", "inbound", "", "", 10), row("web", "outbound", "web", "api", 9),
                       row("web", "outbound", "web", "outside", 4)],
               "api": [row("api", "inbound", "", "", 8), row("api", "inbound", "web", "api", 8)]}
    merged = merge_stat(answers)
    assert [(r["service"], r["source"], r["destination"], r["requests"]) for r in merged] == [
        ("web", "", "", 10), ("api", "", "", 8), ("api", "web", "api", 8), ("web", "web", "outside", 4)]
    assert all("direction" not in r for r in merged)
