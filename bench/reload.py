#!/usr/bin/env python3
"""Hot reload timings of examples/hello, measured in one run beside `docker compose watch`.

    .venv/bin/python bench/reload [--saves 5] [--reloads-under-load 20] [--json FILE]

Rows:
  meshctl, sync mode: save → first HTTPS response with the new code (HTTPS → proxy → app)
  meshctl, rebuild mode: the same, with the image rebuilt (cached layers) and the app replaced
  docker compose watch, sync+restart: save → first HTTP response with the new code (the app alone)
  failed requests during N sync reloads under a steady ~50 requests/s through HTTPS
Targets (issue 3): sync < 1.0 s, rebuild < 10 s, failed requests 0. Prints; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meshctl.certs import CertificateAuthority  # noqa: E402
from meshctl.runtime.probes import http_request, tls_context  # noqa: E402
from meshctl.engine.compose import compose_command  # noqa: E402

MESHCTL = [sys.executable, "-m", "meshctl"]
COMPOSE = compose_command()   # meshctl's lookup: a Compose v2 that reports failure (never the always-0 venv wrapper)


def copy_hello(folder: Path, name: str, *, sync: bool, https: int) -> Path:
    shutil.copytree(ROOT / "examples" / "hello", folder)
    watch = '    watch: {sync: {".": /app}}\n' if sync else ""
    (folder / "mesh.yaml").write_text(
        f"name: {name}\nservices:\n  hello:\n    build: .\n    port: 8080\n    health: /healthz\n{watch}"
        f"    ports: {{https: {https}, http: 0, metrics: 0}}\n")
    return folder


def set_greeting(folder: Path, word: str) -> bytes:
    app = folder / "app.py"
    text = app.read_text()
    start = text.index('f"{GREETING} ') + len('f"{GREETING} ')
    end = text.index("\\n", start)
    app.write_text(text[:start] + word + text[end:])
    return f"hello {word}\n".encode()


OUTPUT: Path | None = None   # the output of the command being measured


def wait_for(fetch, body: bytes, started: float, timeout: float = 120) -> float:
    while time.monotonic() - started < timeout:
        try:
            if fetch() == body:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.01)
    tail = "\n".join(OUTPUT.read_text(errors="replace").splitlines()[-40:]) if OUTPUT else ""
    raise SystemExit(f"the new code never answered {body!r} within {timeout}s; the last lines of "
                     f"{OUTPUT}:\n{tail}")


class Foreground:
    def __init__(self, cmd: list[str], ready: callable):
        # Its output goes to a file, shown when a save never comes through.
        global OUTPUT
        OUTPUT = Path(tempfile.mkstemp(prefix="bench-reload-", suffix=".log")[1])
        self.output = OUTPUT
        with OUTPUT.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"{' '.join(cmd)} exited {self.proc.returncode}")
            time.sleep(0.1)
        raise SystemExit(f"{' '.join(cmd)} was not ready in 180 s")

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
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)

            def https_fetch(port):
                def fetch(raw: bool = False):
                    answer = http_request(port, "/", tls=context, timeout=30)
                    return answer.status if raw else answer.body
                return fetch

            # meshctl, sync mode
            sync_dir = copy_hello(tmp / "sync", f"bench-reload-sync-{tag}", sync=True, https=18443)
            fetch = https_fetch(18443)
            up = Foreground(MESHCTL + ["up", str(sync_dir)], lambda: fetch(raw=True) == 200)
            try:
                results["meshctl sync: save → new HTTPS answer"] = measure_saves(sync_dir, fetch, args.saves, "sync")
                failed, served = failures_under_load(sync_dir, fetch, args.reloads_under_load)
                results["under load"] = {"reloads": args.reloads_under_load, "requests": served, "failed": failed}
            finally:
                up.stop()

            # meshctl, rebuild mode
            rebuild_dir = copy_hello(tmp / "rebuild", f"bench-reload-rebuild-{tag}", sync=False, https=18444)
            fetch = https_fetch(18444)
            up = Foreground(MESHCTL + ["up", str(rebuild_dir)], lambda: fetch(raw=True) == 200)
            try:
                results["meshctl rebuild: save → new HTTPS answer"] = measure_saves(rebuild_dir, fetch, max(2, args.saves // 2),
                                                                                     "rebuild")
            finally:
                up.stop()

            # docker compose watch, sync+restart, the app alone
            compose_dir = tmp / "compose"
            shutil.copytree(ROOT / "examples" / "hello", compose_dir)
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
        for name in (f"bench-reload-sync-{tag}", f"bench-reload-rebuild-{tag}"):
            subprocess.run(MESHCTL + ["down", "--project", name], capture_output=True)
            subprocess.run(["docker", "image", "rm", "-f", f"meshctl-{name}-hello:dev"], capture_output=True)

    targets = {"meshctl sync: save → new HTTPS answer": 1.0, "meshctl rebuild: save → new HTTPS answer": 10.0}
    rows = {k: v for k, v in results.items() if isinstance(v, list)}
    width = max(len(k) for k in rows)
    print(f"{'path'.ljust(width)}  median    min      max      target")
    summary = {}
    for key, values in rows.items():
        summary[key] = {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
                        "max_s": round(max(values), 3), "saves": len(values)}
        target = f"< {targets[key]:g} s" if key in targets else ""
        print(f"{key.ljust(width)}  {summary[key]['median_s']:6.3f}s  {summary[key]['min_s']:6.3f}s  "
              f"{summary[key]['max_s']:6.3f}s  {target}")
    load = results["under load"]
    print(f"failed requests during {load['reloads']} sync reloads at ~50 req/s: {load['failed']} of {load['requests']}"
          "  (target 0)")
    print(json.dumps({"bench": "reload", "cores": os.cpu_count(), "rows": summary, "under_load": load}))
    if args.json:
        args.json.write_text(json.dumps({"rows": summary, "under_load": load}, indent=2))


if __name__ == "__main__":
    main()
