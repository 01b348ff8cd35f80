"""The dashboard's live state for one project: a poller that reads `ps` and `stat` every TICK
seconds (the graph, pushed to every open page) and a chart point every CHART_SECONDS (a bounded
ring), a `tap` per service with a metrics sidecar feeding the requests view (a bounded list of
recent requests, and each page's bounded queue), and the on-demand reads: a service's view with
its log lines, traces, one trace's waterfall, a fault set or cleared."""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .views import CHART_SECONDS, History, graph, service_view, trace_rows, waterfall_rows
from ..faults import ServiceFaults, change_live, project_faults, read_faults
from ..observe import TapFilter, open_circuits, stat, tap
from ..status import ServiceStatus, status
from ..traces import one_trace, recent, trace_summaries, waterfall
from ...config import ProjectSpec, TrafficPolicy
from ...engine.base import Engine
from ...errors import MeshctlError, UsageError
from ...model import HOLDER, selector

Row = dict[str, Any]
TICK = 2.0                  # seconds between graph updates
GRAPH_WINDOW = 60           # the graph's figures: the last minute
RECENT_REQUESTS = 500       # the requests view's backlog for a page that opens
QUEUE = 1000                # a page that reads slower than this loses the oldest messages
LOG_LINES = 40


class Listener:
    """One open page's messages (kind, JSON text), bounded."""

    def __init__(self, size: int = QUEUE):
        self.messages: collections.deque[tuple[str, str]] = collections.deque(maxlen=size)
        self.ready = threading.Event()

    def take(self, timeout: float) -> list[tuple[str, str]]:
        self.ready.wait(timeout)
        self.ready.clear()
        taken = []
        while self.messages:
            taken.append(self.messages.popleft())
        return taken


