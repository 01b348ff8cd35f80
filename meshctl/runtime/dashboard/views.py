"""What the dashboard's page shows, shaped as JSON from what `ps`, `stat`, `tap`, `trace` and
`fault` already read (runtime/status.py, observe.py, traces.py, faults.py): pure, no engine.

Nothing here carries an app's environment, a key or a socket: a node is the service's state,
protocol, identity and containers' roles and states; a service view adds its URLs, allowed callers,
traffic policy (timeouts, retries, breaker, split: never `env:`), faults and log lines."""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterable
from typing import Any

from ..faults import ServiceFaults
from ..status import ServiceStatus
from ..traces import Span, TraceSummary, WaterfallRow
from ...config import Fault, TrafficPolicy
from ...model import HOLDER
from ...sidecars.faults import describe

Row = dict[str, Any]
CHART_SECONDS = 10          # one chart point per service every 10 s…
CHART_POINTS = 90           # …for the last 15 minutes


def protocol_of(status: ServiceStatus) -> str:
    declared = (status.mesh or {}).get("protocol")
    if declared:
        return str(declared)
    return "tcp" if status.urls.get("https", "").startswith(("tls:", "tcp:")) else "http"


def applies_to(fault: Fault, caller: str) -> bool:
    return not fault.callers or caller in fault.callers


def node(status: ServiceStatus, row: Row | None, faults: ServiceFaults | None) -> Row:
    mesh = status.mesh or {}
    active = faults.active if faults is not None else ()
    return {"service": status.service, "state": status.state, "protocol": protocol_of(status),
            "identity": mesh.get("identity"), "mtls": mesh.get("mtls", "off"),
            "containers": [{"role": c["role"], "state": c["state"]} for c in status.containers],
            "faults": [describe(f) for f in active], "live_fault": bool(faults and faults.live is not None),
            **figures(row)}


def figures(row: Row | None) -> Row:
    keys = ("requests", "rps", "success_rate", "p99_ms", "denied")
    return {key: (row or {}).get(key, 0 if key in ("requests", "rps", "denied") else None) for key in keys}


def merge_edges(rows: Iterable[Row]) -> list[Row]:
    """stat's edge rows (one per caller, callee, kind and mTLS) as one edge per caller → callee:
    counts added, the success rate weighted by requests, the worst p99, mTLS only if every call had it."""
    edges: dict[tuple[str, str], Row] = {}
    for row in rows:
        key = (row["source"], row["destination"])
        edge = edges.get(key)
        if edge is None:
            edges[key] = {"source": key[0], "destination": key[1], "kind": row["kind"], "mtls": bool(row["mtls"]),
                          "ok": (row["success_rate"] or 0) * row["requests"] / 100, **figures(row)}
            continue
        edge["ok"] += (row["success_rate"] or 0) * row["requests"] / 100
        edge["requests"] += row["requests"]
        edge["rps"] = round(edge["rps"] + row["rps"], 3)
        edge["denied"] += row["denied"]
        edge["mtls"] = edge["mtls"] and bool(row["mtls"])
        worst = [p for p in (edge["p99_ms"], row["p99_ms"]) if p is not None]
        edge["p99_ms"] = max(worst) if worst else None
    for edge in edges.values():
        ok = edge.pop("ok")
        edge["success_rate"] = round(100.0 * ok / edge["requests"], 2) if edge["requests"] else None
    return sorted(edges.values(), key=lambda e: (e["source"], e["destination"]))


def graph(statuses: list[ServiceStatus], rows: list[Row], faults: dict[str, ServiceFaults],
          circuits: Collection[tuple[str, str]] = ()) -> Row:
    """The graph: a node per service, an edge per caller → callee seen in stat's window, each
    edge marked with the callee's faults that apply to that caller and whether the caller's
    circuit breaker to it is open."""
    by_service = {row["service"]: row for row in rows if not row["source"]}
    nodes = [node(s, by_service.get(s.service), faults.get(s.service)) for s in statuses]
    edges = merge_edges(row for row in rows if row["source"])
    for edge in edges:
        callee = faults.get(edge["destination"])
        edge["faults"] = [describe(f) for f in (callee.active if callee else ()) if applies_to(f, edge["source"])]
        edge["circuit_open"] = (edge["source"], edge["destination"]) in circuits
    return {"nodes": nodes, "edges": edges}


