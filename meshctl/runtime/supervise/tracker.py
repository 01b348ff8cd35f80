"""Tracking the containers a stack starts: each one's log lines (a tail, and the event queue the
foreground supervisor reads) and its exit (Tracker, the executor's Watch); `meshctl logs -f`."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ...engine.base import Engine
from ...errors import MeshctlError, StartError
from ...events import Exited, LogLine
from ...model import APP, HOLDER, ContainerInfo, ContainerSpec

LOG_TAIL = 50




@dataclass
class Tracked:
    service: str
    role: str
    id: str
    name: str
    tail: deque = field(default_factory=lambda: deque(maxlen=LOG_TAIL))
    exited: threading.Event = field(default_factory=threading.Event)
    code: int | None = None
    expected: bool = False      # meshctl is stopping or replacing it: its exit is no news
    stopped: bool = False       # meshctl stopped it (to replace or remove it): its exit fails no start
    pump: threading.Thread | None = None

    def last_lines(self, n: int = 20) -> str:
        return "\n".join(f"{self.role} | {line}" for line in list(self.tail)[-n:])

    def settle(self, timeout: float = 2.0) -> None:
        """Wait for the log pump to deliver the last lines (its stream ends with the container)."""
        if self.pump is not None and self.pump is not threading.current_thread():
            self.pump.join(timeout)


class Tracker:
    """The executor's Watch: streams every started container's logs into a tail and the event
    queue, and watches for its exit. The queue is what the foreground supervisor reads."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.queue: queue.Queue = queue.Queue()
        self.containers: dict[str, Tracked] = {}        # name → the latest container of that name
        self._by_id: dict[str, Tracked] = {}
        self._held: deque = deque()                     # events drain_logs took off the queue, in order
        self._lock = threading.Lock()

    # -- the Watch protocol --------------------------------------------------------------------

    def created(self, spec: ContainerSpec, container_id: str, *, expected: bool) -> None:
        """Called before the container starts, so an immediate exit is still seen."""
        tracked = Tracked(spec.service, spec.role, container_id, spec.name, expected=expected)
        result = self.engine.watch_exit(container_id, restarts=spec.restarts_on_failure)
        with self._lock:
            self.containers[spec.name] = tracked
            self._by_id[container_id] = tracked

        def wait() -> None:
            tracked.code = result()
            tracked.exited.set()
            if not tracked.expected:
                self.queue.put(Exited(tracked.service, tracked.role, tracked.code, id=tracked.id))

        threading.Thread(target=wait, name=f"exit-{spec.name}", daemon=True).start()

    def started(self, spec: ContainerSpec, container_id: str) -> None:
        tracked = self.find_name(spec.name)
        if tracked is not None:
            self._follow(tracked)

    def stopping(self, names: list[str]) -> None:
        with self._lock:
            for name in names:
                if name in self.containers:
                    self.containers[name].expected = self.containers[name].stopped = True

    def restarted(self, container: ContainerInfo) -> None:
        tracked = self.find_name(container.name)
        if tracked is not None:
            tracked.stopped = False     # running again: an exit before it serves fails the reload
            # The old stream ended with the stop and delivered its last lines; from here on, new ones.
            tracked.settle()
            self._follow(tracked, since=time.time())

    def serving(self, service: str) -> None:
        """Until a reloaded app serves, its exit is the reload's failure (reported by the
        reloader), not news for the supervisor; once it serves, an exit is news again."""
        tracked = self.find(service, APP)
        if tracked is not None and not tracked.exited.is_set():
            tracked.expected = False

    def failure(self, service: str) -> MeshctlError | None:
        for tracked in self.of_service(service):
            # (An app replaced by a converge is stopped before its sidecars are waited for: its exit
            # is no failure of theirs.)
            if tracked.exited.is_set() and not tracked.stopped \
                    and (not tracked.expected or tracked.role == APP):
                tracked.settle()
                what = "the app" if tracked.role == APP else f"the {tracked.role} sidecar"
                return StartError(f"{service}: {what} exited with code {tracked.code} before it was ready",
                                  hint=_exit_hint(tracked), details=tracked.last_lines())
        return None

    def exit_code(self, name: str) -> int | None:
        tracked = self.find_name(name)
        return tracked.code if tracked is not None and tracked.exited.is_set() else None

    # -- queries ---------------------------------------------------------------------------------

    def adopt(self, container: ContainerInfo, *, tail: int | str = "all") -> Tracked:
        """Follow a container meshctl did not start in this process (`meshctl logs -f`)."""
        tracked = Tracked(container.service, container.role, container.id, container.name, expected=True)
        with self._lock:
            self.containers[container.name] = tracked
            self._by_id[container.id] = tracked
        self._follow(tracked, tail=tail)
        return tracked

    def _follow(self, tracked: Tracked, since: float | None = None, tail: int | str = "all") -> None:
        def pump() -> None:
            for line in self.engine.logs(tracked.id, follow=True, since=since, tail=tail):
                tracked.tail.append(line)
                self.queue.put(LogLine(tracked.service, tracked.role, line))

        tracked.pump = threading.Thread(target=pump, name=f"logs-{tracked.name}", daemon=True)
        tracked.pump.start()

    def find_name(self, name: str) -> Tracked | None:
        with self._lock:
            return self.containers.get(name)

    def find_id(self, container_id: str) -> Tracked | None:
        with self._lock:
            return self._by_id.get(container_id)


    def find(self, service: str, role: str) -> Tracked | None:
        with self._lock:
            return next((t for t in reversed(self.containers.values()) if t.service == service and t.role == role),
                        None)

    def of_service(self, service: str) -> list[Tracked]:
        with self._lock:
            return [t for t in self.containers.values() if t.service == service]

    def tails(self, service: str) -> dict[str, list[str]]:
        """role → last lines of each container of a service (the holder prints nothing)."""
        out = {}
        for tracked in self.of_service(service):
            if tracked.role != HOLDER:
                if tracked.exited.is_set():
                    tracked.settle()
                out[tracked.role] = list(tracked.tail)
        return out

    def drain_logs(self, on_event: Callable[[Any], None]) -> None:
        """Show the log lines already queued, so an exit message comes after the app's last words.
        Every other event is held, in order, for next_event: two sidecars that exit together are
        two exits, and both are restarted."""
        while True:
            try:
                event = self.queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, LogLine):
                on_event(event)
            else:
                with self._lock:
                    self._held.append(event)

    def next_event(self, timeout: float) -> Any:
        """The next event for the supervisor: those drain_logs held first; queue.Empty after `timeout`."""
        with self._lock:
            if self._held:
                return self._held.popleft()
        return self.queue.get(timeout=timeout)


