"""`meshctl trace`: recent traces of a running stack, or one trace's waterfall. The layers below
are imported inside the command: `-h` and TAB load this module."""

from __future__ import annotations

from pathlib import Path

import typer

from ..common import engine, project_name, ui_of

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
    from ...home import meshctl_home
    from ...runtime.traces import one_trace, recent, trace_summaries, waterfall
    from ..ui.traces import trace_list, trace_waterfall

    ui = ui_of(ctx)
    docker = engine()
    project = name or project_name(path, running_fallback=docker)
    if trace_id is None:
        trace_list(ui, recent(trace_summaries(docker, project, home=meshctl_home()), last=last, errors=errors, slowest=slowest),
                   as_json=as_json)
        return
    trace_waterfall(ui, trace_id.lower(), waterfall(one_trace(docker, project, trace_id, home=meshctl_home())),
                    as_json=as_json)
