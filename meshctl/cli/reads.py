"""What the commands share that needs no typer: the engine, the project a PATH names, the error
funnel's outcome, and `meshctl stat` and `meshctl trace` answered before typer loads.

stat and trace answer in under 0.3 s; importing typer (click with it) and building its command
take ~0.1 s of that here. So, as `--version` is (cli/__init__.py), their plain forms run from
here: the options their typer commands declare (commands/observe.py, commands/trace.py), as
typer would parse them. Anything else (-h, an unknown option, a missing or bad value, `--`)
goes to the typer app, which runs or refuses it with its own messages. A unit test holds each
form here to its typer command: the same options, the same values. The commands' bodies are
here, so both ways run the same code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled, MeshctlError, UsageError

if TYPE_CHECKING:
    from ..engine.base import Engine
    from .ui import Ui


def DockerEngine() -> Engine:
    """A connection to the Docker engine (named as the class it makes: the unit tier puts its fake here)."""
    from ..engine.docker import DockerEngine as RealEngine

    return RealEngine()


def engine() -> Engine:
    """The Docker engine every command talks to (the unit tier puts its fake in DockerEngine)."""
    return DockerEngine()


def project_name(path: Path, running_fallback: Engine | None = None) -> str:
    """The project a PATH names, without building anything."""
    from ..config import CONFIG_NAMES, find_config, load_project, runtimes, sanitize_name
    from ..runtime.status import project_names

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


def exit_code_of(ui: Ui, command: Callable[[], Any]) -> Any:
    """The error funnel: run the command; a MeshctlError becomes its message on `ui` and its exit
    code, an interrupt 130 (everything started was removed on the way out). Else what it returned."""
    try:
        return command()
    except (Cancelled, KeyboardInterrupt):
        ui.stop_progress()
        ui.notice("interrupted: everything meshctl started was removed")
        return 130
    except MeshctlError as exc:
        ui.error(exc)
        return exc.exit_code


# -- the commands' bodies --------------------------------------------------------------------------

def show_stat(ui: Ui, window: str, output: str, path: Path, name: str | None) -> None:
    from ..runtime.observe import stat

    seconds = window_seconds(window)
    docker = engine()
    project = name or project_name(path, running_fallback=docker)
    ui.stat_table(stat(docker, project, seconds), seconds, output=output)


def show_trace(ui: Ui, trace_id: str | None, last: int, errors: bool, slowest: bool, as_json: bool,
               path: Path, name: str | None) -> None:
    from ..home import meshctl_home
    from ..runtime.traces import one_trace, recent, trace_summaries, waterfall
    from .ui.traces import trace_list, trace_waterfall

    docker = engine()
    project = name or project_name(path, running_fallback=docker)
    if trace_id is None:
        rows = recent(trace_summaries(docker, project, home=meshctl_home()), last=last, errors=errors, slowest=slowest)
        trace_list(ui, rows, as_json=as_json)
        return
    trace_waterfall(ui, trace_id.lower(), waterfall(one_trace(docker, project, trace_id, home=meshctl_home())),
                    as_json=as_json)


def window_seconds(window: str) -> int:
    from ..config.values import parse_duration

    seconds = parse_duration(window)
    if seconds is None or not 1 <= seconds <= 600:
        raise UsageError(f"--window {window}: not a duration from 1s to 10m", hint="--window 60s, --window 5m")
    return int(seconds)


# -- their plain forms, before typer -------------------------------------------------------------

FORMATS = ("text", "json", "yaml")
# Per command: option → (parameter, what it takes: a flag, a string, a format, a count ≥ 1).
OPTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "stat": {"--window": ("window", "str"), "--output": ("output", "format"), "-o": ("output", "format"),
             "--json": ("as_json", "flag"), "--path": ("path", "str"), "--project": ("name", "str"),
             "-p": ("name", "str")},
    "trace": {"--last": ("last", "count"), "--errors": ("errors", "flag"), "--slowest": ("slowest", "flag"),
              "--json": ("as_json", "flag"), "--path": ("path", "str"), "--project": ("name", "str"),
              "-p": ("name", "str")},
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "stat": {"window": "60s", "output": "text", "as_json": False, "path": ".", "name": None},
    "trace": {"trace_id": None, "last": 20, "errors": False, "slowest": False, "as_json": False, "path": ".",
              "name": None},
}
ARGUMENTS = {"stat": (), "trace": ("trace_id",)}


def parse(args: list[str]) -> tuple[str, dict[str, Any]] | None:
    """(command, its parameters) when `args` is a plain form of stat or trace, else None."""
    if not args or args[0] not in OPTIONS:
        return None
    command, options, positional = args[0], OPTIONS[args[0]], list(ARGUMENTS[args[0]])
    params = dict(DEFAULTS[command])
    rest = args[1:]
    while rest:
        word = rest.pop(0)
        if not word.startswith("-") or word == "-":
            if not positional:
                return None
            params[positional.pop(0)] = word
            continue
        name, has_value, value = word.partition("=")
        if name not in options or (has_value and not name.startswith("--")):
            return None
        param, kind = options[name]
        if kind == "flag":
            if has_value:
                return None
            params[param] = True
            continue
        if not has_value:
            if not rest:
                return None
            value = rest.pop(0)
        if (kind == "format" and value not in FORMATS) or (kind == "count" and not (value.isdigit() and int(value) >= 1)):
            return None
        params[param] = int(value) if kind == "count" else value
    return command, params


def answered(args: list[str]) -> int | None:
    """The exit code of a plain stat or trace run here, or None: the typer app is to run it."""
    parsed = parse(args)
    if parsed is None:
        return None
    command, params = parsed
    from .ui import Ui

    ui = Ui()
    path = Path(params.pop("path"))
    if command == "stat":
        if params["as_json"] and params["output"] not in ("text", "json"):
            return None       # typer's command says what is wrong with --json and -o yaml
        output, as_json = params.pop("output"), params.pop("as_json")
        output = "json" if as_json else output
        return exit_code_of(ui, lambda: show_stat(ui, output=output, path=path, **params)) or 0
    return exit_code_of(ui, lambda: show_trace(ui, path=path, **params)) or 0


def main(args: list[str]) -> bool:
    """Run `meshctl ARGS` here when it is a plain stat or trace (exiting with its code); False if not."""
    code = answered(args)
    if code is None:
        return False
    sys.stdout.flush()
    sys.exit(code)
