"""The OTLP/HTTP exporter: every span the store takes (spans.py's sink) goes, in batches, to the
collector at MESHCTL_OTLP_ENDPOINT + /v1/traces as OTLP/HTTP protobuf (written by hand below, so
the image needs no package), one resource per service (`service.name`).

A collector that is down or slow never holds up the agent or the proxy: `offer` only appends to a
bounded queue (beyond MESHCTL_OTLP_QUEUE spans the newest are dropped), one thread sends, a batch
the collector refuses is dropped, and the thread backs off. Every span is counted once: exported,
or dropped with a reason (meshctl_otlp_spans_exported_total, meshctl_otlp_spans_dropped_total).

Sampling (MESHCTL_OTLP_SAMPLE, 0.0–1.0) is decided by the trace id alone (its last 14 hex digits,
random in W3C and uuid ids), so every pod keeps or drops all the spans of one trace alike.

A collector on the developer's own machine (http://localhost:4318 as written) is reached through
meshctl's forwarder in the host's network namespace: MESHCTL_OTLP_SOCKET names the Unix socket it
listens on (a folder mounted here), and the request keeps the URL's Host."""

import http.client
import os
import socket
import struct
import threading
from urllib.parse import urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

SPAN_KINDS = {"internal": 1, "server": 2, "client": 3}       # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_CODES = {"unset": 0, "ok": 1, "error": 2}
QUEUE_LIMIT = 4096
BATCH_SIZE = 512
INTERVAL = 1.0                # seconds between sends while spans trickle in
MAX_BACKOFF = 30.0
TIMEOUT = 5.0
SAMPLE_SPACE = 1 << 56


def sampled(trace_id, share):
    """Whether a trace is exported: the same answer for its every span, in every pod."""
    if share >= 1.0:
        return True
    try:
        return int(trace_id[-14:], 16) < share * SAMPLE_SPACE
    except ValueError:
        return False


# Protocol Buffers' wire format, for the few messages of ExportTraceServiceRequest written here
# (opentelemetry/proto/collector/trace/v1, trace/v1, common/v1, resource/v1): the image needs no package.

def _varint(number):
    number &= (1 << 64) - 1                   # an int64 below zero: its two's complement
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _bytes(field, data):
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _text(field, text):
    return _bytes(field, str(text).encode())


def _fixed64(field, number):
    return _varint(field << 3 | 1) + struct.pack("<Q", number)


def _any_value(value):
    """common.v1.AnyValue: string 1, bool 2, int64 3, double 4."""
    if isinstance(value, bool):
        return _varint(2 << 3) + _varint(int(value))
    if isinstance(value, int):
        return _varint(3 << 3) + _varint(value)
    if isinstance(value, float):
        return _varint(4 << 3 | 1) + struct.pack("<d", value)
    return _text(1, value)


def _attributes(field, mapping):
    """Repeated common.v1.KeyValue {key 1, value 2}."""
    return b"".join(_bytes(field, _text(1, key) + _bytes(2, _any_value(value)))
                    for key, value in mapping.items() if value is not None)


def _span(span):
    """trace.v1.Span: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, start 7, end 8,
    attributes 9, status 15 {code 3}."""
    out = _bytes(1, bytes.fromhex(span["trace_id"])) + _bytes(2, bytes.fromhex(span["span_id"]))
    if span.get("parent_span_id"):
        out += _bytes(4, bytes.fromhex(span["parent_span_id"]))
    out += _text(5, span["name"]) + _varint(6 << 3) + _varint(SPAN_KINDS.get(span["kind"], 0))
    out += _fixed64(7, span["start_us"] * 1000) + _fixed64(8, span["end_us"] * 1000)
    out += _attributes(9, span.get("attributes") or {})
    code = STATUS_CODES.get(span.get("status_code"), 0)
    return out + _bytes(15, _varint(3 << 3) + _varint(code) if code else b"")


