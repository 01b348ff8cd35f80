"""GET requests to a local engine over its Unix socket, with the standard library alone (docker.py's
fast path). Listing containers is the first thing `ps`, `stat`, `trace` and `logs` ask, and often
the only engine call: answered here, they never import the Docker SDK (requests and urllib3 with it,
about 0.15 s of a command meant to answer in 0.3 s). Any other engine (tcp, ssh, TLS, a docker
context) is the SDK's, which knows them all."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from . import http1
from ..errors import EngineError
from .unreachable import DEFAULT_SOCKET, Endpoint, unreachable


class LocalEngine:
    """The engine when it is on a local Unix socket: its answers to GETs, or None where it is not
    (docker.py then asks the SDK). Looks its socket up on first use."""

    def __init__(self, base_url: str | None = None):
        self._base_url = base_url
        self._endpoint: list[Endpoint | None] = []

    def get(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        if not self._endpoint:
            self._endpoint.append(local_endpoint(self._base_url))
        endpoint = self._endpoint[0]
        if endpoint is None or endpoint.socket_path is None:
            return None
        try:
            return get_json(endpoint.socket_path, path, query)
        except OSError as exc:
            raise unreachable(endpoint, exc) from exc


def get_json(socket_path: str, path: str, query: Mapping[str, str] | None = None, timeout: float = 60) -> Any:
    """The engine's JSON answer to GET `path`. An engine that is not there raises the socket's
    OSError (the caller says which endpoint it tried); one that refuses raises EngineError."""
    try:
        status, body = http1.get(socket_path, path + (f"?{urlencode(query)}" if query else ""), timeout=timeout)
    except http1.BadAnswer as exc:
        raise EngineError(f"the Docker engine at unix://{socket_path} broke off its answer to GET {path}: {exc}") from exc
    if status != 200:
        raise EngineError(f"the Docker engine refused GET {path} ({status}): {_message(body)}")
    return json.loads(body)


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", "")) or body.decode(errors="replace")[:200]
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:200]


def local_endpoint(base_url: str | None = None, environ: Mapping[str, str] = os.environ) -> Endpoint | None:
    """The endpoint the SDK would connect to when it is a Unix socket on this machine: `base_url`,
    else DOCKER_HOST, else (no docker context chosen, by DOCKER_CONTEXT or the CLI config's
    currentContext) the default socket. None: leave it to the SDK (tcp, ssh, TLS, contexts)."""
    if base_url or environ.get("DOCKER_HOST"):
        found = Endpoint(base_url, "given") if base_url else Endpoint(environ["DOCKER_HOST"], "DOCKER_HOST")
    elif (environ.get("DOCKER_CONTEXT") or _current_context(environ)) in (None, "", "default"):
        found = Endpoint(DEFAULT_SOCKET, "default")
    else:
        return None
    return found if found.socket_path else None


def _current_context(environ: Mapping[str, str]) -> str | None:
    config = Path(environ.get("DOCKER_CONFIG") or Path(environ.get("HOME", "/")) / ".docker") / "config.json"
    try:
        return json.loads(config.read_text()).get("currentContext")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        return "unreadable"      # not ours to judge: the SDK reads it and says what is wrong
