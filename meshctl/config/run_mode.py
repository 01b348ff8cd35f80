"""Run mode: a command run in your folder with no Dockerfile (`meshctl up -- CMD`, or a service's
`command` with `runtime` or `source`), the folder mounted at /app; and `watch:`, what a change to
a file does (sync it in, or rebuild)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .fields import keys
from ..errors import ConfigError
from . import runtimes
from .spec import ServiceSpec, WatchSettings
from .values import kind_of, reject_unknown, sanitize_name
from .yamlpos import Where

RUN_MODE_PORT = 8080       # the port a command of `meshctl up -- CMD` listens on, unless told
RUN_MODE_EXAMPLE = ("command: [node, server.js]   (the runtime is picked from package.json, pyproject.toml or "
                    "requirements.txt, go.mod; or say runtime: node|python|go, or image: ruby:3.3 with source: .)")


def command_service(folder: Path, command: tuple[str, ...], *, image: str | None, runtime: str | None) -> ServiceSpec:
    """`meshctl up [PATH] -- CMD` in a folder with no mesh.yaml and no Dockerfile: the command
    runs in the folder's runtime (or in --image) with the folder mounted at /app. No host ports yet."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: `-- CMD` runs a command in a folder; this is a file",
                          hint="pass the folder that holds your code")
    if image is None:
        if runtime is None:
            picked = runtimes.detect(folder, command)
            if picked is None:
                raise ConfigError(f"{folder}: cannot tell which runtime runs {command[0]!r} here (no package.json, "
                                  "pyproject.toml, requirements.txt or go.mod)",
                                  hint="pass --runtime node|python|go, or --image IMAGE to run it in any image")
            runtime = picked.name
        elif runtime not in runtimes.RUNTIMES:
            raise ConfigError(f"--runtime {runtime}: not a runtime meshctl builds",
                              hint="--runtime " + " | ".join(runtimes.RUNTIMES) + ", or --image IMAGE")
        problem = missing_program(runtimes.RUNTIMES[runtime], command, folder, folder, given=True)
        if problem is not None:
            raise ConfigError(f"-- {' '.join(command)}: {problem[0]}", hint=problem[1])
    return ServiceSpec(name=sanitize_name(folder.name) or "app", image=image, runtime=None if image else runtime,
                       source=folder, command=command, port=RUN_MODE_PORT,
                       watch=WatchSettings(sync=run_mode_sync(folder, folder)))


def parse_run_mode(raw: dict, build: Path | None, image: str | None, command: tuple[str, ...] | None,
                   path: tuple, where: Where, root: Path) -> tuple[str | None, Path | None]:
    """Which of the three a service is: built (`build`), an image (`image`, maybe with `source`
    to run a command in your folder), or run mode with no Dockerfile (`runtime`, or a `command`
    alone). Returns (runtime, source)."""
    runtime = raw.get("runtime")
    if sum(x is not None for x in (build, image, runtime)) > 1:
        raise where.error(path, "set exactly one of `build` (a folder with a Dockerfile), `image`, or `runtime`",
                          hint="build: .   or   image: nginx:1.25   or   runtime: node with command: [node, server.js]")
    if build is not None:
        if "source" in raw:
            raise where.error(path + ("source",), "`source` is for a service without a Dockerfile; "
                              "a built one has its files in its image", hint="use watch.sync to mount a folder")
        return None, None
    source = None
    if "source" in raw or image is None:
        value = raw.get("source", ".")
        if not isinstance(value, str) or not (root / value).is_dir():
            raise where.error(path + ("source",), f"{value!r} is not a folder", hint="source: .")
        source = (root / value).resolve()
    if image is not None:
        return None, source
    if command is None:
        raise where.error(path, "set `build`, `image`, or a `command` to run in your folder (no Dockerfile needed)",
                          hint=RUN_MODE_EXAMPLE)
    assert source is not None
    if runtime is None:
        picked = runtimes.detect(source, command)
        if picked is None:
            raise where.error(path + ("command",), f"cannot tell which runtime runs {command[0]!r} in {source}",
                              hint="say runtime: node, python or go, or image: IMAGE with source: .")
        runtime = picked.name
    if runtime not in runtimes.RUNTIMES:
        raise where.error(path + ("runtime",), f"{runtime!r} is not a runtime meshctl builds",
                          hint="runtime: " + " | ".join(runtimes.RUNTIMES) + "; or image: IMAGE with source: .")
    problem = missing_program(runtimes.RUNTIMES[runtime], command, source, root, given="source" in raw)
    if problem is not None:
        raise where.error(path + ("command",), *problem)
    return runtime, source


def missing_program(runtime: runtimes.Runtime, command: tuple[str, ...], source: Path, root: Path, *,
                    given: bool) -> tuple[str, str] | None:
    """(problem, hint) when the command's program surely is not in the runtime: a package's
    command (gunicorn) with a source folder that lists no dependencies. Said before anything is
    built or started; when it cannot be known, the engine's refusal is translated instead."""
    program = runtimes.program_of(command)
    if program not in runtime.from_packages or runtime.has_dependencies(source):
        return None
    files = " or ".join(runtime.dependency_files[:2])
    used = "its `source:`" if given else "mesh.yaml's folder: no `source:` given"
    problem = (f"{program!r} comes from a {runtime.name} package, and the folder run mode installs dependencies "
               f"from, {source} ({used}), lists none (no {files} here), so {program} would not be found")
    holders = [folder for folder in _folders_near(root) if folder != source and runtime.names_package(folder, program)]
    if holders:
        relative = os.path.relpath(holders[0], root)
        return problem, (f"source: {relative} holds a {runtime.dependency_files[0]} that names {program}: set "
                         f"`source: {relative}` on this service")
    return problem, f"add {program} to {runtime.dependency_files[0]} in {source}, or set `source:` to the folder whose " \
        f"{runtime.dependency_files[0]} names it"


def _folders_near(root: Path) -> list[Path]:
    """mesh.yaml's folder and the folders in it, then theirs: where a dependency file may sit."""
    near = [root]
    for depth in range(2):
        near += sorted(p for folder in near if len(folder.relative_to(root).parts) == depth
                       for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return list(dict.fromkeys(p.resolve() for p in near))


def run_mode_sync(root: Path, source: Path) -> tuple[tuple[str, str], ...]:
    """Run mode mounts the source at /app in sync mode: a save restarts the command in place."""
    return ((os.path.relpath(source, root), runtimes.APP_DIR),)


def parse_watch(raw: Any, path: tuple, where: Where) -> WatchSettings:
    if raw is None:
        return WatchSettings()
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a mapping, found {kind_of(raw)}",
                          hint='watch: {sync: {".": /app}, rebuild: [requirements.txt], ignore: ["*.log"]}')
    reject_unknown(raw, keys("watch"), path, where)
    sync = raw.get("sync") or {}
    if not isinstance(sync, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.startswith("/")
                                             for k, v in sync.items()):
        raise where.error(path + ("sync",), "expected a mapping of local folder to absolute container path",
                          hint='sync: {".": /app}')
    lists = {}
    for key in ("rebuild", "ignore"):
        value = raw.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise where.error(path + (key,), "expected a list of file globs", hint=f'{key}: ["*.txt"]')
        lists[key] = tuple(value)
    return WatchSettings(sync=tuple(sync.items()), **lists)
