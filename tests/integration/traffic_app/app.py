"""The test app of tests/integration/test_traffic_real.py, one image for every role.

As a callee it fails, stalls and counts on its own (faults: are another feature's): /flaky answers
500 to every FAIL_EVERY-th request to it, 200 otherwise; /slow?ms=N answers after N ms; /slow-once?key=K
stalls SLOW_ONCE_MS the first time it sees K; /fail always answers 500; /stats says how many requests
reached each path (HEALTH and /stats aside); any other path answers 200 with VERSION and the path.
As a caller, /call?url=U[&method=M] makes one call and says its status, body and seconds;
/burst?url=U&n=N makes N calls in a row and counts statuses and bodies."""

import contextlib
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

VERSION = os.environ.get("VERSION", "v1")
FAIL_EVERY = int(os.environ.get("FAIL_EVERY", "5"))
SLOW_ONCE_MS = int(os.environ.get("SLOW_ONCE_MS", "1500"))
lock = threading.Lock()
reached = Counter()
seen_keys = set()


def call(url, method="GET"):
    started = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as answer:
            status, body = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read().decode()
    except OSError as error:
        status, body = 0, f"{type(error).__name__}: {error}"
    return {"status": status, "body": body, "seconds": time.monotonic() - started}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/healthz":
            return self._send(200, "ok")
        if url.path == "/stats":
            with lock:
                return self._send(200, json.dumps(reached))
        if url.path == "/call":
            return self._send(200, json.dumps(call(query["url"], query.get("method", "GET"))))
        if url.path == "/burst":
            calls = [call(query["url"]) for _ in range(int(query.get("n", "100")))]
            return self._send(200, json.dumps({"statuses": Counter(str(c["status"]) for c in calls),
                                               "bodies": Counter(c["body"] for c in calls)}))
        with lock:
            reached[url.path] += 1
            count = reached[url.path]
            first_time = url.path == "/slow-once" and query.get("key") not in seen_keys
            seen_keys.add(query.get("key"))
        if url.path == "/fail" or (url.path == "/flaky" and count % FAIL_EVERY == 0):
            return self._send(500, f"{VERSION} failed on purpose")
        if url.path == "/slow" or first_time:
            time.sleep(int(query.get("ms", SLOW_ONCE_MS)) / 1000)
        return self._send(200, VERSION)

    do_PUT = do_DELETE = do_POST = do_GET

    def _send(self, status, text):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):          # the caller's proxy gave up on this try
            self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
