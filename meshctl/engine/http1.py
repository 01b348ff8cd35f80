"""One GET on a fresh connection, with the socket module alone: the engine's Unix socket
(unix_http.py) and the pods' plain-HTTP ports (stat, trace). `stat` and `trace` answer in under
0.3 s, and http.client would cost ~30 ms of that to import (email's parser and ssl come with it);
an IP address is connected to directly, since getaddrinfo imports the IDNA codec (~8 ms).

The request says HTTP/1.0, so the server closes the connection after its answer and never chunks
it: the body is whatever arrives before the close, checked against Content-Length when given."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

_MOST = 64 * 1024 * 1024      # no answer meshctl reads is near this: a server that never stops is cut off


class BadAnswer(ValueError):
    """The server's bytes are not a whole HTTP answer."""


def get(address: tuple[str, int] | str, path: str, *, headers: Mapping[str, str] | None = None,
        timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of GET `path` at (host, port) or at a Unix socket's path. OSError when the
    connection fails or times out, BadAnswer when what comes back is not HTTP."""
    sock = _connected(address, timeout)
    try:
        host = "localhost" if isinstance(address, str) else address[0]
        lines = [f"GET {path} HTTP/1.0", f"Host: {host}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
            if len(received) > _MOST:
                raise BadAnswer(f"an answer over {_MOST} bytes")
    finally:
        sock.close()
    return parse(bytes(received))


def get_from(url: str, path: str, *, headers: Mapping[str, str] | None = None, timeout: float = 5.0) -> bytes:
    """The body of a 200 answer to GET `path` on the host and port of `url` (a pod's plain-HTTP
    port, as its URLs give it). OSError for anything else: no answer, not HTTP, another status."""
    where = urlsplit(url)
    # Pods' URLs say localhost, and meshctl publishes their ports on 127.0.0.1 alone: asked for
    # localhost, getaddrinfo may offer ::1 first (a refused connect before the right one).
    host = "127.0.0.1" if where.hostname in (None, "localhost") else where.hostname
    try:
        status, body = get((host, where.port or 80), path, headers=headers, timeout=timeout)
    except BadAnswer as exc:
        raise OSError(f"GET {path} on {where.netloc}: {exc}") from exc
    if status != 200:
        raise OSError(f"GET {path} on {where.netloc} answered {status}")
    return body


def parse(answer: bytes) -> tuple[int, bytes]:
    head, blank, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    code = rest[:3]
    if not blank or not version.startswith(b"HTTP/") or not code.isdigit():
        raise BadAnswer(f"not an HTTP answer: {answer[:60]!r}")
    fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in header_lines)}
    if fields.get(b"transfer-encoding", b"identity").lower() != b"identity":
        raise BadAnswer("a chunked answer to an HTTP/1.0 request")
    length = fields.get(b"content-length")
    if length is not None:
        if not length.isdigit() or len(body) < int(length):
            raise BadAnswer(f"the answer ended after {len(body)} of its {length.decode(errors='replace')} bytes")
        body = body[:int(length)]
    return int(code), body


def _connected(address: tuple[str, int] | str, timeout: float) -> socket.socket:
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: tuple[str, int] | str = address
    else:
        host, port = address
        if not _is_ipv4(host):
            return socket.create_connection((host, port), timeout=timeout)
        sock, target = socket.socket(socket.AF_INET, socket.SOCK_STREAM), (host, port)
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except BaseException:
        sock.close()
        raise
    return sock


def _is_ipv4(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return host.count(".") == 3
