#!/usr/bin/env python3
"""`traffic:` measured (issue 22), in one run:

    .venv/bin/python bench/traffic.py [--rounds 10] [--seconds 3] [--calls 10000] [--prefix bench-traffic]
                                      [--json FILE] [--smoke] [--keep-images]

1. What `traffic:` costs the mesh hop. Two projects of web → api (the static nginx app of
   bench/datapath.py, mTLS strict): one without `traffic:`, one with api's timeout, retries and
   circuit breaker set (no call fails, so no rule fires but every rule is evaluated). A load
   generator in web's pod calls http://api:8080/ (captured, as web's own calls are) with wrk at
   saturation; each container's cgroup CPU time before and after gives CPU µs per request of web's
   proxy (where `traffic:` is applied) and api's proxy. Each round runs both projects back to back,
   the first alternating, and the table shows the median of the rounds' paired differences (the
   machine's noise is about ±5 µs per request: one run of each says nothing).
2. Retries at work. api answers 503 to 20% of calls by a fault at its own proxy (`faults:`), and
   api-bare the same without `traffic:`; web's load generator sends --calls requests to each with
   h2load. Success rates from h2load's status counts, and the retries web's metrics sidecar counted
   (meshctl_retries_total{destination="api"}).

Prints tables and JSON; never asserts. Removes every container and network it made, and the image
unless --keep-images.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import MESHCTL, cleanup, emit_json, sh
from datapath import (
    APP_PORT, NGINX_CONF, TOOLS_DOCKERFILE, WRK_LUA, _published, join_pod, sidecar_ids, wait_answer, wrk,
)

from meshctl.engine.docker import DockerEngine as Engine
from meshctl.planning.images import build_network
from meshctl.runtime.stack import ensure_base_image

TRAFFIC = ("    traffic:\n      timeout: 2s\n"
           "      retries: {attempts: 3, on: [5xx, reset, connect-failure]}\n"
           "      circuit_breaker: {consecutive_errors: 5, open_for: 10s, max_connections: 100, max_pending: 50}\n")
RETRIES = "    traffic:\n      timeout: 2s\n      retries: {attempts: 3, on: [5xx]}\n"
ABORT_20 = "    faults: [{abort: 503, percent: 20}]\n"
# project key → {service: its extra mesh.yaml lines}
PROJECTS = {
    "base": {"web": "", "api": ""},
    "traffic": {"web": "", "api": TRAFFIC},
    "retries": {"web": "", "api": RETRIES + ABORT_20, "api-bare": ABORT_20},
}
WATCHED = ("web proxy", "api proxy")


def build_tools(engine: Engine) -> str:
    """bench/datapath.py's tools image (nginx, wrk, h2load), built unless it already is."""
    ensure_base_image(engine)
    ref = "bench-datapath-tools:" + hashlib.sha256((TOOLS_DOCKERFILE + NGINX_CONF + WRK_LUA).encode()).hexdigest()[:12]
    if engine.image_id(ref) is None:
        with tempfile.TemporaryDirectory(prefix="bench-traffic-") as tmp:
            folder = Path(tmp)
            (folder / "Dockerfile").write_text(TOOLS_DOCKERFILE)
            (folder / "nginx.conf").write_text(NGINX_CONF)
            (folder / "report.lua").write_text(WRK_LUA)
            print(f"· building {ref}", file=sys.stderr)
            engine.build(folder, ref, labels={"meshctl.bench": "traffic"}, network_mode=build_network())
    return ref


def write_project(folder: Path, name: str, image: str, services: dict[str, str]) -> None:
    folder.mkdir(parents=True)
    text = f"name: {name}\nmesh: {{mtls: strict}}\nservices:\n"
    for service, extra in services.items():
        text += (f"  {service}:\n    image: {image}\n    port: {APP_PORT}\n    health: /\n"
                 f"    ports: {{https: 0, http: 0, metrics: 0}}\n{extra}")
    (folder / "mesh.yaml").write_text(text)


def watched(engine: Engine, project: str) -> dict[str, str]:
    return {f"{service} proxy": sidecar_ids(engine, project, service)["proxy"] for service in ("web", "api")}


def hop_cost(engine: Engine, loadgen: dict[str, str], projects: dict[str, str], rounds: int, seconds: float) -> dict:
    """Paired rounds of wrk on the base and the traffic project: CPU µs/request per proxy, and rps."""
    url = f"http://api:{APP_PORT}/"
    ids = {key: watched(engine, projects[key]) for key in ("base", "traffic")}
    samples: dict[str, list[dict]] = {"base": [], "traffic": []}
    for round_ in range(rounds):
        order = ("base", "traffic") if round_ % 2 == 0 else ("traffic", "base")
        for key in order:
            print(f"· round {round_ + 1}/{rounds}: {key}", file=sys.stderr)
            wrk(engine, loadgen[key], url, 1, ids[key])                 # warm: connections, caches
            samples[key].append(wrk(engine, loadgen[key], url, seconds, ids[key]))
    out: dict = {"rounds": rounds, "seconds": seconds}
    for role in WATCHED:
        base = [s["cpu_us_per_request"][role] for s in samples["base"]]
        with_traffic = [s["cpu_us_per_request"][role] for s in samples["traffic"]]
        out[role] = {"base_us": statistics.median(base), "traffic_us": statistics.median(with_traffic),
                     "paired_delta_us": statistics.median(t - b for t, b in zip(with_traffic, base, strict=True)),
                     "deltas_us": [round(t - b, 2) for t, b in zip(with_traffic, base, strict=True)]}
    out["rps"] = {key: statistics.median(s["rps"] for s in samples[key]) for key in samples}
    out["errors"] = {key: sum(s["errors"] for s in samples[key]) for key in samples}
    return out


