"""meshctl metrics sidecar.

Receives the proxy's access events (HAProxy's access log lines, written into a ring buffer in the
proxy and forwarded over one TCP connection to 127.0.0.1 in the pod, newline-separated; plain
syslog datagrams on the same port number over UDP are accepted too), keeps request counts by status
code and method and a latency histogram, and serves them on one Prometheus endpoint, merged with
the app's own metrics when the app has a metrics path (the way Istio merges app and proxy metrics).

The agent also prints the access log on the console for the proxy: every line while traffic is light,
and under load at most MESHCTL_ACCESS_LOG_LIMIT lines a second plus one line saying how many were
not shown. The counts in /metrics always include every request. (Each console line costs the Docker
engine more than the request itself costs the proxy: see docs/performance.md.)

Settings come from the environment:
  MESHCTL_SERVICE           the service name, a label on every series
  MESHCTL_METRICS_PORT      the port the endpoint listens on (default 15090)
  MESHCTL_EVENTS_PORT       the TCP (and UDP) port the proxy's access events arrive on (default 15514)
  MESHCTL_APP_METRICS       the app's own metrics URL inside the pod (optional)
  MESHCTL_ACCESS_LOG_LIMIT  access log lines printed per second at most (default 100; 0: none; -1: all)
  MESHCTL_SPANS_PORT        the loopback port of the spans' receiver and store (otlp_in.py; default 15018)
  MESHCTL_SPAN_LIMIT        spans kept (default 10000; spans.py)
  MESHCTL_IDENTITY_PREFIX   the project's SPIFFE prefix, for peers' identities on spans (a mesh's)
  MESHCTL_OBSERVE_KEY       serve the spans on the endpoint's port too (GET /meshctl/spans[?trace=ID]), to
                            requests carrying `Authorization: Bearer KEY` only (what `meshctl trace` reads)
  MESHCTL_OTLP_ENDPOINT     a collector's OTLP/HTTP base URL: every span is exported there too (otlp_out.py,
                            with MESHCTL_OTLP_SAMPLE, MESHCTL_OTLP_SOCKET, MESHCTL_OTLP_QUEUE)

The proxy's HTTP access lines also carry each hop's span (spans.py); they go into a bounded span
store that the pod-local OTLP receiver fills with the app's own spans too.
"""

import bisect
import hmac
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs

import otlp_in
import otlp_out
import spans
from recent import RecentEvents, make_local_handler, query_seconds
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


