#!/usr/bin/env python3
"""Run mode (`meshctl up -- CMD`, no Dockerfile) and sidecars of the user's own, timed in one run.

    .venv/bin/python bench/run.py [--saves 5] [--ups 3] [--warm] [--prefix bench-run] [--json FILE]

Rows:
  Python + requirements.txt, first `up -d` → first HTTPS 200: the runtime image built from the base
      image (skipped with --warm: the image kept) and the dependencies installed from PyPI
  the same, second `up -d` (after `down`): the image and the dependency cache reused
  examples/node (Node.js, no Dockerfile, an NGINX sidecar of its own): save → first HTTPS answer
      with the new code (sync mode: node restarted in place), median of --saves
  examples/node `up -d` → first HTTPS 200, images built: median of --ups (the sidecar is started,
      waited for, then node)
Prints; never asserts. Cleans up what it creates (the runtime image stays unless it was built here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import MESHCTL, ROOT, cleanup, meshctl_urls, poll, port_of, seconds_until, sh

from meshctl.certs import CertificateAuthority
from meshctl.runtime.probes import http_request, tls_context
from meshctl.planning.images import runtime_image_ref

ENV = {**os.environ, "MESHCTL_BUILD_NETWORK": os.environ.get("MESHCTL_BUILD_NETWORK", "host"), "COLUMNS": "200"}
bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
if bundle and Path(bundle).is_file():
    ENV.setdefault("MESHCTL_INSTALL_CA", bundle)

APP_PY = '''
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import six
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"six {six.__version__}\\n".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
'''


def meshctl(*args: str) -> subprocess.CompletedProcess:
    return sh([*MESHCTL, *args], env=ENV, timeout=900)


def https_port(project: str) -> int:
    return port_of(meshctl_urls(project, env=ENV)["https"])


def until(fetch, body: bytes, started: float) -> float:
    """Seconds from `started` until `fetch()` gives `body`."""
    return seconds_until(lambda: fetch() == body, started, what=f"answer {body!r}")


def timed_up(folder: Path, project: str, body: bytes, context) -> float:
    started = time.monotonic()
    meshctl("up", "-d", str(folder))
    port = https_port(project)
    return until(lambda: http_request(port, "/", tls=context).body, body, started)


def python_rows(work: Path, prefix: str, warm: bool, context) -> dict:
    folder = work / "api"
    folder.mkdir()
    (folder / "requirements.txt").write_text("six==1.16.0\n")
    (folder / "app.py").write_text(APP_PY)
    project = f"{prefix}-py"
    (folder / "mesh.yaml").write_text(f"name: {project}\nservices:\n  api:\n    command: [python3, app.py]\n"
                                      "    ports: {https: 0, http: 0, metrics: 0}\n")
    image = runtime_image_ref("python")
    if not warm:
        cleanup(images=[image])
    try:
        first = timed_up(folder, project, b"six 1.16.0\n", context)
        meshctl("down", str(folder))
        second = timed_up(folder, project, b"six 1.16.0\n", context)
    finally:
        cleanup(folders=[folder], volumes=True)
    return {"python_first_up_s": round(first, 2), "python_second_up_s": round(second, 2),
            "python_first_up_built_runtime_image": not warm}


def node_rows(work: Path, prefix: str, saves: int, ups: int, context) -> dict:
    folder = work / "node"
    shutil.copytree(ROOT / "examples" / "node", folder)
    project = f"{prefix}-node"
    text = (folder / "mesh.yaml").read_text().replace("name: node", f"name: {project}")
    (folder / "mesh.yaml").write_text(text.replace("ports: {https: 8443, http: 8080, metrics: 9090}",
                                                   "ports: {https: 0, http: 0, metrics: 0}"))
    up_times = []
    try:
        meshctl("up", "-d", str(folder))          # builds what is missing: not part of the figure
        meshctl("down", str(folder))
        for _ in range(ups):
            up_times.append(timed_up(folder, project, b"hi from node\n", context))
            meshctl("down", str(folder))
        log = Path(tempfile.mkstemp(prefix="bench-run-", suffix=".log")[1])
        with log.open("w") as out:
            proc = subprocess.Popen([*MESHCTL, "up", str(folder), "--", "node", "server.js"], stdout=out,
                                    stderr=subprocess.STDOUT, env=ENV)
        try:
            poll(lambda: "meshctl: ready" in log.read_text(errors="replace"), timeout=300, interval=0.05,
                 what="'meshctl: ready'", process=proc, detail=lambda: log.read_text()[-3000:])
            port = https_port(project)
            server = folder / "server.js"
            original = server.read_text()
            reloads = []
            for i in range(saves):
                time.sleep(2.5)      # past the watcher's debounce of the last save
                server.write_text(original.replace("from node", f"from node, save {i}"))
                started = time.monotonic()
                reloads.append(until(lambda: http_request(port, "/", tls=context).body,
                                     f"hi from node, save {i}\n".encode(), started))
        finally:
            proc.terminate()
            proc.wait(60)
    finally:
        cleanup(folders=[folder], volumes=True)
    return {"node_save_to_new_code_s": round(statistics.median(reloads), 2), "node_saves": [round(r, 2) for r in reloads],
            "node_up_d_with_sidecar_s": round(statistics.median(up_times), 2),
            "node_ups": [round(u, 2) for u in up_times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--ups", type=int, default=3)
    parser.add_argument("--warm", action="store_true", help="keep the Python runtime image (first up: install only)")
    parser.add_argument("--prefix", default="bench-run", help="project names start with this")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    context = tls_context(CertificateAuthority().ensure())
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        work = Path(tmp)
        results = {**python_rows(work, args.prefix, args.warm, context),
                   **node_rows(work, args.prefix, args.saves, args.ups, context)}
    rows = [
        ("Python + requirements.txt, first up -d → HTTPS 200"
         + (" (runtime image built, deps installed)" if results["python_first_up_built_runtime_image"]
            else " (deps installed)"), results["python_first_up_s"]),
        ("the same, second up -d (image and dependency cache reused)", results["python_second_up_s"]),
        (f"examples/node: save → new code over HTTPS (median of {args.saves})", results["node_save_to_new_code_s"]),
        (f"examples/node up -d → HTTPS 200, with its NGINX sidecar (median of {args.ups})",
         results["node_up_d_with_sidecar_s"]),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'row'.ljust(width)}  seconds")
    for label, value in rows:
        print(f"{label.ljust(width)}  {value:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
