"""The pod-local OTLP/HTTP receiver: the app's OpenTelemetry SDK posts its spans to
http://127.0.0.1:15018/v1/traces (meshctl sets OTEL_EXPORTER_OTLP_ENDPOINT in the app), as
protobuf (the SDKs' default) or JSON; they go into the same store as the proxy's hops, so they
nest under them by trace and parent. The same loopback-only server answers `meshctl trace`
(through an exec in this container: /meshctl/spans), never on a published port.

Protobuf is read with the few lines of wire format below (ExportTraceServiceRequest's fields
only), so the image needs nothing beyond Debian's python3."""

import base64
import json
import struct
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from spans import dump, new_span

# opentelemetry.proto.trace.v1.Span.SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
SPAN_KINDS = {1: "internal", 2: "server", 3: "client", 4: "client", 5: "server"}
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}


class DecodeError(ValueError):
    pass


def _varint(data, pos):
    result = shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data):
    """(field number, wire type, value) of one message: ints for varints and fixed, bytes for length-delimited."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", data, pos)[0], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = bytes(data[pos:pos + size]), pos + size
        elif wire == 5:
            value, pos = struct.unpack_from("<I", data, pos)[0], pos + 4
        else:
            raise DecodeError(f"wire type {wire}")
        if pos > len(data):
            raise DecodeError("truncated message")
        yield number, wire, value


def _any_value(data):
    for number, wire, value in fields(data):
        if number == 1:
            return value.decode("utf-8", "replace")
        if number == 2:
            return bool(value)
        if number == 3:
            return value - (1 << 64) if value >= 1 << 63 else value
        if number == 4 and wire == 1:
            return struct.unpack("<d", struct.pack("<Q", value))[0]
        if number == 5:
            return [_any_value(item) for n, _, item in fields(value) if n == 1]
        if number == 7:
            return value.hex()
    return None


def _attributes(items):
    result = {}
    for item in items:
        key, value = "", None
        for number, _, part in fields(item):
            if number == 1:
                key = part.decode("utf-8", "replace")
            elif number == 2:
                value = _any_value(part)
        result[key] = value
    return result


def _repeated(data, wanted):
    return [value for number, wire, value in fields(data) if number == wanted and wire == 2]


def decode_protobuf(body):
    """ExportTraceServiceRequest → span dicts (spans.py's shape)."""
    spans: list = []
    for resource_spans in _repeated(body, 1):
        resource = next(iter(_repeated(resource_spans, 1)), b"")
        service = str(_attributes(_repeated(resource, 1)).get("service.name") or "app")
        for scope_spans in _repeated(resource_spans, 2):
            spans.extend(_span(raw, service) for raw in _repeated(scope_spans, 2))
    return spans


def _span(raw, service):
    got: dict = {}
    attributes = []
    for number, _, value in fields(raw):
        if number == 9:
            attributes.append(value)
        else:
            got[number] = value
    status = {number: value for number, _, value in fields(got.get(15, b""))}
    return new_span(got.get(1, b"").hex(), got.get(2, b"").hex(), got.get(4, b"").hex(),
                    got.get(5, b"").decode("utf-8", "replace"), SPAN_KINDS.get(got.get(6, 0), "internal"),
                    got.get(7, 0) // 1000, got.get(8, 0) // 1000, service,
                    STATUS_CODES.get(status.get(3, 0), "unset"), _attributes(attributes), source="app")


def _json_id(value):
    """OTLP/JSON writes ids as hex (the spec); some encoders write base64."""
    if not value:
        return ""
    try:
        bytes.fromhex(value)
        return value.lower()
    except ValueError:
        return base64.b64decode(value).hex()


def _json_value(value):
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [_json_value(item) for item in value["arrayValue"].get("values", [])]
    return None


def _json_attributes(items):
    return {item["key"]: _json_value(item.get("value", {})) for item in items or []}


def decode_json(body):
    """OTLP/JSON's ExportTraceServiceRequest → span dicts."""
    spans: list = []
    for resource_spans in json.loads(body).get("resourceSpans", []):
        resource = _json_attributes(resource_spans.get("resource", {}).get("attributes"))
        service = str(resource.get("service.name") or "app")
        for scope_spans in resource_spans.get("scopeSpans", []):
            for raw in scope_spans.get("spans", []):
                kind = raw.get("kind", 0)
                kind = int(kind) if str(kind).isdigit() else {"SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3}.get(kind, 1)
                status = raw.get("status", {}).get("code", 0)
                status = {"STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}.get(status, status)
                spans.append(new_span(
                    _json_id(raw.get("traceId")), _json_id(raw.get("spanId")), _json_id(raw.get("parentSpanId")),
                    raw.get("name", ""), SPAN_KINDS.get(kind, "internal"), int(raw.get("startTimeUnixNano", 0)) // 1000,
                    int(raw.get("endTimeUnixNano", 0)) // 1000, service, STATUS_CODES.get(int(status), "unset"),
                    _json_attributes(raw.get("attributes")), source="app"))
    return spans


def decode(body, content_type):
    """An OTLP/HTTP body by its content type: application/x-protobuf or application/json."""
    if content_type.split(";", 1)[0].strip() == "application/json":
        return decode_json(body)
    return decode_protobuf(body)


# An empty ExportTraceServiceResponse: no partial_success field, so the SDK counts every span accepted.
EMPTY_RESPONSE = {"application/json": b"{}", "application/x-protobuf": b""}


class SmallHandler(BaseHTTPRequestHandler):
    """What the agent's two HTTP servers share: keep-alive, whole bodies, no request log."""

    protocol_version = "HTTP/1.1"

    def _send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


def make_trace_handler(store):
    """POST /v1/traces (the app's SDK), GET /meshctl/spans[?trace=ID] and /meshctl/stats (`meshctl trace`)."""

    class Handler(SmallHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            content_type = self.headers.get("Content-Type", "application/x-protobuf")
            if urlsplit(self.path).path != "/v1/traces":
                return self._send(404, b"only /v1/traces (OTLP/HTTP traces)\n", "text/plain")
            try:
                store.add(decode(body, content_type))
            except (DecodeError, ValueError, KeyError, TypeError, AttributeError, struct.error) as exc:
                return self._send(400, f"not an OTLP ExportTraceServiceRequest: {exc}\n".encode(), "text/plain")
            kind = "application/json" if content_type.startswith("application/json") else "application/x-protobuf"
            self._send(200, EMPTY_RESPONSE[kind], kind)

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path == "/meshctl/spans":
                return self._send(200, dump(store, parse_qs(url.query)).encode(), "application/json")
            if url.path == "/meshctl/stats":
                return self._send(200, json.dumps(store.stats()).encode(), "application/json")
            self._send(404, b"POST /v1/traces\n", "text/plain")

    return Handler


def serve(store, port):
    """Loopback only: the app in this pod (its SDK) and `meshctl trace` through an exec reach it; no host port does."""
    server = ThreadingHTTPServer(("127.0.0.1", port), make_trace_handler(store))
    server.daemon_threads = True
    server.serve_forever(poll_interval=0.5)