class Hub:
    """Messages to every open page."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.listeners: list[Listener] = []

    def listen(self) -> Listener:
        listener = Listener()
        with self.lock:
            self.listeners.append(listener)
        return listener

    def stop(self, listener: Listener) -> None:
        with self.lock:
            if listener in self.listeners:
                self.listeners.remove(listener)

    def publish(self, kind: str, value: Any) -> None:
        text = json.dumps(value, separators=(",", ":"))
        with self.lock:
            listeners = list(self.listeners)
        for listener in listeners:
            listener.messages.append((kind, text))
            listener.ready.set()


def request_row(event: Row, agents: set[str]) -> Row | None:
    """A tapped request, once: as its callee saw it (inbound), or as its caller did when the callee
    has no metrics sidecar to ask (stat's rule)."""
    if event.get("direction") == "outbound" and event.get("destination") in agents:
        return None
    return event


class Board:
    def __init__(self, engine: Engine, project: str, home: Path, spec: ProjectSpec | None = None,
                 clock: Callable[[], float] = time.time):
        self.engine, self.project, self.home, self.spec, self.clock = engine, project, home, spec, clock
        self.hub = Hub()
        self.history = History()
        self.requests: collections.deque[Row] = collections.deque(maxlen=RECENT_REQUESTS)
        self.snapshot: Row = {"project": project, "nodes": [], "edges": [], "error": None, "tapping": []}
        self.taps: dict[str, threading.Thread] = {}
        self.tapping: set[str] = set()
        self.agents: set[str] = set()
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.last_chart = 0.0
        self.lock = threading.Lock()

    # -- the poller ---------------------------------------------------------------------------------

    def start(self) -> Board:
        threading.Thread(target=self._poll, name="dashboard-poller", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def refresh_soon(self) -> None:
        self.wake.set()

    def _poll(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
            except MeshctlError as exc:        # the engine went away: say so, try again next tick
                self.snapshot = {**self.snapshot, "error": exc.message}
                self.hub.publish("graph", self.snapshot)
            self.wake.wait(TICK)
            self.wake.clear()

    def statuses(self) -> list[ServiceStatus]:
        return status(self.engine, self.project, home=self.home)

    def tick(self) -> Row:
        """One update: the graph (published to the pages), a chart point when one is due, taps
        started for services that have none running."""
        error = None
        statuses = self.statuses()
        faults = {f.service: f for f in project_faults(self.home, self.project)}
        rows: list[Row] = []
        try:
            rows = stat(self.engine, self.project, GRAPH_WINDOW)
        except MeshctlError as exc:
            error = exc.message
        now = self.clock()
        if rows and now - self.last_chart >= CHART_SECONDS:
            self.last_chart = now
            with contextlib.suppress(MeshctlError):
                self.history.add(now, stat(self.engine, self.project, CHART_SECONDS))
            self.hub.publish("charts", self.history.as_json())
        metrics = {s.service: s.urls["metrics"] for s in statuses if s.state == "running" and s.urls.get("metrics")}
        self.agents = set(metrics)
        circuits = open_circuits(metrics) if rows else set()
        if not self.stopping.is_set():
            self._ensure_taps()
        snapshot = {"project": self.project, "at": round(now, 3), "error": error,
                    "tapping": sorted(self.tapping), **graph(statuses, rows, faults, circuits)}
        self.snapshot = snapshot
        self.hub.publish("graph", snapshot)
        return snapshot

    # -- requests -------------------------------------------------------------------------------------

    def _ensure_taps(self) -> None:
        with self.lock:
            for service in sorted(self.agents):
                thread = self.taps.get(service)
                if thread is None or not thread.is_alive():
                    self.taps[service] = threading.Thread(target=self._tap, args=(service,), daemon=True,
                                                          name=f"dashboard-tap-{service}")
                    self.taps[service].start()

    def _tap(self, service: str) -> None:
        try:
            for event in tap(self.engine, self.project, service, TapFilter()):
                if self.stopping.is_set():
                    return
                if event is None:
                    self.tapping.add(service)
                    continue
                row = request_row(event, self.agents)
                if row is not None:
                    self.requests.append(row)
                    self.hub.publish("request", row)
        except MeshctlError:
            pass        # the sidecar went away: the next tick starts another tap if it is back
        finally:
            self.tapping.discard(service)

    def recent_requests(self, wanted: TapFilter, service: str | None = None) -> list[Row]:
        return [r for r in list(self.requests) if (service is None or r.get("service") == service) and wanted.matches(r)]

    # -- on demand ------------------------------------------------------------------------------------

    def policy(self, service: str) -> tuple[TrafficPolicy | None, bool]:
        """The service's `traffic:` (and whether it is known: only with the project's mesh.yaml)."""
        if self.spec is None:
            return None, False
        found = next((s for s in self.spec.services if s.name == service), None)
        return (found.traffic if found is not None else None), True

    def service(self, name: str) -> Row:
        found = next((s for s in self.statuses() if s.service == name), None)
        if found is None:
            raise UsageError(f"{self.project}/{name}: no such service", hint="the graph lists the services")
        logs = {}
        for container in self.engine.containers(selector(self.project, service=name), all=True):
            if container.role != HOLDER:
                logs[container.name] = list(self.engine.logs(container.id, follow=False, tail=LOG_LINES))
        policy, known = self.policy(name)
        return service_view(found, read_faults(self.home, self.project, name), policy, logs, known)

    def traces(self, errors: bool = False) -> list[Row]:
        return trace_rows(recent(trace_summaries(self.engine, self.project, home=self.home), last=100, errors=errors))

    def trace(self, trace_id: str) -> list[Row]:
        return waterfall_rows(waterfall(one_trace(self.engine, self.project, trace_id, home=self.home)))

    def faults(self) -> list[Row]:
        return [f.as_json() for f in project_faults(self.home, self.project)]

    def set_fault(self, service: str, form: Row) -> Row:
        """The page's fault form: {"clear": true}, or {"kind": "abort"|"delay"|"reset", "value":
        503 | "2s", "percent": 20, "from": ["web"]}; the same as `meshctl fault`."""
        result: ServiceFaults
        if form.get("clear"):
            result = change_live(self.engine, self.home, self.project, service, clear=True)
        else:
            kind, value = form.get("kind"), form.get("value")
            if kind not in ("abort", "delay", "reset"):
                raise UsageError(f"kind {kind!r}: abort, delay or reset", hint="an abort answers a status")
            try:
                percent = float(form.get("percent", 100) or 100)
                abort = int(value) if kind == "abort" else None       # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise UsageError(f"{kind} {value!r}, {form.get('percent')!r}%: not numbers",
                                 hint="abort 503, percent 20") from None
            callers = [c for c in form.get("from") or [] if isinstance(c, str) and c]
            result = change_live(self.engine, self.home, self.project, service, abort=abort,
                                 delay=str(value) if kind == "delay" else None, reset=kind == "reset",
                                 percent=percent, callers=callers)
        self.refresh_soon()
        return result.as_json()
