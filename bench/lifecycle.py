#!/usr/bin/env python3
"""Lifecycle timings of examples/hello, measured in one run beside docker compose; or of another
example with all its services (examples/shop: web, api and whatever else it holds).

    .venv/bin/python bench/lifecycle.py [--runs 5] [--cold] [--json FILE] [--example examples/shop] [--prefix P]
                                        [--ports HTTPS,HTTP,METRICS]

Rows (medians over --runs, images already built), examples/hello:
  meshctl up -d → first HTTPS 200     time from starting the command to a verified HTTPS 200
  meshctl down                        time of the command
  compose up --wait → first HTTPS 200 the same four containers from a compose file
  compose down
and with --cold: a first `meshctl up -d` with no sidecar or app image built (images removed).
Targets (issue 2, 2 cores): ready < 2 s, down < 1.5 s, cold first up < 60 s.

--example PATH (any other example folder with a mesh.yaml; a copy runs under another project name,
every host port free, 0): the services are read from its mesh.yaml with meshctl's own parser, so
a service added there is timed too. Rows:
  meshctl up -d → ready               until the command returns: it returns once every service's
                                      readiness probe passed through its chain
  meshctl up -d → every HTTPS 200     then a verified HTTPS 200 from each HTTP service's health path
  meshctl down                        time of the command
Prints a table and JSON; never asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import HELLO, MESHCTL, cleanup, copy_hello, emit_json, print_spread, seconds_until, sh, spread, timed

from meshctl.engine.docker import DockerEngine as Engine
from meshctl.certs import CertificateAuthority
from meshctl.runtime.probes import http_request, tls_context
from meshctl.engine.compose import compose_command
from meshctl.config import PORT_NAMES, load_project
from meshctl.planning.images import app_image_ref, sidecar_refs
from meshctl.model import HOLDER
from meshctl.sidecars import TLS_PORT

COMPOSE = compose_command()   # meshctl's lookup: a Compose v2 that reports failure (never the always-0 venv wrapper)
HTTPS, HTTP, METRICS = 18443, 18080, 19090


def first_https_200(port: int, context, started: float, path: str = "/healthz") -> float:
    """Seconds from `started` to the first verified HTTPS 200 from `path`."""
    return seconds_until(lambda: http_request(port, path, tls=context, timeout=1).status == 200, started,
                         what=f"HTTPS 200 on :{port}{path}")


def make_project(folder: Path, name: str) -> None:
    copy_hello(folder, f"""\
name: {name}
services:
  hello:
    build: .
    port: 8080
    health: /healthz
    metrics_path: /metrics
    ports: {{https: {HTTPS}, http: {HTTP}, metrics: {METRICS}}}
""")


def make_example(source: Path, folder: Path, name: str) -> list[tuple[str, str]]:
    """A copy of an example under the bench's project name, with every host port free (0: the
    machine is shared); returns (service, health path) of each service that answers HTTPS."""
    shutil.copytree(source, folder)
    config = folder / "mesh.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["name"] = name
    for index, service in enumerate(raw["services"].values()):
        ports = service.get("ports") or (dict.fromkeys(PORT_NAMES, 0) if index == 0 else {})
        if ports:       # only the first service has fixed default ports; keep what others say, at 0
            service["ports"] = dict.fromkeys(ports, 0)
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    project = load_project(folder)
    return [(s.name, s.health) for s in project.services
            if "https" in s.host_ports and getattr(s, "protocol", "http") == "http"]


def https_ports(engine: Engine, project: str) -> dict[str, int]:
    """service → the host port of its HTTPS listener, as published on its pod's holder."""
    return {c.service: c.ports[TLS_PORT] for c in engine.containers({"meshctl.project": project, "meshctl.role": HOLDER})
            if TLS_PORT in c.ports}


