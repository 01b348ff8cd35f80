"""`meshctl trace`: the spans kept in each pod's metrics sidecar (sidecars/metrics/spans.py's
store: the proxies' hops and the apps' own OTLP spans), merged by trace, summarized and drawn as a
waterfall. Requests' paths and callers are not for every local user: the sidecar serves them on its
published port only to a request carrying the project's observe key (derived from meshctl's
secret, 0600 in MESHCTL_HOME), and else through the engine, by an exec asking its loopback-only
endpoint (a sidecar started without the key, or a port this host cannot reach). The first takes
milliseconds; an exec costs the engine ~0.1 s a container."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .status import pod_urls
from ..engine.base import Engine
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
    containers = engine.containers(selector(project), all=False)
    sidecars = [c for c in containers if c.role == METRICS]
    if not sidecars:
        raise UsageError(f"no running metrics sidecar in {project}, so no traces",
                         hint="`meshctl ps` lists what runs; a service with `metrics: false` keeps none")
    secret = probe_secret(home) if home is not None else ""
    key = observe_key(secret, project) if secret else ""
    query = f"?trace={trace_id}" if trace_id else ""

    def read(sidecar: ContainerInfo) -> list[Span]:
        url = pod_urls([c for c in containers if c.service == sidecar.service]).get("metrics")
        if key and url:
            request = urllib.request.Request(url.removesuffix("/metrics") + "/meshctl/spans" + query,
                                             headers={"Authorization": f"Bearer {key}"})
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return json.loads(answer.read())["spans"]
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                pass        # a sidecar from before the key, or another home's: ask through the engine
        code, output = engine.exec(sidecar.id, _fetch_command(query), timeout=10)
        return json.loads(output)["spans"] if code == 0 else []
    # All pods at once, as stat and top read them: the answer takes the slowest one's time, not their sum.
    with ThreadPoolExecutor(max_workers=min(16, len(sidecars))) as pool:
        answers = list(pool.map(read, sidecars))
    return [span for spans in answers for span in spans if trace_id in (None, span["trace_id"])]


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


def _root(spans: list[Span]) -> Span:
    """The span whose parent is not among them (the earliest such, a server before a client), or the earliest."""
    ids = {span["span_id"] for span in spans}
    roots = [span for span in spans if span["parent_span_id"] not in ids] or spans
    return min(roots, key=lambda span: (span["start_us"], span["kind"] != "server"))


def summarize(trace_id: str, spans: list[Span]) -> TraceSummary:
    root = _root(spans)
    start = min(span["start_us"] for span in spans)
    status = root.get("attributes", {}).get("http.response.status_code", "")
    return TraceSummary(trace_id, root["service"], root["name"], len(spans),
                        tuple(sorted({span["service"] for span in spans})), start,
                        max(span["end_us"] for span in spans) - start, str(status),
                        any(span["status_code"] == "error" for span in spans))


def recent(spans: list[Span], *, last: int = 20, errors: bool = False, slowest: bool = False) -> list[TraceSummary]:
    """The newest `last` traces (with `errors`: only failed ones; `slowest`: the longest first)."""
    rows = [summarize(trace_id, kept) for trace_id, kept in by_trace(spans).items()]
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
