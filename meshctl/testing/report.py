"""What `meshctl test` found: a ServiceReport per service (its check results, and the container
logs of a service whose checks failed), a Report for the run (JSON for scripts; exit code: 0 all
passed, 1 a check failed, the error's code when the stack could not start, 128 + N after signal N).
junit.py renders a Report as JUnit XML."""

from __future__ import annotations

import datetime as dt
import signal
from dataclasses import dataclass, replace
from typing import Any

from ..errors import MeshctlError
from ..events import CheckResult

LOG_LINES = 50                  # per container of a failing service, on stderr and in the report


@dataclass(frozen=True)
class ServiceReport:
    service: str
    results: tuple[CheckResult, ...]
    # Container role → its last log lines; filled in only when a check of the service failed.
    logs: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)


@dataclass(frozen=True)
class Report:
    project: str
    services: tuple[ServiceReport, ...]
    started: dt.datetime
    seconds: float
    error: MeshctlError | None = None     # the stack could not start (or a build failed)
    interrupted: str = ""                 # the signal that stopped the run, if one did

    @property
    def ok(self) -> bool:
        return self.error is None and not self.interrupted and all(s.ok for s in self.services)

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        if self.interrupted:
            # The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM).
            return 128 + getattr(signal.Signals, self.interrupted, signal.SIGINT).value
        return 0 if self.ok else 1

    def as_json(self) -> dict[str, Any]:
        return {
            "project": self.project, "ok": self.ok, "exit_code": self.exit_code,
            "started": self.started.isoformat(timespec="seconds"), "seconds": round(self.seconds, 3),
            "error": None if self.error is None else {"message": self.error.message, "hint": self.error.hint},
            "interrupted": self.interrupted or None,
            "services": [{"service": s.service, "ok": s.ok, "checks": [r.as_json() for r in s.results],
                          "logs": {role: list(lines) for role, lines in s.logs}} for s in self.services],
        }



def with_logs(report: ServiceReport, logs: dict[str, list[str]]) -> ServiceReport:
    return replace(report, logs=tuple((role, tuple(lines[-LOG_LINES:])) for role, lines in logs.items()))

