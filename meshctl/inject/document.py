"""A compose file as libyaml nodes that know where they are in the text: inject reads values from
them and writes its changes at their positions, so every byte it does not change stays as it was.

libyaml (PyYAML's C parser) composes a 300-service file in a few milliseconds. Scalars are read
here the way Compose reads them (YAML 1.2: `80:80` is a string, `yes` is a string, `0755` is 755),
not with PyYAML's YAML 1.1 resolver. Merge keys (`<<: *app`) are followed by `lookup`. The text is
composed by config/yamlpos.py, the reader mesh.yaml goes through too, which rejects a key written twice."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from ..config import yamlpos
from ..config.yamlpos import MERGE
from ..errors import ConfigError, located

_TAGS = {yaml.ScalarNode: "tag:yaml.org,2002:str", yaml.SequenceNode: "tag:yaml.org,2002:seq",
         yaml.MappingNode: "tag:yaml.org,2002:map"}


class _Loader(getattr(yaml, "CBaseLoader", yaml.BaseLoader)):    # type: ignore[misc]
    """No tag resolution at all: scalars are read here, as YAML 1.2, and the parser calls these
    three for every node (a fifth of the time to compose a large file went into them)."""

    def resolve(self, kind, value, implicit, _tags=_TAGS):
        return _tags[kind]

    def descend_resolver(self, current_node, current_index):
        pass

    def ascend_resolver(self):
        pass


Node = yaml.Node
Mapping = yaml.MappingNode
Sequence = yaml.SequenceNode
Scalar = yaml.ScalarNode


@dataclass(frozen=True)
class Document:
    text: str
    source: str          # the file's name, for messages
    root: Mapping
    newline: str         # "\n" or "\r\n": what the file ends its lines with

    def error(self, node: Node | None, path: str, problem: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{located(self.source, node.start_mark.line + 1 if node else None)}: {path}: {problem}",
                           hint=hint)

    def line_start(self, index: int) -> int:
        return self.text.rfind("\n", 0, index) + 1

    def line_end(self, index: int) -> int:
        """One past the end of the line holding `index`, its line break included."""
        found = self.text.find("\n", index)
        return len(self.text) if found < 0 else found + 1

    def token(self, node: Node) -> str:
        """A scalar as written, quotes included."""
        return self.text[node.start_mark.index:node.end_mark.index]


def parse(text: str, source: str) -> Document:
    """One YAML document with a block mapping at the top, read by config's reader with this
    module's resolver; a syntax error or a key written twice names the line."""
    root = yamlpos.compose(text, source, loader=_Loader, what="a compose file",
                           hint="fix the YAML at that line (indentation, a missing colon or quote, tabs)")
    hint = "a compose file has a top-level `services:` mapping"
    if root is None:
        raise ConfigError(f"{source}: the file is empty, not a compose file", hint=hint)
    if not isinstance(root, Mapping):
        raise ConfigError(f"{located(source, root.start_mark.line + 1)}: top level: expected a mapping with `services:`, "
                          f"found {kind(root)}", hint=hint)
    return Document(text, source, root, "\r\n" if "\r\n" in text else "\n")


def get(mapping: Mapping, key: str) -> tuple[Scalar, Node] | None:
    """The mapping's own entry for `key` (not one merged in)."""
    for k, v in mapping.value:
        if isinstance(k, Scalar) and k.value == key and not (key == MERGE and not k.style):
            return k, v
    return None


def merge_sources(mapping: Mapping) -> list[Mapping]:
    """The mappings `<<:` merges in, in the order they take precedence."""
    out: list[Mapping] = []
    for k, v in mapping.value:
        if isinstance(k, Scalar) and k.value == MERGE and not k.style:
            for source in (v.value if isinstance(v, Sequence) else [v]):
                if isinstance(source, Mapping):
                    out.append(source)
    return out


def lookup(mapping: Mapping, key: str) -> tuple[Scalar | None, Node] | None:
    """The entry for `key` as YAML reads it: the mapping's own, else one a merge key brings in
    (its key node then is None: it is not the service's to change)."""
    own = get(mapping, key)
    if own is not None:
        return own
    for source in merge_sources(mapping):
        found = lookup(source, key)
        if found is not None:
            return None, found[1]
    return None


def keys(mapping: Mapping) -> list[str]:
    """Every key as YAML reads it, merged ones included."""
    out = [str(k.value) for k, _ in mapping.value if isinstance(k, Scalar) and k.value != MERGE]
    for source in merge_sources(mapping):
        out += [k for k in keys(source) if k not in out]
    return out


def is_alias(key: Node, value: Node) -> bool:
    """`ports: *p`: the value is a node written elsewhere in the file."""
    return value.start_mark.index < key.end_mark.index


_INT = re.compile(r"^[-+]?[0-9]+$")
_HEX_OCT = re.compile(r"^0x[0-9a-fA-F]+$|^0o[0-7]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def scalar(node: Scalar) -> Any:
    """A scalar's value, YAML 1.2 core schema (what Compose's parser reads)."""
    text = node.value
    if node.style:                      # quoted, literal or folded: a string
        return text
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if _INT.match(text):
        return int(text)
    if _HEX_OCT.match(text):
        return int(text, 0)
    if _FLOAT.match(text):
        return float(text)
    return text


def value(node: Node) -> Any:
    """Plain Python data for a node, merge keys applied."""
    if isinstance(node, Scalar):
        return scalar(node)
    if isinstance(node, Sequence):
        return [value(item) for item in node.value]
    assert isinstance(node, Mapping)
    out: dict[Any, Any] = {}
    for source in reversed(merge_sources(node)):
        out.update(value(source))
    for k, v in node.value:
        if isinstance(k, Scalar) and k.value == MERGE and not k.style:
            continue
        out[value(k) if isinstance(k, Scalar) else str(k.value)] = value(v)
    return out


def last_index(node: Node) -> int:
    """Where the last thing written in a node ends (an alias ends where its name does, found by
    looking for it; the caller goes to the end of that line anyway)."""
    while True:
        if isinstance(node, Scalar) or getattr(node, "flow_style", False) or not node.value:
            return node.end_mark.index
        child = node.value[-1]
        if isinstance(node, Mapping):
            key, child = child
            if is_alias(key, child):
                return key.end_mark.index
        node = child


def kind(node: Node | None) -> str:
    if node is None:
        return "nothing"
    if isinstance(node, Mapping):
        return "a mapping"
    if isinstance(node, Sequence):
        return "a list"
    assert isinstance(node, Scalar)
    data = scalar(node)
    for type_, text in ((bool, "a boolean"), (str, "a string"), ((int, float), "a number"), (type(None), "nothing")):
        if isinstance(data, type_):
            return text
    return "a scalar"
