"""What `meshctl stat`, `top` and `tap` show: tables of edges and routes, the live top, one line a
request; JSON for scripts. A part of Ui (terminal.py), beside results.py."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .columns import aligned
from .results import Results
from .styled import escape

if TYPE_CHECKING:
    from rich.table import Table

Row = dict[str, Any]


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value} ms"


def _rate(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}%"


class Observed(Results):
    def stat_table(self, rows: list[Row], seconds: int, *, output: str = "text") -> None:
        if output != "text":
            self.data(rows, output)
            return
        if not rows:
            self.out.print("no requests yet")
            return
        lines = []
        for row in rows:
            name = f"  {row['source']} → {row['destination']}" if row["source"] else row["service"]
            if row.get("kind") == "tcp":
                name += f" (tcp, {row['bytes']} B)"
            lines.append([name, str(row["requests"]), f"{row['rps']:.2f}", _rate(row["success_rate"]),
                          _ms(row["p50_ms"]), _ms(row["p95_ms"]), _ms(row["p99_ms"]),
                          {True: "yes", False: "no"}.get(row["mtls"], ""), str(row.get("denied", 0))])
        self.out.print(f"last {seconds}s: each service (all it received), then each edge")
        self.out.print(aligned(("SERVICE / EDGE", "REQUESTS", "RPS", "SUCCESS", "P50", "P95", "P99", "mTLS", "DENIED"),
                               lines, right=frozenset(range(1, 9))))

    def top_table(self, rows: list[Row], seconds: int, *, output: str = "text") -> None:
        if output != "text":
            self.data(rows, output)
            return
        self.out.print(self._routes(rows, seconds))

    def top_live(self, read: Callable[[], list[Row]], seconds: int) -> None:
        """The routes table, redrawn every second until Ctrl-C."""
        from rich.live import Live

        with Live(self._routes(read(), seconds), console=self.out, auto_refresh=False) as live:
            while True:
                time.sleep(1.0)
                live.update(self._routes(read(), seconds), refresh=True)

    def _routes(self, rows: list[Row], seconds: int) -> Table:
        from rich.table import Table

        table = Table(title=f"busiest routes, last {seconds}s (Ctrl-C ends)", title_justify="left",
                      box=None, pad_edge=False)
        for column in ("SERVICE", "ROUTE", "CALLERS", "COUNT", "SUCCESS", "P99"):
            table.add_column(column, justify="right" if column in ("COUNT", "SUCCESS", "P99") else "left")
        for row in rows[:40]:
            table.add_row(escape(row["service"]), escape(f"{row['method']} {row['path']}"),
                          escape(", ".join(row["callers"])), str(row["requests"]), _rate(row["success_rate"]),
                          _ms(row["p99_ms"]))
        return table

    def tap_line(self, event: Row, *, as_json: bool) -> None:
        if as_json:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
            return
        direction = "in " if event["direction"] == "inbound" else "out"
        from ...sidecars.console import access_text

        trace = f"  trace {event['trace_id']}" if event.get("trace_id") else ""     # for `meshctl trace ID`
        self.out.print(f"{escape(event['time'])} {direction} {escape(access_text(event))}{trace}", highlight=False)
