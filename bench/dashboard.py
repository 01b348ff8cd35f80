#!/usr/bin/env python3
"""`meshctl dashboard`'s page in a real browser (issue 24): first paint with 10 services, and a
tab left open that must not grow.

    .venv/bin/python bench/dashboard.py [--services 10] [--loads 5] [--minutes 10] [--rps 50] [--json FILE]

The dashboard's own server and page (runtime/dashboard) run over a synthetic board: N services in
a chain with edges, a graph pushed every 2 s as the real board does, `--rps` requests a second
into the requests view, a chart point every 10 s. No engine: what is measured is the page and the
server, not the stack behind them. Debian's chromium, headless, through Playwright.

Rows:
  first paint: navigation start → first-contentful-paint (the Paint Timing API), each load fresh
  graph drawn: navigation start → the first graph drawn (all N nodes, from the event stream; the page's mark)
Heap: the page's JS heap (DevTools protocol: HeapProfiler.collectGarbage, then Runtime.getHeapUsage)
every 30 s for `--minutes` with the requests view open; first, last, max and the growth from the
first minute's sample to the last. Target (issue 24): first paint under 1 s; the heap flat.
Prints a table and JSON; never asserts.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from pathlib import Path

from _common import emit_json, print_spread, spread

from meshctl.runtime.dashboard.board import Hub
from meshctl.runtime.dashboard.server import DashboardServer
from meshctl.runtime.dashboard.views import History, graph
from meshctl.runtime.status import ServiceStatus

CHROMIUM = "/usr/bin/chromium"


class SyntheticBoard:
    """What the server asks of a Board, made up: N services s00 → s01 → … with traffic."""

    project = "bench"

    def __init__(self, services: int, rps: float):
        self.names = [f"s{i:02d}" for i in range(services)]
        self.hub = Hub()
        self.history = History()
        self.requests: list = []
        self.rps = rps
        self.stopping = threading.Event()
        self.snapshot = self._graph()

    def _graph(self) -> dict:
        statuses = [ServiceStatus("bench", n, "running", {"https": "https://localhost:1/"},
                                  [{"name": f"bench-{n}-{r}", "role": r, "state": "running"} for r in ("pod", "proxy", "app")],
                                  {"identity": f"spiffe://meshctl.local/ns/bench/sa/{n}", "mtls": "strict", "protocol": "http"})
                    for n in self.names]
        rows = [{"service": n, "kind": "http", "source": "", "destination": "", "mtls": None, "requests": random.randint(50, 500),
                 "rps": round(random.uniform(1, 9), 3), "success_rate": 99.5, "p50_ms": 2, "p95_ms": 9, "p99_ms": 14,
                 "denied": 0, "bytes": 0} for n in self.names]
        rows += [{**row, "service": b, "source": a, "destination": b, "mtls": True}
                 for a, b, row in zip(self.names, self.names[1:], rows[1:], strict=False)]
        rows += [{**rows[0], "service": self.names[-1], "source": self.names[0], "destination": self.names[-1], "mtls": True}]
        return {"project": "bench", "at": time.time(), "error": None, "tapping": self.names, **graph(statuses, rows, {})}

    def start(self) -> SyntheticBoard:
        threading.Thread(target=self._graphs, daemon=True).start()
        threading.Thread(target=self._requests, daemon=True).start()
        return self

    def _graphs(self) -> None:
        last_chart = 0.0
        while not self.stopping.wait(2.0):
            self.snapshot = self._graph()
            self.hub.publish("graph", self.snapshot)
            if time.time() - last_chart >= 10:
                last_chart = time.time()
                self.history.add(last_chart, [{"service": n["service"], "source": "", "rps": n["rps"],
                                              "p99_ms": n["p99_ms"]} for n in self.snapshot["nodes"]])
                self.hub.publish("charts", self.history.as_json())

    def _requests(self) -> None:
        n = 0
        while not self.stopping.wait(1 / self.rps if self.rps else 1.0):
            if not self.rps:
                continue
            a = random.randrange(len(self.names) - 1)
            n += 1
            self.hub.publish("request", {"kind": "http", "direction": "inbound", "source": self.names[a],
                                         "destination": self.names[a + 1], "service": self.names[a + 1], "method": "GET",
                                         "path": f"/items/{n}", "status": 200, "latency_ms": random.randint(1, 30),
                                         "bytes": 120, "mtls": True, "denied": False, "time": time.strftime("%H:%M:%S"),
                                         "trace_id": ""})

    def recent_requests(self, wanted, service=None) -> list:
        return []

    def stop(self) -> None:
        self.stopping.set()


def first_paints(browser, url: str, services: int, loads: int) -> tuple[list[float], list[float]]:
    paints, graphs = [], []
    for _ in range(loads):
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(url)
        page.wait_for_function(f"document.querySelectorAll('#graph-svg [data-service]').length === {services}",
                               timeout=20_000)
        drawn = page.evaluate("performance.getEntriesByName('meshctl-graph')[0].startTime")
        paint = page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null")
        graphs.append(drawn / 1000)
        if paint is not None:
            paints.append(paint / 1000)
        context.close()
    return paints, graphs


def heap_watch(browser, url: str, minutes: float) -> list[dict]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url)
    page.keyboard.press("3")             # the requests view: the one that takes a row per request
    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.enable")
    samples, started = [], time.monotonic()
    while True:
        cdp.send("HeapProfiler.collectGarbage")
        usage = cdp.send("Runtime.getHeapUsage")
        nodes = page.evaluate("document.getElementsByTagName('*').length")
        samples.append({"minute": round((time.monotonic() - started) / 60, 2),
                        "heap_used_mb": round(usage["usedSize"] / 2**20, 2), "dom_nodes": nodes})
        print(f"  {samples[-1]['minute']:5.2f} min  heap {samples[-1]['heap_used_mb']:7.2f} MB  DOM nodes {nodes}", flush=True)
        if time.monotonic() - started >= minutes * 60:
            return samples
        time.sleep(min(30.0, max(0.0, minutes * 60 - (time.monotonic() - started))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rps", type=float, default=50.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    board = SyntheticBoard(args.services, args.rps).start()
    server = DashboardServer(board)         # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            paints, graphs = first_paints(browser, server.url, args.services, args.loads)
            rows = {"first paint": spread(paints, "loads"), "graph drawn": spread(graphs, "loads")}
            print(f"{args.services} services, {args.loads} fresh loads each:")
            print_spread(rows, targets={"first paint": 1.0})
            print(f"heap for {args.minutes:g} min, requests view open, {args.rps:g} requests/s:")
            samples = heap_watch(browser, server.url, args.minutes) if args.minutes > 0 else []
            browser.close()
    finally:
        server.close()
    heap = {}
    if samples:
        settled = next((s for s in samples if s["minute"] >= 1), samples[0])
        heap = {"first_mb": samples[0]["heap_used_mb"], "after_1min_mb": settled["heap_used_mb"],
                "last_mb": samples[-1]["heap_used_mb"], "max_mb": max(s["heap_used_mb"] for s in samples),
                "growth_after_1min_mb": round(samples[-1]["heap_used_mb"] - settled["heap_used_mb"], 2),
                "median_mb": round(statistics.median(s["heap_used_mb"] for s in samples), 2),
                "dom_nodes_last": samples[-1]["dom_nodes"]}
        print("heap: " + ", ".join(f"{k} {v}" for k, v in heap.items()))
    emit_json({"bench": "dashboard", "services": args.services, "rps": args.rps, "minutes": args.minutes,
               "rows": rows, "heap": heap, "samples": samples}, args.json)


if __name__ == "__main__":
    main()
