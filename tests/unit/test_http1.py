"""engine/http1.py, the one-GET client stat, trace and the engine's fast path use instead of
http.client, against real servers on a TCP port (a pod's, published on 127.0.0.1) and raw ones
that answer badly; runtime/fanout.py's calls at once."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from meshctl.engine.http1 import BadAnswer, get, get_from, parse
from meshctl.runtime.fanout import at_once


@pytest.fixture
def pod_port():
    """An HTTP/1.1 server (as the metrics agent's) on 127.0.0.1; it records each request's headers."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            seen.append(dict(self.headers))
            status = 200 if self.path.startswith("/stat") else 404
            data = f"{self.path} {'x' * 100_000}".encode() if status == 200 else b"no"
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_a_pods_answer_is_read_whole_from_its_localhost_url(pod_port):
    port, seen = pod_port
    body = get_from(f"http://localhost:{port}/metrics", "/stat?window=60", headers={"Authorization": "Bearer k"})
    assert body == b"/stat?window=60 " + b"x" * 100_000
    assert seen[0]["Authorization"] == "Bearer k" and seen[0]["Host"] == "127.0.0.1"
    with pytest.raises(OSError, match="answered 404"):
        get_from(f"http://localhost:{port}/metrics", "/other")
    assert get(("127.0.0.1", port), "/other") == (404, b"no")


def raw_server(answer: bytes) -> int:
    """A port whose server reads one request, writes `answer` and closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        connection, _ = listener.accept()
        with connection, listener:
            connection.recv(65536)
            connection.sendall(answer)
    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


@pytest.mark.parametrize(("answer", "problem"), [
    (b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nshort", "ended after 5 of its 10 bytes"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "chunked"),
    (b"", "not an HTTP answer"),
])
def test_an_answer_that_is_not_whole_http_is_an_oserror_naming_it(answer, problem):
    port = raw_server(answer)
    with pytest.raises(OSError, match=problem):
        get_from(f"http://127.0.0.1:{port}/metrics", "/stat")


def test_parse_keeps_the_body_to_its_length_and_reads_to_the_close_without_one():
    assert parse(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA") == (200, b"ok")
    assert parse(b"HTTP/1.0 503 Service Unavailable\r\nServer: x\r\n\r\nall of it") == (503, b"all of it")
    with pytest.raises(BadAnswer):
        parse(b"HTTP/1.0 2x0 OK\r\n\r\n")


def test_nothing_listening_is_an_oserror_at_once():
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(ConnectionRefusedError):
        get_from(f"http://localhost:{port}/metrics", "/stat")


def test_calls_run_at_once_and_answer_in_order_and_the_first_failure_is_raised():
    def slow_double(n: int) -> int:
        time.sleep(0.2)
        return 2 * n
    started = time.monotonic()
    assert at_once(slow_double, range(8)) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert time.monotonic() - started < 1.0          # eight 0.2 s calls, not 1.6 s one after another

    ended = []

    def fails_on_odd(n: int) -> int:
        time.sleep(0.05 * n)
        ended.append(n)
        if n % 2:
            raise ValueError(f"odd {n}")
        return n
    with pytest.raises(ValueError, match="odd 3"):     # the first in the items' order, not in time
        at_once(fails_on_odd, [4, 3, 1, 2])
    assert sorted(ended) == [1, 2, 3, 4]             # every call ended before the error came back
    assert at_once(slow_double, []) == []