def calls(engine: Engine, loadgen: str, url: str, count: int) -> dict:
    """`count` calls with h2load (4 connections); its status-code counts."""
    code, out = engine.exec(loadgen, ["h2load", "--h1", "-n", str(count), "-c", "4", "-t", "1", url])
    found = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if code != 0 or found is None:
        raise SystemExit(f"h2load {url} failed ({code}):\n{out}")
    ok, _, client_errors, server_errors = map(int, found.groups())
    return {"calls": count, "ok": ok, "4xx": client_errors, "5xx": server_errors,
            "failed_otherwise": count - ok - client_errors - server_errors, "success_pct": 100.0 * ok / count}


def retries_counted(port: int, destination: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    wanted = f'destination="{destination}"'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("meshctl_retries_total{") and wanted in line)


def retries_at_work(engine: Engine, loadgen: str, project: str, count: int) -> dict:
    metrics = _published(engine, project, "web", 15090)
    before = retries_counted(metrics, "api")
    result = {"with retries (api)": calls(engine, loadgen, f"http://api:{APP_PORT}/", count),
              "without (api-bare)": calls(engine, loadgen, f"http://api-bare:{APP_PORT}/", count)}
    time.sleep(1.0)          # the last access events reach the metrics sidecar (it reads in batches)
    result["retries_counted"] = retries_counted(metrics, "api") - before
    return result


def report(hop: dict, retries: dict) -> None:
    print(f"\nThe mesh hop web → api, CPU µs per request (median of {hop['rounds']} paired rounds of "
          f"{hop['seconds']:g} s at saturation)")
    print(f"{'proxy':<10} {'without':>8} {'traffic:':>9} {'paired Δ':>9}   rounds' Δ")
    for role in WATCHED:
        row = hop[role]
        print(f"{role:<10} {row['base_us']:8.1f} {row['traffic_us']:9.1f} {row['paired_delta_us']:+9.2f}   "
              + " ".join(f"{d:+.1f}" for d in row["deltas_us"]))
    print(f"requests/s (median): without {hop['rps']['base']:.0f}, with traffic: {hop['rps']['traffic']:.0f}; "
          f"wrk errors: {hop['errors']}")
    print("\nRetries at work: api aborts 20% of calls at its own proxy")
    for name in ("with retries (api)", "without (api-bare)"):
        row = retries[name]
        print(f"{name:<20} {row['ok']:>6}/{row['calls']} ok ({row['success_pct']:.2f}%), 5xx {row['5xx']}, "
              f"other failures {row['failed_otherwise']}")
    print(f"retries counted by web's metrics sidecar (destination=api): {retries['retries_counted']:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="paired rounds of the hop's cost (median shown)")
    parser.add_argument("--seconds", type=float, default=3, help="length of each wrk run")
    parser.add_argument("--calls", type=int, default=10_000, help="calls to each callee in the retries part")
    parser.add_argument("--prefix", default="bench-traffic", help="project names start with this")
    parser.add_argument("--smoke", action="store_true", help="prove the bench runs: 2 rounds of 1 s, 500 calls")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--keep-images", action="store_true", help="keep the tools image for the next run")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds, args.calls = 2, 1, 500
    os.environ.setdefault("MESHCTL_BUILD_NETWORK", "host")
    engine = Engine()
    projects = {key: f"{args.prefix}-{os.getpid()}-{key}" for key in PROJECTS}
    image = ""
    tmp = Path(tempfile.mkdtemp(prefix="bench-traffic-"))
    try:
        image = build_tools(engine)
        for key, project in projects.items():
            write_project(tmp / project, project, image, PROJECTS[key])
            print(f"· meshctl up -d {project}", file=sys.stderr)
            sh(MESHCTL + ["up", "-d", str(tmp / project)])
        loadgen = {key: join_pod(engine, project, "bench-loadgen", image, entrypoint=("sleep", "infinity"),
                                 service="web") for key, project in projects.items()}
        for key in projects:
            for callee in (s for s in PROJECTS[key] if s != "web"):
                wait_answer(engine, loadgen[key], f"http://{callee}:{APP_PORT}/")
        hop = hop_cost(engine, loadgen, projects, args.rounds, args.seconds)
        retries = retries_at_work(engine, loadgen["retries"], projects["retries"], args.calls)
    finally:
        cleanup(projects=projects.values(), force=True)
        for project in projects.values():
            for c in engine.containers({"meshctl.project": project}):
                engine.remove(c.id)
        if image and not args.keep_images:
            cleanup(images=[image])
        subprocess.run(["rm", "-rf", str(tmp)])
        engine.close()
    report(hop, retries)
    emit_json({"hop": hop, "retries": retries}, args.json)


if __name__ == "__main__":
    main()
