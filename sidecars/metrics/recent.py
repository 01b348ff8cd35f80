"""The metrics agent's recent past, for `meshctl stat`, `top` and `tap`.

Every access event the agent parses is added here: tallies by second (so a window of the last N
seconds is the sum of N buckets, kept for KEEP_SECONDS), by edge (direction, peer) for `stat`, and
by route (method and path) for `top`; and, only while a `tap` listens, the event itself to each
listener's bounded queue. Latencies are whole milliseconds (HAProxy's %Ta), so a histogram keyed by
the millisecond gives exact percentiles at a fixed cost per event.

An event is a tuple (see EVENT_FIELDS): kind ("http" or "tcp"), direction, source, destination,
method, path, status, latency_ms, bytes, mtls, denied.
"""

import collections
import json
import math
import threading
import time
import contextlib

KEEP_SECONDS = 600
MAX_ROUTES = 1000        # distinct routes a second keeps; more are counted under OTHER_ROUTE
OTHER_ROUTE = ("OTHER", "(other paths)")
TAP_QUEUE = 10000        # a tap listener that reads slower than this loses the oldest events
EVENT_FIELDS = ("kind", "direction", "source", "destination", "method", "path", "status",
                "latency_ms", "bytes", "mtls", "denied", "trace_id")


class Tally:
    """Requests (or TCP connections), their successes, denials, bytes and latencies."""

    __slots__ = ("bytes", "count", "denied", "latencies", "ok", "peers")

    def __init__(self):
        self.count = self.ok = self.denied = self.bytes = 0
        self.latencies = {}
        self.peers = set()

    def add(self, event):
        self.count += 1
        status, latency, size, denied = event[6], event[7], event[8], event[10]
        self.ok += status < 500 if event[0] == "http" else not denied
        self.denied += denied
        self.bytes += size
        if latency >= 0:
            self.latencies[latency] = self.latencies.get(latency, 0) + 1

    def merge(self, other):
        self.count += other.count
        self.ok += other.ok
        self.denied += other.denied
        self.bytes += other.bytes
        for ms, n in other.latencies.items():
            self.latencies[ms] = self.latencies.get(ms, 0) + n
        self.peers |= other.peers


def percentile(latencies, fraction):
    """The nearest-rank percentile of a {milliseconds: count} histogram (None when empty)."""
    total = sum(latencies.values())
    if not total:
        return None
    rank, running = max(1, math.ceil(fraction * total)), 0
    for ms in sorted(latencies):
        running += latencies[ms]
        if running >= rank:
            return ms
    return None


def summary(tally, seconds):
    """A tally as the figures `stat` and `top` print."""
    return {"requests": tally.count, "rps": round(tally.count / seconds, 3) if seconds else 0.0,
            "success_rate": round(100.0 * tally.ok / tally.count, 2) if tally.count else None,
            "p50_ms": percentile(tally.latencies, 0.50), "p95_ms": percentile(tally.latencies, 0.95),
            "p99_ms": percentile(tally.latencies, 0.99), "denied": tally.denied, "bytes": tally.bytes}


