"""kv: a tiny key-value server over a TCP line protocol, the kind of service that is not HTTP (a
Redis, a Postgres). One command per line, one answer per line:

    SET key value  → OK          GET key → VALUE value, or NONE
    INCR key       → an integer  PING    → PONG

It knows nothing of the mesh: meshctl's TCP proxy in front of it takes mutual TLS from its callers'
proxies and passes the bytes on."""

import os
import signal
import socketserver
import sys
import threading

STORE: dict[str, str] = {}
LOCK = threading.Lock()


def answer(line: str) -> str:
    words = line.split(" ", 2)
    command = words[0].upper()
    with LOCK:
        if command == "PING":
            return "PONG"
        if command == "GET" and len(words) == 2:
            return f"VALUE {STORE[words[1]]}" if words[1] in STORE else "NONE"
        if command == "SET" and len(words) == 3:
            STORE[words[1]] = words[2]
            return "OK"
        if command == "INCR" and len(words) == 2:
            try:
                STORE[words[1]] = str(int(STORE.get(words[1], "0")) + 1)
            except ValueError:
                return "ERR not an integer"
            return STORE[words[1]]
    return "ERR unknown command (SET key value, GET key, INCR key, PING)"


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        # A connection may carry many commands; the proxy's health checks open one and send none.
        for raw in self.rfile:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self.wfile.write((answer(line) + "\n").encode())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


server = Server(("0.0.0.0", int(os.environ.get("PORT", "7000"))), Handler)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"kv: listening on {server.server_address[1]}", flush=True)
server.serve_forever()