class AccessStats:
    """Request counts and latency buckets, updated by one receiver thread, read at scrape time."""

    def __init__(self, recent=None):
        self.lock = threading.Lock()
        self.recent = recent or RecentEvents()   # by second, for `meshctl stat`, `top` and `tap`
        self.requests = {}                       # (direction, source, destination, code, method) -> count
        self.bucket_counts = [0] * (len(BUCKETS_MS) + 1)   # the last one is +Inf
        self.duration_sum_ms = 0.0
        self.duration_count = 0
        self.events = 0
        self.malformed = 0
        # TCP connections, counted at their close: (direction, source, destination, outcome) -> count,
        # and (direction, source, destination) -> [bytes from the client, bytes to it].
        self.tcp_connections = {}
        self.tcp_bytes = {}
        # HTTP requests the mesh listener refused by rule (403: not this project's, not in allow):
        # (direction, source, destination) -> count. TCP's are tcp_connections' outcome="denied".
        self.denied = {}
        # Faults the proxy injected (its Lua action logs `meshctl-fault KIND SOURCE`): (kind, source) -> count.
        self.faults = {}
        # Outbound calls: retries by destination, and until when (epoch ms) its circuit breaker is
        # open, by destination, from the last call that passed its breaker.
        self.retries = {}
        self.breaker_until = {}

    def record_line(self, line):
        return self.record_lines([line])

    def record_lines(self, lines):
        """Count a batch of HAProxy log lines in meshctl's format:
        client [date] frontend backend/server TR/Tw/Tc/Tr/Ta status bytes termination "request"
        Returns the lines that are not access events (HAProxy's own messages), to be printed."""
        other, events = [], []   # type: ignore[var-annotated]
        with self.lock:
            requests, buckets = self.requests, self.bucket_counts
            for line in lines:
                parts = line.split(" ", 7)
                # A TCP connection's line has `tcp` where a request's has its status: only those are
                # split again (this loop runs once per request).
                if len(parts) > 5 and parts[5] == "tcp" and self._record_tcp(line, events):
                    continue
                try:
                    total_ms = int(parts[4].rsplit("/", 1)[1])
                    code = parts[5]
                    int(code)
                    rest = parts[7] if len(parts) > 7 else ""
                    request = rest.split('"', 2)[1].split(" ", 2) if '"' in rest else ["OTHER", ""]
                    method, path = request[0], request[1] if len(request) > 1 else ""
                    tail = rest.rsplit('"', 1)[-1].strip() if '"' in rest else ""
                    edge = _edge(parts[2], parts[3], tail)
                except (IndexError, ValueError):
                    if line.startswith("meshctl-fault "):    # not a request: checked only off the hot path
                        kind_source = tuple(line.split()[1:3])
                        self.faults[kind_source] = self.faults.get(kind_source, 0) + 1
                        continue
                    self.malformed += 1
                    other.append(line)
                    continue
                if method not in METHODS:
                    method = "OTHER"
                self.events += 1
                key = (*edge, code, method)
                requests[key] = requests.get(key, 0) + 1
                if tail and edge[0] == "outbound":
                    self._record_outbound(edge[2], tail)
                # PR: the proxy refused the request by a rule (termination state, before the request).
                denied = bool(edge[1]) and code == "403" and rest.startswith("PR")
                if denied:
                    self.denied[edge] = self.denied.get(edge, 0) + 1
                events.append(("http", *edge, method, path, int(code), total_ms, _int(parts[6]),
                               _mtls(parts[2]), denied, _trace_id(rest)))
                if total_ms >= 0:
                    buckets[bisect.bisect_left(BUCKETS_MS, total_ms)] += 1
                    self.duration_sum_ms += total_ms
                    self.duration_count += 1
        self.recent.add(events)
        return other

    def _record_outbound(self, destination, tail):
        """An outbound call's tail (the mesh_out listener's log format): the retries it took, and
        until when (epoch ms) the destination's circuit breaker is open ("-": it has none).
        Called with the lock held."""
        fields = tail.split(" ")
        retries = fields[0].lstrip("+")
        if retries.isdigit() and retries != "0":
            self.retries[destination] = self.retries.get(destination, 0) + int(retries)
        if len(fields) > 1 and fields[1].isdigit():
            self.breaker_until[destination] = int(fields[1])

    def outbound_snapshot(self):
        with self.lock:
            return dict(self.retries), dict(self.breaker_until)

    def _record_tcp(self, line, events):
        """A TCP connection's line (sidecars.TCP_LOG_FORMAT, `tcp` in the status's place):
        client [date] frontend backend/server Tw/Tc/Tt tcp bytes_in bytes_out termination [caller].
        Called with the lock held; False when the line is not one."""
        parts = line.split(" ")
        if len(parts) < 9 or parts[5] != "tcp":
            return False
        try:
            received, sent = int(parts[6]), int(parts[7])
        except ValueError:
            return False
        edge = _edge(parts[2], parts[3], parts[9] if len(parts) > 9 else "")
        state = parts[8]
        # --: closed normally; PR: the proxy refused it by a rule (not this project's, not in allow).
        outcome = "ok" if state.startswith("--") else "denied" if state.startswith("PR") else "error"
        self.events += 1
        key = (*edge, outcome)
        self.tcp_connections[key] = self.tcp_connections.get(key, 0) + 1
        counted = self.tcp_bytes.setdefault(edge, [0, 0])
        counted[0] += received
        counted[1] += sent
        timers = parts[4].rsplit("/", 1)[-1]
        events.append(("tcp", *edge, "", "", 0, _int(timers), received + sent, _mtls(parts[2]), outcome == "denied",
                       ""))     # TCP hops carry no trace
        return True

    def tcp_snapshot(self):
        with self.lock:
            return dict(self.tcp_connections), {k: tuple(v) for k, v in self.tcp_bytes.items()}

    def denied_snapshot(self):
        with self.lock:
            return dict(self.denied)

    def faults_snapshot(self):
        with self.lock:
            return dict(self.faults)

    def snapshot(self):
        with self.lock:
            return (dict(self.requests), list(self.bucket_counts), self.duration_sum_ms,
                    self.duration_count, self.events, self.malformed)


def _int(text):
    return int(text) if text.lstrip("-").isdigit() else -1


def _trace_id(rest):
    """The trace id of a request's line: the first part of the span field after the termination
    state (trace/span/parent/start/end; "" where the line has none)."""
    fields = rest.split(" ", 2)
    trace = fields[1].split("/", 1)[0] if len(fields) > 1 and "/" in fields[1] else ""
    return "" if trace == "-" else trace


def _mtls(frontend):
    """Whether the request came over mutual TLS from a caller's proxy: the mesh listener with TLS
    (HAProxy marks a TLS frontend with ~; with `mtls: off` it has none). The caller's side cannot
    tell from its line: stat reports an edge as its callee saw it."""
    return frontend.startswith("mesh_in") and frontend.endswith("~")


