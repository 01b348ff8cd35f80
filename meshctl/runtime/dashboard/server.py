"""`meshctl dashboard`'s HTTP server: the standard library's ThreadingHTTPServer on 127.0.0.1,
one static page (page.html, shipped in the package), a JSON API over the Board, and one
server-sent event stream per open page. Every request passes auth.decide first."""

from __future__ import annotations

import html
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .auth import cookie_header, decide, new_token
from .board import Board
from ..observe import TapFilter
from ...errors import MeshctlError, UsageError

PAGE = Path(__file__).with_name("page.html")
KEEPALIVE = 15.0
MAX_BODY = 16 * 1024
NAME = r"([A-Za-z0-9][A-Za-z0-9_.-]{0,62})"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"/"), "page"),
    ("GET", re.compile(r"/api/graph"), "graph"),
    ("GET", re.compile(r"/api/charts"), "charts"),
    ("GET", re.compile(rf"/api/services/{NAME}"), "service"),
    ("GET", re.compile(r"/api/requests"), "requests"),
    ("GET", re.compile(r"/api/traces"), "traces"),
    ("GET", re.compile(r"/api/traces/([0-9a-fA-F]{32})"), "trace"),
    ("GET", re.compile(r"/api/faults"), "faults"),
    ("POST", re.compile(rf"/api/faults/{NAME}"), "fault"),
    ("GET", re.compile(r"/api/stream"), "stream"),
]


def route(method: str, target: str) -> tuple[str, tuple[str, ...]]:
    """The handler's name and the path's parts for a request ("" when no route: 404)."""
    path = unquote(urlsplit(target).path)
    method = "GET" if method == "HEAD" else method
    for wanted, pattern, name in ROUTES:
        match = pattern.fullmatch(path)
        if match and wanted == method:
            return name, match.groups()
    return "", ()


def query(target: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(target).query).items() if v and v[0]}


def tap_filter(params: dict[str, str]) -> TapFilter:
    return TapFilter(params.get("caller"), params.get("path"), params.get("method"), params.get("status"))


def page_text(token: str, nonce: str, project: str) -> bytes:
    return (PAGE.read_text().replace("{{TOKEN}}", token).replace("{{NONCE}}", nonce)
            .replace("{{PROJECT}}", html.escape(project))).encode()


SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "X-Frame-Options": "DENY", "Cross-Origin-Resource-Policy": "same-origin"}


def content_policy(nonce: str) -> str:
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, board: Board, port: int = 0, token: str | None = None):
        self.board = board
        self.token = token or new_token()
        self.nonce = secrets.token_urlsafe(16)
        self.closing = threading.Event()
        super().__init__(("127.0.0.1", port), Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def close(self) -> None:
        self.closing.set()
        self.board.stop()
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_OPTIONS(self) -> None:      # a CORS preflight: never granted
        self._handle("OPTIONS")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        server = self.server
        if method not in ("GET", "HEAD"):
            self.close_connection = True      # a body left unread (refused, too long) must not be read as a request
        decision = decide(method, self.path, self.headers, server.token, server.port)
        if decision.status != 200:
            self._send(decision.status, {"error": decision.reason})
            return
        name, parts = route(method, self.path)
        if not name:
            self._send(404, {"error": "no such page"})
            return
        extra = {"Set-Cookie": cookie_header(server.token)} if decision.set_cookie else {}
        try:
            if name == "page":
                self._send_bytes(200, page_text(server.token, server.nonce, server.board.project), "text/html; charset=utf-8",
                                 {**extra, "Content-Security-Policy": content_policy(server.nonce)}, head=method == "HEAD")
            elif name == "stream":
                self._stream(extra)
            else:
                self._send(200, self._answer(name, parts), extra)
        except UsageError as exc:
            self._send(400, {"error": exc.message, "hint": exc.hint})
        except MeshctlError as exc:
            self._send(502, {"error": exc.message, "hint": exc.hint})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _answer(self, name: str, parts: tuple[str, ...]) -> Any:
        board = self.server.board
        params = query(self.path)
        if name == "graph":
            return board.snapshot
        if name == "charts":
            return board.history.as_json()
        if name == "service":
            return board.service(parts[0])
        if name == "requests":
            return board.recent_requests(tap_filter(params), params.get("service"))
        if name == "traces":
            return board.traces(errors=params.get("errors") == "1")
        if name == "trace":
            return board.trace(parts[0])
        if name == "faults":
            return board.faults()
        return board.set_fault(parts[0], self._form())

    def _form(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY or "json" not in (self.headers.get("Content-Type") or ""):
            raise UsageError("a fault form is a JSON object of at most 16 KiB", hint="Content-Type: application/json")
        try:
            form = json.loads(self.rfile.read(length))
        except ValueError:
            raise UsageError("the fault form is not JSON", hint='{"kind": "abort", "value": 503}') from None
        if not isinstance(form, dict):
            raise UsageError("the fault form is not a JSON object", hint='{"kind": "abort", "value": 503}')
        return form

    def _stream(self, extra: dict[str, str]) -> None:
        """Server-sent events: the graph now, then each graph, chart and request as it comes."""
        board = self.server.board
        listener = board.hub.listen()
        try:
            self.send_response(200)
            for key, value in {**SECURITY_HEADERS, **extra, "Content-Type": "text/event-stream",
                               "Connection": "close"}.items():
                self.send_header(key, value)
            self.end_headers()
            self.close_connection = True
            messages = [("graph", json.dumps(board.snapshot)), ("charts", json.dumps(board.history.as_json()))]
            while not self.server.closing.is_set():
                text = "".join(f"event: {kind}\ndata: {data}\n\n" for kind, data in messages) or ": keepalive\n\n"
                self.wfile.write(text.encode())
                self.wfile.flush()
                messages = listener.take(KEEPALIVE)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            board.hub.stop(listener)

    def _send(self, status: int, value: Any, extra: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(value).encode(), "application/json", extra or {})

    def _send_bytes(self, status: int, body: bytes, kind: str, extra: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for key, value in {**SECURITY_HEADERS, **extra, "Content-Type": kind, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:     # no access log on the terminal (it carries the token)
        pass
