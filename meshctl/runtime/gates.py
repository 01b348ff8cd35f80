"""depends_on while a plan runs: each pod marks when its app has started and when it serves, and
a pod whose service depends on others waits at its AwaitServices step until they have (pods start
in parallel; only the apps wait). A pod that finished its steps has reached both."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from ..config import DEPENDENCY_CONDITIONS


class Gates:
    def __init__(self) -> None:
        self._events: dict[tuple[str, str], threading.Event] = {}

    def open_for(self, services: Iterable[str]) -> None:
        """A new run: the pods in it have reached nothing yet; any other service counts as there."""
        self._events = {(s, c): threading.Event() for s in services for c in DEPENDENCY_CONDITIONS}

    def reached(self, service: str, *conditions: str) -> None:
        for condition in conditions or DEPENDENCY_CONDITIONS:
            if (service, condition) in self._events:
                self._events[(service, condition)].set()

    def wait(self, needs: Iterable[tuple[str, str]], check: Callable[[], None]) -> None:
        """Until every (service, condition) is reached; `check` raises to give up (a failed pod, Ctrl-C)."""
        for need in needs:
            event = self._events.get(need)
            while event is not None and not event.wait(0.05):
                check()
