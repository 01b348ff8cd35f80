"""One command changes a project at a time: a lock per project under MESHCTL_HOME/locks.

It is an fcntl.flock on a file, so the kernel releases it when its holder dies (even by SIGKILL):
a stale lock cannot wedge a project, the next command simply takes it. The holder writes its pid
and command line into the file, for the message the next command shows when it gives up waiting.

Who takes it: Stack.up (up, up -d, meshctl test's stack) for the start, every change a running
stack makes (mesh.yaml and hot reloads, sidecar restarts, pod rebuilds, certificate renewal) for
that change, and down_project (down, down --all, the foreground teardown). A foreground `up` does
not hold it while it only watches, so `meshctl down` from another shell can still end it. Within
one process the lock is shared by every thread (a failed start tears down from a worker thread
while the starting thread holds it); which changes of one stack may overlap is Scopes' business."""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ProjectBusy

WAIT = 5.0            # seconds a second command waits for the first before it gives up


class ProjectLock:
    def __init__(self, path: Path, project: str):
        self.path = path
        self.project = project
        self._fd: int | None = None
        self._depth = 0
        self._mutex = threading.Lock()

    @contextmanager
    def held(self, wait: float | None = None) -> Iterator[None]:
        self.acquire(wait)
        try:
            yield
        finally:
            self.release()

    def acquire(self, wait: float | None = None) -> None:
        """Wait up to `wait` seconds (WAIT by default) for another process to let go; ProjectBusy then."""
        with self._mutex:
            if self._depth == 0:
                self._fd = self._take(WAIT if wait is None else wait)
            self._depth += 1

    def release(self) -> None:
        with self._mutex:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None

    def _take(self, wait: float) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(fd)
                    raise self._busy(holder, wait) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": _command_line()}).encode())
        return fd

    def holder(self) -> dict:
        """What the holder wrote: its pid and command (empty if it has not written them yet)."""
        try:
            found = json.loads(self.path.read_text() or "{}")
            return found if isinstance(found, dict) else {}
        except (OSError, ValueError):
            return {}

    def _busy(self, holder: dict, wait: float) -> ProjectBusy:
        pid, command = holder.get("pid"), holder.get("command")
        who = f"pid {pid}: {command}" if pid else "another meshctl process"
        return ProjectBusy(f"project {self.project} is being changed by another meshctl command ({who}); "
                           f"waited {wait:g}s",
                           hint="wait for it to finish and run this again" + (f", or stop it (kill {pid})" if pid else ""))


class Scopes:
    """Which changes of one running stack may overlap, within its process. A change of one service
    (its app restarted or rebuilt by a hot reload, a sidecar of its restarted, its pod rebuilt)
    waits only for a change of that same service and for a whole-project change (the start, a
    mesh.yaml converge, certificate renewal); a whole-project change waits for every other change.
    So api's reload, waiting on requests that hang on a dead kv, never holds up the restart of kv's
    killed proxy. No waiter is preferred: a repair does not queue behind a pending renewal (a
    whole-project change gets in as soon as no service is changing; per-service changes are
    one at a time per service and short, so it is not starved in practice)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._whole = False
        self._services: set[str] = set()

    @contextmanager
    def service(self, name: str) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._whole and name not in self._services)
            self._services.add(name)
        try:
            yield
        finally:
            with self._changed:
                self._services.discard(name)
                self._changed.notify_all()

    @contextmanager
    def whole(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._whole and not self._services)
            self._whole = True
        try:
            yield
        finally:
            with self._changed:
                self._whole = False
                self._changed.notify_all()


_LOCKS: dict[Path, ProjectLock] = {}
_LOCKS_MUTEX = threading.Lock()


def project_lock(home: Path, project: str) -> ProjectLock:
    """The process's one lock object for a project (two in one process would lock each other out:
    flock locks belong to an open file, not to a process)."""
    path = (home / "locks" / (re.sub(r"[^A-Za-z0-9_.-]", "_", project) + ".lock")).absolute()
    with _LOCKS_MUTEX:
        return _LOCKS.setdefault(path, ProjectLock(path, project))


def _command_line() -> str:
    return " ".join(["meshctl", *sys.argv[1:]]) if sys.argv else "meshctl"
