"""Why the Docker engine could not be reached, told for the endpoint that was tried: which one
(DOCKER_HOST, a docker context, the default socket), why (no socket there, permission denied,
nothing listening, an address of an unknown kind) and advice that fits it (systemctl only for
this machine's own engine). Pure: docker.py resolves the endpoint and hands over the exception."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from ..errors import EngineError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
SCHEMES_HINT = "DOCKER_HOST takes unix:///PATH, tcp://HOST:PORT or ssh://USER@HOST"


@dataclass(frozen=True)
class Endpoint:
    url: str
    source: str          # "DOCKER_HOST", "context", "default", "given"
    context: str = ""    # the docker context's name, when source is "context"

    def origin(self) -> str:
        return {"DOCKER_HOST": "from DOCKER_HOST", "context": f"the docker context `{self.context}`",
                "default": "the default socket", "given": "as given"}[self.source]

    @property
    def socket_path(self) -> str | None:
        return self.url[len("unix://"):] if self.url.startswith("unix://") else None


def unreachable(endpoint: Endpoint, exc: BaseException) -> EngineError:
    """The EngineError for an engine that did not answer at `endpoint`, `exc` being the SDK's error."""
    why, kind = _reason(endpoint, exc)
    return EngineError(f"cannot reach the Docker engine at {endpoint.url} ({endpoint.origin()}): {why}",
                       hint=_advice(endpoint, kind))


def is_unreachable(exc: BaseException) -> bool:
    """Whether the SDK's error means no engine answered (not a refusal by one that did)."""
    return _kind(exc) is not None or "Error while fetching server API version" in str(exc)


def _reason(endpoint: Endpoint, exc: BaseException) -> tuple[str, str]:
    kind = _kind(exc) or "other"
    where = endpoint.socket_path or endpoint.url
    return {"scheme": ("an address of a kind the Docker SDK does not know", "scheme"),
            "absent": (f"there is no socket at {where}", "absent"),
            "denied": (f"permission denied on {where}", "denied"),
            "refused": ("connection refused: nothing listens there", "refused"),
            "timeout": ("no answer in time", "timeout"),
            "host": ("the host name does not resolve", "host"),
            "other": (_last_line(exc), "other")}[kind]


def _kind(exc: BaseException) -> str | None:
    if "Invalid bind address" in str(exc) or "Unsupported scheme" in str(exc):
        return "scheme"
    for cause in _chain(exc):
        if isinstance(cause, socket.gaierror):
            return "host"
        if isinstance(cause, (TimeoutError, socket.timeout)) or "timed out" in str(cause).lower():
            return "timeout"
        if isinstance(cause, OSError) and cause.errno is not None:
            found = {errno.ENOENT: "absent", errno.EACCES: "denied", errno.EPERM: "denied",
                     errno.ECONNREFUSED: "refused"}.get(cause.errno)
            if found:
                return found
    text = str(exc)
    for needle, found in (("No such file", "absent"), ("Permission denied", "denied"), ("Connection refused", "refused")):
        if needle in text:
            return found
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes, and the exceptions its arguments carry (requests and urllib3
    wrap the socket's OSError in their own errors' args)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [a for a in (*current.args, current.__cause__, current.__context__, getattr(current, "reason", None))
                 if isinstance(a, BaseException)]
    return seen


def _advice(endpoint: Endpoint, kind: str) -> str:
    if kind == "scheme":
        return f"{SCHEMES_HINT} (it is {endpoint.url!r})"
    if endpoint.source == "DOCKER_HOST":
        return ("DOCKER_HOST names that engine: start it there, point DOCKER_HOST at a running one, "
                "or unset it to use the docker context or the default socket")
    if endpoint.source == "context":
        return (f"the docker context `{endpoint.context}` names that engine: start it, or "
                "`docker context use default` to use this machine's")
    if kind == "denied":
        return ("your user may not use the Docker socket: `sudo usermod -aG docker $USER` and log in again "
                "(or run rootless Docker and set DOCKER_HOST to its socket)")
    if endpoint.source == "default" and kind in ("absent", "refused"):
        return ("start Docker (`sudo systemctl start docker`, or `dockerd &`), "
                "or set DOCKER_HOST to an engine that runs elsewhere")
    return "check that the engine runs and answers at that address"


def _last_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__
