"""TCP services in the mesh, without a daemon: mesh.yaml's `protocol`, `health` and `sidecars:
false` and their errors (file:line, exit 2), the TCP proxy and the callers' outbound TCP listener as
rendered, capture by port, readiness that never speaks HTTP to a TCP app, and the agent's TCP series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from meshctl.runtime.urls import urls_for
from meshctl.config import parse_project
from meshctl.errors import ConfigError
from meshctl.planning.plan import Observed
from meshctl.planning.steps import WaitReady
from meshctl.sidecars import capture_rules, kind_of, render_capture, render_proxy, roles_of, serving_readiness
from meshctl.testing.targets import targets_for
from tests.support import metrics_agent
from tests.unit.fake_engine import plan_for

agent = metrics_agent()


def shop(tmp_path: Path, text: str):
    source = tmp_path / "mesh.yaml"
    source.write_text(text)
    return parse_project(text, source=source, root=tmp_path)


SHOP = ("name: shop\nservices:\n"
        "  web: {image: web:1, port: 8080}\n"
        "  api: {image: api:1, port: 8080, allow: [web]}\n"
        "  kv: {image: kv:1, port: 7000, protocol: tcp, allow: [api]}\n"
        "  db: {image: postgres:16, port: 5432, sidecars: false}\n")


@pytest.mark.parametrize("text, where, words", [
    ("services:\n  a: {image: x, port: 7000}\n  b:\n    image: x\n    port: 7001\n    protocol: udp\n",
     "mesh.yaml:6: services.b.protocol", "unknown protocol 'udp'"),
    ("services:\n  a: {image: x, port: 8080}\n  b:\n    image: x\n    port: 8080\n    allow: [a, c]\n",
     "mesh.yaml:6: services.b.allow", "no service named 'c'"),
    ("mesh:\n  mtls: sometimes\nservices:\n  a: {image: x, port: 8080}\n", "mesh.yaml:2: mesh.mtls",
     "unknown mode 'sometimes'"),
    ("services:\n  a:\n    image: x\n    port: 7000\n    protocol: tcp\n    health: /healthz\n",
     "mesh.yaml:6: services.a.health", "a TCP service is checked by a TCP connect or a command"),
    ("services:\n  a:\n    image: x\n    port: 7000\n    protocol: tcp\n    checks: [{request: /}]\n",
     "mesh.yaml:6: services.a.checks", "HTTP checks need an HTTP service"),
    ("services:\n  a:\n    image: x\n    port: 7000\n    protocol: tcp\n    metrics_path: /metrics\n",
     "mesh.yaml:6: services.a.metrics_path", "over HTTP"),
    ("services:\n  web: {image: x, port: 8080}\n  kv:\n    image: x\n    port: 8080\n    protocol: tcp\n",
     "mesh.yaml:5: services.kv.port", "tells its connections apart by port alone"),
    ("services:\n  web: {image: x, port: 9000}\n  api: {image: x, port: 8080}\n"
     "  db:\n    image: postgres:16\n    port: 9000\n    sidecars: false\n",
     "mesh.yaml:6: services.db.port", "outside the mesh"),
])
def test_bad_tcp_and_mesh_settings_name_file_line_and_field(tmp_path, text, where, words):
    with pytest.raises(ConfigError) as info:
        shop(tmp_path, text)
    assert where in info.value.message and words in info.value.message, info.value.message
    assert info.value.hint and info.value.exit_code == 2


def test_protocol_is_inferred_as_inject_does_and_an_explicit_one_wins(tmp_path):
    project = shop(tmp_path, "services:\n  web: {image: web:1, port: 8080}\n  cache: {image: redis:7, port: 6379}\n"
                             "  pg: {image: example/app:1, port: 5432}\n  odd: {image: x, port: 7000}\n"
                             "  told: {image: redis:7, port: 6380, protocol: http}\n")
    assert {s.name: s.protocol for s in project.services} == {
        "web": "http", "cache": "tcp", "pg": "tcp", "odd": "http", "told": "http"}


def test_wrapping_a_stock_database_image_infers_tcp(tmp_path):
    from meshctl.config import load_project
    [redis] = load_project(tmp_path, image="redis:7", port=6379).services
    [web] = load_project(tmp_path, image="nginx:1.25", port=80).services
    assert (redis.protocol, web.protocol) == ("tcp", "http")
    assert serving_readiness(redis).path is None


def test_a_tcp_service_gets_a_tcp_proxy_with_mtls_on_its_mesh_listener(tmp_path):
    project = shop(tmp_path, SHOP)
    kv = project.service("kv")
    assert kv.mesh is not None and kv.mesh.peers == (("web", 8080), ("api", 8080)) and kv.mesh.tcp_peers == ()
    config = render_proxy("shop", kv)
    assert "mode http" not in config.split("frontend mesh_out")[0].split("frontend stats")[0]
    mesh_in = config.split("frontend mesh_in")[1].split("\nfrontend ")[0]
    assert "mode tcp" in mesh_in and "verify required" in mesh_in and "alpn" not in mesh_in
    assert "tcp-request content reject unless { ssl_c_s_dn(OU) -m str shop }" in mesh_in
    assert "tcp-request content reject unless { ssl_c_s_dn(CN) -m str api }" in mesh_in
    assert "tcp-request connection reject if { nbsrv(app) eq 0 }" in config     # readiness through the chain
    assert "server app 127.0.0.1:7000 check" in config and "bind :15443 ssl crt" in config


def test_callers_route_tcp_by_original_port_to_the_callees_mesh_listener(tmp_path):
    project = shop(tmp_path, SHOP)
    api = project.service("api")
    assert api.mesh.tcp_peers == (("kv", 7000),) and "db" not in dict(api.mesh.peers)
    config = render_proxy("shop", api)
    out = config.split("frontend mesh_out_tcp")[1]
    assert "bind 127.0.0.1:15002" in out and "use_backend to_kv if { dst_port 7000 }" in out
    backend = out.split("\nbackend to_kv")[1].split("\nbackend ")[0]
    assert "mode tcp" in backend and "server kv kv:15008 ssl crt" in backend and "verify required" in backend
    assert "verifyhost kv" in backend and "alpn" not in backend
    assert "mode http" in config.split("frontend mesh_in")[1].split("\nfrontend ")[0]   # api itself stays HTTP
    script = render_capture("shop", api)
    assert "--dports 8080 -j REDIRECT --to-ports 15001" in script
    assert "--dports 7000 -j REDIRECT --to-ports 15002" in script
    assert "5432" not in script                        # db is outside the mesh: reached directly
    assert any("ports 7000 → its proxy's outbound listener 127.0.0.1:15002" in r for r in capture_rules(api))


def test_a_service_without_sidecars_stands_outside_the_mesh(tmp_path):
    project = shop(tmp_path, SHOP)
    db = project.service("db")
    assert roles_of(db) == () and db.mesh is None and db.outside_mesh and db.protocol == "tcp"
    plan = plan_for(project, Observed(), tmp_path)
    db_steps = dict(plan.pods)["db"]
    started = [spec for s in db_steps if type(s).__name__ == "StartContainers" for spec in s.specs]
    assert [spec.role for spec in started] == ["pod", "app"]
    assert started[0].labels["meshctl.mesh"] == "outside"
    assert not [s for s in db_steps if type(s).__name__ == "RunOnce"], "no capture for it"
    [wait] = [s for s in db_steps if isinstance(s, WaitReady)]
    assert wait.readiness.exec == ("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/5432") and wait.container == started[0].name


def test_a_tcp_service_is_never_sent_http_to_be_ready(tmp_path):
    project = shop(tmp_path, SHOP + "  worker:\n    image: w:1\n    port: 7100\n    protocol: tcp\n"
                                    "    health: {exec: [w, --ping]}\n")
    kv = project.service("kv")
    ready = serving_readiness(kv)
    assert ready.port == "https" and ready.path is None and ready.tls       # a verified handshake, no request
    assert "TCP connection through TLS → proxy → app" in ready.describe()
    proxy = kind_of(kv, "proxy").ready(kv)
    assert proxy.exec == ("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/15080") and proxy.exec_in == "pod"
    worker = serving_readiness(project.service("worker"))
    assert worker.exec == ("w", "--ping") and worker.exec_in == "self"
    plan = plan_for(project, Observed(), tmp_path)
    waits = [s for s in dict(plan.pods)["kv"] + dict(plan.pods)["worker"] if isinstance(s, WaitReady)]
    assert waits and all(w.readiness.path is None for w in waits if w.role in ("app", "proxy"))
    [worker_wait] = [w for w in waits if w.service == "worker" and w.role == "app"]
    assert worker_wait.container.endswith("worker-app")
    # The handshake through the proxy is waited for after the proxy's own wait (test_apply says why).
    assert [(w.service, w.role) for w in waits if w.after_those_before] == [("kv", "app")]


def test_tcp_urls_and_smoke_targets_say_tcp():
    assert urls_for({"https": 1, "http": 2, "metrics": 3}, "tcp") == {
        "https": "tls://localhost:1", "http": "tcp://localhost:2", "metrics": "http://localhost:3/metrics"}
    assert urls_for({"https": 1})["https"] == "https://localhost:1/"


def test_smoke_targets_of_a_tcp_service_count_its_connections(tmp_path):
    from meshctl.testing.checks import ServiceChecks
    from meshctl.testing.evaluate import TCP_CONNECTIONS_METRIC
    [_, _, kv, _] = targets_for(shop(tmp_path, SHOP))
    assert kv.protocol == "tcp" and kv.counts_requests
    assert ServiceChecks(kv, None, None, lambda e: None)._counted_as()[0] == TCP_CONNECTIONS_METRIC


TCP_IN = "172.18.0.4:40100 [02/Dec/2026:19:00:00.100] mesh_in~ app/app 0/0/12 tcp {u} {b} {ts} {cn}"
TCP_OUT = "127.0.0.1:40200 [02/Dec/2026:19:00:00.100] mesh_out_tcp to_kv/kv 0/1/15 tcp 12 4 --"
TCP_HOST = "172.18.0.1:40300 [02/Dec/2026:19:00:00.100] proxy~ app/app 0/0/3 tcp 0 0 --"


def test_the_agent_counts_tcp_connections_and_bytes_on_both_sides_and_promtool_accepts_them(tmp_path):
    stats = agent.AccessStats()
    lines = [TCP_IN.format(u=12, b=4, ts="--", cn="api"), TCP_IN.format(u=12, b=3, ts="--", cn="api"),
             TCP_IN.format(u=0, b=0, ts="PR--", cn="intruder"), TCP_OUT, TCP_HOST,
             "[WARNING]  (8) : Server app/app is DOWN"]
    assert stats.record_lines(lines) == ["[WARNING]  (8) : Server app/app is DOWN"]
    connections, counted = stats.tcp_snapshot()
    assert connections == {("inbound", "api", "", "ok"): 2, ("inbound", "intruder", "", "denied"): 1,
                           ("outbound", "", "kv", "ok"): 1, ("inbound", "", "", "ok"): 1}
    assert counted[("inbound", "api", "")] == (24, 7) and counted[("outbound", "", "kv")] == (12, 4)
    assert stats.snapshot()[0] == {}                          # no HTTP request among them
    registry = CollectorRegistry(auto_describe=False)
    registry.register(agent.MeshCollector("kv", stats, {"url": None, "up": False}))
    text = generate_latest(registry).decode()
    assert 'meshctl_tcp_connections_total{destination="",direction="inbound",outcome="denied",service="kv",' \
           'source="intruder"} 1.0' in text
    assert 'meshctl_tcp_received_bytes_total{destination="",direction="inbound",service="kv",source="api"} 24.0' in text
    assert 'meshctl_tcp_sent_bytes_total{destination="kv",direction="outbound",service="kv",source=""} 4.0' in text
    promtool = shutil.which("promtool")
    if promtool:       # installed by .ci/setup; the real-engine tests lint live expositions too
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_meshctl_tests_tcp_endpoints_with_a_connection_and_sends_no_http():
    import socket
    import threading

    from meshctl.events import FAILED, PASSED
    from meshctl.testing.checks import ServiceChecks
    from meshctl.testing.targets import Target

    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            received.append(conn.recv(100))
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    session = ServiceChecks(Target("kv", {"http": f"tcp://localhost:{port}"}, protocol="tcp"), None, None, lambda e: None)
    outcome, message, _ = session._http()
    thread.join(5)
    server.close()
    assert outcome == PASSED and "a TCP connection to tcp://localhost:" in message
    assert received == [b""], "nothing but a connection and its close"
    closed = ServiceChecks(Target("kv", {"http": f"tcp://localhost:{port}"}, protocol="tcp"), None, None, lambda e: None)
    assert closed._http()[0] == FAILED
