"""Ui: what meshctl shows a person, on stdout (results, logs) and stderr (progress, notes, errors)."""

from __future__ import annotations

import json
import sys
import threading
import time
import zlib
from typing import IO, Any, cast

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ...errors import MeshctlError
from ...events import (
    ERROR,
    FAILED,
    PASSED,
    SKIPPED,
    BuildEvent,
    CheckDone,
    ChecksPlanned,
    CheckStarted,
    Exited,
    LogLine,
    Phase,
    PodReady,
    Reloaded,
    Restarted,
)
from ...planning.steps import Plan, describe
from ...runtime.faults import ServiceFaults
from ...runtime.stack import RunningPod
from ...sidecars.faults import describe as describe_fault
from ...runtime.status import ServiceStatus
from ...testing.report import Report
from .checks import CheckTable
from .streams import PipeSafe

SERVICE_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")
ROLE_STYLES = {"app": "bold", "proxy": "dim", "tls": "dim", "metrics": "dim", "pod": "dim"}


class Ui:
    def __init__(self, *, quiet: bool = False):
        self.out = Console(file=cast(IO[str], PipeSafe(sys.stdout)), highlight=False, soft_wrap=True)
        self.err = Console(file=cast(IO[str], PipeSafe(sys.stderr)), highlight=False, soft_wrap=True)
        self.quiet = quiet
        self._progress: Progress | None = None
        self._tasks: dict[str, Any] = {}
        self._build_started: dict[str, float] = {}
        self._width = 0
        self._checks: CheckTable | None = None
        self.results = self.out          # where check results go; stderr when stdout carries JSON
        self._lock = threading.RLock()

    # -- events from the domain ------------------------------------------------------------------

    def __call__(self, event: Any) -> None:
        # Events come from several threads (parallel builds, pods started together).
        with self._lock:
            self._render(event)

    def _render(self, event: Any) -> None:
        if isinstance(event, BuildEvent):
            self._build(event)
        elif isinstance(event, LogLine):
            self.log_line(event)
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
        if self._progress is None:
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                      console=self.err, transient=True)
            self._progress.start()
        doing, done = ("installing", "installed") if event.action == "install" else ("building", "built")
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
            seconds = time.monotonic() - self._build_started.pop(event.image, time.monotonic())
            self.err.print(f"[green]✓[/] {done} {escape(event.image)} in {seconds:.1f}s")
        if not self._tasks:
            self._progress.stop()
            self._progress = None

    def stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks.clear()

    # -- logs ------------------------------------------------------------------------------------

    def log_line(self, event: LogLine, *, console: Console | None = None) -> None:
        prefix = f"{event.service}/{event.role}"
        self._width = max(self._width, len(prefix))
        colour = SERVICE_COLOURS[zlib.crc32(event.service.encode()) % len(SERVICE_COLOURS)]
        text = Text(prefix.ljust(self._width) + " | ", style=f"{colour} {ROLE_STYLES.get(event.role, '')}".strip())
        text.append(event.line, style="dim" if event.role != "app" else "")
        (console or self.out).print(text)

    def reloaded(self, event: Reloaded) -> None:
        changed = ", ".join(event.changed[:3]) + (f" (+{len(event.changed) - 3} more)" if len(event.changed) > 3 else "")
        if event.error is None:
            self.err.print(f"[green]↻[/] {escape(changed)} → {escape(event.action)} in {event.seconds:.2f}s")
            return
        self.err.print(f"[red]✗[/] {escape(changed)} → {escape(event.action)} ({event.seconds:.2f}s)")
        if event.error.details:
            self.err.print(Text(event.error.details.rstrip(), style="dim"))
        self.err.print(f"  [red]{escape(event.error.message)}[/]")
        if event.error.hint:
            self.err.print(f"  [yellow]hint:[/] {escape(event.error.hint)}")

    def exited(self, event: Exited) -> None:
        what = "the app" if event.role == "app" else f"the {event.role} sidecar"
        self.err.print(f"[yellow]![/] {escape(event.service)}: {what} exited with code {event.code}"
                       + (", its last lines:" if event.tail else ", printing nothing"))
        for line in event.tail:
            self.err.print(Text(f"    {line}", style="dim"))

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
        if isinstance(event, ChecksPlanned):
            self.stop_progress()
            self._checks = CheckTable(event.names, self.results)
        elif self._checks is not None:
            self._checks.update(event)

    def test_report(self, report: Report, *, as_json: bool) -> None:
        """The final table (if the live one never ran), failures with their excerpts, the logs of
        failing services (stderr), a one-line verdict; the JSON on stdout with --json."""
        if self._checks is not None:
            self._checks.stop()
            self._checks = None
        elif report.services and report.error is None:
            CheckTable.final(report, self.results)
        for service in report.services:
            for result in service.results:
                if result.outcome in (FAILED, ERROR) and (result.name != "ready" or report.error is None):
                    self.err.print(f"[red]✗[/] {escape(service.service)} / {escape(result.name)}: "
                                   f"{escape(result.message)}")
                    if result.excerpt:
                        self.err.print(Text("\n".join("    " + line for line in result.excerpt.splitlines()),
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
        if as_json:
            print(json.dumps(report.as_json(), indent=2))

    def report_written(self, kind: str, path: str) -> None:
        if not self.quiet:
            self.err.print(f"[dim]· {kind} report: {escape(path)}[/]")

    # -- results ---------------------------------------------------------------------------------

    def status_table(self, running: list[RunningPod], ca_path: str, *, detached: bool) -> None:
        self.out.print(self._urls_table("meshctl: ready", [(p.service, p.urls) for p in running]))
        self.out.print(f"[dim]trust the CA: {escape(ca_path)}   (curl --cacert {escape(ca_path)} …)[/]")
        if detached:
            self.out.print("[dim]running in the background; `meshctl down` removes it[/]")
        else:
            self.out.print("[dim]Ctrl-C stops and removes everything[/]")

    def ps(self, statuses: list[ServiceStatus], *, as_json: bool) -> None:
        if as_json:
            print(json.dumps([s.as_json() for s in statuses], indent=2))
            return
        if not statuses:
            self.out.print("no meshctl stacks are running")
            return
        groups = []
        for s in statuses:
            state = s.state if s.state == "running" else f"{s.state}: " + ", ".join(
                f"{c['role']} {c['state']}" for c in s.containers)
            groups.append((f"{s.project}/{s.service} ({state})", s.urls))
        self.out.print(self._urls_table(None, groups))
        for s in statuses:
            self._mesh_line(s)
            if s.faults:
                self.out.print(f"{escape(s.project)}/{escape(s.service)}: faults: {escape(s.faults)}")

    def fault_set(self, faults: ServiceFaults) -> None:
        self.out.print(f"{escape(faults.project)}/{escape(faults.service)}: {escape(_faults_text(faults))}")

    def fault_list(self, services: list[ServiceFaults], *, as_json: bool) -> None:
        if as_json:
            print(json.dumps([s.as_json() for s in services], indent=2))
            return
        for s in services:
            self.fault_set(s)

    def _mesh_line(self, s: ServiceStatus) -> None:
        """Where a service stands in the mesh: its identity, mTLS and callers, or outside it."""
        if not s.mesh:
            return
        if s.mesh.get("outside"):
            self.out.print(f"{escape(s.project)}/{escape(s.service)}: outside the mesh (no sidecars): reached "
                           "by name in plain TCP, without mTLS or identity")
            return
        allow = s.mesh.get("allow")
        callers = "every service of the project" if allow is None else ", ".join(allow) or "no one"
        tcp = " (TCP)" if s.mesh.get("protocol") == "tcp" else ""
        self.out.print(f"{escape(s.project)}/{escape(s.service)}: {escape(s.mesh.get('identity') or '')}, "
                       f"mTLS {escape(s.mesh.get('mtls') or '')}{tcp}, callers: {escape(callers)}")

    @staticmethod
    def _urls_table(title: str | None, groups: list[tuple[str, dict[str, str]]]) -> Table:
        """One row per URL, grouped under its service: narrow enough for any terminal."""
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for column in ("service", "endpoint", "url"):
            table.add_column(column, no_wrap=True, overflow="ignore")
        for label, urls in groups:
            kinds: list[str] = [k for k in ("https", "http", "metrics") if k in urls] or ["–"]
            for index, kind in enumerate(kinds):
                table.add_row(label if index == 0 else "", kind, urls.get(kind, "–"))
        return table

    def plan(self, plans: list[Plan], *, as_json: bool) -> None:
        """`--dry-run`: each step, what it acts on, and why; nothing was changed."""
        if as_json:
            print(json.dumps([p.as_json() for p in plans], indent=2))
            return
        for plan in plans:
            steps = plan.all_steps()
            self.out.print(f"[bold]plan for {escape(plan.project)}[/]"
                           + ("" if plan.changes else " [dim](no changes)[/]"))
            if not steps:
                self.out.print("  [dim]nothing to do[/]")
            for service, step in steps:
                row = describe(step)
                target = row["target"] if isinstance(row["target"], str) else ", ".join(row["target"])
                where = f"{service}: " if service else ""
                style = "dim" if row["step"] in ("Keep", "Announce", "WaitReady", "AwaitServices") else ""
                line = Text(f"  {where}{row['step']} ", style=style)
                line.append(target, style=style if style else "bold")
                line.append(f"  ({row['why']})", style="dim")
                self.out.print(line)
        self.err.print("[dim]dry run: nothing was built, created or changed[/]")

    def note(self, text: str) -> None:
        self.err.print(escape(text))

    def success(self, text: str) -> None:
        self.err.print(f"[green]✓[/] {escape(text)}")

    def plain(self, text: str) -> None:
        print(text)

    def document(self, text: str) -> None:
        """A whole file on stdout, byte for byte (inject's output, for a pipe or a redirect)."""
        sys.stdout.write(text)
        sys.stdout.flush()

    def error(self, exc: MeshctlError) -> None:
        self.stop_progress()
        if exc.details:
            self.err.print(Text(exc.details.rstrip(), style="dim"))
        self.err.print(f"[bold red]error:[/] {escape(exc.message)}")
        if exc.hint:
            self.err.print(f"  [yellow]hint:[/] {escape(exc.hint)}")

    def doctor(self, results: list[tuple[str, bool, str]]) -> None:
        for name, ok, detail in results:
            mark = "[green]✓[/]" if ok else "[red]✗[/]"
            self.out.print(f"{mark} {escape(name)}: {escape(detail)}")


def _message(error: Exception) -> str:
    return error.message if isinstance(error, MeshctlError) else str(error)


def _faults_text(faults: ServiceFaults) -> str:
    """What applies now, and where it comes from."""
    active = "; ".join(describe_fault(f) for f in faults.active) or "no faults"
    return active + (" (live, `meshctl fault --clear` ends it)" if faults.live is not None
                     else " (mesh.yaml)" if faults.declared else "")
