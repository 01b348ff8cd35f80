#!/usr/bin/env python3
"""What tracing costs each proxy of the mesh hop web → api per request, in instructions (callgrind:
a figure the machine's noise cannot move), and in µs at the rate the same HAProxy runs natively.

    .venv/bin/python bench/tracing_instructions.py [--requests 10000] [--native-requests 200000]
                                                   [--json FILE] [--keep-images]

Tracing has no switch: every HTTP listener runs templates/haproxy-tracing.cfg's rules and its access
line carries the span field (SPAN_LOG_FIELD in meshctl/sidecars/haproxy.py). So "off" is the config
meshctl renders with both taken out (the bench stops if either is not found), "on" the config as
rendered, for each side of the hop:

  caller  web's proxy: the defaults, the mesh_out listener and the backend to_api (as
          bench/traffic_instructions.py), the server pointed at a local answer; called once
          without a traceparent (the proxy starts the trace: two uuids) and once with one (the app
          forwarded it: the proxy continues the trace).
  callee  api's proxy: the defaults, the mesh_in listener and backend app; its caller's proxy
          always sends a traceparent. Plain HTTP on the listener, and without the caller gate and
          the fault rules (h2load presents no client certificate): the same in both variants.

The access log goes to a UDP port nobody reads (formatted and sent as in a pod). To put the
instructions in µs, the "off" config also runs natively (no valgrind) for --native-requests
requests: its user CPU per request over its instructions per request is this machine's rate for
HAProxy's own code (the kernel's share, the sockets, is system time and not counted by callgrind).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from _callgrind import APP, HEAD, LISTEN, TAIL, callgrind_image, cpu_us_per_request, per_request
from _common import emit_json

from meshctl.config import parse_project
from meshctl.sidecars import render_proxy
from meshctl.sidecars.data import template_parts
from meshctl.sidecars.haproxy import SPAN_LOG_FIELD, TRACING

MESH = ("name: bench\nmesh: {mtls: strict}\nservices:\n  web: {image: x, port: 8080}\n"
        "  api:\n    image: x\n    port: 8080\n    allow: [web]\n")
# What web's app forwards: a trace started upstream (55 characters, as W3C writes it).
TRACEPARENT = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _section(rendered: str, first: str, end: str) -> str:
    return rendered[rendered.index(first):rendered.index(end, rendered.index(first))]


def caller_config() -> str:
    rendered = render_proxy("bench", parse_project(MESH).service("web"))
    outbound = _section(rendered, "frontend mesh_out\n", "resolvers docker\n")
    outbound = re.sub(r"server (\S+) \S+:\d+ ssl .*? init-addr none", rf"server \1 {APP}", outbound)
    return HEAD + _section(rendered, "defaults\n", "frontend proxy\n") + outbound + TAIL


def callee_config() -> str:
    rendered = render_proxy("bench", parse_project(MESH).service("api"))
    inbound = _section(rendered, "frontend mesh_in\n", "frontend mesh_out\n")
    inbound = re.sub(r"bind :\d+ ssl .*", f"bind {LISTEN}", inbound)
    inbound = "".join(line for line in inbound.splitlines(keepends=True)
                      if not re.search(r"ssl_c_s_dn\((OU|CN)\) -m str|meshctl_fault|meshctl_probe|x-meshctl-probe", line))
    app = _section(rendered, "\nbackend app\n", "frontend mesh_in\n").replace("127.0.0.1:8080", APP)
    return HEAD + _section(rendered, "defaults\n", "frontend proxy\n") + inbound + app + TAIL


def without_tracing(config: str) -> str:
    """The config with the tracing rules and the access line's span field taken out."""
    rules = template_parts(TRACING)["http"].template
    if rules not in config or SPAN_LOG_FIELD not in config:
        raise SystemExit("the rendered config has no tracing rules or span field to take out: update this bench")
    return config.replace(rules, "").replace(f" {SPAN_LOG_FIELD}", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="the extra requests measured under callgrind")
    parser.add_argument("--native-requests", type=int, default=200_000, help="requests of the native run (the rate)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--keep-images", action="store_true", help="keep the valgrind image for the next run")
    args = parser.parse_args()
    cases = {  # name: (config, headers h2load sends)
        "caller, starts the trace": (caller_config(), ()),
        "caller, app forwarded traceparent": (caller_config(), (TRACEPARENT,)),
        "callee (traceparent from the caller's proxy)": (callee_config(), (TRACEPARENT,)),
    }
    result: dict = {"requests": args.requests, "cases": {}}
    with callgrind_image("tracing", keep=args.keep_images) as image:
        for name, (config, headers) in cases.items():
            row = {}
            for variant, text in (("off", without_tracing(config)), ("on", config)):
                print(f"· callgrind: {name}, tracing {variant}", file=sys.stderr)
                row[variant] = per_request(image, text, args.requests, headers)
            row["added"] = row["on"] - row["off"]
            result["cases"][name] = row
        print("· native run (the rate)", file=sys.stderr)
        base_config, base_headers = cases["caller, app forwarded traceparent"]
        native = cpu_us_per_request(image, without_tracing(base_config), args.native_requests, base_headers)
    rate = result["cases"]["caller, app forwarded traceparent"]["off"] / native["user_us"]   # instructions per µs
    result["native"] = {**native, "instructions_per_us": rate}
    print(f"\nInstructions per request of one proxy, tracing off → on (callgrind, {args.requests} requests, "
          "4 connections)")
    print(f"{'':46} {'off':>9} {'on':>9} {'added':>8} {'':>7} {'≈ µs':>6}")
    for name, row in result["cases"].items():
        row["added_us"] = row["added"] / rate
        print(f"{name:46} {row['off']:9.0f} {row['on']:9.0f} {row['added']:+8.0f} "
              f"{100 * row['added'] / row['off']:+6.1f}% {row['added_us']:+6.2f}")
    print(f"µs at {rate:.0f} instructions/µs: the caller's config with tracing off, natively, "
          f"{native['user_us']:.1f} µs user + {native['system_us']:.1f} µs system CPU per request "
          f"({args.native_requests} requests)")
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
