"""web: calls api at plain http://api:8080, as it would anywhere else; meshctl's mesh does the rest.

Tracing: web forwards `traceparent` on its calls, so web → api is one trace, and it records spans
of its own with the OpenTelemetry SDK (requirements.txt), configured by nothing but the OTEL_*
variables meshctl sets (OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT: its pod's metrics sidecar).
`meshctl trace` shows them nested under web's proxy spans. Without the SDK it forwards the header
by hand."""

import contextlib
import json
import os
import signal
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API = os.environ.get("API_URL", "http://api:8080")

try:
    from opentelemetry import propagate, trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):        # meshctl sets it: the pod's receiver
        provider = TracerProvider()                           # service.name from OTEL_SERVICE_NAME
        # Batches sent every half second (the SDK's default is 5 s), so `meshctl trace` soon has them;
        # a receiver that is gone holds a stop up 2 s at most (the exporter's default timeout is 10 s).
        exporter = OTLPSpanExporter(timeout=2)               # endpoint: OTEL_EXPORTER_OTLP_ENDPOINT
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        trace.set_tracer_provider(provider)
    TRACER = trace.get_tracer("shop.web")
except ImportError:                                           # no SDK: forward the header by hand
    TRACER = None


def handling(path: str, headers):
    """web's own server span for a request, a child of the proxy span its traceparent names."""
    if TRACER is None:
        return contextlib.nullcontext()
    return TRACER.start_as_current_span(f"handle {path}", context=propagate.extract(dict(headers)),
                                        kind=trace.SpanKind.SERVER)


def call(url: str, traceparent: str = "") -> tuple[int, str]:
    """GET url with the trace carried on: in a client span of web's own, whose context the SDK's
    propagator writes into `traceparent`; without the SDK, the traceparent web received."""
    if TRACER is None:
        return _get(urllib.request.Request(url, headers={"traceparent": traceparent} if traceparent else {}))
    with TRACER.start_as_current_span(f"call {urlparse(url).netloc}", kind=trace.SpanKind.CLIENT) as span:
        span.set_attribute("url.full", url)
        headers: dict[str, str] = {}
        propagate.inject(headers)
        status, body = _get(urllib.request.Request(url, headers=headers))
        span.set_attribute("http.response.status_code", status)
        return status, body


def _get(request: urllib.request.Request) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, f"{type(error).__name__}: {error}"


def tcp_call(host: str, port: int, line: str) -> dict:
    """One line to a TCP service and the line it answers; `closed` when the connection ended first."""
    try:
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(line.encode() + b"\n")
            reply = conn.makefile("rb").readline().decode().rstrip("\n")
            return {"reply": reply, "closed": not reply}
    except OSError as error:
        return {"reply": "", "closed": True, "error": f"{type(error).__name__}: {error}"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/healthz":
            return self._send(200, {"ok": True})
        with handling(url.path, self.headers):
            return self._route(url)

    def _route(self, url):
        if url.path == "/call":          # GET /call?url=http://api:8080/whoami: what any app would do
            target = parse_qs(url.query).get("url", [f"{API}/whoami"])[0]
            status, body = call(target, self.headers.get("traceparent", ""))
            return self._send(200, {"url": target, "status": status, "body": body})
        if url.path == "/tcp":           # GET /tcp?host=kv&port=7000&line=PING: a plain TCP client
            query = parse_qs(url.query)
            host, port = query.get("host", ["kv"])[0], int(query.get("port", ["7000"])[0])
            return self._send(200, {"host": host, "port": port, **tcp_call(host, port, query.get("line", ["PING"])[0])})
        if url.path == "/visits":        # web → api → kv
            return self._answer_from_api("visits", f"{API}/visits")
        return self._answer_from_api("hello", f"{API}/whoami")

    def _answer_from_api(self, page, url):
        """200 with api's answer; 502 with an error page a user can read when api did not answer 200."""
        status, body = call(url, self.headers.get("traceparent", ""))
        payload = {"web": page, "api_said": body, "api_status": status}
        if status != 200:
            payload["error"] = "api is not answering right now, please try again in a moment"
        return self._send(200 if status == 200 else 502, payload)

    def _send(self, status, payload):
        if TRACER is not None:
            trace.get_current_span().set_attribute("http.response.status_code", status)
        data = (json.dumps(payload) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print("web:", fmt % args, flush=True)


server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)
# shutdown() waits for serve_forever() to return: called in the signal handler, on the same thread,
# it never did, and every stop waited out the 10 s grace period.
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print(f"web: listening on {server.server_port}, calling {API}", flush=True)
server.serve_forever(poll_interval=0.1)
