"""The table of `meshctl test`'s checks: live on a terminal, printed once in a CI log."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ...events import (
    ERROR,
    FAILED,
    PASSED,
    SKIPPED,
    CheckDone,
    CheckResult,
    CheckStarted,
)
from ...testing.report import Report

_OUTCOME_MARKS = {PASSED: "[green]✓ passed[/]", FAILED: "[red]✗ failed[/]", ERROR: "[red]! error[/]",
                  SKIPPED: "[dim]– skipped[/]"}


class CheckTable:
    """The live table of `meshctl test`: one row per check, updated as results come in. On a
    terminal it redraws in place; in a CI log it prints once, when the checks are done."""

    def __init__(self, names: tuple[tuple[str, str], ...], console: Console, *, live: bool = True):
        self.rows: dict[tuple[str, str], list[str]] = {key: ["[dim]· waiting[/]", "", ""] for key in names}
        self.pending = set(names)
        self.console = console
        self.stopped = False
        self.live: Live | None = None
        if live and console.is_terminal:      # --progress plain: printed once, as in a CI log
            self.live = Live(get_renderable=self.render, console=console, refresh_per_second=8,
                             redirect_stdout=False, redirect_stderr=False)
            self.live.start()

    def update(self, event: Any) -> None:
        if isinstance(event, CheckStarted):
            self.rows[(event.service, event.name)] = ["[yellow]… running[/]", "", ""]
        elif isinstance(event, CheckDone):
            r = event.result
            self.rows[(r.service, r.name)] = check_row(r)
            self.pending.discard((r.service, r.name))
            if not self.pending:
                self.stop()     # before teardown prints its phases below it

    def render(self) -> Table:
        return _checks_table(self.rows, self.console.width)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.live is not None:
            self.live.stop()
        else:
            self.console.print(self.render())

    @staticmethod
    def final(report: Report, console: Console) -> None:
        rows = {(s.service, r.name): check_row(r) for s in report.services for r in s.results}
        console.print(_checks_table(rows, console.width))


def check_row(result: CheckResult) -> list[str]:
    """A check's mark (markup), time and message."""
    seconds = f"{result.seconds * 1000:.0f} ms" if result.seconds < 1 else f"{result.seconds:.2f} s"
    return [_OUTCOME_MARKS.get(result.outcome, result.outcome), seconds, result.message]


def _checks_table(rows: dict[tuple[str, str], list[str]], width: int) -> Table:
    # Fixed widths: rich's own squeezing hides whole columns when every column is no_wrap.
    service_w = max([len(key[0]) for key in rows] + [7])
    check_w = max([len(key[1]) for key in rows] + [5])
    detail_w = max(20, width - service_w - check_w - 9 - 7 - 4 * 3)
    table = Table(title="meshctl test", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("service", no_wrap=True, width=service_w)
    table.add_column("check", no_wrap=True, width=check_w)
    table.add_column("result", no_wrap=True, width=9)
    table.add_column("time", justify="right", no_wrap=True, width=7)
    table.add_column("detail", overflow="ellipsis", no_wrap=True, max_width=detail_w)
    previous = None
    for (service, name), (mark, seconds, detail) in rows.items():
        table.add_row(escape(service) if service != previous else "", escape(name), mark, seconds,
                      escape(detail.splitlines()[0] if detail else ""))
        previous = service
    return table