def _edge(frontend, backend_server, caller):
    """(direction, source, destination) from the frontend that took the request or connection:
    `mesh_out` (HTTP) and `mesh_out_tcp` are the app calling another service (the backend names it:
    to_<service>, or passthrough), `mesh_in` a mesh caller (`caller`: its certificate's name, which
    ends the line), anything else a client from outside."""
    frontend = frontend.rstrip("~")           # HAProxy marks a TLS frontend with ~
    if frontend in ("mesh_out", "mesh_out_tcp"):
        backend = backend_server.split("/", 1)[0]
        return "outbound", "", backend[3:] if backend.startswith("to_") else "unknown"
    if frontend == "mesh_in":
        return "inbound", caller if caller and caller != "-" else "unknown", ""
    return "inbound", "", ""


class MeshCollector:
    def __init__(self, service, stats, app_status):
        self.service = service
        self.stats = stats
        self.app_status = app_status

    def collect(self):
        requests, buckets, sum_ms, _count, events, malformed = self.stats.snapshot()
        total = CounterMetricFamily("meshctl_requests", "Requests through the proxy sidecar, by direction (inbound: "
                                    "to this service; outbound: its calls to other services), peer, status code and method",
                                    labels=["service", "direction", "source", "destination", "code", "method"])
        for (direction, source, destination, code, method), value in sorted(requests.items()):
            total.add_metric([self.service, direction, source, destination, code, method], value)
        yield total
        histogram = HistogramMetricFamily("meshctl_request_duration_seconds",
                                          "Time from the proxy receiving a request to the end of the response",
                                          labels=["service"])
        cumulative, running = [], 0
        for bound, count in zip([*BUCKETS_MS, float("inf")], buckets, strict=False):
            running += count
            cumulative.append((_le(bound), running))
        histogram.add_metric([self.service], cumulative, sum_value=sum_ms / 1000.0)
        yield histogram
        denied = CounterMetricFamily("meshctl_requests_denied", "Mesh callers' HTTP requests the proxy refused "
                                     "with 403 by the mesh's rules (a caller of another project, or not in allow); "
                                     "also in meshctl_requests_total", labels=["service", "direction", "source", "destination"])
        for key, value in sorted(self.stats.denied_snapshot().items()):
            denied.add_metric([self.service, *key], value)
        yield denied
        faults = CounterMetricFamily("meshctl_faults_injected", "Faults this service's proxy injected into calls to "
                                     "it (kind: abort, delay, reset; source: the calling service, host for the "
                                     "published ports)", labels=["service", "kind", "source"])
        for (kind, source), value in sorted(self.stats.faults_snapshot().items()):
            faults.add_metric([self.service, kind, source], value)
        yield faults
        yield from self.collect_tcp()
        yield from self.collect_outbound()
        received = CounterMetricFamily("meshctl_access_events", "Access events received from the proxy",
                                       labels=["service", "result"])
        received.add_metric([self.service, "parsed"], events)
        received.add_metric([self.service, "malformed"], malformed)
        yield received
        if self.app_status["url"]:
            up = GaugeMetricFamily("meshctl_app_metrics_up", "1 if the app's own metrics endpoint answered the last scrape",
                                   labels=["service"])
            up.add_metric([self.service], 1.0 if self.app_status["up"] else 0.0)
            yield up


    def collect_outbound(self, clock=time.time):
        """The caller's side of `traffic:`: retries its proxy made, and each breaker's state."""
        retries, until = self.stats.outbound_snapshot()
        edge = ["service", "destination"]
        total = CounterMetricFamily("meshctl_retries", "Retries this service's proxy made calling another service "
                                    "(traffic.retries, and refused connections while the callee restarts)", labels=edge)
        for destination, value in sorted(retries.items()):
            total.add_metric([self.service, destination], value)
        yield total
        state = GaugeMetricFamily("meshctl_circuit_open", "1 while this service's proxy answers calls to the "
                                  "destination with 503 itself (traffic.circuit_breaker open), else 0", labels=edge)
        now_ms = clock() * 1000
        for destination, ends in sorted(until.items()):
            state.add_metric([self.service, destination], 1.0 if ends > now_ms else 0.0)
        yield state

    def collect_tcp(self):
        """Istio's TCP series, by meshctl's labels: connections by how they ended, and bytes each way
        ("received": from the side that opened the connection; "sent": to it)."""
        connections, counted = self.stats.tcp_snapshot()
        edge = ["service", "direction", "source", "destination"]
        total = CounterMetricFamily("meshctl_tcp_connections", "TCP connections through the proxy sidecar, counted "
                                    "when they close, by direction, peer and outcome (ok, denied: refused by the "
                                    "mesh's rules, error)", labels=[*edge, "outcome"])
        for key, value in sorted(connections.items()):
            total.add_metric([self.service, *key], value)
        yield total
        for index, name, what in ((0, "received", "from the client"), (1, "sent", "to the client")):
            family = CounterMetricFamily(f"meshctl_tcp_{name}_bytes", f"Bytes of TCP connections {what}, "
                                         "counted when they close", labels=edge)
            for key, values in sorted(counted.items()):
                family.add_metric([self.service, *key], values[index])
            yield family


