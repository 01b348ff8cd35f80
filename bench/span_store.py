#!/usr/bin/env python3
"""The metrics sidecar's span store after 100,000 requests: its memory (tracemalloc, in-process, the
agent's own code) and what the agent's Python costs per request, with and without the span work.

    .venv/bin/python bench/span_store.py [--requests 100000] [--batch 50] [--json FILE]

The agent's code from sidecars/metrics (as the image runs it) is fed access lines in meshctl's
format (ACCESS_LOG_FORMAT) in batches of --batch lines, as it reads them from the proxy's ring:
per request one mesh_in line (a server span, with the caller) and one mesh_out line (a client
span): the pod of a service in the middle of a chain, two spans a request, every request its own
trace (the store's worst case: one index entry per trace). Measured:

  store     a SpanStore alone (MESHCTL_SPAN_LIMIT's default, 10,000 spans), fed through
            spans.record_access_lines: tracemalloc's current and peak after all requests, and per
            span kept;
  agent     AccessStats.record_lines (the counts, stat/top's recent seconds) plus the span recorder,
            as agent._handle_batch runs them: memory after, and process CPU µs per request (a run
            without tracemalloc), beside the same lines without the span field (tracing off: the
            agent makes no span).

The real sidecar's RSS comes from bench/observe.py (a pod under load, read from its cgroup).
Prints a table and JSON; never asserts."""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
import uuid
from pathlib import Path

from _common import emit_json

from meshctl.sidecars import data_dir
from tests.support import metrics_agent

SPAN = "{trace}/{span}/{parent}/{start}/{end} "


def access_lines(requests: int, *, traced: bool) -> list[list[str]]:
    """Per request: the mesh_in line (web called api) and the mesh_out line (api called kv over HTTP)."""
    now = int(time.time() * 1e6)
    pairs = []
    for i in range(requests):
        trace, server, client, parent = uuid.uuid4().hex, uuid.uuid4().hex[16:], uuid.uuid4().hex[16:], uuid.uuid4().hex[16:]
        start = now + i * 1000
        inbound = SPAN.format(trace=trace, span=server, parent=parent, start=start, end=start + 900) if traced else ""
        outbound = SPAN.format(trace=trace, span=client, parent=server, start=start + 100, end=start + 800) if traced else ""
        pairs.append([
            f'127.0.0.1:{40000 + i % 20000} [07/Dec/2026:14:00:00.{i % 1000:03d}] mesh_in~ app/app 0/0/0/1/1 200 136 ---- '
            f'{inbound}"GET /visits/{i % 50} HTTP/1.1" web',
            f'127.0.0.1:{40000 + i % 20000} [07/Dec/2026:14:00:00.{i % 1000:03d}] mesh_out to_kv/kv 0/0/0/1/1 200 64 ---- '
            f'{outbound}"GET /get?key=visits HTTP/1.1" 0 -'])
    return pairs


def batches(pairs: list[list[str]], size: int) -> list[list[str]]:
    lines = [line for pair in pairs for line in pair]
    return [lines[i:i + size] for i in range(0, len(lines), size)]


def store_memory(agent, feed: list[list[str]]) -> dict:
    gc.collect()
    tracemalloc.start()
    store = agent.spans.SpanStore()
    for batch in feed:
        agent.spans.record_access_lines(store, batch, "api", "spiffe://meshctl.local/ns/bench/sa/")
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stats = store.stats()
    return {"current_bytes": current, "peak_bytes": peak, **stats, "bytes_per_span": current / max(1, stats["spans"])}


def agent_run(agent, feed: list[list[str]], *, spans: bool, trace_memory: bool) -> dict:
    """The agent's per-batch work (counts, recent seconds, spans) over every batch."""
    gc.collect()
    if trace_memory:
        tracemalloc.start()
    stats = agent.AccessStats()
    store = agent.spans.SpanStore()
    started = time.process_time()
    for batch in feed:
        stats.record_lines(batch)
        if spans:
            agent.spans.record_access_lines(store, batch, "api", "spiffe://meshctl.local/ns/bench/sa/")
    cpu = time.process_time() - started
    result = {"cpu_s": cpu, "spans": store.stats()["spans"], "events": stats.events}
    if trace_memory:
        gc.collect()
        result["current_bytes"], result["peak_bytes"] = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=50, help="lines per read, as the agent gets them")
    parser.add_argument("--rounds", type=int, default=3, help="CPU runs of each variant (median)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    assert data_dir("sidecars").is_dir()
    agent = metrics_agent()
    traced = batches(access_lines(args.requests, traced=True), args.batch)
    untraced = batches(access_lines(args.requests, traced=False), args.batch)
    result: dict = {"requests": args.requests, "lines": 2 * args.requests, "batch": args.batch}
    result["store"] = store_memory(agent, traced)
    result["agent_memory"] = agent_run(agent, traced, spans=True, trace_memory=True)
    cpu: dict[str, list[float]] = {"tracing on": [], "tracing off": []}
    for _ in range(args.rounds):          # alternating, so the machine's load falls on both alike
        cpu["tracing on"].append(agent_run(agent, traced, spans=True, trace_memory=False)["cpu_s"])
        cpu["tracing off"].append(agent_run(agent, untraced, spans=True, trace_memory=False)["cpu_s"])
    result["cpu_us_per_request"] = {k: sorted(v)[len(v) // 2] / args.requests * 1e6 for k, v in cpu.items()}
    result["cpu_rounds_s"] = cpu
    store = result["store"]
    mib = 1 << 20
    print(f"\nThe span store after {args.requests:,} requests (2 spans each, every request its own trace)")
    print(f"  spans kept {store['spans']:,} of {store['received']:,} (limit {store['limit']:,}), traces {store['traces']:,}")
    print(f"  tracemalloc: {store['current_bytes'] / mib:.2f} MiB now, {store['peak_bytes'] / mib:.2f} MiB peak, "
          f"{store['bytes_per_span']:.0f} B per span kept")
    memory = result["agent_memory"]
    print(f"  the agent's state (counts, recent seconds, spans): {memory['current_bytes'] / mib:.2f} MiB now, "
          f"{memory['peak_bytes'] / mib:.2f} MiB peak")
    on, off = result["cpu_us_per_request"]["tracing on"], result["cpu_us_per_request"]["tracing off"]
    print(f"  the agent's Python per request (2 lines; median of {args.rounds}): tracing on {on:.1f} µs, "
          f"off {off:.1f} µs, spans {on - off:+.1f} µs")
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
