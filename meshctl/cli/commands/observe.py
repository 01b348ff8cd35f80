"""`meshctl stat`, `top` and `tap`: the requests the mesh's proxies saw, by edge, by route, live
(runtime/observe.py reads them from the metrics sidecars). The layers below are imported inside the
commands: `-h` and TAB load this module."""

from __future__ import annotations

from pathlib import Path

import typer

from ...errors import UsageError
from ..reads import engine, project_name, show_stat, window_seconds
from ..common import Format, FormatOption, JsonOption, output_format, ui_of

commands = typer.Typer()
PathOption = typer.Option(Path("."), "--path", help="The project's folder.")
ProjectOption = typer.Option(None, "--project", "-p", help="Project name instead of --path.")


@commands.command()
def stat(ctx: typer.Context, window: str = typer.Option("60s", "--window", help="How far back (1s to 10m)."),
         output: Format = FormatOption, as_json: bool = JsonOption,
         path: Path = PathOption, name: str | None = ProjectOption) -> None:
    """Requests, requests/s, success rate and latency per service and per edge (caller → callee)."""
    show_stat(ui_of(ctx), window, output_format(output, as_json).value, path, name)


@commands.command()
def top(ctx: typer.Context, service: str | None = typer.Argument(None, help="Only this service's routes."),
        window: str = typer.Option("10s", "--window", help="How far back (1s to 10m)."),
        once: bool = typer.Option(False, "--once", help="One snapshot, then exit."),
        output: Format = FormatOption, as_json: bool = JsonOption,
        path: Path = PathOption, name: str | None = ProjectOption) -> None:
    """The busiest routes (method and path): callers, count, success, p99; live, every second."""
    from ...runtime.observe import routes

    seconds = window_seconds(window)
    docker = engine()
    project = name or project_name(path, running_fallback=docker)
    output = output_format(output, as_json)
    ui = ui_of(ctx)
    if once or output != Format.text:
        ui.top_table(routes(docker, project, service, seconds), seconds, output=output.value)
        return
    ui.top_live(lambda: routes(docker, project, service, seconds), seconds)


@commands.command()
def tap(ctx: typer.Context, service: str = typer.Argument(..., help="The service whose proxy to watch."),
        caller: str | None = typer.Option(None, "--from", help="Only requests from this caller (a service; host: "
                                          "from outside the mesh)."),
        prefix: str | None = typer.Option(None, "--path", help="Only paths that start with this."),
        method: str | None = typer.Option(None, "--method", help="Only this method (GET, POST…)."),
        status: str | None = typer.Option(None, "--status", help="Only this status (404) or class (5xx)."),
        most: int | None = typer.Option(None, "--max", min=1, help="End after this many requests."),
        as_json: bool = typer.Option(False, "--json", help="JSON lines."),
        name: str | None = ProjectOption) -> None:
    """The requests crossing a service's proxy, live, one line each (Ctrl-C ends). --path filters
    paths here: the project is the current folder's, the only one running, or -p NAME."""
    from ...runtime.observe import TapFilter, tap as read_tap

    if status is not None and not ((status.isdigit() and len(status) == 3) or
                                   (len(status) == 3 and status[0] in "12345" and status[1:] == "xx")):
        raise UsageError(f"--status {status}: not a status (404) or a class (5xx)", hint="--status 5xx")
    docker = engine()
    project = name or project_name(Path("."), running_fallback=docker)
    ui = ui_of(ctx)
    shown = 0
    for event in read_tap(docker, project, service, TapFilter(caller, prefix, method, status)):
        if event is None:
            ui.note(f"tapping {project}/{service} (Ctrl-C ends)")
            continue
        ui.tap_line(event, as_json=as_json)
        shown += 1
        if most is not None and shown >= most:
            return
