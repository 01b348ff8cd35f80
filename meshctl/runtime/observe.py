"""`meshctl stat`, `top` and `tap`: what the metrics sidecars saw recently (sidecars/metrics/recent.py).

stat reads each service's /stat on its metrics port (edges' figures, as /metrics already publishes
them); top's routes and tap's stream carry paths and callers, so they are read through the engine,
by a reader run in the metrics container against a port that is never published."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .fanout import at_once
from .status import pod_state, pod_urls, pods
from ..engine.base import Engine
from ..engine.http1 import get_from
from ..errors import UsageError
from ..model import ContainerInfo, selector
from ..sidecars.addresses import OBSERVE_PORT, OBSERVE_READER

Row = dict[str, Any]


def metrics_urls(engine: Engine, project: str) -> dict[str, str]:
    """Service → its metrics sidecar's URL on the host, for the running services that have one."""
    urls = {service: url for (_, service), members in pods(engine, project).items()
            if pod_state(members) == "running" and (url := pod_urls(members).get("metrics"))}
    if not urls:
        raise UsageError(f"no running service of {project} has a metrics sidecar",
                         hint="`meshctl ps` lists what runs; `metrics: false` in mesh.yaml turns it off")
    return urls


def stat(engine: Engine, project: str, window: int) -> list[Row]:
    """One row per service (what it received), then one per edge caller → callee."""
    urls = metrics_urls(engine, project)

    def fetch(url: str) -> list[Row]:
        try:
            return list(json.loads(get_from(url, f"/stat?window={window}")))
        except (OSError, ValueError):
            return []      # an agent from before stat, or restarting: its rows are missing
    answers = dict(zip(urls, at_once(fetch, urls.values()), strict=True))
    return merge_stat(answers)


def merge_stat(answers: dict[str, list[Row]]) -> list[Row]:
    """The agents' rows as stat shows them: every service row; an HTTP edge as its callee saw it
    (its inbound: the caller's verified identity, denials); an edge from the caller's side only
    when the callee has no agent to ask (a TCP service, one outside the mesh)."""
    services = [row for rows in answers.values() for row in rows if not row["source"]]
    edges = [row for rows in answers.values() for row in rows
             if row["source"] and (row["direction"] == "inbound" or row["destination"] not in answers)]
    for row in (*services, *edges):
        row.pop("direction", None)
    return services + sorted(edges, key=lambda r: (r["source"], r["destination"], r["kind"]))


def open_circuits(urls: dict[str, str]) -> set[tuple[str, str]]:
    """(caller, callee) pairs whose circuit breaker is open now (traffic.circuit_breaker), from the
    callers' meshctl_circuit_open gauges."""
    def fetch(url: str) -> str:
        try:
            return get_from(url, "/metrics").decode()
        except (OSError, ValueError):
            return ""
    texts = at_once(fetch, urls.values())
    return {pair for text in texts for pair in circuits_in(text)}


def circuits_in(text: str) -> set[tuple[str, str]]:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return {(s.labels["service"], s.labels["destination"]) for family in text_string_to_metric_families(text)
                for s in family.samples if s.name == "meshctl_circuit_open" and s.value >= 1}
    except (ValueError, KeyError):
        return set()


def metrics_container(engine: Engine, project: str, service: str) -> ContainerInfo:
    found = [c for c in engine.containers(selector(project, service=service), all=False) if c.role == "metrics"]
    if not found:
        raise UsageError(f"{project}/{service} has no running metrics sidecar",
                         hint="`meshctl ps` lists what runs")
    return found[0]


def _reader(path: str) -> list[str]:
    return ["python3", OBSERVE_READER, str(OBSERVE_PORT), path]


def routes(engine: Engine, project: str, service: str | None, window: int) -> list[Row]:
    """The routes the service (or every service) served in the last `window` seconds, busiest first."""
    services = [service] if service else sorted(metrics_urls(engine, project))

    def read(name: str) -> list[Row]:
        code, output = engine.exec(metrics_container(engine, project, name).id, _reader(f"/routes?window={window}"),
                                   timeout=10)
        return list(json.loads(output)) if code == 0 and output.strip() else []
    rows = [row for answer in at_once(read, services) for row in answer]
    return sorted(rows, key=lambda r: (-r["requests"], r["service"], r["path"]))


@dataclass(frozen=True)
class TapFilter:
    caller: str | None = None
    path: str | None = None
    method: str | None = None
    status: str | None = None      # 503, or a class: 5xx

    def matches(self, event: Row) -> bool:
        status = str(event.get("status", ""))
        if self.status and not (status == self.status or (self.status.endswith("xx") and len(self.status) == 3
                                                          and status[:1] == self.status[0])):
            return False
        return ((self.caller is None or event.get("source") == self.caller)
                and (self.path is None or str(event.get("path", "")).startswith(self.path))
                and (self.method is None or str(event.get("method", "")).upper() == self.method.upper()))


def tap(engine: Engine, project: str, service: str, wanted: TapFilter) -> Iterator[Row | None]:
    """The requests crossing the service's proxy from now on: None first, once the agent listens,
    then each event that matches."""
    lines = engine.exec_lines(metrics_container(engine, project, service).id, _reader("/tap"))
    try:
        for line in lines:
            if not line.strip():
                continue
            event = json.loads(line)
            if not event:
                yield None
            elif wanted.matches(event):
                yield event
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()
