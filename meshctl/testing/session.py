"""`meshctl test`: bring a stack up, run the built-in and declared checks against it, tear it down.

    Harness         what differs between stacks: start, logs, teardown (a Stack here; compose_mode.py)
    run_harness     start, checks, teardown, always → Report;  run_smoke_test: that for `meshctl test PATH`
    isolated        the copy of a project a test runs (its own name, free host ports)

targets.py says what each service's checks reach, checks.py runs them, evaluate.py judges what
came back, report.py and junit.py hold and render the outcome. Nothing here prints."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import Fault, HttpCheck, ProjectSpec
from ..engine.base import Engine
from ..errors import Cancelled, MeshctlError
from ..events import ERROR, PASSED, SKIPPED, CheckDone, CheckResult, PodReady
from ..model import APP
from ..runtime.faults import set_live
from ..runtime.stack import Stack
from ..sidecars.faults import probe_key
from ..runtime.supervise import Tracker, teardown
from .checks import run_checks
from .resilience import Inject
from .report import Report, ServiceReport, with_logs
from .targets import Target, targets_for


def isolated(project: ProjectSpec, *, rename: bool = True) -> ProjectSpec:
    """The copy of a project `meshctl test` runs: its own name (`<name>-test`) and free host
    ports, so it never touches, nor collides with, a stack `meshctl up` runs from the same folder."""
    services = tuple(replace(s, ports=tuple((port_name, 0) for port_name, _ in s.ports)) for s in project.services)
    return replace(project, name=f"{project.name}-test" if rename else project.name, services=services)


def not_run(target: Target, outcome: str, message: str, done: tuple[CheckResult, ...] = ()) -> ServiceReport:
    """A service whose checks could not all run: the ones that did, then the rest as `outcome`."""
    finished = {r.name for r in done}
    declared = {c.name: ("http" if isinstance(c, HttpCheck) else "exec") for c in target.checks}
    rest = tuple(CheckResult(target.service, name, declared.get(name, "builtin"), outcome, 0.0, message)
                 for name in target.check_names() if name not in finished)
    return ServiceReport(target.service, done + rest)


@dataclass(frozen=True)
class Harness:
    """What differs between the stacks `meshctl test` can check: how to start one (returning its
    targets), where its logs are, how to take it down."""
    project: str
    planned: list[Target]                                  # the targets it will have, to name checks
    start: Callable[[], list[Target]]
    tails: Callable[[str], dict[str, list[str]]]           # service → container role → last lines
    teardown: Callable[[], None]
    engine: Engine | None
    ca_path: Path | None
    ready: dict[str, float] = field(default_factory=dict)  # service → seconds to ready, as start() learns them
    inject: Inject | None = None                           # a service's live faults (resilience checks)


def run_harness(harness: Harness, *, interrupts: Any, on_event: Callable[[Any], None]) -> Report:
    """Start, run the checks, tear down, always. Never raises for what the report can say: a
    build or start failure, a failed check, a signal."""
    started_at = dt.datetime.now(dt.timezone.utc)
    started = time.monotonic()
    finished: dict[str, list[CheckResult]] = {}    # what a signal must not lose

    def watch(event: Any) -> None:
        if isinstance(event, CheckDone):
            finished.setdefault(event.result.service, []).append(event.result)
        on_event(event)

    services: list[ServiceReport] = []
    error: MeshctlError | None = None
    interrupted = ""
    try:
        try:
            targets = harness.start()
        except Cancelled:
            raise
        except MeshctlError as exc:
            error = exc
            services = [_start_failure(harness, t, exc) for t in harness.planned]
        else:
            services = run_checks(targets, engine=harness.engine, ca_path=harness.ca_path, on_event=watch,
                                  ready_seconds=harness.ready, stop=interrupts.stop, inject=harness.inject)
            services = [s if s.ok else with_logs(s, harness.tails(s.service)) for s in services]
    except Cancelled:
        interrupted = interrupts.signal_name or "SIGINT"
        services = [not_run(t, SKIPPED, f"not run: meshctl was stopped by {interrupted}",
                            tuple(finished.get(t.service, ()))) for t in harness.planned]
    finally:
        harness.teardown()
    return Report(harness.project, tuple(services), started_at, time.monotonic() - started, error=error,
                  interrupted=interrupted)


def _start_failure(harness: Harness, target: Target, exc: MeshctlError) -> ServiceReport:
    if target.service in harness.ready:
        done = (CheckResult(target.service, "ready", "builtin", PASSED, harness.ready[target.service], "ready"),)
        return not_run(target, SKIPPED, "not run: another service did not start", done)
    failed = CheckResult(target.service, "ready", "builtin", ERROR, 0.0, exc.message, exc.details or "")
    return with_logs(not_run(target, SKIPPED, f"not run: {exc.message}", (failed,)), harness.tails(target.service))


def run_smoke_test(engine: Engine, project: ProjectSpec, *, interrupts: Any, on_event: Callable[[Any], None],
                   ready_timeout: float) -> Report:
    """`meshctl test PATH`: a Stack tied to this process (SIGKILL takes it down too)."""

    ready: dict[str, float] = {}

    def watch(event: Any) -> None:
        if isinstance(event, PodReady):
            ready[event.service] = event.seconds
        on_event(event)

    tracker = Tracker(engine)
    stack = Stack(engine, project, on_event=watch, tied=True, watch=tracker, ready_timeout=ready_timeout,
                  cancel=interrupts.stop)

    def start() -> list[Target]:
        running = stack.up()
        apps = {s.name: tracker.find(s.name, APP) for s in project.services}
        return targets_for(project, {r.service: r.urls for r in running},
                           {name: tracked.id for name, tracked in apps.items() if tracked is not None},
                           probe_key=probe_key(stack.settings.probe_secret, project.name))

    def inject(service: str, faults: tuple[Fault, ...] | None) -> None:
        set_live(engine, stack.home, project.name, service, faults)

    harness = Harness(project.name, targets_for(project), start, tracker.tails,
                      teardown=lambda: teardown(stack, interrupts, on_event), engine=engine, ca_path=stack.ca.cert_path,
                      ready=ready, inject=inject)
    return run_harness(harness, interrupts=interrupts, on_event=on_event)