def encode(spans, default_service):
    """An ExportTraceServiceRequest (protobuf, OTLP/HTTP's default encoding, the one every collector
    takes): the spans grouped by the service they belong to, its `service.name` on the resource."""
    by_service: dict[str, list[bytes]] = {}
    for span in spans:
        by_service.setdefault(span.get("service") or default_service, []).append(_span(span))
    scope = _bytes(1, _text(1, "meshctl"))
    return b"".join(
        _bytes(1, _bytes(1, _attributes(1, {"service.name": service, "telemetry.sdk.name": "meshctl"}))
               + _bytes(2, scope + b"".join(_bytes(2, item) for item in items)))
        for service, items in by_service.items())


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP to the loopback forwarder's Unix socket; the Host header stays the URL's."""

    def __init__(self, host, path, timeout):
        super().__init__(host, timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def post(endpoint, body, socket_path=None, timeout=TIMEOUT):
    """POST one batch to ENDPOINT/v1/traces; the HTTP status (OSError when nothing answered)."""
    url = urlsplit(endpoint)
    host = url.netloc.rsplit("@", 1)[-1]
    conn: http.client.HTTPConnection
    if socket_path:
        conn = UnixHTTPConnection(host, socket_path, timeout)
    elif url.scheme == "https":
        conn = http.client.HTTPSConnection(host, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(host, timeout=timeout)
    try:
        conn.request("POST", url.path.rstrip("/") + "/v1/traces", body=body,
                     headers={"Content-Type": "application/x-protobuf"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class Exporter:
    """A bounded queue of spans, and the thread that sends them in batches."""

    def __init__(self, endpoint, service, sample=1.0, socket_path=None, queue_limit=QUEUE_LIMIT,
                 batch_size=BATCH_SIZE, interval=INTERVAL, send=None):
        self.endpoint, self.service, self.sample = endpoint, service, sample
        self.queue_limit, self.batch_size, self.interval = queue_limit, batch_size, interval
        self.send = send or (lambda body: post(endpoint, body, socket_path))
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.queue = []
        self.exported = 0
        self.dropped = {"queue_full": 0, "export_failed": 0}
        self.unsampled = 0
        self.last_error = ""

    def offer(self, spans):
        """The store's sink: queue what is sampled, drop (and count) what does not fit. Never blocks."""
        kept = [span for span in spans if sampled(span["trace_id"], self.sample)]
        with self.lock:
            self.unsampled += len(spans) - len(kept)
            room = max(0, self.queue_limit - len(self.queue))
            self.queue.extend(kept[:room])
            self.dropped["queue_full"] += len(kept) - len(kept[:room])
            full = len(self.queue) >= self.batch_size
        if full:
            self.wake.set()

    def take(self):
        with self.lock:
            batch, self.queue = self.queue[:self.batch_size], self.queue[self.batch_size:]
            return batch

    def flush_once(self):
        """Send one batch; False when the collector did not take it (the batch is dropped, counted)."""
        batch = self.take()
        if not batch:
            return True
        try:
            status = self.send(encode(batch, self.service))
            ok, why = 200 <= status < 300, f"HTTP {status}"
        except (OSError, http.client.HTTPException) as exc:
            ok, why = False, str(exc) or type(exc).__name__
        with self.lock:
            if ok:
                self.exported += len(batch)
            else:
                self.dropped["export_failed"] += len(batch)
        if not ok and why != self.last_error:
            print(f"metrics: OTLP export to {self.endpoint}/v1/traces failed ({why}); "
                  "spans are dropped and counted until it answers", flush=True)
        self.last_error = "" if ok else why
        return ok

    def run(self):
        backoff = self.interval
        while True:
            self.wake.wait(backoff)
            self.wake.clear()
            while True:
                ok = self.flush_once()
                with self.lock:
                    more = len(self.queue) >= self.batch_size
                if not ok or not more:
                    break
            backoff = self.interval if ok else min(MAX_BACKOFF, backoff * 2)

    def collect(self):
        with self.lock:
            exported, dropped, queued, unsampled = self.exported, dict(self.dropped), len(self.queue), self.unsampled
        total = CounterMetricFamily("meshctl_otlp_spans_exported", "Spans the OTLP collector accepted",
                                    labels=["service"])
        total.add_metric([self.service], exported)
        yield total
        lost = CounterMetricFamily("meshctl_otlp_spans_dropped", "Spans not exported: queue_full (the collector "
                                   "is down or slow and the bounded queue is full), export_failed (it refused "
                                   "or did not answer)", labels=["service", "reason"])
        for reason, value in sorted(dropped.items()):
            lost.add_metric([self.service, reason], value)
        yield lost
        skipped = CounterMetricFamily("meshctl_otlp_spans_unsampled", "Spans of traces left out by "
                                      "mesh.tracing.sample", labels=["service"])
        skipped.add_metric([self.service], unsampled)
        yield skipped
        waiting = GaugeMetricFamily("meshctl_otlp_queue_spans", "Spans waiting to be exported", labels=["service"])
        waiting.add_metric([self.service], queued)
        yield waiting


def start_exporter(service, sinks, registry, environ=os.environ):
    """With MESHCTL_OTLP_ENDPOINT set: an exporter fed by `sinks` (the store's), its counts in
    `registry`, its thread running. None without."""
    endpoint = environ.get("MESHCTL_OTLP_ENDPOINT", "").strip()
    if not endpoint:
        return None
    exporter = Exporter(endpoint, service, float(environ.get("MESHCTL_OTLP_SAMPLE") or "1"),
                        environ.get("MESHCTL_OTLP_SOCKET") or None,
                        queue_limit=int(environ.get("MESHCTL_OTLP_QUEUE") or QUEUE_LIMIT))
    sinks.append(exporter.offer)
    registry.register(exporter)
    threading.Thread(target=exporter.run, daemon=True).start()
    print(f"metrics: exporting spans to {endpoint}/v1/traces (OTLP/HTTP, protobuf)", flush=True)
    return exporter

