"""What several command groups share: the PATH argument, `-- CMD` after the options, the engine the
commands talk to, the project a PATH names, the compose file a FILE names. May import everything in
meshctl below the CLI, and the ui."""

from __future__ import annotations

from pathlib import Path

import typer
import typer.core

from ..config import CONFIG_NAMES, find_config, load_project, runtimes, sanitize_name
from ..engine.docker import DockerEngine
from ..errors import UsageError
from ..runtime.status import project_names
from .ui import Ui

PathArg = typer.Argument(Path("."), help="A folder with mesh.yaml (or a Dockerfile, or just your code and "
                                          "`-- CMD`), or a mesh.yaml file.")
RuntimeOption = typer.Option(None, "--runtime", help="With -- CMD: the runtime to run it in (node, python, go; "
                             "default: picked from the folder's package.json, pyproject.toml, requirements.txt, go.mod).")
COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def ui_of(ctx: typer.Context) -> Ui:
    """The command's Ui: the one the CLI's error funnel (app.py) renders a failure on."""
    return ctx.ensure_object(Ui)


def engine() -> DockerEngine:
    """The Docker engine every command talks to (the unit tier puts its fake here)."""
    return DockerEngine()


class CommandAfterDashes(typer.core.TyperCommand):
    """`meshctl up [OPTIONS] [PATH] -- CMD ARGS…`: everything after `--` is the app's command
    (Dapr's `dapr run -- node app.js`), kept apart from PATH, in ctx.meta["app_command"]."""

    def parse_args(self, ctx, args):
        if "--" in args:
            at = args.index("--")
            ctx.meta["app_command"] = tuple(args[at + 1:])
            args = args[:at]
        return super().parse_args(ctx, args)


def app_command(ctx: typer.Context) -> tuple[str, ...] | None:
    command = ctx.meta.get("app_command")
    if command is not None and not command:
        raise UsageError("nothing after `--`: give the command that runs your app",
                         hint="meshctl up -- node server.js")
    return command


def project_name(path: Path, running_fallback: DockerEngine | None = None) -> str:
    """The project a PATH names, without building anything."""
    if find_config(path) is not None or (path / "Dockerfile").is_file():
        return load_project(path).name
    if path.is_dir() and runtimes.detect(path.resolve(), None) is not None:
        return sanitize_name(path.resolve().name) or "app"     # what `up -- CMD` named it
    if running_fallback is not None:
        names = project_names(running_fallback)
        if len(names) == 1:
            return names[0]
    raise UsageError(f"{path.resolve()}: no {CONFIG_NAMES[0]} or Dockerfile, so no project name",
                     hint="pass the project's folder, or --project NAME (`meshctl ps` lists them)")


def compose_file(given: Path | None) -> Path:
    """The file itself, or the compose file in a folder (no FILE: this folder), found the way
    `docker compose` finds it."""
    folder = Path(".") if given is None else given
    if given is not None and not given.is_dir():
        if given.is_file():
            return given
        raise UsageError(f"{given}: no such file", hint="pass the compose file's path, or - to read stdin")
    found = next((folder / n for n in COMPOSE_NAMES if (folder / n).is_file()), None)
    if found is not None:
        return found
    where = "this folder" if given is None else f"{given} is a folder, and it"
    yamls = sorted(p.name for p in folder.iterdir() if p.suffix in (".yaml", ".yml")) if folder.is_dir() else []
    raise UsageError(f"{where} has no compose file ({', '.join(COMPOSE_NAMES)})",
                     hint=(f"its YAML files: {', '.join(yamls)}; pass one of them" if yamls
                           else "pass the compose file's path, or - to read stdin"))
