"""`meshctl trace`: the spans kept in each pod's metrics sidecar (sidecars/metrics/spans.py's
store: the proxies' hops and the apps' own OTLP spans), merged by trace, summarized and drawn as a
waterfall. Requests' paths and callers are not for every local user: the sidecar serves them on its
published port only to a request carrying the project's observe key (derived from meshctl's
secret, 0600 in MESHCTL_HOME), and else through the engine, by an exec asking its loopback-only
endpoint (a sidecar started without the key, or a port this host cannot reach). The first takes
milliseconds; an exec costs the engine ~0.1 s a container."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fanout import at_once
from .status import pod_urls
from ..engine.base import Engine
from ..engine.http1 import get_from
from ..errors import UsageError
from ..home import probe_secret
from ..model import ContainerInfo, selector
from ..sidecars.addresses import OTLP_PORT, observe_key

METRICS = "metrics"
Span = dict[str, Any]


def _fetch_command(query: str) -> list[str]:
    url = f"http://127.0.0.1:{OTLP_PORT}/meshctl/spans{query}"
    read = f"import sys,urllib.request;sys.stdout.write(urllib.request.urlopen({url!r},timeout=5).read().decode())"
    return ["python3", "-c", read]


def collect(engine: Engine, project: str, trace_id: str | None = None, *, home: Path | None = None) -> list[Span]:
    """Every span the project's metrics sidecars keep (of one trace, or all). `home`: meshctl's,
    whose secret gives the key to read them on the sidecars' published ports."""
    answers = _ask_sidecars(engine, project, f"?trace={trace_id}" if trace_id else "", home)
    return [span for answer in answers for span in answer.get("spans", []) if trace_id in (None, span["trace_id"])]


def trace_summaries(engine: Engine, project: str, *, home: Path | None = None) -> list[TraceSummary]:
    """A summary of every trace the sidecars keep, merged from each sidecar's own summaries (a
    sidecar from before them sends its spans, summarized here alike)."""
    partials: dict[str, list[dict[str, Any]]] = {}
    for answer in _ask_sidecars(engine, project, "?summary=1", home):
        for partial in answer["traces"] if "traces" in answer else _partials(answer.get("spans", [])):
            partials.setdefault(partial["trace_id"], []).append(partial)
    return [_merged(trace_id, found) for trace_id, found in partials.items()]


def _ask_sidecars(engine: Engine, project: str, query: str, home: Path | None) -> list[dict[str, Any]]:
    """Each running metrics sidecar's answer to /meshctl/spans`query`: on its published port with the
    project's key, else (a sidecar from before the key, another home's) through the engine."""
    containers = engine.containers(selector(project), all=False)
    sidecars = [c for c in containers if c.role == METRICS]
    if not sidecars:
        raise UsageError(f"no running metrics sidecar in {project}, so no traces",
                         hint="`meshctl ps` lists what runs; a service with `metrics: false` keeps none")
    secret = probe_secret(home) if home is not None else ""
    key = observe_key(secret, project) if secret else ""

    def read(sidecar: ContainerInfo) -> dict[str, Any]:
        url = pod_urls([c for c in containers if c.service == sidecar.service]).get("metrics")
        if key and url:
            try:
                return dict(json.loads(get_from(url, "/meshctl/spans" + query,
                                                headers={"Authorization": f"Bearer {key}"})))
            except (OSError, ValueError):
                pass
        code, output = engine.exec(sidecar.id, _fetch_command(query), timeout=10)
        return dict(json.loads(output)) if code == 0 else {}
    return at_once(read, sidecars)


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    root_service: str
    root_name: str
    spans: int
    services: tuple[str, ...]
    start_us: int
    duration_us: int
    status: str            # the root's HTTP status, or ""
    error: bool            # any span failed

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "services": list(self.services)}


def by_trace(spans: list[Span]) -> dict[str, list[Span]]:
    traces: dict[str, list[Span]] = {}
    for span in spans:
        traces.setdefault(span["trace_id"], []).append(span)
    return traces


