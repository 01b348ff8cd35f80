#!/usr/bin/env python3
"""Requests lost while a callee's app restarts under load (issue 21, defect 5): examples/shop's web
(Python) calls api (Node.js) across the mesh while api hot-reloads in sync mode, on a machine kept
busy by busy loops on every core.

    .venv/bin/python bench/reload_loss.py [--reloads 20] [--threads 4] [--keepalive 1] [--burn 2]
                                          [--shop OTHER/examples/shop] [--json FILE] [--log FILE]

Three kinds of load run side by side, with a short pause between a thread's requests:
  mesh:      host → web's HTTPS → web → web's proxy (outbound) → mTLS → api's proxy (inbound) → api,
             a new connection per request (--threads of them)
  direct:    host → api's HTTPS → api's proxy → api, a new connection per request (--threads)
  keepalive: the same as direct on one kept connection (--keepalive clients), as a browser or a load
             balancer: its requests after the first may reuse the proxy's kept-alive connections to api
A request is lost when web does not answer 200 with api's 200 inside (mesh; web's own call to api
gives up after 10 s), or api does not answer 200. Every lost request is printed with what came back,
then each reload's time (save → `restart api` printed) and the old app's stop (SIGTERM → exit, from
Docker's events; exit 137 is the SIGKILL at the end of the grace period). `--shop` takes another
checkout's examples/shop for a before/after on the same machine. Prints; never asserts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from _common import MESHCTL, ROOT, copy_shop

from meshctl.runtime.probes import http_request, tls_context


def failure(sent: float, error: BaseException) -> str:
    return f"client error after {time.monotonic() - sent:.2f}s {type(error).__name__}: {error}"


def burn() -> None:
    while True:
        pass


class Up:
    """`meshctl up` in the foreground; its output collected as it comes."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.lines: list[str] = []
        self.stamps: list[float] = []
        self.proc = subprocess.Popen([*MESHCTL, "up", str(folder)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.stamps.append(time.monotonic())
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, after: int = 0, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines[after:]):
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"meshctl up exited {self.proc.returncode}:\n" + "\n".join(self.lines[-40:]))
            time.sleep(0.05)
        raise SystemExit(f"no {text!r} after {timeout}s:\n" + "\n".join(self.lines[-40:]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--threads", type=int, default=4, help="client threads per kind of load")
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between a thread's requests")
    parser.add_argument("--keepalive", type=int, default=1, help="clients that keep their connection to api")
    parser.add_argument("--burn", type=int, default=os.cpu_count() or 2, help="busy-loop processes beside")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds after each restart")
    parser.add_argument("--shop", type=Path, default=ROOT / "examples" / "shop",
                        help="the examples/shop folder to copy (another checkout's, for a before/after)")
    parser.add_argument("--json")
    parser.add_argument("--log", help="write meshctl up's output here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="d5-reload-"))
    folder = work / "shop"
    copy_shop(folder, args.shop)
    project = f"d5-reload-{uuid.uuid4().hex[:4]}"
    ports = "    ports: {https: 0, http: 0, metrics: 0}\n"
    (folder / "mesh.yaml").write_text(
        f"name: {project}\nmesh: {{mtls: strict}}\nservices:\n"
        f"  web:\n    build: web\n    port: 8080\n    health: /healthz\n{ports}"
        f"  api:\n    build: api\n    port: 8080\n    health: /healthz\n    allow: [web]\n"
        f"    watch: {{sync: {{\".\": /app}}}}\n{ports}")
    env = {**os.environ, "MESHCTL_HOME": str(work / "home"), "COLUMNS": "200",
           "MESHCTL_BUILD_NETWORK": os.environ.get("MESHCTL_BUILD_NETWORK", "host")}
    outcomes: list[tuple[str, float, bool, str]] = []   # (kind, sent at, ok, what came back)
    windows: list[tuple[float, float]] = []             # (saved, restarted) per reload
    # The api app container's own story per reload, as Docker tells it: SIGTERM (kill 15), its exit
    # (die, with the exit code: 137 is the SIGKILL at the end of the grace period), start.
    events: list[str] = []
    watcher = subprocess.Popen(
        ["docker", "events", "--filter", f"label=meshctl.project={project}", "--filter", "label=meshctl.role=app",
         "--filter", "label=meshctl.service=api", "--format",
         "{{.TimeNano}} {{.Action}} {{index .Actor.Attributes \"signal\"}}{{index .Actor.Attributes \"exitCode\"}}"],
        stdout=subprocess.PIPE, text=True)
    threading.Thread(target=lambda: events.extend(line.strip() for line in watcher.stdout), daemon=True).start()
    up = Up(folder, env)
    burners: list[multiprocessing.Process] = []
    try:
        up.wait_for("meshctl: ready")
        shown = json.loads(subprocess.run([*MESHCTL, "ps", "--json", "--project", project], env=env,
                                          capture_output=True, text=True, check=True).stdout)
        https = {e["service"]: int(e["urls"]["https"].rsplit(":", 1)[1].split("/")[0]) for e in shown}
        ca = subprocess.run([*MESHCTL, "certs", "ca"], env=env, capture_output=True, text=True, check=True).stdout
        context = tls_context(Path(ca.strip()))

        stop = threading.Event()

        def client(kind: str) -> None:
            port = https["web"] if kind == "mesh" else https["api"]
            path = "/" if kind == "mesh" else "/whoami"
            while not stop.is_set():
                at = time.monotonic()
                try:
                    answer = http_request(port, path, tls=context, server_hostname="localhost", timeout=20)
                    body = answer.body.decode(errors="replace")
                    ok = answer.status == 200 and (kind == "direct" or '"api_status": 200' in body)
                    outcomes.append((kind, at, ok, f"{answer.status} after {time.monotonic() - at:.2f}s {body.strip()[:300]}"))
                except OSError as error:
                    outcomes.append((kind, at, False, failure(at, error)))
                time.sleep(args.pause)

        def keepalive() -> None:
            """One client that keeps its connection to api's HTTPS port (a browser, a load balancer):
            its requests after the first may go over the proxy's kept-alive connections to the app."""
            conn = None
            while not stop.is_set():
                at = time.monotonic()
                fresh = conn is None
                try:
                    if conn is None:
                        conn = http.client.HTTPSConnection("127.0.0.1", https["api"], context=context, timeout=20)
                    conn.request("GET", "/whoami", headers={"Host": "localhost"})
                    answer = conn.getresponse()
                    body = answer.read().decode(errors="replace")
                    outcomes.append(("keepalive", at, answer.status == 200,
                                     f"{answer.status} after {time.monotonic() - at:.2f}s {body.strip()[:300]}"))
                    if answer.will_close:
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as error:
                    conn.close()
                    conn = None
                    # A kept-alive connection closed before its answer is the client's to retry on a
                    # new one (RFC 9112 §9.3.1, as browsers do): only a fresh connection's failure counts.
                    if fresh:
                        outcomes.append(("keepalive", at, False, failure(at, error)))
                    continue
                time.sleep(args.pause)

        threads = [threading.Thread(target=client, args=(kind,), daemon=True)
                   for kind in ("mesh", "direct") for _ in range(args.threads)]
        threads += [threading.Thread(target=keepalive, daemon=True) for _ in range(args.keepalive)]
        burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.burn)]
        for p in burners:
            p.start()
        for t in threads:
            t.start()
        time.sleep(2)
        server = folder / "api" / "server.js"
        original = server.read_text()
        for index in range(args.reloads):
            before = len(up.lines)
            saved = time.monotonic()
            server.write_text(original + f"\n// reload {index}\n")
            up.wait_for("restart api", after=before, timeout=120)
            windows.append((saved, time.monotonic()))
            time.sleep(args.settle)
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        for p in burners:
            p.kill()
        up.proc.terminate()
        try:
            up.proc.wait(60)
        except subprocess.TimeoutExpired:
            up.proc.kill()
        subprocess.run([*MESHCTL, "down", str(folder)], env=env, capture_output=True, check=False)
        watcher.terminate()
        built = subprocess.run(["docker", "images", "-q", "--filter", f"label=meshctl.project={project}"],
                               capture_output=True, text=True, check=False).stdout.split()
        if built:
            subprocess.run(["docker", "rmi", "-f", *sorted(set(built))], capture_output=True, check=False)
        if args.log:
            zero = outcomes[0][1] if outcomes else 0
            lines = zip(up.stamps, up.lines, strict=False)
            Path(args.log).write_text("".join(f"+{at - zero:8.2f} {line}\n" for at, line in lines))
        shutil.rmtree(work, ignore_errors=True)

    stops, term = [], None
    for line in filter(None, list(events)):
        nanos, action, detail = (line.split(" ") + [""])[:3]
        if action == "kill" and detail == "15":
            term = int(nanos)
        elif action == "die" and term is not None:
            stops.append(f"{(int(nanos) - term) / 1e9:.2f}s exit {detail}")
            term = None
    lost = [o for o in outcomes if not o[2]]
    result = {
        "reloads": len(windows),
        "requests": dict(Counter(kind for kind, *_ in outcomes)),
        "lost": dict(Counter(kind for kind, *_ in lost)),
        "lost_what": dict(Counter(f"{kind}: {what.split(' ', 1)[0]}" for kind, _, _, what in lost)),
        "restart_s": [round(b - a, 2) for a, b in windows],
        "app_stop": stops,     # SIGTERM → the old app's exit, per reload (and the last at the end)
    }
    started = outcomes[0][1] if outcomes else 0
    for kind, at, _, what in lost:
        print(f"lost {kind} sent at +{at - started:.2f}s: {' '.join(what.split())[:200]}")
    print("reloads (save → restarted):", ", ".join(f"+{a - started:.1f}..+{b - started:.1f}s" for a, b in windows))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
