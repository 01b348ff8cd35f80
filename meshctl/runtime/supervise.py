"""Foreground supervision: the containers' logs and exits (Tracker), signals (Interrupts), hot
reload (Reloader), certificate renewal (RenewalTimer), and the loop that ties them together.

Signal handlers only set Events (uvicorn's habit). The executor's waits and builds see the stop
Event and raise Cancelled; the supervisor loop sees it and tears down."""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import load_project
from ..engine.base import Engine
from ..errors import BuildError, MeshctlError, StartError
from ..events import Exited, LogLine, Phase, Reloaded, Restarted
from ..model import APP, HOLDER, ContainerInfo, ContainerSpec, selector
from .stack import RunningPod, Stack
from ..planning.watch import REBUILD, RESTART, SourceChange, change_sets, classify, watched_folders

LOG_TAIL = 50


# ---------------------------------------------------------------------------------------------
# Tracking running containers: their logs and their exit


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
    if tracked.code in (137, 143):      # 128 + SIGKILL or SIGTERM: something outside stopped it
        return ("it was stopped from outside meshctl (`docker stop`, `docker kill` or `docker rm -f` of the "
                "container, or the engine restarting), not by its own error: run meshctl up again")
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


# ---------------------------------------------------------------------------------------------
# Signals


class Interrupts:
    """First Ctrl-C / SIGTERM sets `stop` (stop gracefully); a second sets `force` (kill now).
    The handlers do nothing else."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.force = threading.Event()
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


def teardown(stack: Stack, interrupts: Interrupts, on_event: Callable[[Any], None], *,
             tracker: Tracker | None = None) -> None:
    """Graceful stop; a second Ctrl-C switches to killing everything (the stack's force Event is
    the Interrupts' one). With a tracker, the containers' last words still appear."""
    stack.force = interrupts.force
    stack.teardown(tick=(lambda: tracker.drain_logs(on_event)) if tracker is not None else (lambda: None))


# ---------------------------------------------------------------------------------------------
# Hot reload


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

    def start(self) -> "Reloader":
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

    def __iter__(self) -> "Reloader":
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
    place; on a timer of its own, never concurrent with a reload (the stack runs one change at a time)."""

    INTERVAL = 600.0

    def __init__(self, stack: Stack, stop: threading.Event, emit: Callable[[Any], None]):
        self.stack = stack
        self.stop = stop
        self.emit = emit
        self.thread = threading.Thread(target=self.run, name="renewal", daemon=True)

    def start(self) -> "RenewalTimer":
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


# ---------------------------------------------------------------------------------------------
# Sidecars that exit are restarted in place


class RestartPolicy:
    """Kubernetes' crash-loop back-off in small: restart at once, then after 0.5, 1, 2, 4… s;
    after `limit` exits within `window` seconds, stop trying (the app keeps running)."""

    def __init__(self, *, limit: int = 5, window: float = 60.0, first_delay: float = 0.5, max_delay: float = 8.0):
        self.limit, self.window = limit, window
        self.first_delay, self.max_delay = first_delay, max_delay
        self._exits: dict[tuple[str, str], deque] = {}

    def delay(self, key: tuple[str, str], now: float) -> float | None:
        """Seconds to wait before restarting after this exit; None: give up."""
        exits = self._exits.setdefault(key, deque())
        exits.append(now)
        while exits and now - exits[0] > self.window:
            exits.popleft()
        if len(exits) >= self.limit:
            return None
        if len(exits) == 1:
            return 0.0
        return min(self.max_delay, self.first_delay * 2 ** (len(exits) - 2))


def _holder_gone(stack: Stack, service: str) -> bool:
    """Asked of the engine, not the tracker: when a holder dies, the kernel kills everything in
    its PID namespace, and those exits may be reported before the holder's own."""
    holders = stack.engine.containers(selector(stack.project.name, service=service, role=HOLDER))
    return not any(c.state == "running" for c in holders)


class SidecarRestarter:
    """Restarts run off the supervisor's thread (a back-off must not hold up Ctrl-C or the logs);
    their outcome comes back on the tracker's queue as Restarted."""

    def __init__(self, stack: Stack, stop: threading.Event, emit: Callable[[Any], None],
                 policy: RestartPolicy | None = None):
        self.stack, self.stop, self.emit = stack, stop, emit
        self.policy = policy or RestartPolicy()

    def exited(self, service: str, role: str) -> None:
        delay = self.policy.delay((service, role), time.monotonic())
        if delay is None:
            self.emit(Restarted(service, role, 0.0, gave_up=(
                f"it exited {self.policy.limit} times within {self.policy.window:g}s")))
            return
        threading.Thread(target=self._restart, args=(service, role, delay), name=f"restart-{service}-{role}",
                         daemon=True).start()

    def rebuild(self, service: str) -> None:
        threading.Thread(target=self._restart, args=(service, HOLDER, 0.0), name=f"rebuild-{service}",
                         daemon=True).start()

    def _restart(self, service: str, role: str, delay: float) -> None:
        if self.stop.wait(delay):
            return
        started = time.monotonic()
        try:
            if role == HOLDER:
                self.stack.rebuild_pod(service)
            else:
                self.stack.restart_sidecar(service, role)
        except MeshctlError as exc:
            if not self.stop.is_set():
                self.emit(Restarted(service, role, time.monotonic() - started, error=exc))
                if role != HOLDER:
                    # A failed restart counts as one more exit: tried again after the back-off
                    # (a sibling sidecar that exited at the same moment fails this one's wait).
                    self.exited(service, role)
            return
        self.emit(Restarted(service, role, time.monotonic() - started))


# ---------------------------------------------------------------------------------------------
# The foreground loop


def supervise(stack: Stack, tracker: Tracker, running: list[RunningPod], interrupts: Interrupts,
              on_event: Callable[[Any], None], *, reloader: Reloader | None = None,
              restarts: RestartPolicy | None = None) -> int:
    """Run until Ctrl-C/SIGTERM (exit 0), until an app exits by itself (its code), or until the
    stack is taken down from elsewhere (0). A sidecar that exits is restarted in place; a pod whose
    holder is gone is rebuilt. With a `reloader` (started before the stack came up), file changes
    reload the stack as they come."""
    RenewalTimer(stack, interrupts.stop, tracker.queue.put).start()
    restarter = SidecarRestarter(stack, interrupts.stop, tracker.queue.put, restarts)
    if reloader is not None:
        reloader.ready.set()
    while True:
        if interrupts.stop.is_set():
            on_event(Phase(f"{interrupts.signal_name or 'stop'}: stopping the apps, then the sidecars"))
            teardown(stack, interrupts, on_event, tracker=tracker)
            return 0
        try:
            event = tracker.next_event(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(event, (LogLine, Reloaded, Phase)):
            on_event(event)
        elif isinstance(event, Restarted):
            on_event(event)
            if event.role == HOLDER and event.error is not None:    # the pod could not be rebuilt
                teardown(stack, interrupts, on_event, tracker=tracker)
                return 1
        elif isinstance(event, Exited):
            tracked = tracker.find_id(event.id) if event.id else tracker.find(event.service, event.role)
            if tracked is not None and tracked.expected:   # queued before meshctl replaced it
                continue
            if stack.removed_elsewhere():
                on_event(Phase("the stack was removed from elsewhere (meshctl down): stopping"))
                teardown(stack, interrupts, on_event, tracker=tracker)
                return 0
            if tracked is not None:
                tracked.settle()
            tracker.drain_logs(on_event)
            on_event(replace(event, tail=tuple(tracked.tail)[-10:] if tracked else ()))
            holder_gone = event.role == HOLDER or _holder_gone(stack, event.service)
            if event.role == APP and not holder_gone:
                on_event(Phase("tearing down the pod" + ("s" if len(running) > 1 else "")))
                teardown(stack, interrupts, on_event, tracker=tracker)
                return event.code if event.code is not None else 1
            if holder_gone:
                # Never restart a holder: containers joined to a lost namespace keep only loopback.
                on_event(Phase(f"{event.service}: the pod's holder is gone, and with it the namespace its "
                               "containers share: rebuilding the pod"))
                # Its containers' exits, queued or to come, are no news and fail nothing of the new pod.
                tracker.stopping([t.name for t in tracker.of_service(event.service)])
                restarter.rebuild(event.service)
            else:
                restarter.exited(event.service, event.role)
