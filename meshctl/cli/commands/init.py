"""`meshctl init`: a commented mesh.yaml to start from; `meshctl schema`: mesh.yaml's JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ...errors import UsageError
from ..common import COMPOSE_NAMES, ui_of

if TYPE_CHECKING:
    from ...config.starter import Starter

commands = typer.Typer()


@commands.command()
def init(ctx: typer.Context, path: Path = typer.Argument(Path("."), help="The folder to write mesh.yaml in."),
         force: bool = typer.Option(False, help="Overwrite an existing mesh.yaml; write one beside a compose file.")
         ) -> None:
    """Write a commented mesh.yaml for what the folder holds: a Dockerfile is built; package.json,
    requirements.txt, pyproject.toml or go.mod runs a command in that runtime, with no Dockerfile.
    In a folder with a compose file it points at `meshctl inject` instead."""
    from ...home import atomic_write
    from ...config.starter import starter_for

    target = path / "mesh.yaml"
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="pass --force to overwrite it")
    compose = next((path / name for name in COMPOSE_NAMES if (path / name).is_file()), None)
    if compose is not None and not force:
        raise UsageError(f"{compose} is a compose file: meshctl wraps its services where they are, with no mesh.yaml",
                         hint=f"meshctl inject {compose} -o compose.mesh.yaml, then docker compose -f "
                              "compose.mesh.yaml up (docs/inject.md); --force writes a mesh.yaml anyway")
    starter = starter_for(path)
    atomic_write(target, _mesh_yaml(path, starter).encode())
    ui = ui_of(ctx)
    if starter.found is None:
        ui.note("no Dockerfile, package.json, requirements.txt, pyproject.toml or go.mod here: the mesh.yaml "
                "builds a Dockerfile you have yet to write (or set `command:`, docs/config.md)")
    ui.success(f"wrote {target} ({'for ' + starter.found if starter.found else 'a starting point'}); "
               f"now run `meshctl up {path}`")


def _mesh_yaml(folder: Path, starter: Starter) -> str:
    """templates/mesh.yaml with the service's lines for a build or for a command."""
    from ...config import sanitize_name
    from ...config.schema import SCHEMA_FILE
    from ...sidecars.data import template_parts

    parts = {name: part.template for name, part in template_parts("mesh.yaml").items()}
    app = parts["command" if starter.command else "build"].rstrip("\n")
    command = "[" + ", ".join(starter.command or ()) + "]"
    values = {"{app}": app, "{schema}": str(SCHEMA_FILE), "{name}": sanitize_name(folder.resolve().name) or "app",
              "{port}": str(starter.port), "{command}": command, "{runtime}": str(starter.runtime),
              "{found}": str(starter.found)}
    text = parts[""]
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


@commands.command()
def schema(ctx: typer.Context) -> None:
    """Print mesh.yaml's JSON Schema (for editors: see docs/config.md)."""
    from ...config.schema import schema_text

    ui_of(ctx).document(schema_text())
