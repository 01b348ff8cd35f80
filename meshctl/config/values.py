"""Small value parsers every part of mesh.yaml uses: durations, ports, commands, env, names, and
the "unknown field, did you mean" check. Each takes the field's path and a Where, so its error
names file:line and the field."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .fields import DURATION_PATTERN, DURATION_UNITS, NUMBER, keys

if TYPE_CHECKING:       # `stat --window 60s` parses a duration without the YAML reader and the model
    from .spec import BuildOptions
    from .yamlpos import Where

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
NAME_HINT = "use lower-case letters, digits, '-', '_' or '.', starting with a letter or digit"
# Go's duration units (time.ParseDuration, as compose reads them), longest first for the regex.
_SECONDS = dict(zip(DURATION_UNITS, (1e-9, 1e-6, 1e-6, 1e-6, 0.001, 1.0, 60.0, 3600.0), strict=True))
_DURATION_RE = re.compile(DURATION_PATTERN)     # the schema's pattern: one definition of the form
_PART_RE = re.compile(rf"{NUMBER}\s*({'|'.join(DURATION_UNITS)})?")


def parse_duration(value: Any) -> float | None:
    """Seconds: '15s' → 15.0, '500ms' → 0.5, '1m30s' → 90.0, '500us', '1h2m', 2 → 2.0 (a bare
    number is seconds); None when it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    if not _DURATION_RE.match(value):
        return None
    return sum(float(part.group(1)) * _SECONDS[part.group(3) or "s"] for part in _PART_RE.finditer(value))


def duration_field(value: Any, path: tuple, where: Where) -> float:
    seconds = parse_duration(value)
    if seconds is None:
        raise where.error(path, f"{value!r} is not a duration",
                          hint="write it like 15s, 500ms, 2m or 1m30s (Go's units: h, m, s, ms, us, ns)")
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


ENV_KEYS = ("env", "environment")     # `environment:` is compose's name for `env:`
_ENV_HINT = "env: {GREETING: hi}   or, as compose writes it, environment: [GREETING=hi]"


def env_settings(raw: dict, path: tuple, where: Where) -> tuple[tuple[str, str], ...]:
    """`env:` or `environment:` (one of the two), as a mapping or a list of NAME=VALUE. A name
    with no value (`- DEBUG`, `DEBUG:`) passes the variable through from meshctl's environment
    (the shell's, then .env's), and is left out when unset, as compose does."""
    given = [key for key in ENV_KEYS if key in raw]
    if len(given) > 1:
        raise where.error(path + (given[1],), "`env` and `environment` are the same setting; give one",
                          hint="merge the two into `env:`")
    if not given:
        return ()
    key = given[0]
    items = _env_items(raw[key], path + (key,), where)
    pairs = []
    for index, (name, value) in enumerate(items):
        if isinstance(value, (dict, list)):
            raise where.error(path + (key, name if isinstance(raw[key], dict) else index),
                              "expected a plain value (string, number or boolean)")
        if value is None:
            if name in where.variables:
                pairs.append((name, where.variables[name]))
            continue
        pairs.append((name, scalar_text(value)))
    return tuple(pairs)


def _env_items(env: Any, path: tuple, where: Where) -> list[tuple[str, Any]]:
    if env is None:
        return []
    if isinstance(env, dict):
        return [(str(name), value) for name, value in env.items()]
    if not isinstance(env, list):
        raise where.error(path, f"expected a mapping of names to values or a list of NAME=VALUE, found {kind_of(env)}",
                          hint=_ENV_HINT)
    items: list[tuple[str, Any]] = []
    for index, item in enumerate(env):
        if not isinstance(item, str) or not item.partition("=")[0].strip():
            raise where.error(path + (index,), f"expected NAME=VALUE, found {item!r}", hint=_ENV_HINT)
        name, equals, value = item.partition("=")
        items.append((name.strip(), value if equals else None))
    return items


_BUILD_HINT = "build: ./api   or   build: {context: ./api, dockerfile: Dockerfile.dev, args: {VERSION: 1}, target: dev}"


def build_or_image(raw: dict, path: tuple, where: Where, root: Path,
                   example: str) -> tuple[Path | None, BuildOptions, str | None]:
    """`build` (a folder with a Dockerfile relative to mesh.yaml's, or compose's mapping of
    context, dockerfile, args and target) and `image`, where given."""
    from .spec import BuildOptions      # here, and in _build_field: see TYPE_CHECKING above

    build, options, image = None, BuildOptions(), None
    if "build" in raw:
        build, options = _build_field(raw["build"], path + ("build",), where, root)
    if "image" in raw:
        image = raw["image"]
        if not isinstance(image, str) or not image.strip():
            raise where.error(path + ("image",), f"expected an image reference like {example}")
    return build, options, image


def _build_field(value: Any, path: tuple, where: Where, root: Path) -> tuple[Path, BuildOptions]:
    from .spec import BuildOptions

    settings = value if isinstance(value, dict) else {"context": value}
    if isinstance(value, dict):
        reject_unknown(value, keys("build"), path, where)
    context, dockerfile = settings.get("context", "."), settings.get("dockerfile", "Dockerfile")
    for key, text in (("context", context), ("dockerfile", dockerfile)):
        if not isinstance(text, str) or not text.strip():
            raise where.error(path + ((key,) if isinstance(value, dict) else ()),
                              f"expected a {'folder' if key == 'context' else 'file'} path, found {kind_of(text)}",
                              hint=_BUILD_HINT)
    folder = (root / context).resolve()
    target = settings.get("target")
    if target is not None and (not isinstance(target, str) or not target.strip()):
        raise where.error(path + ("target",), "expected the name of a build stage", hint="target: dev")
    options = BuildOptions(dockerfile=dockerfile, target=target,
                           args=_build_args(settings.get("args"), path + ("args",), where))
    if not options.dockerfile_path(folder).is_file():
        at = path + ("dockerfile",) if "dockerfile" in settings else path
        raise where.error(at, f"no {dockerfile} in {folder}" if "dockerfile" in settings
                          else f"no Dockerfile in {folder}",
                          hint="point `build` at the folder that holds the Dockerfile, or name the file: "
                               "build: {context: ., dockerfile: Dockerfile.dev}")
    return folder, options


def _build_args(raw: Any, path: tuple, where: Where) -> tuple[tuple[str, str], ...]:
    """`args:` as a mapping or a list of NAME=VALUE (the same two forms as `environment:`)."""
    items = _env_items(raw, path, where)
    if any(value is None or isinstance(value, (dict, list)) for _name, value in items):
        raise where.error(path, "expected NAME=VALUE pairs with plain values", hint="args: {VERSION: '1.2'}")
    return tuple((name, scalar_text(value)) for name, value in items)


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
