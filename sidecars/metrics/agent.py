"""meshctl metrics sidecar.

Receives the proxy's access events (HAProxy logs sent as raw syslog datagrams to 127.0.0.1 in the
pod), keeps request counts by status code and method and a latency histogram, and serves them on
one Prometheus endpoint, merged with the app's own metrics when the app has a metrics path (the
way Istio merges app and proxy metrics).

Settings come from the environment:
  MESHCTL_SERVICE        the service name, a label on every series
  MESHCTL_METRICS_PORT   the port the endpoint listens on (default 15090)
  MESHCTL_EVENTS_PORT    the UDP port the proxy's access events arrive on (default 15514)
  MESHCTL_APP_METRICS    the app's own metrics URL inside the pod (optional)
"""

import os
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


class AccessStats:
    """Request counts and latency buckets, updated by one receiver thread, read at scrape time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}                       # (code, method) -> count
        self.bucket_counts = [0] * (len(BUCKETS_MS) + 1)   # the last one is +Inf
        self.duration_sum_ms = 0.0
        self.duration_count = 0
        self.events = 0
        self.malformed = 0

    def record_line(self, line):
        """Parse one HAProxy log line in meshctl's format:
        client [date] frontend backend/server TR/Tw/Tc/Tr/Ta status bytes termination "request" """
        parts = line.split(" ", 7)
        try:
            total_ms = int(parts[4].rsplit("/", 1)[1])
            code = parts[5]
            int(code)
            method = parts[7].split('"', 2)[1].split(" ", 1)[0] if len(parts) > 7 and '"' in parts[7] else "OTHER"
        except (IndexError, ValueError):
            with self.lock:
                self.malformed += 1
            return
        if method not in METHODS:
            method = "OTHER"
        with self.lock:
            self.events += 1
            key = (code, method)
            self.requests[key] = self.requests.get(key, 0) + 1
            if total_ms >= 0:
                index = 0
                while index < len(BUCKETS_MS) and total_ms > BUCKETS_MS[index]:
                    index += 1
                self.bucket_counts[index] += 1
                self.duration_sum_ms += total_ms
                self.duration_count += 1

    def snapshot(self):
        with self.lock:
            return (dict(self.requests), list(self.bucket_counts), self.duration_sum_ms,
                    self.duration_count, self.events, self.malformed)


class MeshCollector:
    def __init__(self, service, stats, app_status):
        self.service = service
        self.stats = stats
        self.app_status = app_status

    def collect(self):
        requests, buckets, sum_ms, _count, events, malformed = self.stats.snapshot()
        total = CounterMetricFamily("meshctl_requests", "Requests through the proxy sidecar, by status code and method",
                                    labels=["service", "code", "method"])
        for (code, method), value in sorted(requests.items()):
            total.add_metric([self.service, code, method], value)
        yield total
        histogram = HistogramMetricFamily("meshctl_request_duration_seconds",
                                          "Time from the proxy receiving a request to the end of the response",
                                          labels=["service"])
        cumulative, running = [], 0
        for bound, count in zip([*BUCKETS_MS, float("inf")], buckets):
            running += count
            cumulative.append((_le(bound), running))
        histogram.add_metric([self.service], cumulative, sum_value=sum_ms / 1000.0)
        yield histogram
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


def _le(bound):
    return "+Inf" if bound == float("inf") else repr(bound / 1000.0)


def receive_events(stats, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", port))
    while True:
        data = sock.recv(65535)
        stats.record_line(data.decode("utf-8", "replace").rstrip("\n"))


def fetch_app_metrics(url):
    """The app's exposition text, with an OpenMetrics '# EOF' removed so the merge stays valid."""
    request = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4"})
    with urllib.request.urlopen(request, timeout=2) as response:
        text = response.read().decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.strip() != "# EOF"]
    return "\n".join(lines) + ("\n" if lines else "")


def make_handler(registry, app_status):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/ready":
                return self._send(200, b"ok\n", "text/plain")
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

        def _send(self, status, body, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    return Handler


def main():
    service = os.environ.get("MESHCTL_SERVICE", "app")
    port = int(os.environ.get("MESHCTL_METRICS_PORT", "15090"))
    events_port = int(os.environ.get("MESHCTL_EVENTS_PORT", "15514"))
    app_status = {"url": os.environ.get("MESHCTL_APP_METRICS") or None, "up": False}
    stats = AccessStats()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MeshCollector(service, stats, app_status))
    threading.Thread(target=receive_events, args=(stats, events_port), daemon=True).start()
    server = ThreadingHTTPServer(("0.0.0.0", port), make_handler(registry, app_status))
    server.daemon_threads = True
    # A sidecar must stop at once on SIGTERM: nothing here needs flushing.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"metrics: serving :{port}/metrics for {service}", flush=True)
    server.serve_forever(poll_interval=0.25)


if __name__ == "__main__":
    sys.exit(main())
