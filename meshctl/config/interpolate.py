"""Compose's variables in mesh.yaml: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
`${VAR:?message}`, `${VAR?message}`, `${VAR:+other}`, `${VAR+other}` and `$$` for a `$`, read from
the shell's environment over a `.env` file beside mesh.yaml, as `docker compose` reads them.

Values are substituted after the YAML is read with positions, so an error still names file:line
and the field; keys are never substituted (as in compose). A substituted value is an Interpolated
string: where mesh.yaml's schema wants a number or a boolean, its text is read as one
(schema.typed_by_schema), as compose casts `port: ${PORT:-8080}` by its schema. A variable that is unset and has no default
becomes the empty string, as in compose."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, located
from .yamlpos import Where

DOTENV = ".env"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME_RE = re.compile(_NAME)
_BRACED_RE = re.compile(rf"({_NAME})(?:(:?[-?+])(.*))?$", re.S)
_HINT = "write ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?why it is needed}, or $$ for a literal $"


class Interpolated(str):
    """A value some `${...}` produced: where a number or boolean is expected, its text counts."""


class _Missing(Exception):
    def __init__(self, name: str, message: str):
        super().__init__(name)
        self.name, self.message = name, message


class _Malformed(Exception):
    pass


def environment_for(folder: Path) -> dict[str, str]:
    """The variables mesh.yaml in `folder` is read with: its .env, under the shell's environment."""
    return {**read_dotenv(folder / DOTENV), **os.environ}


def read_dotenv(path: Path) -> dict[str, str]:
    """A compose .env file: NAME=VALUE lines (`export ` allowed), # comments, quoted values
    ('…' taken as written, "…" with \\n escapes); $VAR in a value reads the shell, then lines above."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, equals, raw = text.removeprefix("export ").partition("=")
        name = name.strip()
        if not equals or not _NAME_RE.fullmatch(name):
            raise ConfigError(f"{located(path, number)}: expected NAME=VALUE, found {text!r}",
                              hint="one variable a line, like PORT=8080 (# starts a comment)")
        values[name] = _dotenv_value(raw.strip(), {**values, **os.environ}, path, number)
    return values


def _dotenv_value(raw: str, known: Mapping[str, str], path: Path, number: int) -> str:
    if raw[:1] == "'" and raw.endswith("'") and len(raw) > 1:
        return raw[1:-1]
    if raw[:1] == '"' and raw.endswith('"') and len(raw) > 1:
        raw = raw[1:-1].replace("\\n", "\n").replace('\\"', '"')
    else:
        raw = re.split(r"\s+#", raw, maxsplit=1)[0]
    try:
        return substitute(raw, known)
    except (_Missing, _Malformed) as exc:
        raise ConfigError(f"{located(path, number)}: {_problem(exc)}", hint=_HINT) from exc


def interpolate(data: Any, variables: Mapping[str, str], where: Where, path: tuple = ()) -> Any:
    """`data` with every string value's variables substituted; an error names file:line and field."""
    if isinstance(data, dict):
        return {key: interpolate(value, variables, where, path + (key,)) for key, value in data.items()}
    if isinstance(data, list):
        return [interpolate(item, variables, where, path + (index,)) for index, item in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data
    try:
        return Interpolated(substitute(data, variables))
    except (_Missing, _Malformed) as exc:
        hint = f"set {exc.name} in your shell or in {DOTENV} beside mesh.yaml" if isinstance(exc, _Missing) else _HINT
        raise where.error(path, _problem(exc), hint=hint) from exc


def _problem(exc: Exception) -> str:
    if isinstance(exc, _Missing):
        return f"variable {exc.name} is required: {exc.message}" if exc.message else f"variable {exc.name} is not set"
    return f"not a valid variable: {exc}"


def substitute(text: str, variables: Mapping[str, str]) -> str:
    out: list[str] = []
    index = 0
    while (dollar := text.find("$", index)) >= 0:
        out.append(text[index:dollar])
        following = text[dollar + 1:dollar + 2]
        if following == "$":
            out.append("$")
            index = dollar + 2
        elif following == "{":
            end = _closing_brace(text, dollar + 2)
            out.append(_braced(text[dollar + 2:end], variables))
            index = end + 1
        elif plain := _NAME_RE.match(text, dollar + 1):
            out.append(variables.get(plain.group(0), ""))
            index = plain.end()
        else:
            raise _Malformed(f"{text[dollar:dollar + 10]!r} (a lone $)")
    out.append(text[index:])
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    """The index of the `}` that closes a `${` whose body starts at `start` (defaults may nest)."""
    depth = 1
    for index in range(start, len(text)):
        if text[index] == "{" and text[index - 1] == "$":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise _Malformed(f"{text[start - 2:]!r} has no closing }}")


def _braced(body: str, variables: Mapping[str, str]) -> str:
    """The value of one `${body}`."""
    match = _BRACED_RE.match(body)
    if not match:
        raise _Malformed(f"${{{body}}}")
    name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
    value = variables.get(name)
    empty_counts = bool(operator) and operator.startswith(":")
    present = value is not None and not (empty_counts and value == "")
    kind = operator[-1:] if operator else ""
    if kind == "-":
        return value if present and value is not None else substitute(argument, variables)
    if kind == "?":
        if not present or value is None:
            raise _Missing(name, substitute(argument, variables))
        return value
    if kind == "+":
        return substitute(argument, variables) if present else ""
    return value or ""
