"""Compose files as text ↔ round-trip trees (ruamel.yaml), keeping comments, anchors, merge keys,
quotes and key order. Pure: strings in, strings out.

Blocks meshctl generates (GeneratedMap) are not dumped by ruamel but written by a small emitter
here and spliced into ruamel's output: ruamel's emitter is pure Python and would triple the time
of injecting a large file, and the generated blocks are simple values meshctl controls.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from .errors import ConfigError, yaml_syntax_error


class GeneratedMap(dict):
    """A mapping meshctl generated (a sidecar service, the top-level x-meshctl block). Dumped by
    this module's emitter. `anchors` names the sub-mappings to anchor (key → anchor name), and
    `merge_from` the (anchor, defaults) whose keys a mapping leaves out and merges in with `<<`."""

    anchors: dict[str, str]
    merge_from: tuple[str, dict] | None

    def __init__(self, *args: Any, anchors: dict[str, str] | None = None,
                 merge_from: tuple[str, dict] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.anchors = anchors or {}
        self.merge_from = merge_from


@dataclass(frozen=True)
class Layout:
    """The indentation a file uses, so what meshctl writes looks like the rest of it."""
    mapping: int = 2
    sequence: int = 2      # columns from a sequence's parent key to the item's content
    offset: int = 0        # columns from the parent key to the dash
    explicit_start: bool = False


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096           # never re-wrap a user's long lines
    return yaml


@contextmanager
def _referents_by_identity():
    """ruamel notes which mappings merge an anchor (`<<: *app`) after a membership test that
    compares mappings by value: quadratic in the services merging one anchor, a quarter of the
    time to load a 300-service file. By identity is what it means; restored after loading."""
    original = CommentedMap.add_referent

    def add_referent(self: CommentedMap, mapping: Any) -> None:
        if not any(known is mapping for known in self._ref):
            self._ref.append(mapping)

    CommentedMap.add_referent = add_referent
    try:
        yield
    finally:
        CommentedMap.add_referent = original


def load(text: str, source: str) -> tuple[Any, Layout]:
    """Parse one YAML document; a syntax error becomes a ConfigError naming the line."""
    try:
        with _referents_by_identity():
            data = _yaml().load(text)
    except YAMLError as exc:
        single = "expected a single document" in str(getattr(exc, "context", "") or "")
        raise yaml_syntax_error(
            exc, source, problem="more than one YAML document; a compose file is one" if single else None,
            hint="fix the YAML at that line (indentation, a missing colon or quote, tabs)") from exc
    _keep_anchors(data)
    return data, guess_layout(text)


def _keep_anchors(node: Any) -> None:
    """ruamel drops an anchor nothing refers to; a user's `&name` is theirs to keep."""
    stack, seen = [node], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        anchor = getattr(current, "anchor", None)
        if anchor is not None and getattr(anchor, "value", None):
            anchor.always_dump = True
        if isinstance(current, dict):
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


_KEY_LINE = re.compile(r"^( *)(?:- +)?[^\s#-][^#]*:\s*(?:#.*)?$")
_CHILD_LINE = re.compile(r"^( *)(- +)?\S")


def guess_layout(text: str) -> Layout:
    """The most common mapping indent and sequence dash offset of block collections."""
    mappings: Counter[int] = Counter()
    offsets: Counter[int] = Counter()
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for line, following in zip(lines, lines[1:]):
        parent = _KEY_LINE.match(line)
        child = _CHILD_LINE.match(following)
        if not parent or not child:
            continue
        indent = len(line) - len(line.lstrip(" -"))   # the key's column, after any "- "
        step = len(child.group(1)) - indent
        if child.group(2):
            if step >= 0:
                offsets[step] += 1
        elif step > 0:
            mappings[step] += 1
    mapping = mappings.most_common(1)[0][0] if mappings else 2
    offset = offsets.most_common(1)[0][0] if offsets else 0
    first = next((line for line in text.splitlines() if line.strip() and not line.startswith("#")), "")
    return Layout(mapping=mapping, sequence=offset + 2, offset=offset, explicit_start=first.rstrip() == "---")


_SPLICE = "__meshctl_generated_{}__"
_SPLICE_LINE = re.compile(r"^( *)(.*?): __meshctl_generated_(\d+)__$", re.M)


def dump(document: Any, layout: Layout = Layout()) -> str:
    """The document as YAML text in the file's own layout, generated blocks spliced in."""
    generated: list[GeneratedMap] = []
    swapped: list[tuple[CommentedMap, Any, GeneratedMap]] = []

    def swap_out(mapping: Any) -> None:
        if not isinstance(mapping, CommentedMap):
            return
        for key, value in list(mapping.items()):
            if isinstance(value, GeneratedMap):
                generated.append(value)
                swapped.append((mapping, key, value))
                mapping[key] = _SPLICE.format(len(generated) - 1)

    swap_out(document)
    if isinstance(document, CommentedMap):
        swap_out(document.get("services"))
        # Generated blocks are spliced in as block mappings: their parents must be blocks too.
        for mapping in (document, document.get("services")):
            if generated and isinstance(mapping, CommentedMap) and mapping.fa.flow_style():
                mapping.fa.set_block_style()
    yaml = _yaml()
    yaml.indent(mapping=layout.mapping, sequence=max(layout.sequence, layout.offset + 2), offset=layout.offset)
    yaml.explicit_start = layout.explicit_start or None
    out = io.StringIO()
    try:
        yaml.dump(document, out)
    finally:
        for mapping, key, value in swapped:
            mapping[key] = value
    text = out.getvalue()
    if not generated:
        return text

    def splice(match: re.Match) -> str:
        indent, key = match.group(1), match.group(2)
        block = emit_mapping(generated[int(match.group(3))], len(indent) + layout.mapping, layout)
        return f"{indent}{key}:\n{block.rstrip(chr(10))}"

    return _SPLICE_LINE.sub(splice, text)


# ---------------------------------------------------------------------------------------------
# A small emitter for generated blocks: block mappings, flow lists and flow mappings of scalars


def emit_mapping(mapping: GeneratedMap | dict, indent: int, layout: Layout) -> str:
    pad = " " * indent
    lines = []
    items = list(mapping.items())
    merge_from = getattr(mapping, "merge_from", None)
    if merge_from:
        anchor, defaults = merge_from
        lines.append(f"{pad}<<: *{anchor}")
        items = [(k, v) for k, v in items if k not in defaults or defaults[k] != v]
    anchors = getattr(mapping, "anchors", {})
    for key, value in items:
        anchor = f" &{anchors[key]}" if key in anchors else ""
        head = f"{pad}{_scalar(key)}:{anchor}"
        if isinstance(value, dict) and value and (anchor or isinstance(value, GeneratedMap) or _is_block(value)):
            lines.append(head)
            lines.append(emit_mapping(value, indent + layout.mapping, layout).rstrip("\n"))
        else:
            lines.append(f"{head} {_flow(value)}")
    return "\n".join(lines) + "\n"


def _is_block(value: dict) -> bool:
    """Nested mappings read better as blocks unless short and flat."""
    return any(isinstance(v, (dict, list)) for v in value.values()) or len(value) > 3


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


# Plain scalars that need no quotes in YAML 1.1 or 1.2, in block and flow context alike.
_PLAIN = re.compile(r"^[A-Za-z_/.][A-Za-z0-9_./@+=-]*(?::[A-Za-z0-9_./@+=-]+)*$")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED and not text.startswith("<<"):
        return text
    return json.dumps(text, ensure_ascii=False)
