"""The metrics sidecar's agent, without a container: counting access lines in batches, the
console access log's per-second budget, and the event stream's framing."""

from __future__ import annotations

import io
import socket
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from meshctl.sidecars import ACCESS_LOG_FORMAT
from tests.support import HTTP_VALUES, TCP_VALUES, metrics_agent, render_log_line, shipped_formats

agent = metrics_agent()

ROOT = Path(__file__).resolve().parents[2]

def line(code=200, method="GET", ms=1):
    return render_log_line(ACCESS_LOG_FORMAT, {**HTTP_VALUES, "ST": code, "r": f"{method} /x HTTP/1.1",
                                               "Tr": ms, "Ta": ms})


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


def test_the_agent_reads_every_field_of_the_access_lines_meshctls_proxy_writes():
    formats = shipped_formats()
    assert set(formats) == {("web", "proxy"), ("web", "mesh_in"), ("web", "mesh_out"), ("web", "mesh_out_tcp"),
                            ("api", "proxy"), ("api", "mesh_in"), ("api", "mesh_out"), ("api", "mesh_out_tcp"),
                            ("kv", "proxy"), ("kv", "mesh_in"), ("kv", "mesh_out")}
    http = [
        render_log_line(formats["api", "proxy"], HTTP_VALUES),                   # from the host, over HTTPS
        render_log_line(formats["api", "mesh_in"], {**HTTP_VALUES, "ft": "mesh_in~", "ST": 403, "tsc": "PR--",
                                                    "r": "DELETE /orders/7 HTTP/1.1", "ssl_c_s_dn(CN)": "intruder"}),
        render_log_line(formats["api", "mesh_in"], {**HTTP_VALUES, "ft": "mesh_in~", "ST": 200, "Ta": 1200,
                                                    "r": "GET /orders HTTP/1.1", "ssl_c_s_dn(CN)": "web"}),
        render_log_line(formats["web", "mesh_out"], {**HTTP_VALUES, "ft": "mesh_out", "b": "to_api", "s": "api",
                                                     "ST": 504, "Ta": 3, "r": "PUT /cart HTTP/1.1", "rc": 2,
                                                     "var(txn.breaker_until)": 4102444800000}),
    ]
    tcp = [
        render_log_line(formats["web", "mesh_out_tcp"], {**TCP_VALUES, "ft": "mesh_out_tcp", "b": "to_kv", "s": "kv"}),
        render_log_line(formats["kv", "mesh_in"], {**TCP_VALUES, "ft": "mesh_in~", "U": 7, "B": 9,
                                                   "ssl_c_s_dn(CN)": "api"}),
        render_log_line(formats["kv", "mesh_in"], {**TCP_VALUES, "ft": "mesh_in~", "U": 0, "B": 0, "ts": "PR",
                                                   "ssl_c_s_dn(CN)": "web"}),
        render_log_line(formats["kv", "proxy"], {**TCP_VALUES, "ts": "SD", "U": 5, "B": 0}),
    ]
    stats = agent.AccessStats()
    assert stats.record_lines(http + tcp) == []
    requests, buckets, sum_ms, count, events, malformed = stats.snapshot()
    assert requests == {("inbound", "", "", "201", "POST"): 1, ("inbound", "intruder", "", "403", "DELETE"): 1,
                        ("inbound", "web", "", "200", "GET"): 1, ("outbound", "", "api", "504", "PUT"): 1}
    assert (sum_ms, count, events, malformed) == (37 + 37 + 1200 + 3, 4, 8, 0)      # %Ta, the total time
    assert buckets[agent.BUCKETS_MS.index(50)] == 2 and buckets[agent.BUCKETS_MS.index(2500)] == 1
    assert buckets[agent.BUCKETS_MS.index(5)] == 1
    assert stats.denied_snapshot() == {("inbound", "intruder", ""): 1}
    assert stats.outbound_snapshot() == ({"api": 2}, {"api": 4102444800000})     # %rc; the breaker's end
    connections, counted = stats.tcp_snapshot()
    assert connections == {("outbound", "", "kv", "ok"): 1, ("inbound", "api", "", "ok"): 1,
                           ("inbound", "web", "", "denied"): 1, ("inbound", "", "", "error"): 1}
    assert counted == {("outbound", "", "kv"): (120, 4096), ("inbound", "api", ""): (7, 9),    # %U in, %B out
                       ("inbound", "web", ""): (0, 0), ("inbound", "", ""): (5, 0)}


def test_injected_faults_are_counted_by_kind_and_source_and_not_as_requests():
    # The line faults.lua logs for each fault it injects, as the shipped template builds it.
    lua = (ROOT / "templates" / "haproxy-faults.lua").read_text()
    assert 'core.log(core.info, "meshctl-fault " .. kind .. " " .. source)' in lua
    stats = agent.AccessStats()
    other = stats.record_lines(["meshctl-fault abort web", "meshctl-fault abort web", "meshctl-fault delay host",
                                line(503)])
    assert other == [] and stats.snapshot()[4:] == (1, 0)      # one request event, nothing malformed
    registry = CollectorRegistry(auto_describe=False)
    registry.register(agent.MeshCollector("api", stats, {"url": None, "up": False}))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    samples = {(s.labels["kind"], s.labels["source"]): s.value for s in families["meshctl_faults_injected"].samples
               if s.name == "meshctl_faults_injected_total"}
    assert samples == {("abort", "web"): 2.0, ("delay", "host"): 1.0}
