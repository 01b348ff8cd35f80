"""Foreground supervision: stream logs, notice exits, stop everything on Ctrl-C or SIGTERM.

Signal handlers only set flags (uvicorn's habit); the one exception is the first signal during
startup, which raises KeyboardInterrupt so a long build or wait stops at once and `Stack.up`
tears down what it started."""

from __future__ import annotations

import queue
import signal
import threading
from dataclasses import replace
from collections.abc import Callable
from typing import Any

from .pod import APP
from .stack import Exited, LogLine, Phase, RunningPod, Stack


class Interrupts:
    def __init__(self) -> None:
        self.stop = threading.Event()     # first Ctrl-C / SIGTERM: stop gracefully
        self.force = threading.Event()    # second: kill everything now
        self.raise_at_once = True         # during startup, unwind immediately
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def install(self) -> "Interrupts":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            self.force.set()
            return
        self.signal_name = signal.Signals(signum).name
        self.stop.set()
        if self.raise_at_once:
            raise KeyboardInterrupt


def teardown(stack: Stack, interrupts: Interrupts, on_event: Callable[[Any], None], *,
             show_logs: bool = False) -> None:
    """Graceful stop in the background; a second Ctrl-C switches to killing everything.
    With show_logs, the containers' last words (an app's shutdown messages) still appear."""
    interrupts.raise_at_once = False
    worker = threading.Thread(target=stack.down, name="teardown")
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
        if show_logs:
            _drain_logs(stack.tracker.queue, on_event)
        if interrupts.force.is_set():
            on_event(Phase("forced: killing every container now"))
            stack.down(force=True)
            break
    worker.join(15)
    if show_logs:
        _drain_logs(stack.tracker.queue, on_event)


def supervise(stack: Stack, running: list[RunningPod], interrupts: Interrupts,
              on_event: Callable[[Any], None]) -> int:
    """Run until Ctrl-C/SIGTERM (exit 0) or until a container exits by itself (the app's code)."""
    interrupts.raise_at_once = False
    events = stack.tracker.queue
    while True:
        if interrupts.stop.is_set():
            on_event(Phase(f"{interrupts.signal_name or 'stop'}: stopping the apps, then the sidecars"))
            teardown(stack, interrupts, on_event, show_logs=True)
            return 0
        try:
            event = events.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(event, LogLine):
            on_event(event)
        elif isinstance(event, Exited):
            _drain_logs(events, on_event)
            tracked = stack.tracker.find(event.service, event.role)
            on_event(replace(event, tail=tuple(tracked.tail)[-10:] if tracked else ()))
            on_event(Phase("tearing down the pod" + ("s" if len(running) > 1 else "")))
            teardown(stack, interrupts, on_event, show_logs=True)
            if event.role == APP:
                return event.code if event.code is not None else 1
            return 1


def _drain_logs(events: queue.Queue, on_event: Callable[[Any], None]) -> None:
    """Show the log lines already queued, so an exit message comes after the app's last words."""
    pending = []
    while True:
        try:
            pending.append(events.get_nowait())
        except queue.Empty:
            break
    for event in pending:
        if isinstance(event, LogLine):
            on_event(event)
