"""Compose's published-port grammar: short syntax `[host_ip:][published:]target[/protocol]`
(published and target may be ranges, IPv6 addresses come in brackets, any part may be a
`${VARIABLE}`), a bare number, or long syntax (`target:`, `published:`, `host_ip:`, `protocol:`,
`app_protocol:`). Parsed from the nodes, so an entry can be written again in its own syntax and
quotes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from . import document as doc
from .document import Document


@dataclass(frozen=True)
class PortEntry:
    node: doc.Node
    target: int | None          # one container port; None for a range or a variable
    protocol: str               # tcp, udp, sctp
    host_ip: str | None
    published: str | None       # as written: "8080", "8000-8010", "${PORT}"; None: a free one
    long: bool
    app_protocol: str | None = None

    @property
    def single_tcp(self) -> bool:
        return self.target is not None and self.protocol == "tcp"

    def describe(self) -> str:
        """How a user would name it: 8080:80, 53/udp, 127.0.0.1::8080."""
        host = f"{self.host_ip}:" if self.host_ip else ""
        published = f"{host}{self.published or ''}:" if (self.published or self.host_ip) else ""
        target = self.target if self.target is not None else "?"
        return f"{published}{target}" + (f"/{self.protocol}" if self.protocol != "tcp" else "")


def parse_entry(node: doc.Node, path: str, document: Document) -> PortEntry:
    if isinstance(node, doc.Mapping):
        data = doc.value(node)
        published = data.get("published")
        host_ip = data.get("host_ip")
        return PortEntry(node, single_port(data.get("target")), str(data.get("protocol") or "tcp").lower(),
                         str(host_ip) if host_ip is not None else None,
                         str(published) if published not in (None, "") else None, True,
                         str(data["app_protocol"]) if data.get("app_protocol") else None)
    raw = doc.scalar(node) if isinstance(node, doc.Scalar) else None
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise document.error(node, path, f'expected a port like "8080:80" or a mapping with target:, found {doc.kind(node)}',
                             hint='ports: ["8080:80"]')
    if isinstance(raw, int):
        return PortEntry(node, raw, "tcp", None, None, False)
    parts, protocol = split_short(raw)
    published = parts[-2] if len(parts) >= 2 and parts[-2] != "" else None
    host_ip = (":".join(parts[:-2]) or None) if len(parts) >= 3 else None
    return PortEntry(node, single_port(parts[-1]), (protocol or "tcp").lower(), host_ip, published, False)


def split_short(text: str) -> tuple[list[str], str | None]:
    """Split on ':' outside ${...} and [...] (variables and IPv6 addresses); peel off /proto."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    protocol = None
    if "/" in current and "}" not in current.rsplit("/", 1)[1]:
        current, protocol = current.rsplit("/", 1)
    parts.append(current)
    return parts, protocol


def single_port(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


# ---------------------------------------------------------------------------------------------
# Writing entries for the holder's list: one line each, in the entry's own syntax and quotes


def as_written(entry: PortEntry, document: Document) -> str:
    """The entry unchanged, as one flow item: a scalar exactly as written, a long-syntax mapping
    as a flow mapping of its scalars as written."""
    if not entry.long:
        return document.token(entry.node)
    return "{" + ", ".join(f"{document.token(k)}: {_item(v, document)}" for k, v in entry.node.value) + "}"


def retargeted(entry: PortEntry, pod_port: int, document: Document) -> str:
    """The same published port, now reaching `pod_port` inside the namespace."""
    if entry.long:
        items = [f"{document.token(k)}: {pod_port if k.value == 'target' else _item(v, document)}"
                 for k, v in entry.node.value]
        return "{" + ", ".join(items) + "}"
    node = entry.node
    assert isinstance(node, doc.Scalar)
    raw = doc.scalar(node)
    if isinstance(raw, int):
        return str(pod_port)
    parts, protocol = split_short(raw)
    text = ":".join(parts[:-1] + [str(pod_port)]) + (f"/{protocol}" if protocol else "")
    return quoted_like(node, text)


def new_entry(host_ip: str | None, published: int | None, pod_port: int) -> str:
    """A port meshctl adds: 127.0.0.1::15090, or a chosen host port."""
    host = str(published) if published else ""
    if host_ip:
        return json.dumps(f"{host_ip}:{host}:{pod_port}")
    return json.dumps(f"{host}:{pod_port}" if host else str(pod_port))


_PLAIN_PORT = re.compile(r"^[0-9][0-9:./-]*$")


def quoted_like(node: doc.Scalar, text: str) -> str:
    if node.style == "'":
        return "'" + text.replace("'", "''") + "'"
    if node.style == '"' or not _PLAIN_PORT.match(text):
        return json.dumps(text)
    return text


def _item(node: doc.Node, document: Document) -> str:
    if isinstance(node, doc.Scalar) and node.style in (None, "'", '"') and "\n" not in document.token(node):
        return document.token(node)
    return json.dumps(doc.value(node))
