"""The loopback forwarder: runs in the host's network namespace (with no capability, as the
invoking user) only when the OTLP URL names this machine (http://localhost:4318), because a
container cannot reach the host's 127.0.0.1. It listens on a Unix socket in a folder only this
pod's metrics sidecar mounts (nothing listens on the network) and relays each connection to the
collector's loopback address. It shares the pod's PID namespace, so it goes when the pod goes.

Settings: /etc/meshctl/forward.json {"to": "127.0.0.1:4318"}; the socket: /etc/meshctl/otlp.sock."""

import contextlib
import json
import os
import socket
import sys
import threading

CONFIG = "/etc/meshctl/forward.json"
SOCKET = "/etc/meshctl/otlp.sock"


def pump(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                sock.shutdown(how)


def relay(client, target):
    try:
        upstream = socket.create_connection(target, timeout=5)
    except OSError as exc:
        print(f"otlp-forward: the collector at {target[0]}:{target[1]} did not answer: {exc}", flush=True)
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def listen(path):
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o660)
    server.listen(64)
    return server


def main():
    with open(CONFIG, encoding="utf-8") as handle:
        host, _, port = json.load(handle)["to"].rpartition(":")
    target = (host.strip("[]"), int(port))
    server = listen(SOCKET)
    print(f"otlp-forward: {SOCKET} → {host}:{port} (the collector on the host's loopback)", flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=relay, args=(client, target), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
