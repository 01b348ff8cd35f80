"""`meshctl init`: a commented mesh.yaml to start from; `meshctl schema`: mesh.yaml's JSON Schema."""

from __future__ import annotations

from pathlib import Path

import typer

from ...errors import UsageError
from ..common import ui_of

commands = typer.Typer()


@commands.command()
def init(ctx: typer.Context, path: Path = typer.Argument(Path("."), help="The folder to write mesh.yaml in."),
         force: bool = typer.Option(False, help="Overwrite an existing mesh.yaml.")) -> None:
    """Write a commented mesh.yaml."""
    from ...certs import atomic_write
    from ...config import dockerfile_exposed_port, sanitize_name
    from ...sidecars import data_dir

    target = path / "mesh.yaml"
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="pass --force to overwrite it")
    dockerfile = path / "Dockerfile"
    port = dockerfile_exposed_port(dockerfile.read_text()) if dockerfile.is_file() else None
    name = sanitize_name(path.resolve().name) or "app"
    text = (data_dir("templates") / "mesh.yaml").read_text().replace("{name}", name).replace(
        "{port}", str(port or 8080))
    atomic_write(target, text.encode())
    ui_of(ctx).success(f"wrote {target}; now run `meshctl up {path}`")


@commands.command()
def schema(ctx: typer.Context) -> None:
    """Print mesh.yaml's JSON Schema (for editors: see docs/config.md)."""
    from ...config.schema import schema_text

    ui_of(ctx).document(schema_text())
