#!/usr/bin/env python3
"""What `traffic:` costs a caller's proxy per request, in instructions (callgrind): a figure the
machine's noise cannot move, beside bench/traffic.py's paired CPU medians.

    .venv/bin/python bench/traffic_instructions.py [--requests 10000] [--json FILE] [--keep-images]

The caller's side of the mesh hop, as meshctl renders it for web calling api (templates/, through
sidecars.render_proxy): the defaults, the mesh_out listener (its log format, its routing by Host)
and the backend to_api, once without `traffic:` on api and once with timeout, retries and circuit
breaker set, none of which fires. The server line is pointed at a listener in the same HAProxy
that answers 200 itself (no TLS, no app: the same in both). How the instructions are counted
(HAProxy 2.6 from meshctl's proxy image under callgrind, h2load): bench/_callgrind.py.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from _callgrind import APP, HEAD, TAIL, callgrind_image, per_request
from _common import emit_json

from meshctl.config import parse_project
from meshctl.sidecars import render_proxy

TRAFFIC = ("    traffic:\n      timeout: 2s\n"
           "      retries: {attempts: 3, on: [5xx, reset, connect-failure]}\n"
           "      circuit_breaker: {consecutive_errors: 5, open_for: 10s, max_connections: 100, max_pending: 50}\n")


def caller_config(with_traffic: bool) -> str:
    """web's rendered proxy config, cut to the caller's side of the hop around a local answer."""
    text = ("name: bench\nmesh: {mtls: strict}\nservices:\n  web: {image: x, port: 8080}\n"
            "  api:\n    image: x\n    port: 8080\n" + (TRAFFIC if with_traffic else ""))
    rendered = render_proxy("bench", parse_project(text).service("web"))
    defaults = rendered[rendered.index("defaults\n"):rendered.index("frontend proxy\n")]
    outbound = rendered[rendered.index("frontend mesh_out\n"):rendered.index("resolvers docker\n")]
    outbound = re.sub(r"server (\S+) \S+:\d+ ssl .*? init-addr none", rf"server \1 {APP}", outbound)
    return HEAD + defaults + outbound + TAIL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="the extra requests measured")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--keep-images", action="store_true", help="keep the valgrind image for the next run")
    args = parser.parse_args()
    result: dict = {"requests": args.requests}
    with callgrind_image("traffic", keep=args.keep_images) as image:
        for name, with_traffic in (("without", False), ("traffic:", True)):
            print(f"· callgrind: {name}", file=sys.stderr)
            result[name] = per_request(image, caller_config(with_traffic), args.requests)
    result["delta"] = result["traffic:"] - result["without"]
    print(f"\nThe caller's proxy, instructions per request (callgrind, {args.requests} requests, 4 connections)")
    print(f"without traffic: {result['without']:10.0f}\nwith traffic:    {result['traffic:']:10.0f}\n"
          f"added:           {result['delta']:+10.0f}  ({100 * result['delta'] / result['without']:+.1f}%)")
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
