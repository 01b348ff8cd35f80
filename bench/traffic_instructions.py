#!/usr/bin/env python3
"""What `traffic:` costs a caller's proxy per request, in instructions (callgrind): a figure the
machine's noise cannot move, beside bench/traffic.py's paired CPU medians.

    .venv/bin/python bench/traffic_instructions.py [--requests 10000] [--json FILE] [--keep-images]

The caller's side of the mesh hop, as meshctl renders it for web calling api (templates/, through
sidecars.render_proxy): the defaults, the mesh_out listener (its log format, its routing by Host)
and the backend to_api, once without `traffic:` on api and once with timeout, retries and circuit
breaker set, none of which fires. The server line is pointed at a listener in the same HAProxy
that answers 200 itself (no TLS, no app: the same in both), and the access log goes to a UDP
port nobody reads (formatted and sent as in a pod). HAProxy 2.6 from meshctl's proxy image runs
under valgrind --tool=callgrind in a container with h2load; each variant runs twice, with a few
requests and with --requests more, and the difference of the two totals divided by the extra
requests is the instructions per request (start-up and shutdown cancel out).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import emit_json

from meshctl.config import parse_project
from meshctl.engine.docker import DockerEngine as Engine
from meshctl.planning.images import build_network
from meshctl.runtime.stack import ensure_sidecar_images
from meshctl.sidecars import render_proxy

TRAFFIC = ("    traffic:\n      timeout: 2s\n"
           "      retries: {attempts: 3, on: [5xx, reset, connect-failure]}\n"
           "      circuit_breaker: {consecutive_errors: 5, open_for: 10s, max_connections: 100, max_pending: 50}\n")
APP = "127.0.0.1:18080"
HEAD = """global
    nbthread 1
    log 127.0.0.1:5514 format raw local0 info
"""
TAIL = f"""
frontend app
    bind {APP}
    http-request return status 200 content-type text/plain string "hello"
"""
DOCKERFILE = """FROM {proxy}
USER root
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends valgrind nghttp2-client \\
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT []
"""
# In the container: HAProxy under callgrind, h2load's calls, then SIGTERM (callgrind writes its totals).
RUN = """set -e
valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out haproxy -db -f /bench/haproxy.cfg 2>/tmp/vg.log &
pid=$!
call() { h2load --h1 -t 1 "$@" -H ':authority: api:8080' http://127.0.0.1:15001/; }   # Host: api
for i in $(seq 300); do call -n 1 -c 1 2>&1 | grep -q ' 1 succeeded' && break; sleep 0.2; done
call -n {n} -c 4 | grep -E 'status codes|succeeded'
kill -TERM $pid; wait $pid || true
grep -E '^(summary|totals):' /tmp/cg.out
"""


def caller_config(with_traffic: bool) -> str:
    """web's rendered proxy config, cut to the caller's side of the hop around a local answer."""
    text = ("name: bench\nmesh: {mtls: strict}\nservices:\n  web: {image: x, port: 8080}\n"
            "  api:\n    image: x\n    port: 8080\n" + (TRAFFIC if with_traffic else ""))
    rendered = render_proxy("bench", parse_project(text).service("web"))
    defaults = rendered[rendered.index("defaults\n"):rendered.index("frontend proxy\n")]
    outbound = rendered[rendered.index("frontend mesh_out\n"):rendered.index("resolvers docker\n")]
    outbound = re.sub(r"server (\S+) \S+:\d+ ssl .*? init-addr none", rf"server \1 {APP}", outbound)
    return HEAD + defaults + outbound + TAIL


def instructions(engine: Engine, image: str, config: str, requests: int) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-traffic-cg-") as tmp:
        Path(tmp, "haproxy.cfg").write_text(config)
        Path(tmp).chmod(0o755)
        run = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{tmp}:/bench:ro",
                              "--label", "meshctl.bench=traffic", image, "sh", "-c", RUN.replace("{n}", str(requests))],
                             capture_output=True, text=True, timeout=3600)
    found = re.search(r"^(?:summary|totals): (\d+)", run.stdout, re.M)
    if run.returncode != 0 or found is None or f"{requests} succeeded" not in run.stdout:
        raise SystemExit(f"callgrind run failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="the extra requests measured")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--keep-images", action="store_true", help="keep the valgrind image for the next run")
    args = parser.parse_args()
    engine = Engine()
    proxy = ensure_sidecar_images(engine, ("proxy",), lambda event: None)["proxy"]
    image = "bench-traffic-callgrind:" + proxy.rsplit(":", 1)[1]
    try:
        if engine.image_id(image) is None:
            with tempfile.TemporaryDirectory(prefix="bench-traffic-cg-") as tmp:
                Path(tmp, "Dockerfile").write_text(DOCKERFILE.format(proxy=proxy))
                print(f"· building {image}", file=sys.stderr)
                engine.build(Path(tmp), image, labels={"meshctl.bench": "traffic"}, network_mode=build_network())
        result: dict = {"requests": args.requests}
        for name, with_traffic in (("without", False), ("traffic:", True)):
            config = caller_config(with_traffic)
            print(f"· callgrind: {name}", file=sys.stderr)
            few, many = (instructions(engine, image, config, n) for n in (100, 100 + args.requests))
            result[name] = (many - few) / args.requests
    finally:
        if not args.keep_images:
            subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True)
        engine.close()
    result["delta"] = result["traffic:"] - result["without"]
    print(f"\nThe caller's proxy, instructions per request (callgrind, {args.requests} requests, 4 connections)")
    print(f"without traffic: {result['without']:10.0f}\nwith traffic:    {result['traffic:']:10.0f}\n"
          f"added:           {result['delta']:+10.0f}  ({100 * result['delta'] / result['without']:+.1f}%)")
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
