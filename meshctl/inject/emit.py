"""Writes the blocks inject generates (the top-level x-meshctl, the pod holder and sidecar
services) as YAML text in the file's own indentation. A small emitter for values meshctl controls:
block mappings, block lists of items already written (`Raw`), flow lists and mappings of scalars."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any
import itertools


class Raw(str):
    """YAML text written as it is (a port entry in the user's own syntax)."""


@dataclass(frozen=True)
class Merge:
    """`<<: *anchor` first, then only the keys that differ from `defaults`."""
    anchor: str
    defaults: dict[str, Any]


@dataclass(frozen=True)
class Layout:
    """The indentation a file uses, so what meshctl writes looks like the rest of it."""
    mapping: int = 2
    offset: int = 0        # columns from a list's parent key to its dashes


_KEY_LINE = re.compile(r"^( *)(?:- +)?[^\s#-][^#]*:\s*(?:#.*)?$")
_CHILD_LINE = re.compile(r"^( *)(- +)?\S")


def guess_layout(text: str) -> Layout:
    """The most common mapping indent and list dash offset of the file's block collections."""
    mappings: Counter[int] = Counter()
    offsets: Counter[int] = Counter()
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for line, following in itertools.pairwise(lines):
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
    return Layout(mapping=mappings.most_common(1)[0][0] if mappings else 2,
                  offset=offsets.most_common(1)[0][0] if offsets else 0)


def mapping(items: dict[str, Any], indent: int, layout: Layout, *, merge: Merge | None = None,
            anchors: dict[str, str] | None = None) -> list[str]:
    """The lines (without line breaks) of a block mapping at column `indent`."""
    pad = " " * indent
    lines = []
    entries = list(items.items())
    if merge is not None:
        lines.append(f"{pad}<<: *{merge.anchor}")
        entries = [(k, v) for k, v in entries if k not in merge.defaults or merge.defaults[k] != v]
    for key, value in entries:
        anchor = f" &{anchors[key]}" if anchors and key in anchors else ""
        head = f"{pad}{scalar(key)}:{anchor}"
        if isinstance(value, dict) and value and (anchor or _is_block(value)):
            lines.append(head)
            lines += mapping(value, indent + layout.mapping, layout)
        elif isinstance(value, list) and value and any(isinstance(v, Raw) for v in value):
            lines.append(head)
            dash = " " * (indent + layout.offset) + "- "
            lines += [dash + str(v) for v in value]
        else:
            lines.append(f"{head} {flow(value)}")
    return lines


def _is_block(value: dict) -> bool:
    """Nested mappings read better as blocks unless short and flat."""
    return any(isinstance(v, (dict, list)) for v in value.values()) or len(value) > 4


def flow(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(value)


# Plain scalars that need no quotes in YAML 1.1 or 1.2, in block and flow context alike.
_PLAIN = re.compile(r"^[A-Za-z_/.][A-Za-z0-9_./@+=-]*(?::[A-Za-z0-9_./@+=-]+)*$")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def scalar(value: Any) -> str:
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
