"""YAML with positions: the one reader for mesh.yaml and compose files (inject reads compose files
through it). It composes text into nodes that know their lines, with the resolver the caller
passes in (each file keeps the YAML its users expect: mesh.yaml PyYAML's safe YAML 1.1, compose
files YAML 1.2 as Compose reads them), and rejects a key written twice in one mapping, naming both
lines: YAML parsers silently keep the last one, so a service written twice would vanish.

Where maps a field path like ("services", "web", "port") to its line, so every ConfigError can
say file:line and the field."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, located, yaml_syntax_error

MERGE = "<<"      # a plain `<<:` key merges mappings in (YAML's merge key); it may appear more than once


def compose(text: str, source: object, *, loader: type, hint: str, what: str = "the file") -> yaml.Node | None:
    """One YAML document as nodes with positions, scalars resolved by `loader`; a syntax error, a
    second document or a key written twice is a ConfigError naming `source`:line."""
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as exc:
        single = "expected a single document" in str(getattr(exc, "context", "") or "") \
            or "but found another document" in str(getattr(exc, "problem", "") or "")
        raise yaml_syntax_error(exc, source, problem=f"more than one YAML document; {what} is one" if single else None,
                                hint=hint) from exc
    reject_duplicate_keys(node, source)
    return node


def construct(node: yaml.Node | None, source: object, *, loader: type, hint: str) -> Any:
    """Plain Python data for composed nodes, as `loader` builds them (yaml.SafeLoader: what
    yaml.safe_load gives). Merge keys are applied in place: read positions before this."""
    if node is None:
        return None
    try:
        return loader("").construct_document(node)
    except yaml.YAMLError as exc:
        raise yaml_syntax_error(exc, source, hint=hint) from exc


def reject_duplicate_keys(root: yaml.Node | None, source: object) -> None:
    """A ConfigError for the first key written twice in one mapping, in the file's order (merge
    keys aside: a key a mapping sets over one merged in is YAML's way to override). Keys compare
    as written, as Compose's parser compares them."""
    seen: set[int] = set()        # a node an alias repeats is checked once (and a cycle ends)
    stack: list[tuple[yaml.Node, tuple]] = [] if root is None else [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen or isinstance(node, yaml.ScalarNode):
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            children = [(item, path + (i,)) for i, item in enumerate(node.value)
                        if not isinstance(item, yaml.ScalarNode)]
        else:
            children = []
            first: dict[str, yaml.Node] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                if isinstance(key, yaml.ScalarNode) and (name != MERGE or key.style):
                    if name in first:
                        raise _written_twice(source, path + (name,), first[name], key)
                    first[name] = key
                # A scalar holds no key: leaving scalars off the stack halves the walk's time.
                if not isinstance(value, yaml.ScalarNode):
                    children.append((value, path + (name,)))
        stack.extend(reversed(children))


def _written_twice(source: object, path: tuple, first: yaml.Node, again: yaml.Node) -> ConfigError:
    dotted = ".".join(str(p) for p in path)
    return ConfigError(f"{located(source, again.start_mark.line + 1)}: {dotted} is written twice "
                       f"(first at line {first.start_mark.line + 1})",
                       hint="YAML keeps only the last of the two, silently: remove one, or merge them into one")


class Where:
    """Maps a field path like ("services", "hello", "port") to its line in the file."""

    def __init__(self, source: Path | None, lines: dict[tuple, int], variables: Mapping[str, str] | None = None):
        self.source = source
        self.lines = lines
        # The environment the file is read with (the shell's over .env's), for env pass-through.
        self.variables: Mapping[str, str] = variables or {}

    def at(self, path: tuple) -> str:
        dotted = ".".join(str(p) for p in path)
        if self.source is None:
            return dotted
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        return f"{located(self.source, self.lines.get(probe))}: {dotted}"

    def error(self, path: tuple, problem: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{self.at(path)}: {problem}", hint=hint)


def line_map(node: yaml.Node | None, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Every field path in the node tree → the (1-based) line its key is written on."""
    out = {} if out is None else out
    if node is None:
        return out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                child = path + (key.value,)
                out[child] = key.start_mark.line + 1
                line_map(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            line_map(item, path + (i,), out)
    return out
