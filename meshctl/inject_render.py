"""Writes what `inject` changed into the original text, and takes it out again, keeping every other
byte as it was. Pure: text in, text out.

Why: dumping the whole round-trip tree with ruamel is as slow as loading it (pure Python), and it
normalizes what it does not need to touch (indentation, comment columns). Positions come from
libyaml (PyYAML's C parser, fast); the tree `inject` changed says what to write. Any shape this
does not handle (flow-style services, an aliased `ports:`, a flow-style x-meshctl block) returns
None, and the caller dumps the tree instead: same meaning, ruamel's formatting.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from .compose_yaml import Layout, _flow, _scalar, emit_mapping

MARK = "x-meshctl"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Unhandled(Exception):
    """A shape the text renderer leaves to the tree dump."""


def _compose(text: str) -> yaml.MappingNode:
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise _Unhandled(str(exc)) from exc
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise _Unhandled("not a block mapping")
    return root


def _get(node: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    return next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)


def _block(node: Any) -> yaml.MappingNode:
    if not isinstance(node, yaml.MappingNode) or node.flow_style:
        raise _Unhandled("not a block mapping")
    return node


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _content_end(lines: list[str], start: int, stop: int) -> int:
    """One past the last line in [start, stop) that holds YAML (not blank, not only a comment)."""
    end = start + 1
    for index in range(start, min(stop, len(lines))):
        if _is_content(lines[index]):
            end = index + 1
    return end


def _next_key_line(mapping: yaml.MappingNode, key: yaml.Node, boundary: int) -> int:
    """Where the entry after `key` starts, or the mapping's boundary."""
    keys = [k for k, _ in mapping.value]
    index = keys.index(key)
    return keys[index + 1].start_mark.line if index + 1 < len(keys) else boundary


def _shift(lines: list[str], delta: int) -> list[str]:
    if delta >= 0:
        return [(" " * delta + line) if line.strip() else line for line in lines]
    out = []
    for line in lines:
        if line.strip() and not line.startswith(" " * -delta):
            raise _Unhandled("cannot unindent")
        out.append(line[-delta:] if line.strip() else line)
    return out


def _port_scalar(value: Any) -> str:
    """A port entry's scalar, in the quotes it was written with."""
    if isinstance(value, DoubleQuotedScalarString):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, SingleQuotedScalarString):
        return "'" + str(value).replace("'", "''") + "'"
    return _scalar(value)


def _port_lines(ports: CommentedSeq, dash_column: int) -> tuple[str, list[str]]:
    """The new ports list: (what follows `ports:` on its line, the lines below it)."""
    if ports.fa.flow_style():
        items = [(_flow({str(k): v for k, v in e.items()}) if isinstance(e, dict) else _port_scalar(e)) for e in ports]
        return " [" + ", ".join(items) + "]", []
    dash = " " * dash_column + "- "
    out = []
    for entry in ports:
        if isinstance(entry, CommentedMap):
            if entry.fa.flow_style():
                out.append(dash + "{" + ", ".join(f"{_scalar(k)}: {_port_scalar(v)}" for k, v in entry.items()) + "}\n")
                continue
            pad = " " * (dash_column + 2)
            for index, (key, value) in enumerate(entry.items()):
                out.append((dash if index == 0 else pad) + f"{_scalar(key)}: {_port_scalar(value)}\n")
        else:
            out.append(dash + _port_scalar(entry) + "\n")
    return "", out


# ---------------------------------------------------------------------------------------------
# Inject


def render_injected(text: str, result: Any, layout: Layout) -> str | None:
    """`text` (what was loaded, with nothing injected) with `result`'s changes written in."""
    try:
        rendered = _render_injected(text, result, layout)
        _check_structure(rendered, result)
        return rendered
    except _Unhandled:
        return None


