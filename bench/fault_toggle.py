#!/usr/bin/env python3
"""`meshctl fault` from command to first affected request (issue 22), on examples/hello.

    .venv/bin/python bench/fault_toggle.py [--toggles 20] [--json FILE]

A client sends requests back to back to the service's plain port (one at a time, each on a fresh
connection, ~1-2 ms apart). Each toggle runs `meshctl fault hello --abort 503` and measures from
the command's start to the first request *sent after it* that is answered 503; then `--clear`,
to the first 200. Rows:
  on (command): `meshctl fault hello --abort 503`, the whole CLI (Python start, stack lookup, exec)
  off (command): `meshctl fault hello --clear`, the same
  apply only: runtime/faults.set_live in this process (the engine's exec of socat in the proxy)
Target (issue 22): within 1 s. Also counts requests that failed other than by the fault (0
expected). Prints; never asserts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _common import MESHCTL, cleanup, copy_hello, emit_json, meshctl_urls, port_of, print_spread, sh, spread

from meshctl.home import meshctl_home
from meshctl.engine.docker import DockerEngine
from meshctl.runtime.faults import faults_from_flags, set_live
from meshctl.runtime.probes import http_request


class Client:
    """Requests back to back; each answer with the monotonic time it was sent."""

    def __init__(self, port: int):
        self.port = port
        self.answers: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                status = http_request(self.port, "/", timeout=5).status
            except OSError:
                status = 0
            self.answers.append((sent, status))

    def first(self, status: int, after: float, timeout: float = 30) -> float:
        """Seconds from `after` to the sending of the first request after it answered `status`."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for sent, got in self.answers[seen:]:
                if sent >= after and got == status:
                    return sent - after
            seen = max(0, len(self.answers) - 1)
            time.sleep(0.005)
        raise SystemExit(f"no HTTP {status} within {timeout:g}s of a toggle")


def toggle(client: Client, args: list[str], status: int) -> float:
    started = time.monotonic()
    command = subprocess.Popen([*MESHCTL, "fault", "hello", *args], stdout=subprocess.DEVNULL)
    seconds = client.first(status, started)
    if command.wait(60) != 0:
        raise SystemExit(f"meshctl fault hello {' '.join(args)} exited {command.returncode}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--toggles", type=int, default=20)
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    name = f"{options.prefix}-faults"
    with tempfile.TemporaryDirectory() as tmp:
        folder = copy_hello(Path(tmp) / "hello", f"name: {name}\nservices:\n  hello:\n    build: .\n    port: 8080\n"
                                                 "    health: /healthz\n    ports: {https: 0, http: 0, metrics: 0}\n")
        try:
            sh([*MESHCTL, "up", "-d", str(folder)], timeout=900)
            result = measure(name, port_of(meshctl_urls(name)["http"]), options.toggles)
        finally:
            cleanup(folders=[folder])
    print_spread({k: v for k, v in result.items() if isinstance(v, dict)}, first="toggle",
                 targets={"on (command)": 1.0, "off (command)": 1.0})
    print(f"requests that failed other than by the fault: {result['failed_other']}; "
          f"load average during the run: {result['load_average']}")
    emit_json(result, options.json)


def measure(project: str, port: int, toggles: int) -> dict:
    client = Client(port)
    on, off, apply_only = [], [], []
    engine = DockerEngine()
    try:
        for _ in range(toggles):
            on.append(toggle(client, ["--abort", "503", "-p", project], 503))
            off.append(toggle(client, ["--clear", "-p", project], 200))
        for _ in range(toggles):
            started = time.monotonic()
            set_live(engine, meshctl_home(), project, "hello", faults_from_flags("http", abort=503))
            apply_only.append(time.monotonic() - started)
            set_live(engine, meshctl_home(), project, "hello", None)
    finally:
        client.stop.set()
        client.thread.join(10)
    failed = sum(1 for _, status in client.answers if status not in (200, 503))
    return {"on (command)": spread(on, "toggles"), "off (command)": spread(off, "toggles"),
            "apply only": spread(apply_only, "toggles"), "failed_other": failed,
            "load_average": round(os.getloadavg()[0], 1)}


if __name__ == "__main__":
    main()
