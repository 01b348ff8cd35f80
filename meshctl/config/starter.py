"""What `meshctl init` writes for a folder, by what is in it: a Dockerfile is built (`build: .`,
its EXPOSE the port); a package.json, requirements.txt, pyproject.toml or go.mod is run mode (a
`command:` in that runtime, this folder at /app, no Dockerfile). Pure but for reading the folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import runtimes
from .run_mode import RUN_MODE_PORT
from .services import dockerfile_exposed_port

_NODE_FILES = ("server.js", "index.js", "app.js", "main.js")
_PYTHON_FILES = ("app.py", "main.py", "server.py", "wsgi.py")


@dataclass(frozen=True)
class Starter:
    port: int
    command: tuple[str, ...] | None = None    # run mode: the command; None: `build: .`
    runtime: str | None = None
    found: str | None = None                  # what decided it ("a Dockerfile", "package.json"), for the message


def starter_for(folder: Path) -> Starter:
    dockerfile = folder / "Dockerfile"
    if dockerfile.is_file():
        return Starter(dockerfile_exposed_port(dockerfile.read_text(encoding="utf-8")) or RUN_MODE_PORT,
                       found="a Dockerfile")
    for runtime in runtimes.RUNTIMES.values():
        marker = next((m for m in runtime.markers if (folder / m).is_file()), None)
        if marker is not None:
            return Starter(RUN_MODE_PORT, _COMMANDS[runtime.name](folder), runtime.name, marker)
    return Starter(RUN_MODE_PORT)


def _node_command(folder: Path) -> tuple[str, ...]:
    """npm start when package.json has a start script, else node on its `main` or a usual file."""
    try:
        package = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        package = {}
    package = package if isinstance(package, dict) else {}
    if isinstance(package.get("scripts"), dict) and package["scripts"].get("start"):
        return ("npm", "start")
    main = package.get("main")
    if isinstance(main, str) and (folder / main).is_file():
        return ("node", main)
    return ("node", _first_of(folder, _NODE_FILES))


def _python_command(folder: Path) -> tuple[str, ...]:
    if (folder / "manage.py").is_file():
        return ("python3", "manage.py", "runserver", f"0.0.0.0:{RUN_MODE_PORT}")
    return ("python3", _first_of(folder, _PYTHON_FILES))


def _first_of(folder: Path, names: tuple[str, ...]) -> str:
    return next((name for name in names if (folder / name).is_file()), names[0])


_COMMANDS = {"node": _node_command, "python": _python_command, "go": lambda folder: ("go", "run", ".")}
