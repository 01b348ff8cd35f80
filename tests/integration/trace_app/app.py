"""The tracing tests' app: GET /chain calls NEXT (another service's /chain, or nothing) and answers
with the traceparent it received and what NEXT answered. It forwards `traceparent`, as any
instrumented app does. With the OpenTelemetry SDK installed (Dockerfile.sdk) it also records its
own spans, configured by nothing but the OTEL_* variables meshctl sets: a server span under the
proxy's, an inner one, and the outbound call's context from the SDK's propagator."""

import json
import os
import signal
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NEXT = os.environ.get("NEXT", "")

try:
    from opentelemetry import propagate, trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()          # service.name from OTEL_SERVICE_NAME
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))   # endpoint from OTEL_EXPORTER_OTLP_ENDPOINT
    trace.set_tracer_provider(provider)
    TRACER = trace.get_tracer("trace_app")
except ImportError:
    TRACER = None


def call_next(headers):
    if not NEXT:
        return None
    request = urllib.request.Request(NEXT, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        if self.path == "/healthz":
            return self._send({"ok": True})
        received = self.headers.get("traceparent", "")
        if TRACER is None:
            return self._send({"traceparent": received, "next": call_next({"traceparent": received} if received else {})})
        context = propagate.extract(dict(self.headers))
        with TRACER.start_as_current_span("handle /chain", context=context, kind=trace.SpanKind.SERVER):
            with TRACER.start_as_current_span("prepare") as inner:
                inner.set_attribute("app.next", NEXT)
            headers = {}
            propagate.inject(headers)
            answer = {"traceparent": received, "next": call_next(headers)}
        return self._send(answer)

    def _send(self, payload):
        data = (json.dumps(payload) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass


server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever(poll_interval=0.1)
