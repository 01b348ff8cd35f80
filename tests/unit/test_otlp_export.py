"""The metrics agent's OTLP/HTTP exporter (sidecars/metrics/otlp_out.py) without a container: its
OTLP/JSON encoding, sampling by trace id, the bounded queue and its counts, and real POSTs to a
receiver over TCP and over the forwarder's Unix socket (otlp_forward.py relaying to TCP). What it
writes is read back with opentelemetry-proto's own ExportTraceServiceRequest."""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from meshctl.sidecars import data_dir


def sidecar_module(name):
    spec = importlib.util.spec_from_file_location(f"meshctl_{name}", data_dir("sidecars") / "metrics" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


otlp_out = sidecar_module("otlp_out")
otlp_forward = sidecar_module("otlp_forward")


def span(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7", parent="", service="api",
         kind="server", status=200):
    return {"trace_id": trace_id, "span_id": span_id, "parent_span_id": parent, "name": "GET /hello", "kind": kind,
            "start_us": 1_700_000_000_000_001, "end_us": 1_700_000_000_003_101, "service": service,
            "status_code": "error" if status >= 500 else "unset",
            "attributes": {"http.request.method": "GET", "url.path": "/hello", "http.response.status_code": status,
                           "meshctl.peer.spiffe_id": "spiffe://meshctl.local/shop/web"}}


def attributes(items):
    return {item.key: getattr(item.value, item.value.WhichOneof("value")) for item in items}


def decoded(body):
    return ExportTraceServiceRequest.FromString(body)


def test_encoding_is_an_export_request_with_one_resource_per_service():
    request = decoded(otlp_out.encode([span(), span(span_id="1" * 16, parent="00f067aa0ba902b7", service="web",
                                                    kind="client", status=503)], "api"))
    resources = {attributes(r.resource.attributes)["service.name"]: r for r in request.resource_spans}
    assert set(resources) == {"api", "web"}
    assert resources["api"].scope_spans[0].scope.name == "meshctl"
    server = resources["api"].scope_spans[0].spans[0]
    assert server.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736" and server.span_id.hex() == "00f067aa0ba902b7"
    assert server.parent_span_id == b"" and server.kind == server.SPAN_KIND_SERVER and server.status.code == 0
    assert server.name == "GET /hello"
    assert (server.start_time_unix_nano, server.end_time_unix_nano) == (1700000000000001000, 1700000000003101000)
    assert attributes(server.attributes) == {"http.request.method": "GET", "url.path": "/hello",
                                             "http.response.status_code": 200,
                                             "meshctl.peer.spiffe_id": "spiffe://meshctl.local/shop/web"}
    assert server.attributes[2].value.WhichOneof("value") == "int_value"
    client = resources["web"].scope_spans[0].spans[0]
    assert client.kind == client.SPAN_KIND_CLIENT and client.parent_span_id.hex() == "00f067aa0ba902b7"
    assert client.status.code == client.status.STATUS_CODE_ERROR


def test_every_kind_of_attribute_value_survives():
    values = {"b": True, "n": -3, "big": 2**40, "f": 0.25, "s": "ünïcode", "none": None}
    one = span()
    one["attributes"] = values
    got = decoded(otlp_out.encode([one], "api")).resource_spans[0].scope_spans[0].spans[0]
    assert attributes(got.attributes) == {"b": True, "n": -3, "big": 2**40, "f": 0.25, "s": "ünïcode"}
    assert MessageToDict(got)["kind"] == "SPAN_KIND_SERVER"


def test_sampling_keeps_or_drops_a_whole_trace_and_about_the_share():
    ids = [os.urandom(16).hex() for _ in range(4000)]
    kept = [trace for trace in ids if otlp_out.sampled(trace, 0.25)]
    assert 800 < len(kept) < 1200
    assert all(otlp_out.sampled(trace, 0.25) for trace in kept)          # the same answer every time
    assert not any(otlp_out.sampled(trace, 0.0) for trace in ids)
    assert all(otlp_out.sampled(trace, 1.0) for trace in ids)
    exporter = otlp_out.Exporter("http://c:4318", "api", sample=0.25, send=lambda body: 200)
    exporter.offer([span(trace_id=trace, span_id=f"{n:016x}") for n, trace in enumerate(ids[:400])])
    exporter.offer([span(trace_id=trace, span_id=f"{n:016x}") for n, trace in enumerate(ids[:400])])
    kept_traces = {s["trace_id"] for s in exporter.queue}
    assert kept_traces == {trace for trace in ids[:400] if otlp_out.sampled(trace, 0.25)}
    assert len(exporter.queue) == 2 * len(kept_traces) and exporter.unsampled == 800 - len(exporter.queue)


def counts(exporter):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter)
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out[(sample.name, sample.labels.get("reason", ""))] = sample.value
    return out


