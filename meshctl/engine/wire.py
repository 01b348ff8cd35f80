"""The Docker adapter's pure helpers (no `import docker`): reading what the engine sends back
(an exec's multiplexed stream, port maps, container lists, error texts, label filters) and finding
an exec's process on this host. Split from docker.py so the unit tier tests them with no daemon."""

from __future__ import annotations

import re
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import BuildError, EngineError, PortInUse
from ..model import ContainerInfo, ContainerSpec


def read_until(sock: Any, deadline: float) -> bytes | None:
    """Everything the socket sends until it closes; None when `deadline` (monotonic) comes first."""
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        # A TLS socket may hold decrypted bytes that select cannot see.
        if not (getattr(sock, "pending", None) and sock.pending()) and not select.select([sock], [], [], remaining)[0]:
            return None
        data = sock.read(65536) if hasattr(sock, "read") else sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def read_build(stream: Iterator[dict[str, Any]], doing: str, tail: list[str],
               on_line: Callable[[str], None] | None) -> str | None:
    """A build's decoded output, each line to `on_line` and the last 40 kept in `tail`; the image's
    ID (None if the engine named none). An error in the stream raises BuildError with the tail."""
    image_id = None
    for chunk in stream:
        for line in chunk.get("stream", "").splitlines():
            if line.strip():
                tail.append(line)
                del tail[:-40]
                if on_line:
                    on_line(line)
        if "ID" in chunk.get("aux", {}):
            image_id = chunk["aux"]["ID"]
        if "error" in chunk:
            tail.append(chunk["error"].strip())
            raise BuildError(f"{doing} failed: {chunk['error'].strip().splitlines()[-1]}",
                             hint=build_hint(chunk["error"]), details="\n".join(tail[-25:]))
    return image_id


def demultiplexed(raw: bytes) -> bytes:
    """stdout and stderr of a non-TTY attach, in order: frames of an 8-byte header (stream type,
    three zeros, big-endian length) and the payload (Docker's attach protocol)."""
    out, at = [], 0
    while at + 8 <= len(raw):
        (length,) = struct.unpack(">L", raw[at + 4:at + 8])
        out.append(raw[at + 8:at + 8 + length])
        at += 8 + length
    return b"".join(out)


def frames(sock: Any) -> Iterator[bytes]:
    """The payloads of a non-TTY attach's frames (demultiplexed's format) as they arrive."""
    pending = b""
    while True:
        data = sock.read(65536) if hasattr(sock, "read") else sock.recv(65536)
        if not data:
            return
        pending += data
        while len(pending) >= 8:
            (length,) = struct.unpack(">L", pending[4:8])
            if len(pending) < 8 + length:
                break
            yield pending[8:8 + length]
            pending = pending[8 + length:]


def lines_of(chunks: Iterator[bytes]) -> Iterator[str]:
    """Text lines from a stream of byte chunks (a log, an exec's output), the last one unended too."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace").rstrip("\r")
    if buffer:
        yield buffer.decode("utf-8", "replace")


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


def close_hijacked(sock: Any) -> None:
    """Close an exec's hijacked connection for good (the response object keeps the socket alive)."""
    for end in (getattr(sock, "_sock", None), sock):
        try:
            if end is not None and hasattr(end, "shutdown"):
                end.shutdown(socket.SHUT_RDWR)
            if end is not None:
                end.close()
        except OSError:
            pass


def explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return str(explanation or exc).strip()


def build_hint(error: str) -> str:
    lowered = error.lower()
    if "temporary failure resolving" in lowered or "could not resolve" in lowered:
        return ("the build could not reach the network: set MESHCTL_BUILD_NETWORK=host "
                "if the default bridge network has no DNS here")
    if "pull access denied" in lowered or "not found" in lowered or "failed to resolve" in lowered \
            or "no such image" in lowered:
        return ("a base image is missing and could not be pulled: pull it, or seed debian:bookworm-slim "
                "without a registry with `.ci/seed-base-image`")
    return "fix the Dockerfile (the build log's tail is above) and run meshctl again"


_PORT_RE = re.compile(r"(?:0\.0\.0\.0|127\.0\.0\.1|\[::\]|::):(\d+)")


def port_from_error(message: str) -> int | None:
    if "port is already allocated" not in message and "address already in use" not in message:
        return None
    match = _PORT_RE.search(message)
    return int(match.group(1)) if match else -1


