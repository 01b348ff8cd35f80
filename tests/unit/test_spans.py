"""The metrics sidecar's spans without a container: the hop's span read from an access line written
by the shipped format, the bounded store and its sinks, and the app's OTLP spans as the real
OpenTelemetry SDK encodes them (protobuf) and as OTLP/JSON."""

from __future__ import annotations

import json

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from meshctl.sidecars import ACCESS_LOG_FORMAT
from tests.support import metrics_agent
from tests.support import HTTP_VALUES, render_log_line

metrics_agent()          # puts sidecars/metrics on sys.path, as the image does
import otlp_in  # noqa: E402
import spans  # noqa: E402

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def access_line(**values: object) -> str:
    return render_log_line(ACCESS_LOG_FORMAT, {**HTTP_VALUES, **values})


def test_a_mesh_callers_request_is_a_server_span_with_its_identity():
    line = access_line(ft="mesh_in~", r="GET /hello?x=1 HTTP/1.1", ST=200) + " web"
    span = spans.access_span(line, "api", "spiffe://meshctl.local/ns/shop/sa/")
    assert span == {"trace_id": TRACE, "span_id": "a3ce929d0e0e4736", "parent_span_id": "00f067aa0ba902b7",
                    "name": "GET /hello", "kind": "server", "start_us": 1796400000000100,
                    "end_us": 1796400000003600, "service": "api", "status_code": "unset", "source": "proxy",
                    "attributes": {"http.request.method": "GET", "url.path": "/hello",
                                   "http.response.status_code": 200, "meshctl.proxy.frontend": "mesh_in",
                                   "meshctl.peer.service": "web",
                                   "meshctl.peer.spiffe_id": "spiffe://meshctl.local/ns/shop/sa/web"}}


def test_an_outbound_call_is_a_client_span_naming_the_callee_and_a_5xx_fails():
    line = access_line(ft="mesh_out", b="to_api", s="api", ST=503, **{"var(txn.trace_parent)": "-"}) + " +0 -"
    span = spans.access_span(line, "web", "spiffe://meshctl.local/ns/shop/sa/")
    assert span["kind"] == "client" and span["parent_span_id"] == "" and span["status_code"] == "error"
    assert span["attributes"]["server.address"] == "api"
    assert span["attributes"]["meshctl.peer.spiffe_id"] == "spiffe://meshctl.local/ns/shop/sa/api"


def test_a_hop_no_answer_left_ends_at_its_start_plus_its_active_time():
    # A reset: http-after-response never ran, so the end is "-"; %Ta (37 ms) gives the end.
    span = spans.access_span(access_line(**{"var(txn.trace_end)": "-"}), "api")
    assert span["end_us"] - span["start_us"] == 37_000


def test_lines_without_a_span_are_not_spans():
    untraced = access_line(**{"var(txn.trace_id)": "-", "var(txn.span_id)": "-"})
    tcp = '172.18.0.9:1 [27/Nov/2026:16:11:21.486] proxy~ app/app 1/2/3 tcp 10 20 --'
    assert [spans.access_span(x, "api") for x in (untraced, tcp, "[WARNING] (14) : Server app/app is DOWN")] == [None] * 3


def test_the_agent_keeps_the_spans_of_the_lines_it_counts():
    agent = metrics_agent()
    store = spans.SpanStore()
    stats, console = agent.AccessStats(), agent.ConsoleLog(0)
    agent.BATCH_HOOKS.append(lambda lines: spans.record_access_lines(store, lines, "api"))
    try:
        agent._handle_batch(stats, console, [access_line(), access_line(ST=404)])
    finally:
        agent.BATCH_HOOKS.pop()
    assert [s["attributes"]["http.response.status_code"] for s in store.trace(TRACE)] == [201, 404]
    assert stats.snapshot()[4] == 2            # and counted them as before


def span(trace: str, number: int, parent: str = "") -> dict:
    return spans.new_span(trace, f"{number:016x}", parent, "GET /", "server", number, number + 10, "api")


def test_the_store_keeps_the_last_spans_and_forgets_emptied_traces():
    store = spans.SpanStore(limit=3)
    store.add([span("a" * 32, 1), span("b" * 32, 2), span("a" * 32, 3, f"{1:016x}")])
    store.add([span("c" * 32, 4)])
    assert [s["span_id"] for s in store.trace("a" * 32)] == [f"{3:016x}"]
    store.add([span("c" * 32, 5), span("c" * 32, 6)])
    assert store.trace("a" * 32) == [] and "a" * 32 not in store.by_trace
    assert store.stats() == {"spans": 3, "traces": 1, "limit": 3, "received": 6, "evicted": 3, "sink_errors": 0}


