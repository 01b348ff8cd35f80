"""`meshctl validate`: mesh.yaml checked without an engine, for editors, hooks and CI. The layers
below are imported inside the command: `-h` and TAB load this module."""

from __future__ import annotations

from pathlib import Path

import typer

from ...errors import ConfigError
from ..common import Format, FormatOption, QuietOption, output_format, ui_of

commands = typer.Typer()


@commands.command()
def validate(ctx: typer.Context,
             path: Path = typer.Argument(Path("."), help="A mesh.yaml, or a folder with one (default: this folder)."),
             quiet: bool = QuietOption, output: Format = FormatOption) -> None:
    """Check a mesh.yaml with every check that needs no engine: its fields, names and ports, each
    sidecar's config rendered. Exit 0: valid (silent with -q); 2: not, with file:line and what to do."""
    from ...config import find_config, load_project
    from ...runtime.stack import plan_offline

    ui = ui_of(ctx, quiet=quiet)
    output = output_format(output, False)
    source = find_config(path)
    try:
        project = load_project(path)
        plan_offline(project)
    except ConfigError as exc:
        if output != Format.text:
            ui.data({"valid": False, "file": str(source or path), "error": exc.message, "hint": exc.hint}, output.value)
        raise
    ui.validated(str(source or path), project.name, [s.name for s in project.services], output.value)
