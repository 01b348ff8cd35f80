"""Which port of a compose service to wrap, and how: the evidence itself (config/port_protocol.py)
is shared with mesh.yaml's `protocol:` inference; this module picks among a service's ports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..config.port_protocol import HTTP, TCP, Facts, port_protocol
from .ports import PortEntry


@dataclass(frozen=True)
class Choice:
    entry_port: int      # the container port wrapped
    protocol: str        # HTTP or TCP
    why: str


def choose(entries: Sequence[PortEntry], found: Facts, *, port: int | None = None,
           protocol: str | None = None, app_protocol_of=lambda port: None) -> Choice | None:
    """The port to wrap and how. `port`/`protocol`: the user's x-meshctl settings. None when there
    is no single TCP port to wrap."""
    candidates = []
    for entry in entries:
        if entry.single_tcp and entry.target not in candidates:
            candidates.append(entry.target)
    if port is not None:
        candidates = [port]
    if not candidates:
        return None

    def judged(target: int) -> tuple[str | None, str]:
        declared = app_protocol_of(target)
        if declared:
            return (HTTP if declared.lower() in ("http", "http1", "http/1.1") else TCP), f"app_protocol: {declared}"
        return port_protocol(target, found, one_of_several=len(candidates) > 1)

    verdicts = [(target, *judged(target)) for target in candidates if target is not None]
    if not verdicts:
        return None
    if protocol is not None:
        # The user said which protocol; the port they said, else the first that agrees, else the first.
        target = next((t for t, p, _ in verdicts if p == protocol), verdicts[0][0]) if port is None else port
        return Choice(target, protocol, "x-meshctl.protocol")
    for target, verdict, why in verdicts:
        if verdict == HTTP:
            return Choice(target, HTTP, why)
    target, verdict, why = verdicts[0]
    return Choice(target, TCP, why)
