"""A tiny HTTP service: a greeting, a health check, and its own Prometheus metrics."""

import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

GREETING = os.environ.get("GREETING", "hello")
GREETINGS = Counter("hello_greetings", "Greetings served by the hello app")


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a stop never has idle keep-alive threads to wait for.
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        if self.path == "/healthz":
            self._send(200, b"ok\n")
        elif self.path == "/metrics":
            self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif self.path == "/":
            GREETINGS.inc()
            self._send(200, f"{GREETING} from meshctl\n".encode())
        else:
            self._send(404, b"not found\n")

    def _send(self, status, body, content_type="text/plain; charset=utf-8"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle(self):
        try:
            super().handle()
        except ConnectionResetError:  # a client (or the proxy's idle pool) hung up: nothing to do
            pass

    def log_message(self, fmt, *args):  # the proxy logs every request already
        pass


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = False   # a stop finishes the responses in flight (server_close joins them)
    # Stop on SIGTERM: no new requests, finish those in flight, exit. shutdown() must run off the
    # serving thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"hello: listening on :{port}", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    print("hello: stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
