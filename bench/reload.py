#!/usr/bin/env python3
"""Hot reload timings of examples/hello, measured in one run beside `docker compose watch`.

    .venv/bin/python bench/reload.py [--saves 5] [--reloads-under-load 20] [--json FILE]

Rows:
  meshctl, sync mode: save → first HTTPS response with the new code (HTTPS → proxy → app)
  meshctl, rebuild mode: the same, with the image rebuilt (cached layers) and the app replaced
  docker compose watch, sync+restart: save → first HTTP response with the new code (the app alone)
  failed requests during N sync reloads under a steady ~50 requests/s through HTTPS
Targets (issue 3): sync < 1.0 s, rebuild < 10 s, failed requests 0. Prints; never asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _common import HELLO, MESHCTL, cleanup, copy_hello, emit_json, poll, print_spread, seconds_until, spread

from meshctl.certs import CertificateAuthority
from meshctl.runtime.probes import http_request, tls_context
from meshctl.engine.compose import compose_command

COMPOSE = compose_command()   # meshctl's lookup: a Compose v2 that reports failure (never the always-0 venv wrapper)


def hello_copy(folder: Path, name: str, *, sync: bool, https: int) -> Path:
    watch = '    watch: {sync: {".": /app}}\n' if sync else ""
    return copy_hello(folder, f"name: {name}\nservices:\n  hello:\n    build: .\n    port: 8080\n"
                              f"    health: /healthz\n{watch}    ports: {{https: {https}, http: 0, metrics: 0}}\n")


def set_greeting(folder: Path, word: str) -> bytes:
    app = folder / "app.py"
    text = app.read_text()
    start = text.index('f"{GREETING} ') + len('f"{GREETING} ')
    end = text.index("\\n", start)
    app.write_text(text[:start] + word + text[end:])
    return f"hello {word}\n".encode()


OUTPUT: Path | None = None   # the output of the command being measured


def output_tail() -> str:
    tail = "\n".join(OUTPUT.read_text(errors="replace").splitlines()[-40:]) if OUTPUT else ""
    return f"the last lines of {OUTPUT}:\n{tail}"


def wait_for(fetch, body: bytes, started: float) -> float:
    """Seconds from `started` until the new code answers `body`."""
    return seconds_until(lambda: fetch() == body, started, what=f"answer {body!r} from the new code",
                         detail=output_tail)


class Foreground:
    def __init__(self, cmd: list[str], ready: callable):
        # Its output goes to a file, shown when a save never comes through.
        global OUTPUT
        OUTPUT = Path(tempfile.mkstemp(prefix="bench-reload-", suffix=".log")[1])
        self.output = OUTPUT
        with OUTPUT.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        poll(ready, timeout=180, interval=0.1, what="ready", process=self.proc, detail=output_tail)

    def stop(self) -> None:
        self.proc.send_signal(2)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.output.unlink(missing_ok=True)


def measure_saves(folder: Path, fetch, saves: int, tag: str) -> list[float]:
    times = []
    for i in range(saves):
        body = set_greeting(folder, f"{tag} {i}")
        times.append(wait_for(fetch, body, time.monotonic()))
        time.sleep(0.5)   # let the reload finish before the next save
    return times


def failures_under_load(folder: Path, fetch, reloads: int) -> tuple[int, int]:
    failures, served = [], [0]
    stop = threading.Event()

    def client() -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                if fetch(raw=True) >= 500:
                    failures.append(1)
                served[0] += 1
            except OSError:
                failures.append(1)
            next_at += 0.04
            time.sleep(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(reloads):
            body = set_greeting(folder, f"under load {i}")
            wait_for(fetch, body, time.monotonic())
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    return len(failures), served[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--reloads-under-load", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("MESHCTL_BUILD_NETWORK", "host")
    context = tls_context(CertificateAuthority().ensure())
    tag = os.getpid()
    results: dict[str, object] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)

            def https_fetch(port):
                def fetch(raw: bool = False):
                    answer = http_request(port, "/", tls=context, timeout=30)
                    return answer.status if raw else answer.body
                return fetch

            # meshctl, sync mode
            sync_dir = hello_copy(tmp / "sync", f"bench-reload-sync-{tag}", sync=True, https=18443)
            fetch = https_fetch(18443)
            up = Foreground(MESHCTL + ["up", str(sync_dir)], lambda: fetch(raw=True) == 200)
            try:
                results["meshctl sync: save → new HTTPS answer"] = measure_saves(sync_dir, fetch, args.saves, "sync")
                failed, served = failures_under_load(sync_dir, fetch, args.reloads_under_load)
                results["under load"] = {"reloads": args.reloads_under_load, "requests": served, "failed": failed}
            finally:
                up.stop()

            # meshctl, rebuild mode
            rebuild_dir = hello_copy(tmp / "rebuild", f"bench-reload-rebuild-{tag}", sync=False, https=18444)
            fetch = https_fetch(18444)
            up = Foreground(MESHCTL + ["up", str(rebuild_dir)], lambda: fetch(raw=True) == 200)
            try:
                results["meshctl rebuild: save → new HTTPS answer"] = measure_saves(rebuild_dir, fetch, max(2, args.saves // 2),
                                                                                     "rebuild")
            finally:
                up.stop()

            # docker compose watch, sync+restart, the app alone
            compose_dir = tmp / "compose"
            shutil.copytree(HELLO, compose_dir)
            (compose_dir / "compose.yaml").write_text(f"""\
name: bench-reload-compose-{tag}
services:
  hello:
    build: {{context: ., network: host}}
    ports: ["127.0.0.1:18081:8080"]
    develop:
      watch:
        - {{action: sync+restart, path: ./app.py, target: /app/app.py}}
""")
            compose = COMPOSE + ["-f", str(compose_dir / "compose.yaml")]

            def http_fetch(raw: bool = False):
                answer = http_request(18081, "/", timeout=30)
                return answer.status if raw else answer.body

            watch = Foreground(compose + ["watch"],
                               lambda: http_fetch(raw=True) == 200)
            try:
                time.sleep(1.0)   # compose starts watching after the stack is up
                results["docker compose watch sync+restart: save → new HTTP answer"] = measure_saves(
                    compose_dir, http_fetch, args.saves, "compose")
            finally:
                watch.stop()
                subprocess.run(compose + ["down", "--rmi", "local"], capture_output=True)
    finally:
        # Also when a save never came through: no container, network or app image is left.
        names = (f"bench-reload-sync-{tag}", f"bench-reload-rebuild-{tag}")
        cleanup(projects=names, images=[f"meshctl-{name}-hello:dev" for name in names])

    targets = {"meshctl sync: save → new HTTPS answer": 1.0, "meshctl rebuild: save → new HTTPS answer": 10.0}
    summary = {k: spread(v, "saves") for k, v in results.items() if isinstance(v, list)}
    print_spread(summary, first="path", targets=targets)
    load = results["under load"]
    print(f"failed requests during {load['reloads']} sync reloads at ~50 req/s: {load['failed']} of {load['requests']}"
          "  (target 0)")
    emit_json({"bench": "reload", "cores": os.cpu_count(), "rows": summary, "under_load": load}, args.json)


if __name__ == "__main__":
    main()