def _partials(spans: list[Span]) -> list[dict[str, Any]]:
    """The summaries a sidecar makes of the spans it keeps (sidecars/metrics/spans.py's summaries)."""
    rows = []
    for trace_id, kept in by_trace(spans).items():
        ids = {span["span_id"] for span in kept}
        head = min([span for span in kept if span["parent_span_id"] not in ids] or kept, key=_root_order)
        rows.append({"trace_id": trace_id, "spans": len(kept), "services": sorted({span["service"] for span in kept}),
                     "start_us": min(span["start_us"] for span in kept), "end_us": max(span["end_us"] for span in kept),
                     "error": any(span["status_code"] == "error" for span in kept),
                     "head": {**{k: head[k] for k in ("service", "name", "kind", "start_us")},
                              "status": str(head.get("attributes", {}).get("http.response.status_code", ""))}})
    return rows


def _root_order(span: dict[str, Any]) -> tuple[int, bool]:
    """The root is the earliest span whose parent is not kept, a server before a client."""
    return span["start_us"], span["kind"] != "server"


def _merged(trace_id: str, partials: list[dict[str, Any]]) -> TraceSummary:
    """One trace's summary from its pods' partial ones: the earliest head of all is its root (each
    pod's head is its earliest span with no parent there; a head whose parent is in another pod
    started after that parent, so the earliest is one with no parent anywhere)."""
    root = min((p["head"] for p in partials), key=_root_order)
    start = min(p["start_us"] for p in partials)
    return TraceSummary(trace_id, root["service"], root["name"], sum(p["spans"] for p in partials),
                        tuple(sorted({s for p in partials for s in p["services"]})), start,
                        max(p["end_us"] for p in partials) - start, root["status"], any(p["error"] for p in partials))


def recent(summaries: list[TraceSummary], *, last: int = 20, errors: bool = False,
           slowest: bool = False) -> list[TraceSummary]:
    """The newest `last` traces (with `errors`: only failed ones; `slowest`: the longest first)."""
    rows = list(summaries)
    if errors:
        rows = [row for row in rows if row.error]
    rows.sort(key=lambda row: row.start_us, reverse=True)
    rows = rows[:last] if not slowest else sorted(rows, key=lambda row: row.duration_us, reverse=True)[:last]
    return rows


@dataclass(frozen=True)
class WaterfallRow:
    depth: int               # nesting under the root
    span: Span
    offset_us: int           # from the trace's start
    duration_us: int


def waterfall(spans: list[Span]) -> list[WaterfallRow]:
    """A trace's spans in tree order (each under its parent, siblings by start); a span whose parent
    is not kept starts a tree of its own."""
    if not spans:
        return []
    start = min(span["start_us"] for span in spans)
    children: dict[str, list[Span]] = {}
    ids = {span["span_id"] for span in spans}
    for span in spans:
        children.setdefault(span["parent_span_id"] if span["parent_span_id"] in ids else "", []).append(span)
    rows: list[WaterfallRow] = []
    stack = [(0, span) for span in sorted(children.get("", []), key=_order, reverse=True)]
    while stack:
        depth, span = stack.pop()
        rows.append(WaterfallRow(depth, span, span["start_us"] - start, span["end_us"] - span["start_us"]))
        stack.extend((depth + 1, child) for child in sorted(children.get(span["span_id"], []), key=_order, reverse=True))
    return rows


def _order(span: Span) -> tuple[int, bool]:
    return span["start_us"], span["kind"] != "client"


def one_trace(engine: Engine, project: str, trace_id: str, *, home: Path | None = None) -> list[Span]:
    trace_id = trace_id.lower()
    if len(trace_id) != 32 or any(c not in "0123456789abcdef" for c in trace_id):
        raise UsageError(f"{trace_id!r} is not a trace id (32 hex digits)", hint="`meshctl trace` lists recent ones")
    spans = collect(engine, project, trace_id, home=home)
    if not spans:
        raise UsageError(f"no spans of trace {trace_id} in {project}",
                         hint="each metrics sidecar keeps its last 10,000 spans; `meshctl trace` lists what is kept")
    return spans
