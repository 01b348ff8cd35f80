"""The Docker adapter's pure helpers (no `import docker`): reading what the engine sends back
(an exec's multiplexed stream, port maps, container lists, error texts) and finding an exec's
process on this host. Split from docker.py so the unit tier tests them with no daemon."""

from __future__ import annotations

import select
import struct
import time
from typing import Any


def read_until(sock: Any, deadline: float) -> bytes | None:
    """Everything the socket sends until it closes; None when `deadline` (monotonic) comes first."""
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        # A TLS socket may hold decrypted bytes that select cannot see.
        if not (getattr(sock, "pending", None) and sock.pending()):
            if not select.select([sock], [], [], remaining)[0]:
                return None
        data = sock.read(65536) if hasattr(sock, "read") else sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def demultiplexed(raw: bytes) -> bytes:
    """stdout and stderr of a non-TTY attach, in order: frames of an 8-byte header (stream type,
    three zeros, big-endian length) and the payload (Docker's attach protocol)."""
    out, at = [], 0
    while at + 8 <= len(raw):
        (length,) = struct.unpack(">L", raw[at + 4:at + 8])
        out.append(raw[at + 8:at + 8 + length])
        at += 8 + length
    return b"".join(out)


def owned_by(pid: int, container_id: str, proc: str = "/proc") -> bool:
    """Is host process `pid` one of this container's? (Its cgroup path names the container's full
    id, under cgroup v1 and v2 alike.) False when the engine runs elsewhere or the pid is gone."""
    try:
        with open(f"{proc}/{pid}/cgroup") as cgroup:
            return bool(container_id) and container_id in cgroup.read()
    except OSError:
        return False


def namespace_pid(pid: int, proc: str = "/proc") -> int | None:
    """The pid that host process `pid` has inside its own PID namespace (the last NSpid field)."""
    try:
        with open(f"{proc}/{pid}/status") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return None