def test_sinks_get_every_batch_and_a_failing_one_costs_nothing():
    store, seen = spans.SpanStore(), []

    def broken(batch: list) -> None:
        raise RuntimeError("collector down")
    store.sinks.extend([broken, seen.append])
    store.add([span("a" * 32, 1)])
    assert len(seen) == 1 and seen[0][0]["span_id"] == f"{1:016x}"
    assert store.stats()["sink_errors"] == 1 and store.stats()["spans"] == 1


def sdk_spans() -> list:
    """Two spans made by the real OpenTelemetry SDK: a server span under a remote parent, and a child."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "kv"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
    remote = SpanContext(int(TRACE, 16), int("a3ce929d0e0e4736", 16), is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span("handle", context=set_span_in_context(NonRecordingSpan(remote)),
                                      kind=SpanKind.SERVER) as outer:
        outer.set_attribute("kv.keys", 3)
        with tracer.start_as_current_span("lookup") as inner:
            inner.set_attribute("kv.hit", True)
            inner.set_status(Status(StatusCode.ERROR))
    return exporter.get_finished_spans()


def test_the_sdks_protobuf_decodes_to_spans_under_the_proxys_span():
    body = encode_spans(sdk_spans()).SerializeToString()
    inner, outer = otlp_in.decode(body, "application/x-protobuf")
    assert (outer["trace_id"], outer["parent_span_id"], outer["kind"], outer["service"]) == (
        TRACE, "a3ce929d0e0e4736", "server", "kv")
    assert outer["attributes"] == {"kv.keys": 3} and outer["source"] == "app"
    assert inner["parent_span_id"] == outer["span_id"] and inner["kind"] == "internal"
    assert inner["status_code"] == "error" and inner["attributes"] == {"kv.hit": True}
    assert inner["end_us"] >= inner["start_us"] and outer["start_us"] <= inner["start_us"]


def test_otlp_json_decodes_the_same():
    from google.protobuf.json_format import MessageToJson
    message = encode_spans(sdk_spans())
    body = MessageToJson(message).encode()
    from_json = otlp_in.decode(body, "application/json")
    from_proto = otlp_in.decode(message.SerializeToString(), "application/x-protobuf")
    # MessageToJson writes ids as base64 (protobuf's bytes); OTLP/JSON's spec writes hex: both are read.
    assert [(s["trace_id"], s["span_id"], s["parent_span_id"], s["name"]) for s in from_json] == \
        [(s["trace_id"], s["span_id"], s["parent_span_id"], s["name"]) for s in from_proto]
    assert json.loads(body)["resourceSpans"]


def test_garbage_is_refused_not_kept():
    for body in (b"\x0a\xff\xff", b"\x0f"):
        try:
            otlp_in.decode(body, "application/x-protobuf")
        except otlp_in.DecodeError:
            continue
        raise AssertionError(f"{body!r} decoded")


def test_the_metrics_port_serves_the_spans_only_to_meshctls_key():
    import threading
    import urllib.error
    import urllib.request
    from http.server import ThreadingHTTPServer

    from prometheus_client import CollectorRegistry

    agent = metrics_agent()
    store = spans.SpanStore()
    store.add([spans.access_span(access_line(), "api")])

    def get(server, path, key=None):
        request = urllib.request.Request(f"http://127.0.0.1:{server.server_address[1]}{path}",
                                         headers={"Authorization": f"Bearer {key}"} if key else {})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read()

    servers = []
    for key in ("k" * 40, ""):
        server = ThreadingHTTPServer(("127.0.0.1", 0), agent.make_handler(CollectorRegistry(), {"url": None},
                                                                          None, "api", store, key))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    keyed, keyless = servers
    try:
        assert get(keyed, "/meshctl/spans")[0] == 403
        assert get(keyed, "/meshctl/spans", "k" * 39 + "x")[0] == 403
        status, body = get(keyed, f"/meshctl/spans?trace={TRACE}", "k" * 40)
        assert status == 200 and [s["span_id"] for s in json.loads(body)["spans"]] == ["a3ce929d0e0e4736"]
        assert json.loads(get(keyed, "/meshctl/spans?trace=" + "0" * 32, "k" * 40)[1])["spans"] == []
        # A sidecar started without a key (by an older meshctl, or an export) serves no spans there.
        assert get(keyless, "/meshctl/spans", "k" * 40)[0] == 404
        assert get(keyed, "/metrics")[0] == 200            # the metrics stay open, as before
    finally:
        for server in servers:
            server.shutdown()
