"""`meshctl trace`: recent traces of a running stack, or one trace's waterfall. The layers below
are imported inside the command: `-h` and TAB load this module."""

from __future__ import annotations

from pathlib import Path

import typer

from ..common import ui_of
from ..reads import show_trace

commands = typer.Typer()


@commands.command()
def trace(ctx: typer.Context,
          trace_id: str | None = typer.Argument(None, help="One trace's waterfall (32 hex digits)."),
          last: int = typer.Option(20, "--last", min=1, help="How many recent traces to list."),
          errors: bool = typer.Option(False, "--errors", help="Only traces with a failed span."),
          slowest: bool = typer.Option(False, "--slowest", help="The longest traces first."),
          as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
          path: Path = typer.Option(Path("."), "--path", help="The project's folder."),
          name: str | None = typer.Option(None, "--project", "-p", help="Project name instead of --path.")) -> None:
    """Recent traces across the stack's proxies and apps (root service and route, spans, duration,
    status), or with TRACE_ID one trace's waterfall, a line a span."""
    show_trace(ui_of(ctx), trace_id, last, errors, slowest, as_json, path, name)