def _check_structure(rendered: str, result: Any) -> None:
    """A guard against writing a line at the wrong depth: the rendered file must have the tree's
    services, each injected one at least the tree's keys and an x-meshctl record. Read as parser
    events (no scalars resolved: libyaml reads YAML 1.1, ruamel 1.2), which is quick."""
    tree = result.document["services"]
    try:
        keys = _keys_by_path(yaml.parse(rendered, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise _Unhandled(str(exc)) from exc
    if keys.get(("services",)) != [str(name) for name in tree]:
        raise _Unhandled("services differ from the tree")
    for item in result.injected:
        written = set(keys.get(("services", item.service), ()))
        own = set(getattr(tree[item.service], "_ok", tree[item.service]))
        if not own <= written or "ports" not in written \
                or "injected" not in keys.get(("services", item.service, MARK), ()):
            raise _Unhandled("an injected service differs from the tree")


def _keys_by_path(events: Any) -> dict[tuple[str, ...], list[str]]:
    """Mapping keys by their path, for the first three levels of block and flow mappings."""
    out: dict[tuple[str, ...], list[str]] = {}
    stack: list[list] = []          # per open collection: [is_mapping, path, expecting_key, last_key]
    for event in events:
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.ScalarEvent, yaml.AliasEvent)):
            parent = stack[-1] if stack else None
            if parent and parent[0] and parent[2]:
                parent[3] = event.value if isinstance(event, yaml.ScalarEvent) else "?"
                parent[2] = False
                if len(parent[1]) <= 3:
                    out.setdefault(parent[1], []).append(parent[3])
                continue
            path = (parent[1] + (parent[3],)) if parent and parent[0] else (parent[1] if parent else ())
            if parent and parent[0]:
                parent[2] = True
            if isinstance(event, yaml.MappingStartEvent):
                stack.append([True, path, True, None])
            elif isinstance(event, yaml.SequenceStartEvent):
                stack.append([False, path + ("[]",), False, None])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            stack.pop()
            if stack and stack[-1][0]:
                stack[-1][2] = True
    return out


def _render_injected(text: str, result: Any, layout: Layout) -> str:
    if not text.endswith("\n") or "\r" in text:
        raise _Unhandled("no final newline, or CRLF line ends")
    lines = text.splitlines(keepends=True)
    root = _compose(text)
    found = _get(root, "services")
    if found is None or found[0].start_mark.column != 0:
        raise _Unhandled("services")
    services_key, services_node = found[0], _block(found[1])
    tree = result.document["services"]
    edits: list[tuple[int, int, list[str]]] = []      # (start, end, new lines): replace [start, end)
    m = layout.mapping
    sidecars_of: dict[str, list[str]] = {}
    for name, service in tree.items():
        app = _sidecar_of(service)
        if app is not None:
            sidecars_of.setdefault(app, []).append(name)

    for item in result.injected:
        entry = _get(services_node, item.service)
        if entry is None:
            raise _Unhandled("service not found")
        name_key, node = entry[0], _block(entry[1])
        boundary = node.end_mark.line          # where the next service (or top-level key) starts
        service_end = _content_end(lines, name_key.start_mark.line, boundary)
        column = node.value[0][0].start_mark.column
        service = tree[item.service]
        new_ports = service["ports"]
        own = _get(node, "ports")
        user_block = _get(node, MARK)
        record_column = column + m

        if own is not None:
            key, value = own
            if value.start_mark.line < key.start_mark.line:
                raise _Unhandled("aliased ports")
            start = key.start_mark.line
            end = _content_end(lines, start, _next_key_line(node, key, boundary))
            original = lines[start:end]
            # The items' dashes where the file had them (block lists), else the file's usual place.
            dash_column = value.start_mark.column if isinstance(value, yaml.SequenceNode) and not value.flow_style \
                and value.start_mark.line > start else column + layout.offset
            inline, below = _port_lines(new_ports, dash_column)
            rest = lines[start].split(":", 1)[1].strip() if ":" in lines[start] else "?"
            if not inline and (not rest or rest.startswith("#")):
                edits.append((start + 1, end, below))           # keep `ports:` and its comment
            else:
                edits.append((start, end, [" " * column + "ports:" + inline + "\n", *below]))
        else:
            end = service_end
            inline, below = _port_lines(new_ports, column + layout.offset)
            # Appended after the record: a user's x-meshctl block may end where the service does.
            merged_ports = (end, end, [" " * column + "ports:" + inline + "\n", *below])
            original, key = [], None

        def record(injected_column: int) -> list[str]:
            head = [" " * injected_column + "injected:\n"]
            if key is None:
                return head + [" " * (injected_column + m) + "ports:\n"]
            return head + _shift(original, injected_column + m - key.start_mark.column)

        if user_block is not None:
            block_key, block = user_block
            block = _block(block)
            if not block.value:
                raise _Unhandled("empty x-meshctl")
            at = _content_end(lines, block_key.start_mark.line, _next_key_line(node, block_key, boundary))
            edits.append((at, at, record(block.value[0][0].start_mark.column)))
        else:
            at = end
            edits.append((at, at, [" " * column + f"{MARK}:\n", *record(record_column)]))
        if own is None:
            edits.append(merged_ports)

        sidecar_lines = []
        for name in sidecars_of.get(item.service, []):
            sidecar_lines.append(" " * name_key.start_mark.column + f"{name}:\n")
            sidecar_lines.extend(emit_mapping(tree[name], name_key.start_mark.column + m, layout)
                                 .splitlines(keepends=True))
        edits.append((service_end, service_end, sidecar_lines))

    if result.injected:
        at = services_key.start_mark.line
        while at > 0 and not _is_content(lines[at - 1]):
            at -= 1
        if at == 0 or not any(_is_content(line) for line in lines[:at]):
            at = services_key.start_mark.line
        top = result.document[MARK]
        edits.append((at, at, [f"{MARK}:\n", *emit_mapping(top, m, layout).splitlines(keepends=True)]))
    return _apply(lines, edits)