def _le(bound):
    return "+Inf" if bound == float("inf") else repr(bound / 1000.0)


class ConsoleLog:
    """The access log on stdout, written a batch at a time: every line while there are at most
    `limit` a second, then a sample (the first `limit` of each second) and one line a second that
    says how many were left out. limit < 0: every line; 0: none."""

    def __init__(self, limit, out=None, clock=time.monotonic):
        self.limit = limit
        self.out = out or sys.stdout
        self.clock = clock
        self.lock = threading.Lock()
        self.second = int(clock())
        self.shown = 0
        self.hidden = 0

    def write(self, lines, always=()):
        """Print `always` (HAProxy's own messages) and as many of `lines` as the budget allows."""
        with self.lock:
            text = self._roll()
            if self.limit < 0:
                shown = lines
            else:
                room = max(0, self.limit - self.shown)
                shown = lines[:room]
                self.shown += len(shown)
                self.hidden += len(lines) - len(shown)
            text += "".join(line + "\n" for line in (*always, *shown))
            if text:
                self.out.write(text)
                self.out.flush()

    def tick(self):
        """Called at least once a second: reports what the last second left out."""
        self.write([])

    def _roll(self):
        now = int(self.clock())
        if now == self.second:
            return ""
        text = ""
        if self.hidden:
            text = (f"metrics: access log: {self.hidden} more requests in the last second not shown "
                    f"(MESHCTL_ACCESS_LOG_LIMIT={self.limit}/s); /metrics counts every one\n")
        self.second, self.shown, self.hidden = now, 0, 0
        return text


# Called with every batch of lines from the proxy after it is counted (main adds the span recorder).
BATCH_HOOKS: list = []


def _handle_batch(stats, console, lines):
    other = stats.record_lines(lines)
    for hook in BATCH_HOOKS:
        hook(lines)
    console.write(lines if not other else [ln for ln in lines if ln not in other], always=other)


# After each read the agent waits this long, so that events gather in the socket's buffer and the
# next read takes them all: at 1,000 requests/s that is one wake-up per 50 events instead of one per
# event, and the agent stays off the CPU the request path needs. Counts lag by at most this much.
# (Nothing is lost meanwhile: a full socket buffer holds the events back in the proxy's ring.)
BATCH_PAUSE = 0.05
# One read takes up to this much: some 2,000 access lines, 40 ms of events at 50,000 requests/s.
READ_SIZE = 1 << 19


def serve_event_stream(stats, console, conn, pause=BATCH_PAUSE):
    """One proxy's ring forwarder: newline-separated log lines, many per read."""
    conn.settimeout(1.0)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    # One buffer for the connection's life, read into: a fresh multi-megabyte recv() buffer per read
    # is what glibc then keeps (the agent grew ~1.3 MiB with each proxy restart in the soak).
    buffer = memoryview(bytearray(READ_SIZE))
    pending = b""
    with conn:
        while True:
            try:
                size = conn.recv_into(buffer)
            except TimeoutError:
                console.tick()
                continue
            except OSError:
                return
            if not size:
                return
            *complete, pending = (pending + buffer[:size]).split(b"\n")
            if complete:
                _handle_batch(stats, console, [_strip_frame(ln.decode("utf-8", "replace")) for ln in complete if ln])
            time.sleep(pause)


def _strip_frame(line):
    """Syslog over TCP may carry an octet count before each message ("123 <message>")."""
    head, sep, rest = line.partition(" ")
    return rest if sep and head.isdigit() and int(head) - len(rest.encode()) in (0, 1) else line


def receive_stream(stats, console, port):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(16)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve_event_stream, args=(stats, console, conn), daemon=True).start()


