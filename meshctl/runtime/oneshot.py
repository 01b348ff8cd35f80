"""Waiting on the engine while a Ctrl-C is still seen at once: a long engine call (a build, a pull)
on a thread of its own, and a one-shot container (traffic capture, a dependency install) followed
to its exit. `check` raises to stop waiting (the executor's Cancelled)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..engine.base import Engine
from ..model import ContainerSpec


def cancellable(job: Callable[[], Any], check: Callable[[], None]) -> Any:
    """Run a long engine call so that a Ctrl-C is seen at once."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, job()))
        except BaseException as exc:   # handed to the caller's thread
            outcome.append((False, exc))

    worker = threading.Thread(target=run, name="engine-call", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
        check()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def one_shot(engine: Engine, spec: ContainerSpec, on_line: Callable[[str], None],
             check: Callable[[], None]) -> tuple[int | None, list[str]]:
    """Create and start a one-shot container and follow its output to its exit (a Ctrl-C is
    seen at once): its exit code and its lines. Interrupted, it is removed."""
    container_id = engine.create(spec)
    lines: list[str] = []
    try:
        exited = engine.watch_exit(container_id)
        engine.start(container_id, name=spec.name)

        def follow() -> int | None:
            for line in engine.logs(container_id, follow=True):     # ends when it exits
                lines.append(line)
                on_line(line)
            return exited()

        return cancellable(follow, check), lines
    except BaseException:
        engine.remove(container_id)
        engine.wait_removed(container_id)
        raise
