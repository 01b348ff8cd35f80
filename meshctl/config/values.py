"""Small value parsers every part of mesh.yaml uses: durations, ports, commands, env, names, and
the "unknown field, did you mean" check. Each takes the field's path and a Where, so its error
names file:line and the field."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .yamlpos import Where

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
NAME_HINT = "use lower-case letters, digits, '-', '_' or '.', starting with a letter or digit"
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float | None:
    """'15s' → 15.0, '500ms' → 0.5, 2 → 2.0; None when it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return None


def duration_field(value: Any, path: tuple, where: Where) -> float:
    seconds = parse_duration(value)
    if seconds is None:
        raise where.error(path, f"{value!r} is not a duration", hint="write it like 15s, 500ms or 2m")
    return seconds


def port_field(value: Any, label: str, where: Where | None, path: tuple = (), *,
               allow_zero: bool = False) -> int:
    """A port number; `where` None for a flag (--port), which has no line."""
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        problem = f"{value!r} is not a port number ({low}-65535)"
        hint = "0 asks for a free port" if allow_zero else None
        if where is None:
            raise ConfigError(f"{label}: {problem}", hint=hint)
        raise where.error(path, problem, hint=hint)
    return value


def command_field(command: Any, path: tuple, where: Where) -> tuple[str, ...] | None:
    if command is None:
        return None
    if isinstance(command, str):
        return ("sh", "-c", command)
    if isinstance(command, list) and all(isinstance(c, (str, int, float)) for c in command):
        return tuple(str(c) for c in command)
    raise where.error(path, "expected a string or a list of strings")


def env_field(raw: Any, path: tuple, where: Where) -> tuple[tuple[str, str], ...]:
    env = raw or {}
    if not isinstance(env, dict):
        raise where.error(path, f"expected a mapping of names to values, found {kind_of(env)}",
                          hint="env: {GREETING: hi}")
    pairs = []
    for key, value in env.items():
        if isinstance(value, (dict, list)):
            raise where.error(path + (key,), "expected a plain value (string, number or boolean)")
        pairs.append((str(key), "" if value is None else scalar_text(value)))
    return tuple(pairs)


def build_or_image(raw: dict, path: tuple, where: Where, root: Path, example: str) -> tuple[Path | None, str | None]:
    """`build` (a folder with a Dockerfile, relative to mesh.yaml's) and `image`, where given."""
    build = image = None
    if "build" in raw:
        if not isinstance(raw["build"], str):
            raise where.error(path + ("build",), "expected a folder path")
        build = (root / raw["build"]).resolve()
        if not (build / "Dockerfile").is_file():
            raise where.error(path + ("build",), f"no Dockerfile in {build}",
                              hint="point `build` at the folder that holds the Dockerfile")
    if "image" in raw:
        image = raw["image"]
        if not isinstance(image, str) or not image.strip():
            raise where.error(path + ("image",), f"expected an image reference like {example}")
    return build, image


def sanitize_name(text: str) -> str:
    """A folder or image name as a project or service name: lower case, other characters as '-'."""
    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-_.")


def reject_unknown(mapping: dict, allowed: tuple, path: tuple, where: Where) -> None:
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else (
                "allowed here: " + ", ".join(allowed) if allowed else "this takes no settings")
            raise where.error(path + (key,), f"unknown field {key!r}", hint=hint)


def kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "nothing"}.get(type(value), type(value).__name__)


def scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