# runc's words when a container's command cannot be run: not on PATH, or a path that is not there.
_NOT_FOUND_RE = re.compile(r'exec: "([^"]+)": (executable file not found in \$PATH|stat [^:]+: no such file or directory)')


def start_error(exc: EngineError, name: str, port_hints: dict[int, str]) -> EngineError:
    """The engine's refusal to start a container, in meshctl's words where it is one we know: a
    host port in use, or a command the image does not have (runc's `exec: "X": executable file not
    found in $PATH`); else as the engine said it."""
    port = port_from_error(exc.message)
    if port is not None:
        option = port_hints.get(port, "the ports in mesh.yaml")
        what = f"host port {port}" if port > 0 else "a host port of this pod"
        return PortInUse(f"{what} is already in use",
                         hint=f"stop what listens on 127.0.0.1:{port}, or change {option} (0 = a free port)")
    missing = _NOT_FOUND_RE.search(exc.message)
    if missing is None:
        return exc
    program = missing.group(1)
    where = "on the image's PATH" if "$PATH" in missing.group(2) else "in the container"
    return EngineError(
        f"{name}: its command's program {program!r} is not {where}, so it cannot start",
        hint="use a command the image has; a command run with no Dockerfile (run mode) finds its programs in the "
             "runtime image and in the dependencies of its source folder: add the package that provides "
             f"{program!r} to requirements.txt, pyproject.toml or package.json there, or point `source:` at the "
             "folder that lists it")


def port_map(ports: dict[str, Any]) -> dict[int, int]:
    out = {}
    for key, bindings in ports.items():
        if not bindings:
            continue
        for binding in bindings:
            if binding.get("HostPort"):
                out[int(key.split("/")[0])] = int(binding["HostPort"])
                break
    return out


def container_info(raw: dict[str, Any]) -> ContainerInfo:
    ports: dict[int, int] = {}
    for p in raw.get("Ports") or []:
        if p.get("PublicPort"):
            ports.setdefault(int(p["PrivatePort"]), int(p["PublicPort"]))
    name = (raw.get("Names") or ["/?"])[0].lstrip("/")
    return ContainerInfo(id=raw["Id"], name=name, labels=raw.get("Labels") or {}, state=raw.get("State", ""),
                         ports=ports, image_id=raw.get("ImageID", ""))


def label_filter(labels: dict[str, str]) -> dict[str, list[str]]:
    """The engine's list filter for labels: `key=value`, or `key` alone for an empty value (any value)."""
    return {"label": [f"{k}={v}" if v else k for k, v in labels.items()]}


def host_config_options(spec: ContainerSpec) -> dict[str, Any]:
    """The engine's HostConfig for a container (create_host_config's arguments): ports on 127.0.0.1,
    the pod's namespaces shared, the spec's lock-down."""
    return {
        # Docker refuses a restart policy on an auto-remove container: one that restarts is
        # removed by stop() (and by down, as every container of a project).
        "auto_remove": not spec.restarts_on_failure,
        "restart_policy": {"Name": "on-failure"} if spec.restarts_on_failure else None,
        "network_mode": "host" if spec.host_network else f"container:{spec.namespace_of}" if spec.namespace_of
        else spec.network,
        "pid_mode": f"container:{spec.namespace_of}" if spec.namespace_of else None,
        "port_bindings": {port: (("127.0.0.1", host) if host else ("127.0.0.1",))
                       for port, host in spec.ports.items()} or None,
        "binds": {host: {"bind": inner, "mode": "ro" if ro else "rw"} for host, inner, ro in spec.mounts} or None,
        "read_only": spec.read_only or None,
        "cap_drop": list(spec.cap_drop) or None,
        "cap_add": list(spec.cap_add) or None,
        "security_opt": ["no-new-privileges:true"] if spec.no_new_privileges else None,
        "tmpfs": dict.fromkeys(spec.tmpfs, "rw,noexec,nosuid,size=16m") or None,
        "init": False,
    }


def refusal(lines: Iterator[dict[str, Any]], doing: str, *, login: str = "") -> None:
    """A pull's or push's progress stream: its first error line is the engine's refusal (a push's
    names the registry to log in to)."""
    if error := next((line["error"] for line in lines if "error" in line), None):
        hint = f"is the registry reachable, and are you logged in (docker login {login.split('/')[0]})?" if login else None
        raise EngineError(f"{doing} failed: {error}", hint=hint)