def example_rows(engine: Engine, source: Path, name: str, runs: int, cold: bool, context) -> dict[str, list[float]]:
    """`meshctl up -d` of a whole example to ready and to every service's HTTPS 200, and `down`."""
    ready_row, https_row, down_row = "meshctl up -d → ready", "meshctl up -d → every HTTPS 200", "meshctl down"
    results: dict[str, list[float]] = {ready_row: [], https_row: [], down_row: []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / source.name
        answering = make_example(source, folder, name)
        built = [app_image_ref(name, s) for s in load_project(folder).services if s.build is not None]
        print(f"· {source}: {len(load_project(folder).services)} services, HTTPS from "
              f"{', '.join(svc for svc, _ in answering)}", file=sys.stderr)
        try:
            if cold:
                cleanup(images={*sidecar_refs(("proxy", "metrics", "capture")).values(), *built})
                results["meshctl first up, no image built → ready"] = []
            for run in range(runs + 1):
                started = time.monotonic()
                sh(MESHCTL + ["up", "-d", str(folder)])
                ready = time.monotonic() - started
                ports = https_ports(engine, name)
                every = max(first_https_200(ports[svc], context, started, path=health) for svc, health in answering)
                down = timed(MESHCTL + ["down", str(folder)])
                if run == 0:     # builds what is missing: timed only as the cold row
                    if cold:
                        results["meshctl first up, no image built → ready"].append(ready)
                    continue
                results[ready_row].append(ready)
                results[https_row].append(every)
                results[down_row].append(down)
        finally:
            cleanup(folders=[folder], images=built)
    return results


def compose_file(name: str, state: Path, app_image: str) -> str:
    """The same four containers meshctl runs (holder, metrics, proxy serving HTTPS, app), as a compose file a team
    might write by hand. `state`: a copy of the service's rendered configs and certificate."""
    refs = sidecar_refs(("proxy", "metrics"))
    user = f"{os.getuid()}:{os.getgid()}"
    return f"""\
name: {name}-compose
services:
  pod:
    image: {refs['proxy']}
    entrypoint: ["sh", "-c", "exec sleep infinity"]
    ports: ["127.0.0.1:{HTTPS}:15443", "127.0.0.1:{HTTP}:15080", "127.0.0.1:{METRICS}:15090"]
  metrics:
    image: {refs['metrics']}
    network_mode: service:pod
    pid: service:pod
    user: "{user}"
    environment: {{MESHCTL_SERVICE: hello, MESHCTL_APP_METRICS: "http://127.0.0.1:8080/metrics"}}
    depends_on: [pod]
  proxy:
    image: {refs['proxy']}
    network_mode: service:pod
    user: "{user}"
    command: ["-f", "/etc/meshctl/haproxy.cfg"]
    volumes: ["{state / 'proxy'}:/etc/meshctl:ro"]
    depends_on: [pod]
  app:
    image: {app_image}
    network_mode: service:pod
    depends_on: [pod]
"""


def main() -> None:
    global HTTPS, HTTP, METRICS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="also time a first up with no image built")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--example", type=Path, default=HELLO,
                        help="an example folder with a mesh.yaml (default examples/hello, timed beside compose)")
    parser.add_argument("--prefix", default="bench-lifecycle", help="the project name starts with this")
    parser.add_argument("--ports", default="18443,18080,19090",
                        help="examples/hello's host ports https,http,metrics (engineers sharing a machine keep to their own)")
    args = parser.parse_args()
    HTTPS, HTTP, METRICS = (int(p) for p in args.ports.split(","))
    os.environ.setdefault("MESHCTL_BUILD_NETWORK", "host")
    engine = Engine()
    context = tls_context(CertificateAuthority().ensure())
    name = f"{args.prefix}-{os.getpid()}"
    if args.example.resolve() != HELLO.resolve():
        try:
            results = example_rows(engine, args.example.resolve(), name, args.runs, args.cold, context)
        finally:
            engine.close()
        report(results, args, example=str(args.example))
        return
    results: dict[str, list[float]] = {"meshctl up -d → first HTTPS 200": [], "meshctl down": [],
                                       "compose up --wait → first HTTPS 200": [], "compose down": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "hello"
        make_project(folder, name)
        app_image = f"meshctl-{name}-hello:dev"
        cold = None
        if args.cold:
            cleanup(images={*sidecar_refs(("proxy", "metrics")).values(), app_image})
            started = time.monotonic()
            sh(MESHCTL + ["up", "-d", str(folder)])
            cold = first_https_200(HTTPS, context, started)
        else:
            sh(MESHCTL + ["up", "-d", str(folder)])   # builds what is missing; not timed
        # `meshctl down` removes the rendered configs and keys: compose mounts a copy of them.
        from meshctl.home import meshctl_home
        state = Path(tmp) / "state"
        shutil.copytree(meshctl_home() / "projects" / name / "hello", state)
        sh(MESHCTL + ["down", str(folder)])
        compose_path = Path(tmp) / "compose.yaml"
        compose_path.write_text(compose_file(name, state, app_image))
        compose = COMPOSE + ["-f", str(compose_path)]
        try:
            for _ in range(args.runs):
                started = time.monotonic()
                sh(MESHCTL + ["up", "-d", str(folder)])
                results["meshctl up -d → first HTTPS 200"].append(first_https_200(HTTPS, context, started))
                results["meshctl down"].append(timed(MESHCTL + ["down", str(folder)]))
                started = time.monotonic()
                sh(compose + ["up", "--wait", "-d"])
                results["compose up --wait → first HTTPS 200"].append(first_https_200(HTTPS, context, started))
                results["compose down"].append(timed(compose + ["down"]))
        finally:
            cleanup(folders=[folder])
            sh(compose + ["down"], check=False)
            cleanup(images=[app_image])
    engine.close()
    if cold is not None:
        results["meshctl first up, no image built → first HTTPS 200"] = [cold]
    report(results, args, example="examples/hello")


def report(results: dict[str, list[float]], args, example: str) -> None:
    rows = {k: spread(v) for k, v in results.items() if v}
    targets = {"meshctl up -d → first HTTPS 200": 2.0, "meshctl down": 1.5,
               "meshctl first up, no image built → first HTTPS 200": 60.0}
    print(f"{example}, {os.cpu_count()} cores")
    print_spread(rows, targets=targets if example == "examples/hello" else {})
    ratios = {}
    if "compose down" in rows:
        ratios = {"compose_over_meshctl_up": round(rows["compose up --wait → first HTTPS 200"]["median_s"]
                                                   / rows["meshctl up -d → first HTTPS 200"]["median_s"], 2),
                  "compose_over_meshctl_down": round(rows["compose down"]["median_s"] / rows["meshctl down"]["median_s"], 2)}
        print(f"compose/meshctl: up {ratios['compose_over_meshctl_up']:.2f}×, down {ratios['compose_over_meshctl_down']:.2f}×")
    emit_json({"bench": "lifecycle", "example": example, "cores": os.cpu_count(), "rows": rows, "ratios": ratios},
              args.json)


if __name__ == "__main__":
    main()
