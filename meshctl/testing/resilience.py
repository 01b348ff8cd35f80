"""Resilience checks: a declared check with `faults: {api: {delay: 3s}}` runs after every other
check, one at a time, with those faults live at the named services' proxies only while it runs:
applied before it, cleared after it, whether it passed, failed, errored or was interrupted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..config import CheckSpec, Fault
from ..errors import Cancelled, MeshctlError
from ..events import ERROR, CheckDone, CheckResult, CheckStarted
from ..sidecars.faults import describe

# Make `faults` a service's live faults; None: back to what mesh.yaml says (runtime/faults.set_live).
Inject = Callable[[str, "tuple[Fault, ...] | None"], None]
Outcome = tuple[str, str, str]       # outcome, message, excerpt (checks.ServiceChecks' steps)


def faults_text(check: CheckSpec) -> str:
    """api: delay 3000ms; kv: reset 10%."""
    return "; ".join(f"{service}: " + ", ".join(describe(f) for f in faults) for service, faults in check.faults)


def run_resilience_check(service: str, check: CheckSpec, kind: str, run: Callable[[], Outcome], *,
                         inject: Inject, emit: Callable[[object], None],
                         stop: threading.Event | None) -> CheckResult:
    """One check with its faults held around it; Cancelled (after the faults are cleared) on `stop`."""
    emit(CheckStarted(service, check.name))
    started = time.monotonic()
    applied: list[str] = []
    try:
        for target, faults in check.faults:
            applied.append(target)
            inject(target, faults)
    except MeshctlError as exc:
        outcome, message, shown = ERROR, f"the faults could not be applied: {exc.message}", ""
    else:
        outcome, message, shown = _interruptible(run, stop)     # Cancelled passes, after the finally
    finally:
        cleared = _clear(applied, inject)
    if cleared:
        outcome, message = ERROR, f"{message}; and {cleared}"
    result = CheckResult(service, check.name, kind, outcome, time.monotonic() - started,
                         f"with faults ({faults_text(check)}): {message}", shown, faults=faults_text(check))
    emit(CheckDone(result))
    return result


def _clear(services: list[str], inject: Inject) -> str:
    """Every service's faults back to mesh.yaml's; what could not be cleared, in words ("" all were)."""
    failed = []
    for service in services:
        try:
            inject(service, None)
        except MeshctlError as exc:
            failed.append(f"{service}'s faults could not be cleared: {exc.message}")
    return "; ".join(failed)


def _interruptible(run: Callable[[], Outcome], stop: threading.Event | None) -> Outcome:
    """`run` on a daemon thread, so a signal ends the wait at once (a delayed request can take long)."""
    box: list[Outcome | BaseException] = []

    def target() -> None:
        try:
            box.append(run())
        except Exception as exc:   # a check that cannot run is an error of that check
            box.append(exc)

    thread = threading.Thread(target=target, name="resilience-check", daemon=True)
    thread.start()
    while thread.is_alive():
        if stop is not None and stop.is_set():
            raise Cancelled("interrupted")
        thread.join(0.05)
    outcome = box[0]
    if isinstance(outcome, BaseException):
        return ERROR, f"{type(outcome).__name__}: {outcome}", ""
    return outcome
