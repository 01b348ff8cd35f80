"""The metrics sidecar's agent, without a container: counting access lines in batches, the
console access log's per-second budget, and the event stream's framing."""

from __future__ import annotations

import importlib.util
import io
import socket
import threading

from prometheus_client import CollectorRegistry, generate_latest

from meshctl.sidecars import data_dir

spec = importlib.util.spec_from_file_location("meshctl_agent", data_dir("sidecars") / "metrics" / "agent.py")
agent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agent)

LINE = '192.168.1.1:5050 [27/Nov/2026:16:11:21.486] proxy app/app 0/0/0/{ms}/{ms} {code} 168 ---- "{method} /x HTTP/1.1"'


def line(code=200, method="GET", ms=1):
    return LINE.format(code=code, method=method, ms=ms)


def test_batches_count_codes_methods_and_latency_buckets():
    stats = agent.AccessStats()
    other = stats.record_lines([line(), line(404), line(200, "POST", 30), line(200, "BREW", 5000),
                                "[WARNING] (14) : Server app/app is DOWN", line(503, ms=-1)])
    assert other == ["[WARNING] (14) : Server app/app is DOWN"]
    requests, buckets, sum_ms, count, events, malformed = stats.snapshot()
    host = ("inbound", "", "")            # from outside the mesh, through the host's ports
    assert requests == {(*host, "200", "GET"): 1, (*host, "404", "GET"): 1, (*host, "200", "POST"): 1,
                        (*host, "200", "OTHER"): 1, (*host, "503", "GET"): 1}
    assert events == 5 and malformed == 1
    assert count == 4 and sum_ms == 1 + 1 + 30 + 5000           # -1 (aborted) has no duration
    assert buckets[agent.BUCKETS_MS.index(1)] == 2               # 1 ms falls in le=0.001
    assert buckets[agent.BUCKETS_MS.index(50)] == 1 and buckets[agent.BUCKETS_MS.index(5000)] == 1


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_console_prints_every_line_under_the_limit_then_a_sample_and_a_summary():
    out, clock = io.StringIO(), Clock()
    console = agent.ConsoleLog(3, out=out, clock=clock)
    console.write(["a", "b"])
    console.write(["c", "d", "e"], always=["haproxy says"])
    assert out.getvalue() == "a\nb\nhaproxy says\nc\n"
    clock.now += 1
    console.tick()
    assert out.getvalue().endswith("metrics: access log: 2 more requests in the last second not shown "
                                   "(MESHCTL_ACCESS_LOG_LIMIT=3/s); /metrics counts every one\n")
    console.write(["f"])
    assert out.getvalue().endswith("f\n")


def test_console_limits_all_and_none():
    out = io.StringIO()
    agent.ConsoleLog(-1, out=out).write([str(i) for i in range(500)])
    assert out.getvalue().count("\n") == 500
    out = io.StringIO()
    agent.ConsoleLog(0, out=out).write(["a"], always=["b"])
    assert out.getvalue() == "b\n"


def test_event_stream_splits_lines_across_reads():
    stats, out = agent.AccessStats(), io.StringIO()
    console = agent.ConsoleLog(-1, out=out)
    left, right = socket.socketpair()
    worker = threading.Thread(target=agent.serve_event_stream, args=(stats, console, right))
    worker.start()
    payload = "".join(line(200 + i % 2) + "\n" for i in range(1000)).encode()
    for start in range(0, len(payload), 777):      # lines cut at arbitrary places
        left.sendall(payload[start:start + 777])
    left.close()
    worker.join(5)
    requests = stats.snapshot()[0]
    assert requests == {("inbound", "", "", "200", "GET"): 500, ("inbound", "", "", "201", "GET"): 500}
    assert out.getvalue().count("\n") == 1000


def test_both_sides_of_a_mesh_edge_are_labelled_with_direction_and_peer():
    outbound = '172.18.0.3:4242 [27/Nov/2026:16:11:21.486] mesh_out to_api/api 0/0/1/2/3 200 50 ---- "GET /whoami HTTP/1.1"'
    inbound = '172.18.0.2:5151 [27/Nov/2026:16:11:21.486] mesh_in~ app/app 0/0/0/1/1 403 50 ---- "GET /whoami HTTP/1.1" intruder'
    elsewhere = '172.18.0.3:4243 [27/Nov/2026:16:11:21.486] mesh_out passthrough/original 0/0/1/2/3 200 50 ---- "GET / HTTP/1.1"'
    stats = agent.AccessStats()
    assert stats.record_lines([outbound, inbound, elsewhere]) == []
    assert stats.snapshot()[0] == {("outbound", "", "api", "200", "GET"): 1, ("inbound", "intruder", "", "403", "GET"): 1,
                                   ("outbound", "", "unknown", "200", "GET"): 1}


def test_a_mesh_caller_refused_by_rule_is_counted_as_denied_and_the_apps_own_403_is_not():
    refused = ('172.18.0.5:5152 [27/Nov/2026:16:11:21.486] mesh_in~ mesh_in/<NOSRV> 0/-1/-1/-1/0 403 192 PR-- '
               '"GET /whoami HTTP/1.1" intruder')
    apps_own = '172.18.0.2:5151 [27/Nov/2026:16:11:21.486] mesh_in~ app/app 0/0/0/1/1 403 50 ---- "GET /x HTTP/1.1" web'
    from_host = '127.0.0.1:5153 [27/Nov/2026:16:11:21.486] proxy~ proxy/<NOSRV> 0/-1/-1/-1/0 403 192 PR-- "GET / HTTP/1.1"'
    stats = agent.AccessStats()
    assert stats.record_lines([refused, refused, apps_own, from_host]) == []
    assert stats.denied_snapshot() == {("inbound", "intruder", ""): 2}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(agent.MeshCollector("api", stats, {"url": None, "up": False}))
    text = generate_latest(registry).decode()
    assert 'meshctl_requests_denied_total{destination="",direction="inbound",service="api",source="intruder"} 2.0' in text
