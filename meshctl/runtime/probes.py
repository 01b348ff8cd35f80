"""Readiness: small probes behind one poll loop (testcontainers' wait strategies). A probe
returns None when ready, or a short reason why not; wait_for turns a timeout into StartError.
HTTP, TCP and TLS probes go over the published ports; an exec probe asks the engine."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.base import Engine
from ..errors import MeshctlError, StartError

if TYPE_CHECKING:
    from ..sidecars import Readiness

Probe = Callable[[], "str | None"]

# An app that keeps answering 5xx this long is failing, not starting: waiting out the whole timeout
# (180 s by default) would only delay the news. Connection refused, a reset, or the proxy's own
# 502/503/504 (the app is not listening yet) are "still starting" and do not count.
FAILING_WINDOW = 15.0


class AppFailing(str):
    """A probe's reason when the app itself answered with a server error: it runs, and fails."""

    status: int
    body: bytes
    answer_line: str

    def __new__(cls, status: int, body: bytes) -> AppFailing:
        head = body[:200].decode("utf-8", "replace").strip().replace("\n", " ")
        reason = super().__new__(cls, f"HTTP {status}" + (f": {head[:80]}" if head else ""))
        reason.status, reason.body = status, body
        reason.answer_line = f"HTTP {status} {head}".rstrip()    # as the report lists it
        return reason


def from_the_proxy(answer: HttpAnswer) -> bool:
    """HAProxy's own error pages (no server up yet, the app closed the connection, a timeout) all
    begin this way; an app's error page does not."""
    return answer.status in (502, 503, 504) and answer.body.lstrip().startswith(b"<html><body><h1>5")


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes
    headers: dict[str, str]
    elapsed: float


def tls_context(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = True
    return context


def http_request(port: int, path: str, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1",
                 server_hostname: str | None = None, method: str = "GET", headers: dict[str, str] | None = None,
                 body: bytes | None = None, timeout: float = 5.0) -> HttpAnswer:
    """One request on a fresh connection. Raises OSError (including ssl.SSLError) on failure."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    if tls is not None:
        # Connect to `host`, verify the certificate for `server_hostname` (SNI and SAN check).
        raw = socket.create_connection((host, port), timeout=timeout)
        try:
            conn.sock = tls.wrap_socket(raw, server_hostname=server_hostname or host)
        except BaseException:
            raw.close()
            raise
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return HttpAnswer(response.status, data, {k.lower(): v for k, v in response.getheaders()},
                          time.monotonic() - started)
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {exc!r}") from exc
    finally:
        conn.close()


def http_probe(port: int, path: str, *, tls: ssl.SSLContext | None = None,
               accept: Callable[[int], bool] = lambda status: 200 <= status < 300,
               headers: dict[str, str] | None = None) -> Probe:
    def probe() -> str | None:
        try:
            answer = http_request(port, path, tls=tls, timeout=2.0, headers=headers)
        except ssl.SSLCertVerificationError as exc:
            return f"certificate did not verify: {exc.verify_message}"
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        if accept(answer.status):
            return None
        if answer.status >= 500 and not from_the_proxy(answer):
            return AppFailing(answer.status, answer.body)
        return f"HTTP {answer.status}"
    return probe


def tcp_connect(port: int, *, tls: ssl.SSLContext | None = None, timeout: float = 2.0) -> None:
    """A TCP connection to the port, and a verified TLS handshake on it when `tls` is given; no
    byte of any application protocol is sent. Raises OSError (including ssl.SSLError)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        if tls is not None:
            with tls.wrap_socket(raw, server_hostname="localhost"):
                pass


def tcp_probe(port: int, tls: ssl.SSLContext | None = None) -> Probe:
    """The TCP wait strategy (a TCP service's readiness, a TLS listener's): tcp_connect succeeds."""
    def probe() -> str | None:
        try:
            tcp_connect(port, tls=tls)
            return None
        except ssl.SSLCertVerificationError as exc:
            return f"certificate did not verify: {exc.verify_message}"
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
    return probe


def wait_for(what: str, probe: Probe, *, timeout: float, interval: float = 0.025,
             abort: Callable[[], None] | None = None, hint: str | None = None,
             failing_window: float = FAILING_WINDOW) -> float:
    """Poll `probe` until it answers None; return the seconds waited. `abort` runs between polls
    and raises to stop early (an app that exited, a sidecar that crashed, a Ctrl-C). An app that
    answers nothing but server errors for `failing_window` seconds fails at once, with its answers."""
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer yet"
    failing_since: float | None = None
    answers: list[str] = []
    while True:
        if abort is not None:
            abort()
        reason = probe()
        if reason is None:
            return time.monotonic() - started
        last = reason
        if isinstance(reason, AppFailing):
            failing_since = failing_since or time.monotonic()
            if not answers or answers[-1] != reason.answer_line:
                answers = (answers + [reason.answer_line])[-5:]
            if time.monotonic() - failing_since >= failing_window:
                raise StartError(
                    f"{what}: the app answered {last.split(':')[0]} for {failing_window:g}s, so it is "
                    "failing, not starting", details="last answers:\n" + "\n".join(f"  {a}" for a in answers),
                    hint="its last log lines are below; fix the error (or services.<name>.health if that "
                         "path is wrong) and run again")
        else:
            failing_since = None
        if time.monotonic() >= deadline:
            raise StartError(f"{what} was not ready after {timeout:g}s (last: {last})",
                             hint=hint or "look at the logs below; raise the timeout with --timeout")
        time.sleep(interval)


def exec_probe(engine: Engine, container: str, command: tuple[str, ...], every: float = 0.25,
               bound: float = 5.0) -> Probe:
    """Ready when the command exits 0 in the container (a user sidecar's `ready:`); polled at
    most every `every` seconds, since each poll is an exec, and each bounded by `bound` seconds
    (a hung command is a poll that failed, so the wait still ends at its timeout)."""
    last = [0.0]

    def probe() -> str | None:
        pause = last[0] + every - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        last[0] = time.monotonic()
        try:
            code, output = engine.exec(container, list(command), timeout=bound)
        except MeshctlError as exc:
            return exc.message
        if code == 0:
            return None
        tail = output.strip().splitlines()[-1:] or [""]
        return f"exit code {code}" + (f": {tail[0][:120]}" if tail[0] else "")
    return probe


def probe_for(readiness: Readiness, port: int, ca_path: Path) -> Probe:
    context = tls_context(ca_path) if readiness.tls else None
    if readiness.path is None:
        assert context is not None
        return tcp_probe(port, context)
    accept = (lambda s: 200 <= s < 300) if readiness.accept == "2xx" else (lambda s: s < 500)
    return http_probe(port, readiness.path, tls=context, accept=accept, headers=dict(readiness.headers))