def test_a_collector_that_is_down_fills_a_bounded_queue_and_every_span_is_counted():
    def refused(body):
        raise ConnectionRefusedError(111, "Connection refused")
    exporter = otlp_out.Exporter("http://localhost:4318", "api", send=refused, queue_limit=100, batch_size=40)
    for n in range(25):
        exporter.offer([span(span_id=f"{n:012x}{k:04x}") for k in range(10)])     # 250 spans
    assert len(exporter.queue) == 100
    assert exporter.flush_once() is False
    assert exporter.flush_once() is False
    assert counts(exporter) == {("meshctl_otlp_spans_exported_total", ""): 0.0,
                                ("meshctl_otlp_spans_dropped_total", "export_failed"): 80.0,
                                ("meshctl_otlp_spans_dropped_total", "queue_full"): 150.0,
                                ("meshctl_otlp_spans_unsampled_total", ""): 0.0,
                                ("meshctl_otlp_queue_spans", ""): 20.0}


def test_a_collector_that_answers_gets_batches_and_they_are_counted():
    bodies = []
    exporter = otlp_out.Exporter("http://c:4318", "api", send=lambda body: bodies.append(body) or 200, batch_size=3)
    exporter.offer([span(span_id=f"{n:016x}") for n in range(7)])
    while exporter.queue:
        assert exporter.flush_once()
    assert [len(decoded(b).resource_spans[0].scope_spans[0].spans) for b in bodies] == [3, 3, 1]
    assert counts(exporter)[("meshctl_otlp_spans_exported_total", "")] == 7.0
    exporter.send = lambda body: 503
    exporter.offer([span()])
    assert exporter.flush_once() is False and exporter.dropped["export_failed"] == 1


class Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Host"], self.headers["Content-Type"], decoded(body)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.received = []
    return server


def test_post_reaches_a_real_receiver_at_v1_traces():
    server = receiver()
    port = server.server_address[1]
    try:
        assert otlp_out.post(f"http://127.0.0.1:{port}/base/", otlp_out.encode([span()], "api")) == 200
    finally:
        server.shutdown()
    path, _host, content_type, body = Receiver.received[0]
    assert path == "/base/v1/traces" and content_type == "application/x-protobuf"
    assert body.resource_spans[0].scope_spans[0].spans[0].span_id.hex() == "00f067aa0ba902b7"


def test_through_the_forwarders_unix_socket_the_url_is_kept(tmp_path):
    server = receiver()
    port = server.server_address[1]
    listening = otlp_forward.listen(str(tmp_path / "otlp.sock"))
    assert oct(os.stat(tmp_path / "otlp.sock").st_mode & 0o777) == "0o660"

    def accept():
        client, _ = listening.accept()
        otlp_forward.relay(client, ("127.0.0.1", port))
    threading.Thread(target=accept, daemon=True).start()
    try:
        status = otlp_out.post(f"http://localhost:{port}", otlp_out.encode([span()], "api"),
                               socket_path=str(tmp_path / "otlp.sock"))
    finally:
        server.shutdown()
        listening.close()
    assert status == 200
    path, host, _type, body = Receiver.received[0]
    assert (path, host) == ("/v1/traces", f"localhost:{port}")
    assert attributes(body.resource_spans[0].resource.attributes)["service.name"] == "api"


def test_the_forwarder_closes_the_client_when_the_collector_is_down(tmp_path):
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    left, right = socket.socketpair()
    otlp_forward.relay(right, ("127.0.0.1", port))
    assert left.recv(10) == b""


def test_start_exporter_only_with_an_endpoint():
    sinks, registry = [], CollectorRegistry(auto_describe=False)
    assert otlp_out.start_exporter("api", sinks, registry, environ={}) is None and sinks == []
    exporter = otlp_out.start_exporter("api", sinks, registry, environ={
        "MESHCTL_OTLP_ENDPOINT": "http://127.0.0.1:9", "MESHCTL_OTLP_SAMPLE": "0.5",
        "MESHCTL_OTLP_SOCKET": "/run/meshctl-otlp/otlp.sock", "MESHCTL_OTLP_QUEUE": "10"})
    assert sinks == [exporter.offer] and exporter.sample == 0.5 and exporter.queue_limit == 10
