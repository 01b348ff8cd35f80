"""The metrics sidecar's spans: the proxy's hops (read from its access lines) and the app's own
(OTLP/HTTP from its OpenTelemetry SDK), kept in one bounded store keyed by trace.

A span is a plain dict, the one shape every part reads (the store, `meshctl trace`, the OTLP
exporter, which registers itself as a sink):

    {"trace_id": 32 hex, "span_id": 16 hex, "parent_span_id": 16 hex or "",
     "name": "GET /hello", "kind": "server" | "client" | "internal",
     "start_us": epoch µs, "end_us": epoch µs, "service": "api",
     "status_code": "unset" | "ok" | "error",
     "attributes": {"http.request.method": "GET", "url.path": "/hello",
                    "http.response.status_code": 200, "meshctl.peer.spiffe_id": "spiffe://…", …},
     "source": "proxy" | "app"}

Sinks: `store.sinks` is a list of callables; each is called with every batch of spans the store
takes (a list of dicts, the store's own: do not change them), on the thread that received them,
after the store's lock is released. A sink must return at once (queue and send elsewhere); one
that raises is counted in `store.sink_errors` and the batch goes on to the others.
"""

import json
import threading
from collections import deque

# The last spans kept per service (the store is per pod, so per service): some 10 MiB at most.
DEFAULT_LIMIT = 10_000
KINDS = ("server", "client", "internal")


class SpanStore:
    """The last `limit` spans, and an index from trace id to its spans still kept."""

    def __init__(self, limit=DEFAULT_LIMIT, sinks=None):
        self.limit = limit
        self.lock = threading.Lock()
        self.spans: deque = deque()
        self.by_trace: dict = {}
        self.sinks = sinks if sinks is not None else []
        self.sink_errors = 0
        self.received = 0
        self.evicted = 0

    def add(self, spans):
        """Keep a batch of spans (dicts of the shape above), dropping the oldest beyond the limit,
        then hand the batch to every sink."""
        if not spans:
            return
        with self.lock:
            for span in spans:
                self.spans.append(span)
                self.by_trace.setdefault(span["trace_id"], []).append(span)
            self.received += len(spans)
            while len(self.spans) > self.limit:
                self._forget(self.spans.popleft())
        for sink in list(self.sinks):
            try:
                sink(spans)
            except Exception:       # a sink's failure never costs the store or the other sinks
                self.sink_errors += 1

    def _forget(self, span):
        self.evicted += 1
        kept = self.by_trace.get(span["trace_id"])
        if kept is None:
            return
        if kept[0] is span:          # the usual case: a trace's spans arrive in order
            kept.pop(0)
        else:
            kept.remove(span)
        if not kept:
            del self.by_trace[span["trace_id"]]

    def trace(self, trace_id):
        """A trace's spans still kept, oldest first."""
        with self.lock:
            return sorted(self.by_trace.get(trace_id, ()), key=lambda span: span["start_us"])

    def all_spans(self):
        with self.lock:
            return list(self.spans)

    def stats(self):
        with self.lock:
            return {"spans": len(self.spans), "traces": len(self.by_trace), "limit": self.limit,
                    "received": self.received, "evicted": self.evicted, "sink_errors": self.sink_errors}


def new_span(trace_id, span_id, parent_span_id, name, kind, start_us, end_us, service, status_code="unset",
             attributes=None, source="proxy"):
    return {"trace_id": trace_id, "span_id": span_id, "parent_span_id": parent_span_id or "", "name": name,
            "kind": kind, "start_us": start_us, "end_us": end_us, "service": service,
            "status_code": status_code, "attributes": attributes or {}, "source": source}


# --- the proxy's hops -------------------------------------------------------------------------
# An HTTP access line (meshctl's ACCESS_LOG_FORMAT) carries one token between the termination
# state and the quoted request: TRACE/SPAN/PARENT/START_US/END_US ("-" where HAProxy had none).

def trace_token(rest):
    """The trace token of an access line's rest (from the termination state on), or None."""
    fields = rest.split(" ", 2)
    if len(fields) < 3 or fields[1].count("/") != 4:
        return None
    return fields[1]


