"""web: calls api at plain http://api:8080, as it would anywhere else; meshctl's mesh does the rest."""

import json
import os
import signal
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API = os.environ.get("API_URL", "http://api:8080")


def call(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, f"{type(error).__name__}: {error}"


def tcp_call(host: str, port: int, line: str) -> dict:
    """One line to a TCP service and the line it answers; `closed` when the connection ended first."""
    try:
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(line.encode() + b"\n")
            reply = conn.makefile("rb").readline().decode().rstrip("\n")
            return {"reply": reply, "closed": not reply}
    except OSError as error:
        return {"reply": "", "closed": True, "error": f"{type(error).__name__}: {error}"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/healthz":
            return self._send(200, {"ok": True})
        if url.path == "/call":          # GET /call?url=http://api:8080/whoami: what any app would do
            target = parse_qs(url.query).get("url", [f"{API}/whoami"])[0]
            status, body = call(target)
            return self._send(200, {"url": target, "status": status, "body": body})
        if url.path == "/tcp":           # GET /tcp?host=kv&port=7000&line=PING: a plain TCP client
            query = parse_qs(url.query)
            host, port = query.get("host", ["kv"])[0], int(query.get("port", ["7000"])[0])
            return self._send(200, {"host": host, "port": port, **tcp_call(host, port, query.get("line", ["PING"])[0])})
        if url.path == "/visits":        # web → api → kv
            return self._answer_from_api("visits", f"{API}/visits")
        return self._answer_from_api("hello", f"{API}/whoami")

    def _answer_from_api(self, page, url):
        """200 with api's answer; 502 with an error page a user can read when api did not answer 200."""
        status, body = call(url)
        payload = {"web": page, "api_said": body, "api_status": status}
        if status != 200:
            payload["error"] = "api is not answering right now, please try again in a moment"
        return self._send(200 if status == 200 else 502, payload)

    def _send(self, status, payload):
        data = (json.dumps(payload) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print("web:", fmt % args, flush=True)


server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)
# shutdown() waits for serve_forever() to return: called in the signal handler, on the same thread,
# it never did, and every stop waited out the 10 s grace period.
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print(f"web: listening on {server.server_port}, calling {API}", flush=True)
server.serve_forever(poll_interval=0.1)