def _exit_hint(tracked: Tracked) -> str:
    if tracked.code in (137, 143):      # 128 + SIGKILL or SIGTERM: its container was stopped
        signal = "SIGKILL" if tracked.code == 137 else "SIGTERM"
        return (f"it was ended by {signal}, not by an error of its own: its container was stopped (docker stop, "
                "kill or rm, another meshctl command, or the engine); run meshctl up again")
    if tracked.tail:
        return "its last log lines are above"
    return "it printed nothing; check the image's command and the port"


def follow_logs(engine: Engine, containers: list[ContainerInfo], *, tail: int | str,
                stopped: Callable[[], bool] = lambda: False) -> Iterator[LogLine]:
    """`meshctl logs -f`: the supervisor's own pumps over running containers, until every stream
    has ended (its container stopped) or `stopped()` says so."""
    tracker = Tracker(engine)
    adopted = [tracker.adopt(container, tail=tail) for container in containers]
    while not stopped():
        try:
            event = tracker.queue.get(timeout=0.2)
        except queue.Empty:
            if not any(t.pump is not None and t.pump.is_alive() for t in adopted):
                # The last pump may have queued its last lines just before it ended.
                while not tracker.queue.empty():
                    event = tracker.queue.get_nowait()
                    if isinstance(event, LogLine):
                        yield event
                return
            continue
        if isinstance(event, LogLine):
            yield event
