"""The foreground loop: signals (Interrupts: handlers only set Events, uvicorn's habit), sidecars
that exit restarted in place under a back-off (RestartPolicy, SidecarRestarter), pods whose holder
is gone rebuilt, and supervise(), which reads the tracker's events until Ctrl-C or the app's exit."""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ...errors import MeshctlError
from ...events import Exited, LogLine, Phase, Reloaded, Restarted
from ...model import APP, HOLDER, selector
from ..stack import RunningPod, Stack
from .reloader import Reloader, RenewalTimer
from .tracker import Tracker


class Interrupts:
    """First Ctrl-C / SIGTERM sets `stop` (stop gracefully); a second sets `force` (kill now).
    The handlers do nothing else."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.force = threading.Event()
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def install(self) -> Interrupts:
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
            code = _exited(event, stack, tracker, interrupts, on_event, restarter, pods=len(running))
            if code is not None:
                return code


def _exited(event: Exited, stack: Stack, tracker: Tracker, interrupts: Interrupts, on_event: Callable[[Any], None],
            restarter: SidecarRestarter, *, pods: int) -> int | None:
    """One container's exit: the exit code supervision ends with, or None (it goes on)."""
    tracked = tracker.find_id(event.id) if event.id else tracker.find(event.service, event.role)
    if tracked is not None and tracked.expected:   # queued before meshctl replaced it
        return None
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
        on_event(Phase("tearing down the pod" + ("s" if pods > 1 else "")))
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
    return None
