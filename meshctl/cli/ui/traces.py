"""`meshctl trace`'s output: recent traces as a table, one trace as a waterfall (a line a span:
service, operation, offset, duration, status, and a bar on the trace's time line), or JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .columns import Cell, aligned

if TYPE_CHECKING:
    from ...runtime.traces import TraceSummary, WaterfallRow
    from .terminal import Ui

BAR_WIDTH = 30
# The columns without the bar take about this much: the bar gets what a terminal has beyond it.
TEXT_WIDTH = 80


def _ms(us: int) -> str:
    return f"{us / 1000:.2f} ms" if us < 10_000_000 else f"{us / 1_000_000:.1f} s"


def trace_list(ui: Ui, rows: list[TraceSummary], *, as_json: bool) -> None:
    if as_json:
        ui.data([row.as_dict() for row in rows], "json")
        return
    if not rows:
        ui.note("no traces kept yet: make a request through a service's proxy")
        return
    lines = [[row.trace_id, row.root_service, row.root_name, str(row.spans), ",".join(row.services),
              _ms(row.duration_us), (row.status or "error", "red") if row.error else row.status] for row in rows]
    ui.out.print(aligned(("trace", "root", "route", "spans", "services", "duration", "status"), lines,
                         right=frozenset({3, 5})))


def trace_waterfall(ui: Ui, trace_id: str, rows: list[WaterfallRow], *, as_json: bool) -> None:
    if as_json:
        ui.data({"trace_id": trace_id, "spans": [{**row.span, "depth": row.depth, "offset_us": row.offset_us,
                                                  "duration_us": row.duration_us} for row in rows]}, "json")
        return
    total = max((row.offset_us + row.duration_us for row in rows), default=0) or 1
    bar_width = min(BAR_WIDTH, max(0, ui.out.width - TEXT_WIDTH))
    lines: list[list[Cell]] = []
    for row in rows:
        span = row.span
        code = span.get("attributes", {}).get("http.response.status_code", "")
        failed = span["status_code"] == "error"
        start = row.offset_us * bar_width // total
        width = max(1, row.duration_us * bar_width // total) if bar_width else 0
        lines.append([span["service"], "  " * row.depth + span["name"], span["kind"], f"+{_ms(row.offset_us)}",
                      _ms(row.duration_us), (str(code) or "error", "red") if failed else str(code) or span["status_code"],
                      (" " * start + "█" * width, "red" if failed else "cyan")])
    ui.out.print(f"trace {trace_id}")
    ui.out.print(aligned(("service", "operation", "kind", "offset", "duration", "status", ""), lines,
                         right=frozenset({3, 4})))