def _sidecar_of(service: Any) -> str | None:
    block = service.get(MARK) if isinstance(service, dict) else None
    return str(block["sidecar-of"]) if isinstance(block, dict) and block.get("sidecar-of") is not None else None


def _apply(lines: list[str], edits: list[tuple[int, int, list[str]]]) -> str:
    """Apply edits from the bottom up; insertions at one line keep the order they were made in."""
    ordered = sorted(enumerate(edits), key=lambda pair: (pair[1][0], pair[0]))
    for (_, (start, end, _)), (_, (next_start, _, _)) in zip(ordered, ordered[1:]):
        if end > next_start:
            raise _Unhandled("overlapping edits")
    out = list(lines)
    for _, (start, end, new) in reversed(ordered):
        out[start:end] = new
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Uninject


def render_uninjected(text: str) -> tuple[str, tuple[str, ...]] | None:
    """`text` (sidecar blocks already cut out) with each injected service's ports restored from its
    x-meshctl.injected record, and the record removed; with the names restored."""
    try:
        return _render_uninjected(text)
    except _Unhandled:
        return None


def _render_uninjected(text: str) -> tuple[str, tuple[str, ...]]:
    if "\r" in text:
        raise _Unhandled("CRLF line ends")
    lines = text.splitlines(keepends=True)
    root = _compose(text)
    if _get(root, MARK) is not None:
        raise _Unhandled("a top-level x-meshctl block is left")
    found = _get(root, "services")
    if found is None:
        raise _Unhandled("services")
    services_node = _block(found[1])
    edits: list[tuple[int, int, list[str]]] = []
    restored = []
    for name_key, node in services_node.value:
        if not isinstance(node, yaml.MappingNode):
            continue
        user_block = _get(node, MARK)
        if user_block is None or not isinstance(user_block[1], yaml.MappingNode):
            continue
        block_key, block = user_block[0], _block(user_block[1])
        if _get(block, "sidecar-of") is not None:
            raise _Unhandled("a sidecar service is left")
        injected = _get(block, "injected")
        if injected is None:
            continue
        node = _block(node)
        boundary = node.end_mark.line
        record_key, record = injected[0], _block(injected[1])
        if len(record.value) != 1 or record.value[0][0].value != "ports":
            raise _Unhandled("unexpected record")
        recorded_key, recorded_value = record.value[0]
        block_end = _content_end(lines, block_key.start_mark.line, _next_key_line(node, block_key, boundary))
        record_end = _content_end(lines, record_key.start_mark.line, _next_key_line(block, record_key, block_end))
        own = _get(node, "ports")
        if own is None:
            raise _Unhandled("no ports")
        ports_key = own[0]
        ports_end = _content_end(lines, ports_key.start_mark.line, _next_key_line(node, ports_key, boundary))
        if isinstance(recorded_value, yaml.ScalarNode) and recorded_value.tag.endswith(":null") \
                and recorded_value.start_mark.line == recorded_key.start_mark.line:
            edits.append((ports_key.start_mark.line, ports_end, []))       # the ports came from a merge key
        else:
            original = lines[recorded_key.start_mark.line:record_end]
            edits.append((ports_key.start_mark.line, ports_end,
                          _shift(original, ports_key.start_mark.column - recorded_key.start_mark.column)))
        if len(block.value) == 1:
            edits.append((block_key.start_mark.line, block_end, []))       # meshctl wrote the whole block
        else:
            edits.append((record_key.start_mark.line, record_end, []))
        restored.append(str(name_key.value))
    return _apply(lines, edits), tuple(restored)
