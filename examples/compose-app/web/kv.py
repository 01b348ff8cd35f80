"""The kv service: a tiny line protocol over TCP (not HTTP): `SET key value`, `GET key`, `PING`."""

import os
import signal
import socketserver
import sys

DATA: dict[str, str] = {}


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            verb, _, rest = line.decode("utf-8", "replace").strip().partition(" ")
            if verb == "PING":
                answer = "PONG"
            elif verb == "SET":
                key, _, value = rest.partition(" ")
                DATA[key] = value
                answer = "OK"
            elif verb == "GET":
                answer = DATA.get(rest, "")
            else:
                answer = "ERR unknown command"
            self.wfile.write(answer.encode() + b"\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Server(("0.0.0.0", int(os.environ.get("KV_PORT", "7000"))), Handler) as server:
        print("kv: listening", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