def duration(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def policy_lines(policy: TrafficPolicy | None) -> list[str]:
    """A service's `traffic:` in words, as its callers' proxies apply it."""
    if policy is None:
        return []
    lines = [f"timeout {duration(policy.timeout)}"] if policy.timeout is not None else []
    if policy.retries is not None:
        r = policy.retries
        lines.append(f"retries {r.attempts} on {', '.join(r.on)} (per try {duration(r.per_try_timeout)}; "
                     f"methods {', '.join(r.methods)})")
    b = policy.circuit_breaker
    if b is not None and b.consecutive_errors is not None:
        lines.append(f"circuit breaker: opens after {b.consecutive_errors} consecutive errors, for {duration(b.open_for)}")
    if b is not None and b.max_connections is not None:
        lines.append(f"at most {b.max_connections} connections per caller")
    if b is not None and b.max_pending is not None:
        lines.append(f"at most {b.max_pending} pending calls (more are answered 503)")
    if policy.split:
        lines.append("split " + ", ".join(f"{name} {weight}%" for name, weight in policy.split))
    return lines


def service_view(status: ServiceStatus, faults: ServiceFaults | None, policy: TrafficPolicy | None,
                 logs: dict[str, list[str]], known_policy: bool) -> Row:
    mesh = status.mesh or {}
    return {"service": status.service, "state": status.state, "protocol": protocol_of(status),
            "urls": {k: v for k, v in status.urls.items() if k in ("https", "http", "metrics")},
            "containers": [{"name": c["name"], "role": c["role"], "state": c["state"],
                            "logs": logs.get(c["name"], [])} for c in status.containers if c["role"] != HOLDER],
            "identity": mesh.get("identity"), "mtls": mesh.get("mtls", "off"),
            "allow": mesh.get("allow"), "calls": mesh.get("calls", []),
            "policy": policy_lines(policy) if known_policy else None,
            "faults": faults.as_json() if faults is not None else None}


def trace_rows(summaries: list[TraceSummary]) -> list[Row]:
    """The recent traces, failed first, then the slowest."""
    ordered = sorted(summaries, key=lambda t: (not t.error, -t.duration_us))
    return [t.as_dict() for t in ordered]


def waterfall_rows(rows: list[WaterfallRow]) -> list[Row]:
    def span(s: Span) -> Row:
        keep = ("service", "name", "kind", "status_code", "span_id", "parent_span_id", "attributes")
        return {k: s.get(k) for k in keep}
    return [{"depth": r.depth, "offset_us": r.offset_us, "duration_us": r.duration_us, **span(r.span)} for r in rows]


class History:
    """requests/s and p99 per service, a point every CHART_SECONDS for the last 15 minutes: a
    bounded ring per service; a service not seen for that long is forgotten."""

    def __init__(self, points: int = CHART_POINTS, every: int = CHART_SECONDS):
        self.points, self.every = points, every
        self.series: dict[str, collections.deque] = {}
        self.seen: dict[str, float] = {}

    def add(self, at: float, rows: list[Row]) -> None:
        for row in rows:
            if row["source"]:
                continue
            ring = self.series.get(row["service"])
            if ring is None:
                ring = self.series[row["service"]] = collections.deque(maxlen=self.points)
            ring.append([round(at, 1), row["rps"], row["p99_ms"]])
            self.seen[row["service"]] = at
        for service, last in list(self.seen.items()):
            if at - last > self.points * self.every:
                del self.series[service], self.seen[service]

    def as_json(self) -> Row:
        return {"every": self.every, "points": self.points,
                "series": {service: list(ring) for service, ring in sorted(self.series.items())}}
