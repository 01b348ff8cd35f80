"""Ui: what meshctl shows a person, on stdout (results, logs) and stderr (progress, notes, errors):
the domain's events here, the commands' results in results.py. The consoles are made on first
print, and rich is imported then (styled.py)."""

from __future__ import annotations

import threading
import time
import zlib
from typing import TYPE_CHECKING, Any

from ...errors import MeshctlError
from .observed import Observed
from .styled import escape, styled

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from ...events import BuildEvent, CheckResult, Exited, LogLine, Reloaded, Restarted
    from ...testing.report import Report
    from .checks import CheckTable

SERVICE_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")
ROLE_STYLES = {"app": "bold", "proxy": "dim", "tls": "dim", "metrics": "dim", "pod": "dim"}


class Ui(Observed):
    def __init__(self, *, quiet: bool = False, progress: str = "auto"):
        self.quiet = quiet
        self.progress = progress     # --progress: auto (live on a terminal, else plain), live, plain (a line per step)
        self._results: Console | None = None
        self._progress: Progress | None = None
        self._tasks: dict[str, Any] = {}
        self._build_started: dict[str, float] = {}
        self._width = 0
        self._checks: CheckTable | None = None
        self._lock = threading.RLock()
        # What the containers' lines show (sidecars/console.py): `-v` every line as written;
        # `--access` every request as one line, not only those that matter.
        self.verbose = False
        self.access = False

    @property
    def results(self) -> Console:
        """Where check results go: stdout, or stderr when stdout carries JSON."""
        return self._results or self.out

    @results.setter
    def results(self, console: Console) -> None:
        self._results = console

    # -- events from the domain ------------------------------------------------------------------

    def __call__(self, event: Any) -> None:
        # Events come from several threads (parallel builds, pods started together).
        with self._lock:
            self._render(event)

    def _render(self, event: Any) -> None:
        # Imported here, not with the module: the events' dataclasses take ~16 ms to define, and
        # stat, trace and ps, which get none, answer in under 0.3 s.
        from ...events import (BuildEvent, CheckDone, ChecksPlanned, CheckStarted, Exited, LogLine, Phase, PodReady,
                               Reloaded, Restarted)

        if isinstance(event, BuildEvent):
            self._build(event)
        elif isinstance(event, LogLine):
            self.container_line(event)
        elif isinstance(event, Phase):
            if not self.quiet:
                self.err.print(f"[dim]· {escape(event.text)}[/]")
        elif isinstance(event, PodReady):
            if not self.quiet:
                state = "ready" if event.serving else "started (not waiting until it serves)"
                self.err.print(f"[green]✓[/] {escape(event.service)} {state} in {event.seconds:.2f}s")
        elif isinstance(event, Exited):
            self.exited(event)
        elif isinstance(event, Restarted):
            self.restarted(event)
        elif isinstance(event, Reloaded):
            self.reloaded(event)
        elif isinstance(event, (ChecksPlanned, CheckStarted, CheckDone)):
            self._check_event(event)

    def _build(self, event: BuildEvent) -> None:
        if self.quiet:
            return
        doing, done = ("installing", "installed") if event.action == "install" else ("building", "built")
        if self._plain():
            self._build_line(event, doing, done)      # "live" (auto on a terminal) draws below
            return
        if self._progress is None:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                      console=self.err, transient=True)
            self._progress.start()
        if event.phase == "start":
            self._build_started[event.image] = time.monotonic()
            self._tasks[event.image] = self._progress.add_task(f"{doing} {escape(event.image)}", total=None)
        elif event.phase == "step" and event.image in self._tasks:
            step = event.text.strip()
            if event.action == "install" and step:       # an install's output streams as it comes
                self.err.print(f"  [dim]{escape(step)}[/]")
            if step.startswith("Step ") or (event.action == "install" and step):
                self._progress.update(self._tasks[event.image],
                                      description=f"{doing} {escape(event.image)}: {escape(step[:70])}")
        elif event.phase == "done" and event.image in self._tasks:
            self._progress.remove_task(self._tasks.pop(event.image))
            self.err.print(f"[green]✓[/] {done} {escape(event.image)} in {self._build_seconds(event):.1f}s")
        if not self._tasks:
            self._progress.stop()
            self._progress = None

    def _plain(self) -> bool:
        """A line per step (--progress plain, or auto off a terminal), not a live display."""
        return self.progress == "plain" or (self.progress == "auto" and not self.err.is_terminal)

    def _build_line(self, event: BuildEvent, doing: str, done: str) -> None:
        """--progress plain (and auto off a terminal): a line per step, for a CI log."""
        step = event.text.strip()
        if event.phase == "start":
            self._build_started[event.image] = time.monotonic()
            self.err.print(f"· {doing} {escape(event.image)}")
        elif event.phase == "step" and (step.startswith("Step ") or (event.action == "install" and step)):
            self.err.print(styled(f"  {event.image}: {step}", style="dim"))
        elif event.phase == "done":
            self.err.print(f"[green]✓[/] {done} {escape(event.image)} in {self._build_seconds(event):.1f}s")

    def _build_seconds(self, event: BuildEvent) -> float:
        return time.monotonic() - self._build_started.pop(event.image, time.monotonic())

    def stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks.clear()

    # -- logs ------------------------------------------------------------------------------------

    def container_line(self, event: LogLine) -> None:
        """A line a container printed, as `up` and `logs` show it: the apps' lines, a sidecar's only
        when it matters (an error, a denied call: then not dimmed), a request as a person reads it;
        with -v every line as written."""
        from ...sidecars.console import shown

        what = shown(event, verbose=self.verbose, access=self.access)
        if what is not None:
            self.log_line(what.line, matters=what.matters)

    def log_line(self, event: LogLine, *, console: Console | None = None, matters: bool = False) -> None:
        prefix = f"{event.service}/{event.role}"
        self._width = max(self._width, len(prefix))
        colour = SERVICE_COLOURS[zlib.crc32(event.service.encode()) % len(SERVICE_COLOURS)]
        text = styled(prefix.ljust(self._width) + " | ", style=f"{colour} {ROLE_STYLES.get(event.role, '')}".strip())
        text.append(event.line, style="yellow" if matters else "dim" if event.role != "app" else "")
        # One line however long (the terminal wraps it): `| grep` and `| tee` get it whole.
        (console or self.out).print(text, soft_wrap=True)

    def reloaded(self, event: Reloaded) -> None:
        changed = ", ".join(event.changed[:3]) + (f" (+{len(event.changed) - 3} more)" if len(event.changed) > 3 else "")
        if event.error is None:
            self.err.print(f"[green]↻[/] {escape(changed)} → {escape(event.action)} in {event.seconds:.2f}s")
            return
        self.err.print(f"[red]✗[/] {escape(changed)} → {escape(event.action)} ({event.seconds:.2f}s)")
        if event.error.details:
            self.err.print(styled(event.error.details.rstrip(), style="dim"))
        self.err.print(f"  [red]{escape(event.error.message)}[/]")
        if event.error.hint:
            self.err.print(f"  [yellow]hint:[/] {escape(event.error.hint)}")

    def exited(self, event: Exited) -> None:
        what = "the app" if event.role == "app" else f"the {event.role} sidecar"
        self.err.print(f"[yellow]![/] {escape(event.service)}: {what} exited with code {event.code}"
                       + (", its last lines:" if event.tail else ", printing nothing"))
        for line in event.tail:
            self.err.print(styled(f"    {line}", style="dim"))

    def restarted(self, event: Restarted) -> None:
        service = escape(event.service)
        if event.role == "pod":
            if event.error is None:
                self.err.print(f"[green]↻[/] {service}: pod rebuilt in {event.seconds:.2f}s")
            else:
                self.err.print(f"[red]✗[/] {service}: the pod could not be rebuilt: {escape(_message(event.error))}")
        elif event.gave_up:
            self.err.print(f"[red]✗[/] {service}: not restarting the {escape(event.role)} sidecar again: "
                           f"{escape(event.gave_up)}. The app keeps running without it; fix the cause and "
                           "save mesh.yaml, or stop meshctl (Ctrl-C) and run `meshctl up` again")
        elif event.error is not None:
            self.err.print(f"[yellow]![/] {service}: restarting the {escape(event.role)} sidecar failed: "
                           f"{escape(_message(event.error))}")
        else:
            self.err.print(f"[green]↻[/] {service}: the {escape(event.role)} sidecar restarted in place in "
                           f"{event.seconds:.2f}s (the app was left alone)")

    # -- meshctl test ----------------------------------------------------------------------------

    def _check_event(self, event: Any) -> None:
        from ...events import CheckDone, ChecksPlanned

        if isinstance(event, ChecksPlanned):
            from .checks import CheckTable

            self.stop_progress()
            self._checks = CheckTable(event.names, self.results, live=self.progress in ("auto", "live"))
        elif self._checks is not None:
            self._checks.update(event)
            if isinstance(event, CheckDone) and self._plain() and not self.quiet:
                self._check_line(event.result)

    def _check_line(self, result: CheckResult) -> None:
        """--progress plain: each check as it ends (the table follows once all have)."""
        from .checks import check_row

        mark, seconds, detail = check_row(result)
        first = detail.splitlines()[0] if detail else ""
        self.err.print(f"{mark} {escape(result.service)} / {escape(result.name)} ({seconds})"
                       + (f": {escape(first)}" if first else ""))

    def test_report(self, report: Report, *, output: str = "text") -> None:
        """The final table (if the live one never ran), failures with their excerpts, the logs of
        failing services (stderr), a one-line verdict; the report as JSON or YAML on stdout with -o."""
        from ...events import ERROR, FAILED, PASSED, SKIPPED, LogLine

        if self._checks is not None:
            self._checks.stop()
            self._checks = None
        elif report.services and report.error is None:
            from .checks import CheckTable

            CheckTable.final(report, self.results)
        for service in report.services:
            for result in service.results:
                if result.outcome in (FAILED, ERROR) and (result.name != "ready" or report.error is None):
                    self.err.print(f"[red]✗[/] {escape(service.service)} / {escape(result.name)}: "
                                   f"{escape(result.message)}")
                    if result.excerpt:
                        self.err.print(styled("\n".join("    " + line for line in result.excerpt.splitlines()),
                                            style="dim"))
            if service.logs:
                self.err.print(f"[yellow]last log lines of {escape(service.service)}:[/]")
                for role, lines in service.logs:
                    for line in lines:
                        self.log_line(LogLine(service.service, role, line), console=self.err)
        counts = {o: sum(s.count(o) for s in report.services) for o in (PASSED, FAILED, ERROR, SKIPPED)}
        total = sum(counts.values())
        if report.interrupted:
            self.err.print(f"[yellow]![/] stopped by {report.interrupted}; everything meshctl started was removed")
        elif report.error is None and report.ok:
            self.err.print(f"[green]✓[/] {counts[PASSED]} checks passed in {report.seconds:.1f}s")
        elif report.error is None:
            self.err.print(f"[red]✗[/] {counts[FAILED] + counts[ERROR]} of {total} checks failed "
                           f"({report.seconds:.1f}s)")
        if output != "text":
            self.data(report.as_json(), output)

    def report_written(self, kind: str, path: str) -> None:
        if not self.quiet:
            self.err.print(f"[dim]· {kind} report: {escape(path)}[/]")

    def error(self, exc: MeshctlError) -> None:
        self.stop_progress()
        if exc.details:
            self.err.print(styled(exc.details.rstrip(), style="dim"))
        self.err.print(f"[bold red]error:[/] {escape(exc.message)}")
        if exc.hint:
            self.err.print(f"  [yellow]hint:[/] {escape(exc.hint)}")

def _message(error: Exception) -> str:
    return error.message if isinstance(error, MeshctlError) else str(error)