def receive_datagrams(stats, console, port):
    """Access events as one syslog datagram each (a proxy config from before the ring)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(1.0)
    while True:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            console.tick()
            continue
        batch = [data.decode("utf-8", "replace").rstrip("\n")]
        sock.setblocking(False)
        try:                      # drain what is already queued: one lock and one write per batch
            while len(batch) < 1024:
                batch.append(sock.recv(65535).decode("utf-8", "replace").rstrip("\n"))
        except BlockingIOError:
            pass
        sock.settimeout(1.0)
        _handle_batch(stats, console, batch)


def fetch_app_metrics(url):
    """The app's exposition text, with an OpenMetrics '# EOF' removed so the merge stays valid."""
    request = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4"})
    with urllib.request.urlopen(request, timeout=2) as response:
        text = response.read().decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.strip() != "# EOF"]
    return "\n".join(lines) + ("\n" if lines else "")


def make_handler(registry, app_status, stats=None, service="", store=None, key=""):
    class Handler(otlp_in.SmallHandler):
        def do_GET(self):
            path, _, query = self.path.partition("?")
            if path == "/ready":
                return self._send(200, b"ok\n", "text/plain")
            if path == "/meshctl/spans" and store is not None and key:
                # Requests' paths and callers: only for meshctl, which derives the key from its
                # secret (0600 in MESHCTL_HOME); compared in constant time.
                if not hmac.compare_digest(self.headers.get("Authorization", "").encode(), f"Bearer {key}".encode()):
                    return self._send(403, b"the spans need meshctl's key: run `meshctl trace`\n", "text/plain")
                return self._send(200, spans.dump(store, parse_qs(query)).encode(), "application/json")
            if path == "/stat" and stats is not None:     # edges' figures: what /metrics shows, by window
                rows = stats.recent.stat(service, query_seconds(query))
                return self._send(200, json.dumps(rows).encode(), "application/json")
            if path != "/metrics":
                return self._send(404, b"try /metrics\n", "text/plain")
            app_text = ""
            if app_status["url"]:
                try:
                    app_text = fetch_app_metrics(app_status["url"])
                    app_status["up"] = True
                except (OSError, urllib.error.URLError, ValueError) as exc:
                    app_status["up"] = False
                    print(f"metrics: the app's metrics at {app_status['url']} did not answer: {exc}", flush=True)
            body = generate_latest(registry) + app_text.encode()
            self._send(200, body, CONTENT_TYPE_LATEST)

    return Handler


# Whatever else wants every span (an OTLP exporter): callables given each batch the store takes
# (spans.py says how a sink must behave). The store shares this list.
SPAN_SINKS: list = []


def start_spans(service):
    """The span store, fed by the proxy's lines and the app's OTLP posts (otlp_in.serve's thread)."""
    store = spans.SpanStore(int(os.environ.get("MESHCTL_SPAN_LIMIT") or spans.DEFAULT_LIMIT), sinks=SPAN_SINKS)
    prefix = os.environ.get("MESHCTL_IDENTITY_PREFIX", "")
    BATCH_HOOKS.append(lambda lines: spans.record_access_lines(store, lines, service, prefix))
    port = int(os.environ.get("MESHCTL_SPANS_PORT") or "15018")
    threading.Thread(target=otlp_in.serve, args=(store, port), daemon=True).start()
    return store


def main():
    service = os.environ.get("MESHCTL_SERVICE", "app")
    port = int(os.environ.get("MESHCTL_METRICS_PORT", "15090"))
    events_port = int(os.environ.get("MESHCTL_EVENTS_PORT", "15514"))
    app_status = {"url": os.environ.get("MESHCTL_APP_METRICS") or None, "up": False}
    stats = AccessStats()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MeshCollector(service, stats, app_status))
    console = ConsoleLog(int(os.environ.get("MESHCTL_ACCESS_LOG_LIMIT") or "100"))
    store = start_spans(service)
    otlp_out.start_exporter(service, SPAN_SINKS, registry)
    threading.Thread(target=receive_stream, args=(stats, console, events_port), daemon=True).start()
    threading.Thread(target=receive_datagrams, args=(stats, console, events_port), daemon=True).start()
    local = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("MESHCTL_OBSERVE_PORT", "15092"))),
                                make_local_handler(stats.recent, service))
    local.daemon_threads = True
    threading.Thread(target=local.serve_forever, daemon=True).start()
    server = ThreadingHTTPServer(("0.0.0.0", port), make_handler(registry, app_status, stats, service, store,
                                                                 os.environ.get("MESHCTL_OBSERVE_KEY", "")))
    server.daemon_threads = True
    # A sidecar must stop at once on SIGTERM: nothing here needs flushing.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"metrics: serving :{port}/metrics for {service}", flush=True)
    server.serve_forever(poll_interval=0.25)


if __name__ == "__main__":
    sys.exit(main())