class RecentEvents:
    def __init__(self, keep=KEEP_SECONDS, clock=time.time):
        self.keep = keep
        self.clock = clock
        self.lock = threading.Lock()
        self.seconds: collections.deque = collections.deque()      # [second, {edge: Tally}, {route: Tally}], oldest first
        self.taps = []                          # each a (deque, threading.Event)

    def add(self, events):
        """One batch of parsed events (from one read of the proxy's stream)."""
        if not events:
            return
        now = self.clock()
        with self.lock:
            _, edges, routes = self._bucket(int(now))
            for event in events:
                edge = (event[0], event[1], event[2], event[3], event[9])
                (edges.get(edge) or edges.setdefault(edge, Tally())).add(event)
                if event[0] == "http":
                    route = (event[1], event[4], event[5].split("?", 1)[0])
                    if route not in routes and len(routes) >= MAX_ROUTES:
                        route = (event[1], *OTHER_ROUTE)
                    tally = routes.get(route) or routes.setdefault(route, Tally())
                    tally.add(event)
                    tally.peers.add(event[2] or event[3])
            taps = list(self.taps)
        for queue, ready in taps:
            queue.extend((now, event) for event in events)
            ready.set()

    def _bucket(self, second):
        if not self.seconds or self.seconds[-1][0] != second:
            self.seconds.append([second, {}, {}])
            while self.seconds[0][0] <= second - self.keep:
                self.seconds.popleft()
        return self.seconds[-1]

    def window(self, seconds, which):
        """The edges (which=1) or routes (which=2) tallied over the last `seconds` seconds."""
        since = int(self.clock()) - seconds
        merged: dict = {}
        with self.lock:
            for bucket in self.seconds:
                if bucket[0] > since:
                    for key, tally in bucket[which].items():
                        (merged.get(key) or merged.setdefault(key, Tally())).merge(tally)
        return merged

    def stat(self, service, seconds):
        """`meshctl stat`'s rows for this service: one for everything it received (source and
        destination empty), one per mesh caller (its identity as source) and per callee it
        called (as destination)."""
        edges = self.window(seconds, 1)
        rows, inbound = [], {"http": Tally(), "tcp": Tally()}
        for (kind, direction, source, destination, mtls), tally in sorted(edges.items()):
            if direction == "inbound":
                inbound[kind].merge(tally)
            if source or destination:
                rows.append({"service": service, "kind": kind, "direction": direction,
                             "source": source or service, "destination": destination or service,
                             "mtls": mtls, **summary(tally, seconds)})
        kind = "tcp" if inbound["tcp"].count > inbound["http"].count else "http"
        return [{"service": service, "kind": kind, "direction": "inbound", "source": "", "destination": "",
                 "mtls": None, **summary(inbound[kind], seconds)}, *rows]

    def routes(self, service, seconds):
        """`meshctl top`'s rows: the routes this service served, busiest first."""
        rows = [{"service": service, "method": method, "path": path, "callers": sorted(p or "host" for p in tally.peers),
                 **summary(tally, seconds)}
                for (direction, method, path), tally in self.window(seconds, 2).items() if direction == "inbound"]
        return sorted(rows, key=lambda row: (-row["requests"], row["path"]))

    def listen(self):
        """A tap: events from now on, in a bounded queue; call stop_listening when done."""
        tap: tuple = (collections.deque(maxlen=TAP_QUEUE), threading.Event())
        with self.lock:
            self.taps.append(tap)
        return tap

    def stop_listening(self, tap):
        with self.lock:
            self.taps.remove(tap)


def tap_record(service, at, event):
    """One event as `meshctl tap` prints it (a JSON object)."""
    record = dict(zip(EVENT_FIELDS, event, strict=True))
    record["time"] = time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"
    record["service"] = service
    if record["direction"] == "outbound":
        record["source"] = service
    record["source"] = record["source"] or "host"         # inbound from outside the mesh
    record["destination"] = record["destination"] or service
    return record


def query_seconds(query, default=60):
    """`window=N` (seconds) from a query string, within 1 and KEEP_SECONDS."""
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "window" and value.isdigit():
            return max(1, min(KEEP_SECONDS, int(value)))
    return default


def make_local_handler(recent, service):
    """The pod-local endpoint (127.0.0.1 only, never published): routes with their paths and
    callers for `top`, the live stream for `tap`. meshctl reads it through the engine (an exec in
    this container), so only who may use the engine sees them."""
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            path, _, query = self.path.partition("?")
            if path == "/routes":
                return self._json(recent.routes(service, query_seconds(query, 10)))
            if path != "/tap":
                return self._json({"error": "try /routes or /tap"}, 404)
            self._stream(recent.listen())      # listening before "{}": every event after it is seen

        def _stream(self, tap):
            queue, ready = tap
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                self.wfile.write(b"{}\n")
                self.wfile.flush()
                while True:
                    ready.wait(1.0)
                    ready.clear()
                    lines = []
                    while queue:
                        at, event = queue.popleft()
                        lines.append(json.dumps(tap_record(service, at, event)) + "\n")
                    self.wfile.write("".join(lines).encode() if lines else b"\n")   # a blank line: still there?
                    self.wfile.flush()
            except OSError:
                pass
            finally:
                recent.stop_listening(tap)

        def _json(self, value, status=200):
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    return Handler


def read_local(port, path, out):
    """What meshctl runs in this container (python3 recent.py PORT PATH) to read the local
    endpoint: copies the answer's lines to `out` as they come; ends when `out` closes (the tap was
    stopped) or the answer ends. A tap's first line, {}, says it listens."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.settimeout(None)
        conn.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        answer = conn.makefile("rb")
        while answer.readline().strip():       # the status line and headers
            pass
        for line in answer:         # blank lines too: a write is how a stopped tap is noticed
            out.write(line)
            out.flush()


if __name__ == "__main__":
    import sys

    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        read_local(int(sys.argv[1]), sys.argv[2], sys.stdout.buffer)
