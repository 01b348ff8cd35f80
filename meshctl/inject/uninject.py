"""Takes out everything inject wrote, edit by edit, so the original comes back byte for byte: the
generated services and the top-level block are cut out, the app's first lines (network_mode and
overrides) removed, its parked keys renamed back. Files written by earlier versions (the app's
ports rewired in place, the originals kept under x-meshctl.injected) are restored too."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import document as doc
from .document import Document
from .names import GENERATED_BY, MARK, PARKED, SIDECAR_OF, holder_name
from .inject_plan import MOVED, services_of
from .render import Edit, apply, content_end


@dataclass(frozen=True)
class UninjectResult:
    text: str
    restored: tuple[str, ...] = ()     # app services given back what inject changed
    removed: tuple[str, ...] = ()      # generated services taken out
    generated: dict[str, tuple[str, ...]] = field(default_factory=dict)   # app → its generated services
    document: doc.Document | None = field(default=None, repr=False, compare=False)   # the input, parsed


def uninject(text: str, source: str) -> UninjectResult:
    document = doc.parse(text, source)
    services = services_of(document)
    cuts: list[tuple[int, int]] = []
    edits: list[Edit] = []
    top = doc.get(document.root, MARK)
    if top is not None and isinstance(top[1], doc.Mapping) and doc.value(top[1]).get("generated-by") == GENERATED_BY:
        cuts.append(_span(document, *top))
    generated: dict[str, list[str]] = {}
    for key, node in services.value:
        if isinstance(node, doc.Mapping) and not node.flow_style:
            block = doc.get(node, MARK)
            owner = doc.value(block[1]).get(SIDECAR_OF) if block and isinstance(block[1], doc.Mapping) else None
            if owner is not None:
                generated.setdefault(str(owner), []).append(str(key.value))
                cuts.append(_span(document, key, node))
    restored = []
    generated_names = removed_names(generated)
    for key, node in services.value:
        name = str(key.value)
        if not isinstance(node, doc.Mapping):
            continue
        if holder_name(name) in generated.get(name, ()):
            edits += _app_edits(document, node, holder_name(name))
            restored.append(name)
        elif _legacy_edits(document, node, edits):
            restored.append(name)
        elif name not in generated_names:
            edits += _link_edits(document, node, generated)
    edits += [(start, end, "") for start, end in _merged(document, cuts)]
    removed = tuple(s for names in generated.values() for s in names)
    return UninjectResult(apply(text, edits), tuple(restored), removed,
                          {app: tuple(names) for app, names in generated.items()}, document)


def removed_names(generated: dict[str, list[str]]) -> set[str]:
    return {s for names in generated.values() for s in names}


def _link_edits(document: Document, node: doc.Mapping, generated: dict[str, list[str]]) -> list[Edit]:
    """`links: [web-mesh-pod:web]` back to `links: [web]` (and `web-mesh-pod:w` to `web:w`)."""
    found = doc.get(node, "links")
    if found is None or not isinstance(found[1], doc.Sequence):
        return []
    edits = []
    for entry in found[1].value:
        if not isinstance(entry, doc.Scalar):
            continue
        target, colon, alias = str(entry.value).partition(":")
        app = target[:-len(holder_name(""))] if target.endswith(holder_name("")) else None
        if app and holder_name(app) in generated.get(app, ()):
            start = entry.start_mark.index + (1 if entry.style in ("'", '"') else 0) + len(app)
            end = start + len(holder_name("")) + (len(colon + alias) if alias == app else 0)
            edits.append((start, end, ""))
    return edits


def _span(document: Document, key: doc.Node, node: doc.Node) -> tuple[int, int]:
    return document.line_start(key.start_mark.index), content_end(document, key, node)


def _merged(document: Document, cuts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent cuts as one; one that ends a file without a final line break takes the break
    before it too (inject put it there)."""
    out: list[list[int]] = []
    for start, end in sorted(cuts):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    text = document.text
    for span in out:
        if span[1] == len(text) and not text.endswith("\n") and span[0] > 0 and text[span[0] - 1] == "\n":
            span[0] -= 2 if text[max(span[0] - 2, 0):span[0]] == "\r\n" else 1
    return [(start, end) for start, end in out]


def _app_edits(document: Document, node: doc.Mapping, holder: str) -> list[Edit]:
    edits: list[Edit] = []
    entries = node.value
    for index, (key, value) in enumerate(entries):
        name = str(key.value)
        ours = (name == "network_mode" and doc.value(value) == f"service:{holder}") or name in MOVED
        if ours:
            if node.flow_style:
                end = entries[index + 1][0].start_mark.index if index + 1 < len(entries) else value.end_mark.index
                edits.append((key.start_mark.index, end, ""))
            else:
                edits.append((document.line_start(key.start_mark.index), document.line_end(value.end_mark.index), ""))
        elif name.startswith(PARKED) and name[len(PARKED):] in MOVED:
            at = key.start_mark.index + (1 if key.style in ("'", '"') else 0)
            edits.append((at, at + len(PARKED), ""))
    return edits


# ---------------------------------------------------------------------------------------------
# Files injected by earlier versions: ports rewired in place, the originals under x-meshctl.injected


def _legacy_edits(document: Document, node: doc.Mapping, edits: list[Edit]) -> bool:
    block = doc.get(node, MARK)
    if block is None or not isinstance(block[1], doc.Mapping) or block[1].flow_style:
        return False
    block_key, block_node = block
    assert isinstance(block_node, doc.Mapping)
    record = doc.get(block_node, "injected")
    if record is None:
        return False
    record_key, record_node = record
    recorded = doc.get(record_node, "ports") if isinstance(record_node, doc.Mapping) else None
    ports = doc.get(node, "ports")
    if recorded is None or ports is None:
        return False
    lines_of = document.line_start
    ports_span = (lines_of(ports[0].start_mark.index), content_end(document, *ports, comments=False))
    recorded_key, recorded_value = recorded
    if isinstance(recorded_value, doc.Scalar) and doc.scalar(recorded_value) is None:
        edits.append((*ports_span, ""))                # the ports came from a merge key
    else:
        start = lines_of(recorded_key.start_mark.index)
        original = document.text[start:content_end(document, recorded_key, recorded_value, comments=False)]
        shift = ports[0].start_mark.column - recorded_key.start_mark.column
        edits.append((*ports_span, _shift(original, shift)))
    if len(block_node.value) == 1:                     # meshctl wrote the whole block
        edits.append((lines_of(block_key.start_mark.index), content_end(document, block_key, block_node, comments=False), ""))
    else:
        edits.append((lines_of(record_key.start_mark.index), content_end(document, record_key, record_node, comments=False), ""))
    return True


def _shift(text: str, delta: int) -> str:
    lines = text.splitlines(keepends=True)
    if delta >= 0:
        return "".join((" " * delta + line) if line.strip() else line for line in lines)
    return "".join(line[-delta:] if line.startswith(" " * -delta) else line.lstrip(" ") for line in lines)
