"""The readiness poll loop: an app that answers only server errors fails fast with its answers;
one that is still starting (refused, the proxy's own 502/503) is waited for. A real HTTP server
on loopback plays the app; no timing is asserted."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from meshctl.runtime.probes import AppFailing, http_probe, wait_for
from meshctl.errors import StartError


def serve(status: int, body: bytes):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def server_of():
    servers = []

    def start(status: int, body: bytes):
        servers.append(serve(status, body))
        return servers[-1].server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_an_app_error_is_failing_and_the_proxys_own_error_page_is_still_starting(server_of):
    reason = http_probe(server_of(500, b"Traceback: KeyError 'db'"), "/")()
    assert isinstance(reason, AppFailing) and reason.status == 500 and "KeyError" in reason
    proxy = http_probe(server_of(503, b"<html><body><h1>503 Service Unavailable</h1>\nNo server is available"), "/")()
    assert proxy == "HTTP 503" and not isinstance(proxy, AppFailing)
    assert not isinstance(http_probe(server_of(404, b"nope"), "/")(), AppFailing)


def test_steady_server_errors_fail_before_the_timeout_with_the_last_answers(server_of):
    probe = http_probe(server_of(500, b"database is down"), "/health")
    with pytest.raises(StartError) as caught:
        # The timeout is far away: only the failing window can end this wait.
        wait_for("web", probe, timeout=600, failing_window=0.3)
    assert "answered HTTP 500" in caught.value.message and "failing, not starting" in caught.value.message
    assert "HTTP 500 database is down" in caught.value.details


def test_a_failing_streak_starts_again_after_any_other_answer(monkeypatch):
    from meshctl.runtime import probes as checks
    now = iter(range(1000))          # one second per reading of the clock
    monkeypatch.setattr(checks.time, "monotonic", lambda: float(next(now)))
    failing = AppFailing(500, b"x")
    answers = iter([failing, failing, "ConnectionRefusedError", failing, failing, None])
    # Each poll reads the clock two or three times: with the reset no streak spans 5 s; without it
    # the last answer would be 9 s into one.
    assert wait_for("web", lambda: next(answers), timeout=600, interval=0, failing_window=5) > 0
    answers = iter([failing] * 10)
    with pytest.raises(StartError):
        wait_for("web", lambda: next(answers), timeout=600, interval=0, failing_window=5)
