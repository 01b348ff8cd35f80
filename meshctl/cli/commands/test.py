"""`meshctl test`: bring a stack up, run its checks, report, tear it all down. The layers below are
imported inside the command: `-h` and TAB load this module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ...errors import UsageError
from ..common import (
    CommandAfterDashes,
    Format,
    JsonOption,
    PathArg,
    Progress,
    ProgressOption,
    QuietOption,
    RuntimeOption,
    app_command,
    compose_file,
    output_format,
    ui_of,
)
from ..reads import engine

if TYPE_CHECKING:
    from ...testing.report import Report
    from ..ui import Ui

commands = typer.Typer()


@commands.command("test", cls=CommandAfterDashes)
def test_(ctx: typer.Context, path: Path = PathArg,
          junit: Path | None = typer.Option(None, "--junit", help="Write a JUnit XML report to this file."),
          output: Format = typer.Option(Format.text, "--output", "-o", help="Print the results as text, json or "
                                        "yaml on stdout (the table goes to stderr then)."),
          as_json: bool = JsonOption,
          timeout: float = typer.Option(180.0, help="Seconds the stack may take to get ready (after builds)."),
          compose: Path | None = typer.Option(None, "--compose", help="Check a stack made by `meshctl inject` "
                                                 "from this compose file instead of PATH's mesh.yaml."),
          name: str | None = typer.Option(None, "--project", "-p", help="Project name (default: mesh.yaml's name + '-test')."),
          image: str | None = typer.Option(None, help="With -- CMD: run CMD in this image, the folder at /app."),
          runtime: str | None = RuntimeOption,
          port: int | None = typer.Option(None, help="The port the app listens on inside the pod (with -- CMD: 8080)."),
          quiet: bool = QuietOption, progress: Progress = ProgressOption,
          ) -> int:
    """Bring the stack up, run the built-in and mesh.yaml checks, write the report, tear it all down.
    Exit 0: all passed; 1: a check failed; 2: bad configuration or usage; 3: the stack could not start."""
    from ...config import load_project
    from ...runtime.supervise import Interrupts
    from ...testing import session
    from ...testing.compose_mode import run_compose_test

    ui = ui_of(ctx, quiet=quiet, progress=progress)
    output = output_format(output, as_json)
    if output != Format.text:
        ui.results = ui.err
    if junit is not None:
        _writable(junit, "--junit")
    interrupts = Interrupts().install()
    try:
        if compose is not None:
            report = run_compose_test(engine(), compose_file(compose), interrupts=interrupts, on_event=ui,
                                      ready_timeout=timeout)
        else:
            command = app_command(ctx)
            if image is not None and command is None:
                raise UsageError("meshctl test --image needs the command to run in it after --",
                                 hint=f"meshctl test --image {image} -- CMD")
            project = session.isolated(load_project(path, name=name, image=image, port=port, command=command,
                                                    runtime=runtime), rename=name is None)
            report = session.run_smoke_test(engine(), project, interrupts=interrupts, on_event=ui,
                                            ready_timeout=timeout)
    finally:
        interrupts.restore()
    return _reported(ui, report, junit, output=output.value)


def _reported(ui: Ui, report: Report, junit: Path | None, *, output: str) -> int:
    """The JUnit file written, the report shown; the start error raised, or the checks' exit code."""
    from ...home import atomic_write
    from ...testing.junit import render_junit

    if junit is not None:
        atomic_write(junit, render_junit(report).encode(), mode=0o644)
        ui.report_written("JUnit", str(junit))
    ui.test_report(report, output=output)
    if report.error is not None:
        if any(s.logs for s in report.services):
            report.error.details = None   # its lines are among the logs just shown
        raise report.error
    return report.exit_code


def _writable(target: Path, option: str) -> None:
    """Fail before starting anything when a report could not be written."""
    if target.is_dir():
        raise UsageError(f"{option} {target}: is a folder", hint=f"give a file name, e.g. {option} report.xml")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {target}: cannot create its folder: {exc.strerror}") from exc
