"""Who may use the dashboard: pure checks of one request's method, target and headers.

The server listens on 127.0.0.1 only; on top of that every request needs the token (Jupyter's
way): the URL's `?token=` on first load, which becomes an HttpOnly, SameSite=Strict cookie (so
the page's EventSource carries it), or the cookie itself. The Host header must name the loopback
address or localhost (a DNS-rebinding page sends its own name), an Origin header, when sent, must
be the dashboard's own, and a change (POST) must carry the token in a header, which another site's
page cannot set (no CORS is ever granted). Every comparison of a secret is constant-time."""

from __future__ import annotations

import hmac
import secrets
from typing import Protocol
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

COOKIE = "meshctl_dashboard"
HEADER = "X-Meshctl-Token"
HOSTS = ("127.0.0.1", "localhost")


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Headers(Protocol):
    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True)
class Decision:
    status: int                 # 200: go on; else the answer (403, 405)
    reason: str = ""
    set_cookie: bool = False    # the token came in the URL: set the cookie (and drop it from the URL)


def same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def host_allowed(host: str | None, port: int) -> bool:
    """`127.0.0.1`, `localhost`, either with the server's own port."""
    if not host:
        return False
    name, colon, given = host.strip().lower().rpartition(":")
    if not colon:
        name, given = host.strip().lower(), ""
    return name in HOSTS and given in ("", str(port))


def origin_allowed(origin: str | None, port: int) -> bool:
    """No Origin (a top-level GET, curl) or the dashboard's own."""
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme == "http" and host_allowed(parts.netloc, port)


def cookie_token(cookie_header: str | None) -> str | None:
    if not cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def query_token(target: str) -> str | None:
    values = parse_qs(urlsplit(target).query).get("token")
    return values[0] if values else None


def decide(method: str, target: str, headers: Headers, token: str, port: int) -> Decision:
    """Whether one request may go on (`headers` looked up case-insensitively by the caller's map)."""
    if not host_allowed(headers.get("Host"), port):
        return Decision(403, "the Host header must be 127.0.0.1 or localhost")
    if not origin_allowed(headers.get("Origin"), port):
        return Decision(403, "requests from another origin are refused")
    if method == "POST":
        if same(headers.get(HEADER), token):
            return Decision(200)
        return Decision(403, f"a change needs the token in the {HEADER} header")
    if method not in ("GET", "HEAD"):
        return Decision(405, "only GET, HEAD and POST")
    if same(query_token(target), token):
        return Decision(200, set_cookie=True)
    if same(cookie_token(headers.get("Cookie")), token):
        return Decision(200)
    return Decision(403, "open the URL meshctl dashboard printed (it carries the token)")


def cookie_header(token: str) -> str:
    return f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
