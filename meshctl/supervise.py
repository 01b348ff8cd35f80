"""Foreground supervision: stream logs, notice exits, stop everything on Ctrl-C or SIGTERM.

Signal handlers only set flags (uvicorn's habit); the one exception is the first signal during
startup, which raises KeyboardInterrupt so a long build or wait stops at once and `Stack.up`
tears down what it started."""

from __future__ import annotations

import queue
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Callable
from typing import Any

from .config import load_project
from .errors import BuildError, MeshctlError
from .pod import APP
from .stack import Exited, LogLine, Phase, RunningPod, Stack
from .watch import RESTART, Watcher, classify


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


@dataclass(frozen=True)
class Reloaded:
    """One line on the console per reload: what changed, what was done, how long it took."""
    changed: tuple[str, ...]
    action: str
    seconds: float
    error: MeshctlError | None = None


class Reloader:
    """uvicorn's supervisor shape: watch → for each change set, one reload, never two at once.
    Changes that arrive during a reload are gathered by the watcher and make exactly one more."""

    CERT_CHECK_EVERY = 600.0   # seconds between checks that leaf certificates are not near expiry

    def __init__(self, stack: Stack, stop: threading.Event):
        self.stack = stack
        self.stop = stop
        # Watching starts before the stack comes up, so a save made while it starts is not lost;
        # such changes wait until `ready` is set, then make one reload at once.
        self.ready = threading.Event()
        self.emit = stack.tracker.queue.put    # events reach the console through the supervisor
        self._next_cert_check = time.monotonic() + self.CERT_CHECK_EVERY
        self.thread = threading.Thread(target=self.run, name="reloader", daemon=True)

    def start(self) -> "Reloader":
        self.thread.start()
        return self

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                config_changed = False
                for paths in Watcher(self.stack.project, self.stop):
                    # Saved while the stack starts: reload as soon as it is up (later changes wait
                    # in the watcher meanwhile).
                    while paths and not self.ready.wait(0.05):
                        if self.stop.is_set():
                            return
                    if paths:
                        config_changed = self._reload_reporting_bugs(paths)
                        if config_changed:
                            break   # the watched folders may have changed with mesh.yaml
                    if time.monotonic() >= self._next_cert_check:
                        self._next_cert_check = time.monotonic() + self.CERT_CHECK_EVERY
                        self._renew_certificates()
                if not config_changed:
                    return
        except Exception as exc:  # the watcher itself failed (an inotify limit, a folder gone)
            self.emit(Reloaded((), "watching stopped; the stack keeps running", 0.0,
                               MeshctlError(f"file watching failed: {exc}",
                                            hint="restart meshctl up; on Linux check fs.inotify.max_user_watches")))

    def _reload_reporting_bugs(self, paths: set[Path]) -> bool:
        """One reload; an unexpected failure is reported on the console and watching goes on."""
        try:
            return self.reload(paths)
        except Exception as exc:
            changed = tuple(_short(p, self.stack.project.root) for p in sorted(paths))
            self.emit(Reloaded(changed, "reload failed", 0.0, MeshctlError(f"{type(exc).__name__}: {exc}")))
            return False

    def reload(self, paths: set[Path]) -> bool:
        """Apply one change set; return True when mesh.yaml changed."""
        project = self.stack.project
        plan = classify(project, paths)
        if plan.empty:
            return False
        started = time.monotonic()
        changed = tuple(_short(p, project.root) for p in plan.paths)
        if plan.config_changed:
            assert project.source is not None
            try:
                new_project = load_project(project.source)
            except MeshctlError as exc:
                self.emit(Reloaded(changed, "mesh.yaml not applied; the stack keeps running as it was",
                                   time.monotonic() - started, exc))
                return False
            try:
                self.stack.converge(new_project)
                plan = classify(new_project, paths - {project.source})
                self.emit(Reloaded(changed, "mesh.yaml applied", time.monotonic() - started))
            except MeshctlError as exc:
                self.emit(Reloaded(changed, "mesh.yaml applied in part", time.monotonic() - started, exc))
                return True
            started = time.monotonic()
        for service, action in sorted(plan.actions.items()):
            try:
                if action == RESTART:
                    self.stack.restart_app(service)
                else:
                    self.stack.rebuild_app(service)
                self.emit(Reloaded(changed, f"{action} {service}", time.monotonic() - started))
            except MeshctlError as exc:
                keep = "the previous app keeps serving" if isinstance(exc, BuildError) else "waiting for the next save"
                self.emit(Reloaded(changed, f"{action} {service} failed; {keep}", time.monotonic() - started, exc))
        return plan.config_changed

    def _renew_certificates(self) -> None:
        started = time.monotonic()
        try:
            renewed = self.stack.renew_certificates()
        except MeshctlError as exc:
            self.emit(Reloaded(("certificates",), "renewal failed", time.monotonic() - started, exc))
            return
        if renewed:
            self.emit(Reloaded(tuple(f"certificate of {s}" for s in renewed), "re-issued, TLS reloaded in place",
                               time.monotonic() - started))


def _short(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def supervise(stack: Stack, running: list[RunningPod], interrupts: Interrupts,
              on_event: Callable[[Any], None], *, reloader: Reloader | None = None) -> int:
    """Run until Ctrl-C/SIGTERM (exit 0) or until a container exits by itself (the app's code).
    With a `reloader` (started before the stack came up), file changes reload the stack as they come."""
    interrupts.raise_at_once = False
    events = stack.tracker.queue
    if reloader is not None:
        reloader.ready.set()
    while True:
        if interrupts.stop.is_set():
            on_event(Phase(f"{interrupts.signal_name or 'stop'}: stopping the apps, then the sidecars"))
            teardown(stack, interrupts, on_event, show_logs=True)
            return 0
        try:
            event = events.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(event, (LogLine, Reloaded, Phase)):
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