def access_span(line, service, identity_prefix=""):
    """The span of one access line, or None (a TCP line, HAProxy's own message, an untraced hop)."""
    parts = line.split(" ", 7)
    if len(parts) < 8 or parts[5] == "tcp":
        return None
    token = trace_token(parts[7])
    if token is None:
        return None
    trace_id, span_id, parent, start, end = token.split("/")
    if len(trace_id) != 32 or len(span_id) != 16 or not start.isdigit():
        return None
    if not end.isdigit():       # no answer left the proxy (a reset): the start plus %Ta, in ms
        active = parts[4].rsplit("/", 1)[-1]
        end = str(int(start) + 1000 * max(int(active), 0)) if active.lstrip("-").isdigit() else start
    request = parts[7].split('"', 2)
    words = request[1].split(" ") if len(request) > 2 else []
    method = words[0] if words else "OTHER"
    path = words[1].split("?", 1)[0] if len(words) > 1 else ""
    frontend = parts[2].rstrip("~")
    kind = "client" if frontend == "mesh_out" else "server"
    status = int(parts[5]) if parts[5].isdigit() else 0
    attributes = {"http.request.method": method, "url.path": path, "http.response.status_code": status,
                  "meshctl.proxy.frontend": frontend}
    _peer(attributes, frontend, parts[3], request[2] if len(request) > 2 else "", identity_prefix)
    error = status >= 500 or status == 0 if kind == "client" else status >= 500
    return new_span(trace_id, span_id, "" if parent == "-" else parent, f"{method} {path}", kind,
                    int(start), int(end), service, "error" if error else "unset", attributes)


def _peer(attributes, frontend, backend_server, tail, identity_prefix):
    """Who is at the other end: the callee (a client span) or the mesh caller (a server span)."""
    if frontend == "mesh_out":
        backend = backend_server.split("/", 1)[0]
        if backend.startswith("to_"):
            attributes["server.address"] = backend[3:]
            if identity_prefix:
                attributes["meshctl.peer.spiffe_id"] = identity_prefix + backend[3:]
    elif frontend == "mesh_in":
        caller = tail.strip().rsplit(" ", 1)[-1]
        if caller and caller != "-":
            attributes["meshctl.peer.service"] = caller
            if identity_prefix:
                attributes["meshctl.peer.spiffe_id"] = identity_prefix + caller


def record_access_lines(store, lines, service, identity_prefix=""):
    """Every traced hop among a batch of access lines into the store."""
    spans = [span for span in (access_span(line, service, identity_prefix) for line in lines) if span]
    store.add(spans)
    return spans


# --- reading the store (`meshctl trace`, through the engine) ------------------------------------

def dump(store, query):
    """What `meshctl trace` reads from each pod, as JSON: with ?trace=ID that trace's spans; with
    ?summary=1 a summary of each trace kept (`meshctl trace`'s list: a quarter of the bytes to send and parse
    than the spans); else every span."""
    trace_id, summary = query.get("trace", [None])[0], query.get("summary", [""])[0] == "1"
    if summary and not trace_id:
        return json.dumps({"traces": summaries(store.all_spans()), "stats": store.stats()}, separators=(",", ":"))
    spans = store.trace(trace_id) if trace_id else store.all_spans()
    return json.dumps({"spans": spans, "stats": store.stats()}, separators=(",", ":"))


def summaries(spans):
    """Per trace: its spans' count, services, first start, last end, whether one failed, and its
    head: the earliest span whose parent is not here (meshctl merges the pods' summaries; the
    earliest head of them all is the trace's root, as runtime/traces.py picks it from spans)."""
    traces = {}
    for span in spans:
        traces.setdefault(span["trace_id"], []).append(span)
    rows = []
    for trace_id, kept in traces.items():
        ids = {span["span_id"] for span in kept}
        head = min([span for span in kept if span["parent_span_id"] not in ids] or kept,
                   key=lambda span: (span["start_us"], span["kind"] != "server"))
        rows.append({"trace_id": trace_id, "spans": len(kept), "services": sorted({span["service"] for span in kept}),
                     "start_us": min(span["start_us"] for span in kept), "end_us": max(span["end_us"] for span in kept),
                     "error": any(span["status_code"] == "error" for span in kept),
                     "head": {"service": head["service"], "name": head["name"], "kind": head["kind"],
                              "start_us": head["start_us"],
                              "status": str(head.get("attributes", {}).get("http.response.status_code", ""))}})
    return rows
