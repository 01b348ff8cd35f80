"""OTLP export on the real engine, to a real OTLP/HTTP receiver on this machine's 127.0.0.1 that
decodes opentelemetry-proto's ExportTraceServiceRequest, named in mesh.yaml exactly as a user
writes it (`otlp: http://localhost:PORT`): the pods reach it through meshctl's loopback forwarder,
under `up -d`. A collector that is down costs no request; its drops are counted; once it is back
it gets the spans again."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from meshctl.runtime.probes import http_request, tls_context
from tests.support import ca_path, counter, eventually, port_of, run_meshctl, unique_project, urls

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

APP = Path(__file__).resolve().parent / "trace_app"
MESH_YAML = """\
name: {name}
mesh:
  tracing:
    otlp: http://localhost:{port}
services:
  a:
    build: app
    port: 8080
    health: /healthz
    stop_grace_period: 1s
    env: {{NEXT: "http://b:8080/chain"}}
    ports: {{https: 0, http: 0, metrics: 0}}
  b:
    build: app
    port: 8080
    health: /healthz
    stop_grace_period: 1s
    ports: {{https: 0, http: 0, metrics: 0}}
"""


class Collector:
    """An OTLP/HTTP receiver on 127.0.0.1: every span it was sent, with its resource's attributes."""

    def __init__(self, port: int = 0):
        self.spans: list[tuple[dict, object]] = []      # (resource attributes, Span)
        self.requests: list[tuple[str, str]] = []        # (path, content type)
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.requests.append((self.path, self.headers["Content-Type"]))
                for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                    attributes = values(resource.resource.attributes)
                    collector.spans += [(attributes, span) for scope in resource.scope_spans for span in scope.spans]
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_trace(self, trace_id: str) -> list[tuple[dict, object]]:
        return [(resource, span) for resource, span in list(self.spans) if span.trace_id.hex() == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def values(attributes) -> dict:
    return {item.key: getattr(item.value, item.value.WhichOneof("value")) for item in attributes}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(tmp_path_factory, collector_port: int) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("otlp")
    shutil.copytree(APP, folder / "app")
    name = unique_project("otlp")
    (folder / "mesh.yaml").write_text(MESH_YAML.format(name=name, port=collector_port))
    run_meshctl("up", "-d", str(folder), check=True, timeout=600)
    return name, folder


def call_chain(port: int) -> str:
    """One call a → b; the trace id a's proxy started."""
    answer = http_request(port, "/chain", tls=tls_context(ca_path()), server_hostname="localhost", timeout=30)
    assert answer.status == 200, answer.body
    return json.loads(answer.body)["traceparent"].split("-")[1]


def metrics_of(project: str, service: str) -> str:
    url = urls(project)[service]["metrics"]
    return http_request(port_of(url), "/metrics", timeout=10).body.decode()


def test_spans_reach_a_collector_on_the_hosts_loopback_with_resource_and_http_attributes(tmp_path_factory,
                                                                                         sidecar_images):
    collector = Collector()
    project, folder = start(tmp_path_factory, collector.port)
    try:
        trace_id = call_chain(port_of(urls(project)["a"]["https"]))
        # a: server (published port) and client (→ b); b: server (mesh).
        spans = eventually(lambda: len(got := collector.of_trace(trace_id)) >= 3 and got, 60, 0.5,
                           what=f"the 3 proxy spans of {trace_id} at the collector")
        assert {path for path, _ in collector.requests} == {"/v1/traces"}
        assert {kind for _, kind in collector.requests} == {"application/x-protobuf"}
        by_hop = {(resource["service.name"], span.kind): span for resource, span in spans}
        server_a, client_a = by_hop["a", 2], by_hop["a", 3]
        server_b = by_hop["b", 2]
        assert server_a.parent_span_id == b"" and client_a.parent_span_id == server_a.span_id
        assert server_b.parent_span_id == client_a.span_id
        attributes = values(server_b.attributes)
        assert (attributes["http.request.method"], attributes["url.path"], attributes["http.response.status_code"]) \
            == ("GET", "/chain", 200)
        assert attributes["meshctl.peer.spiffe_id"].endswith(f"/ns/{project}/sa/a")
        assert values(client_a.attributes)["meshctl.peer.spiffe_id"].endswith(f"/ns/{project}/sa/b")
        assert server_a.end_time_unix_nano > server_a.start_time_unix_nano > 0
        assert counter(metrics_of(project, "b"), "meshctl_otlp_spans_exported_total", service="b") >= 1
        # The forwarders: one a pod, in the host's network namespace, with no capability and no port.
        forwarders = forwarder_configs(project)
        assert len(forwarders) == 2
        for host_config in forwarders:
            assert host_config["NetworkMode"] == "host" and host_config["CapDrop"] == ["ALL"]
            assert not host_config["CapAdd"] and not host_config["PortBindings"] and not host_config["Privileged"]
            assert host_config["PidMode"].startswith("container:")
    finally:
        run_meshctl("down", str(folder), check=True)
        collector.close()
    assert forwarder_configs(project) == []


def forwarder_configs(project: str) -> list[dict]:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=meshctl.project={project}",
                          "--filter", "label=meshctl.role=otlp-forward"], capture_output=True, text=True,
                         check=True).stdout.split()
    if not ids:
        return []
    inspected = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
    return [container["HostConfig"] for container in json.loads(inspected)]


def test_a_collector_that_is_down_costs_no_request_and_its_drops_are_counted(tmp_path_factory, sidecar_images):
    port = free_port()
    project, folder = start(tmp_path_factory, port)
    collector = None
    try:
        https = port_of(urls(project)["a"]["https"])
        calls = 40
        for _ in range(calls):
            call_chain(https)          # each answers 200 (asserted inside)
        # Every call left a server span at b that was dropped (the collector refused) or waits.
        def lost():
            text = metrics_of(project, "b")
            return (counter(text, "meshctl_otlp_spans_dropped_total", service="b", reason="export_failed")
                    + counter(text, "meshctl_otlp_spans_dropped_total", service="b", reason="queue_full")
                    + counter(text, "meshctl_otlp_queue_spans", service="b"))
        eventually(lambda: lost() >= calls, 60, 0.5, what=f"b's {calls} spans counted as dropped or queued")
        assert counter(metrics_of(project, "b"), "meshctl_otlp_spans_exported_total", service="b") == 0
        # The collector comes back: new traces reach it (after the exporter's back-off).
        collector = Collector(port)
        trace_id = call_chain(https)
        eventually(lambda: collector.of_trace(trace_id), 90, 0.5, what="a new trace after the collector came back")
    finally:
        run_meshctl("down", str(folder), check=True)
        if collector is not None:
            collector.close()
