"""What several command groups share that is typer's: the PATH argument and the options, `-- CMD`
after the options, the compose file a FILE names. What they share that needs no typer (the engine,
the project a PATH names, the error funnel's outcome) is in reads.py. May import everything in
meshctl below the CLI, and the ui.

Every command module imports this one to declare its options, `-h` and TAB included: so it imports
typer and the errors only, and what a command runs on (the config, the Docker SDK) where it is used."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
import typer.core

from ..errors import UsageError

if TYPE_CHECKING:
    from .ui import Ui

PathArg = typer.Argument(Path("."), help="A folder with mesh.yaml (or a Dockerfile, or just your code and "
                                          "`-- CMD`), or a mesh.yaml file.")
RuntimeOption = typer.Option(None, "--runtime", help="With -- CMD: the runtime to run it in (node, python, go; "
                             "default: picked from the folder's package.json, pyproject.toml, requirements.txt, go.mod).")
QuietOption = typer.Option(False, "--quiet", "-q", help="Print only results and errors, no progress or notes.")
# What the containers' lines show (meshctl/sidecars/console.py): `up` and `logs` take both.
VerboseOption = typer.Option(False, "--verbose", "-v", help="Every line of every container as written: HAProxy's "
                             "own messages, the raw access log (by default: the apps' lines, sidecars' when they matter).")
AccessOption = typer.Option(False, "--access", help="Every request as one line (`web → api  GET /hello  200  3.1 ms  "
                            "mTLS`); by default only 5xx, denied calls and failed connections.")


class Format(str, Enum):
    """`-o`: what a listing command prints (text for people; json and yaml for scripts)."""
    text = "text"
    json = "json"
    yaml = "yaml"


class Progress(str, Enum):
    """`--progress`: auto (live on a terminal, plain lines otherwise), plain (one line per step,
    for CI logs), quiet (errors only)."""
    auto = "auto"
    plain = "plain"
    quiet = "quiet"


FormatOption = typer.Option(Format.text, "--output", "-o", help="Print as text, json or yaml.")
PlanFormatOption = typer.Option(Format.text, "--output", "-o", help="With --dry-run: print the plan as text, json or yaml.")
JsonOption = typer.Option(False, "--json", help="The same as -o json.")
ProgressOption = typer.Option(Progress.auto, "--progress", help="auto: live on a terminal, plain lines otherwise; "
                              "plain: one line per step (CI logs); quiet: errors only.")
COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def ui_of(ctx: typer.Context, *, quiet: bool = False, progress: Progress | None = None) -> Ui:
    """The command's Ui: the one the CLI's error funnel (app.py) renders a failure on, told the
    command's -q and --progress (-q is --progress quiet)."""
    from .ui import Ui

    ui = ctx.ensure_object(Ui)
    ui.quiet = ui.quiet or quiet or progress == Progress.quiet
    if progress is not None:
        ui.progress = "quiet" if ui.quiet else progress.value
    return ui


def output_format(output: Format, as_json: bool) -> Format:
    """-o, with --json as its alias."""
    if as_json and output not in (Format.text, Format.json):
        raise UsageError(f"--json and -o {output.value} ask for two formats", hint="pass one of them")
    return Format.json if as_json else output


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
