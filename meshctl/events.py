"""Every event domain code emits, in one place. Domain code never prints: it calls one
`on_event(event)` callable (OnEvent), and ui.py renders what it is given.

    BuildEvent      an image build or pull, or a dependency install: start, a step line, done
    Phase           one line of progress ("starting proxy, metrics")
    PlanReady       the plan about to run (`--dry-run` prints it and stops)
    LogLine         a line a container printed
    Exited          a container exited by itself
    Restarted       a sidecar started again in place (or given up on), or a pod rebuilt
    PodReady        a pod serves (or, with --no-wait, has started)
    Reloaded        one hot reload: what changed, what was done, how long it took
    ChecksPlanned / CheckStarted / CheckDone    `meshctl test`'s checks
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import MeshctlError


@dataclass(frozen=True)
class BuildEvent:
    image: str            # what is built: an image, or "dependencies of SERVICE"
    phase: str            # "start", "step", "done"
    text: str = ""
    action: str = "build"     # or "install": a run-mode app's dependencies


@dataclass(frozen=True)
class Phase:
    text: str


@dataclass(frozen=True)
class LogLine:
    service: str
    role: str
    line: str


@dataclass(frozen=True)
class Exited:
    service: str
    role: str
    code: int | None
    tail: tuple[str, ...] = ()     # its last log lines, when the supervisor reports it
    id: str = ""                   # the container's id (a name is reused when it is replaced)


@dataclass(frozen=True)
class Restarted:
    """A sidecar that exited was started again in place (the app left alone), or, with role "pod",
    a pod whose holder was gone was rebuilt."""
    service: str
    role: str
    seconds: float
    error: Exception | None = None     # the restart itself failed
    gave_up: str = ""                  # why meshctl stops restarting it


@dataclass(frozen=True)
class PodReady:
    service: str
    urls: dict[str, str]
    seconds: float
    serving: bool = True          # False: started, but `--no-wait` did not wait for it to serve


@dataclass(frozen=True)
class Reloaded:
    """One line on the console per reload: what changed, what was done, how long it took."""
    changed: tuple[str, ...]
    action: str
    seconds: float
    error: MeshctlError | None = None


# A check's outcome: passed and skipped are ok.
PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"


@dataclass(frozen=True)
class CheckResult:
    service: str
    name: str
    kind: str                  # "builtin", "http" or "exec"
    outcome: str               # passed, failed, error (could not run), skipped
    seconds: float = 0.0
    message: str = ""          # one line: what was expected and what came
    excerpt: str = ""          # the response body or the command's output, shortened
    faults: str = ""           # the faults held while it ran (a resilience check), in words

    @property
    def ok(self) -> bool:
        return self.outcome in (PASSED, SKIPPED)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "outcome": self.outcome,
                "seconds": round(self.seconds, 4), "message": self.message, "excerpt": self.excerpt,
                **({"faults": self.faults} if self.faults else {})}


@dataclass(frozen=True)
class ChecksPlanned:
    names: tuple[tuple[str, str], ...]    # (service, check name), in the order they will run


@dataclass(frozen=True)
class CheckStarted:
    service: str
    name: str


@dataclass(frozen=True)
class CheckDone:
    result: CheckResult


Event = Any
OnEvent = Callable[[Event], None]
