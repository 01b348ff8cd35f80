"""Where things are in a YAML file: a field path like ("services", "web", "port") mapped to its
line, so every ConfigError can say file:line and the field."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import ConfigError, located


class Where:
    """Maps a field path like ("services", "hello", "port") to its line in the file."""

    def __init__(self, source: Path | None, lines: dict[tuple, int]):
        self.source = source
        self.lines = lines

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
