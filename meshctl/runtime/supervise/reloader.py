"""Changes a running stack makes by itself: hot reload on file changes (Reloader, uvicorn's
iterator shape) and certificate renewal on a timer (RenewalTimer). Both report as Reloaded events."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from ...config import load_project
from ...errors import BuildError, MeshctlError
from ...events import Reloaded
from ...planning.watch import REBUILD, RESTART, SourceChange, change_sets, classify, watched_folders
from ..stack import Stack


class Reloader:
    """uvicorn's reloader shape: an iterator of change plans, and a loop that applies them one at
    a time, never two at once. Changes that arrive during a reload are gathered by the watcher and
    make exactly one more. The iterator watches the folders of the project as it now is: after a
    mesh.yaml change it follows the new folders itself."""

    def __init__(self, stack: Stack, stop: threading.Event, emit: Callable[[Any], None]):
        self.stack = stack
        self.stop = stop
        self.emit = emit                  # events reach the console through the supervisor
        # Watching starts before the stack comes up, so a save made while it starts is not lost;
        # such changes wait until `ready` is set, then make one reload at once.
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, name="reloader", daemon=True)
        self._watching: tuple[Path, ...] = ()
        self._changes: Generator[set[Path], None, None] | None = None

    def start(self) -> Reloader:
        self.thread.start()
        return self

    def run(self) -> None:
        try:
            for change in self:
                self.apply_reporting_bugs(change)
        except Exception as exc:  # the watcher itself failed (an inotify limit, a folder gone)
            self.emit(Reloaded((), "watching stopped; the stack keeps running", 0.0,
                               MeshctlError(f"file watching failed: {exc}",
                                            hint="restart meshctl up; on Linux check fs.inotify.max_user_watches")))

    def __iter__(self) -> Reloader:
        return self

    def __next__(self) -> SourceChange:
        """The next change set with something to do, classified against the project as it is."""
        while True:
            paths = self._next_paths()
            while not self.ready.wait(0.2):    # saved while the stack starts: wait until it is up
                if self.stop.is_set():
                    raise StopIteration
            plan = classify(self.stack.project, paths)
            if not plan.empty:
                return plan

    def _next_paths(self) -> set[Path]:
        while True:
            folders = tuple(watched_folders(self.stack.project))
            if self._changes is None or folders != self._watching:
                if self._changes is not None:
                    self._changes.close()   # mesh.yaml moved the folders: watch the new ones
                self._watching = folders
                self._changes = change_sets(self.stack.project, self.stop)
            paths = next(self._changes, None)
            if paths is None or self.stop.is_set():
                raise StopIteration
            if paths:
                return paths

    def apply_reporting_bugs(self, change: SourceChange) -> None:
        """One reload; an unexpected failure is reported on the console and watching goes on."""
        try:
            self.apply(change)
        except Exception as exc:
            changed = tuple(_short(p, self.stack.project.root) for p in change.paths)
            self.emit(Reloaded(changed, "reload failed", 0.0, MeshctlError(f"{type(exc).__name__}: {exc}")))

    def apply(self, change: SourceChange) -> None:
        project = self.stack.project
        started = time.monotonic()
        changed = tuple(_short(p, project.root) for p in change.paths)
        if change.config_changed:
            assert project.source is not None
            try:
                new_project = load_project(project.source)
                self.stack.converge(new_project)
            except MeshctlError as exc:
                applied = self.stack.project is not project
                self.emit(Reloaded(changed, "mesh.yaml applied in part" if applied else
                                   "mesh.yaml not applied; the stack keeps running as it was",
                                   time.monotonic() - started, exc))
                return
            self.emit(Reloaded(changed, "mesh.yaml applied", time.monotonic() - started))
            change = classify(new_project, set(change.paths) - {project.source})
            started = time.monotonic()
        for service, action in sorted(change.actions.items()):
            try:
                if action == RESTART:
                    self.stack.restart_app(service)
                elif action == REBUILD:
                    self.stack.rebuild_app(service)
                else:     # CONVERGE: a sidecar's image or the dependencies changed; plan it all again
                    self.stack.converge(self.stack.project)
                self.emit(Reloaded(changed, f"{action} {service}", time.monotonic() - started))
            except MeshctlError as exc:
                keep = "the previous app keeps serving" if isinstance(exc, BuildError) else "waiting for the next save"
                self.emit(Reloaded(changed, f"{action} {service} failed; {keep}", time.monotonic() - started, exc))


class RenewalTimer:
    """Every INTERVAL seconds, leaf certificates near expiry are re-issued and reloaded in
    place; on a timer of its own, never concurrent with a reload (renewal is a whole-project change)."""

    INTERVAL = 600.0

    def __init__(self, stack: Stack, stop: threading.Event, emit: Callable[[Any], None]):
        self.stack = stack
        self.stop = stop
        self.emit = emit
        self.thread = threading.Thread(target=self.run, name="renewal", daemon=True)

    def start(self) -> RenewalTimer:
        self.thread.start()
        return self

    def run(self) -> None:
        while not self.stop.wait(self.INTERVAL):
            self.renew()

    def renew(self) -> None:
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
