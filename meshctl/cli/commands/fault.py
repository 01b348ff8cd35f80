"""`meshctl fault`: inject a fault into a running service now, clear it, list what applies. The
layers below are imported inside the command: `-h` and TAB load this module."""

from __future__ import annotations

from pathlib import Path

import typer

from ...errors import UsageError
from ..common import Format, FormatOption, output_format, ui_of
from ..reads import engine, project_name

commands = typer.Typer()


@commands.command()
def fault(ctx: typer.Context, service: str | None = typer.Argument(None, help="The service whose proxy injects it."),
          abort: int | None = typer.Option(None, "--abort", help="HTTP: answer this status instead of calling the app."),
          delay: str | None = typer.Option(None, "--delay", help="Wait this long (300ms, 2s) before passing the call on."),
          reset: bool = typer.Option(False, "--reset", help="TCP: close the connection without an answer."),
          percent: float = typer.Option(100.0, "--percent", help="Of the calls (fractions allowed)."),
          callers: list[str] = typer.Option([], "--from", help="Only calls from this service (repeat for more)."),
          clear: bool = typer.Option(False, "--clear", help="Back to what mesh.yaml says."),
          list_: bool = typer.Option(False, "--list", help="The faults that apply, by service."),
          output: Format = FormatOption,
          as_json: bool = typer.Option(False, "--json", help="With --list: the same as -o json."),
          path: Path = typer.Option(Path("."), "--path", help="The project's folder."),
          name: str | None = typer.Option(None, "--project", "-p", help="Project name instead of --path.")) -> None:
    """Inject a fault into a running service, live (no restart), until --clear or `down`; the live
    fault replaces mesh.yaml's `faults:` for that service meanwhile."""
    from ...home import meshctl_home
    from ...runtime.faults import change_live, project_faults

    ui = ui_of(ctx)
    docker = engine()
    project = name or project_name(path, running_fallback=docker)
    home = meshctl_home()
    if list_:
        ui.fault_list(project_faults(home, project), output=output_format(output, as_json).value)
        return
    if service is None:
        raise UsageError("which service?", hint="meshctl fault api --abort 503 --percent 20, or meshctl fault --list")
    ui.fault_set(change_live(docker, home, project, service, clear=clear, abort=abort, delay=delay, reset=reset,
                             percent=percent, callers=callers))
