"""The web service: a greeting, a health check, its own metrics, and /kv/<key> backed by the kv
service over plain TCP (reached by name, as before injection)."""

import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

GREETING = os.environ.get("GREETING", "hello")
KV_HOST, _, KV_PORT = os.environ.get("KV_ADDR", "kv:7000").partition(":")
PAGES = Counter("compose_app_pages", "Pages served by the web service")


def kv(command: str) -> str:
    with socket.create_connection((KV_HOST, int(KV_PORT)), timeout=3) as conn:
        conn.sendall(command.encode() + b"\n")
        return conn.makefile().readline().strip()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/healthz":
            return self._send(200, b"ok\n")
        if self.path == "/metrics":
            return self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
        if self.path.startswith("/kv/"):
            try:
                return self._send(200, (kv(f"GET {self.path[4:]}") + "\n").encode())
            except OSError as exc:
                return self._send(502, f"kv: {exc}\n".encode())
        if self.path == "/":
            PAGES.inc()
            return self._send(200, f"{GREETING}\n".encode())
        self._send(404, b"not found\n")

    def do_PUT(self):
        if not self.path.startswith("/kv/"):
            return self._send(404, b"not found\n")
        value = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode().strip()
        self._send(200, (kv(f"SET {self.path[4:]} {value}") + "\n").encode())

    def _send(self, status, body, content_type="text/plain; charset=utf-8"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


def main():
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("web: listening", flush=True)
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
