#!/usr/bin/env python3
"""A soak of examples/hello in the foreground: steady HTTPS load, a hot reload every 30 s, a
sidecar killed every 2 minutes (proxy and metrics in turn), for 20 minutes.

    .venv/bin/python bench/soak.py [--minutes 20] [--rate 200] [--reload-every 30] [--kill-every 120] [--json FILE]
    .venv/bin/python bench/soak.py --chaos [--minutes 20] [--rate 50] [--fault-every 30] [--kill-every 120]
                                   [--reload-every 60]     # examples/shop; see bench/soak_chaos.py

Reports: requests sent and failed (and when they failed: while a killed proxy came back, during a
reload, or elsewhere), how long HTTPS took to answer again after each proxy kill, the sidecars'
memory at the start (after a minute of load) and at the end (target: growth under 10%), and
whether the metrics sidecar's request count equals the requests sent since its last restart
(requests sent while it restarted are reported apart: they may or may not be counted). Prints a
table and JSON; never asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import docker
from _common import MESHCTL, cleanup, copy_hello, emit_json, meshctl_urls, poll, port_of
from prometheus_client.parser import text_string_to_metric_families

from meshctl.certs import CertificateAuthority
from meshctl.runtime.probes import http_request, tls_context

# The load runs this long before the first memory reading: the proxy's events ring (1 MiB) counts
# as its memory page by page as it is first written, and at 200 requests/s it is written through
# in under a minute. What grows after that grows with time.
WARM_UP_S = 60


class Log:
    """meshctl's console output, kept with the moment each line arrived."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, text: str, after: float = 0.0, timeout: float = 300) -> float:
        """When the first line holding `text` arrived, at `after` or later."""
        return poll(lambda: next((at for at, line in list(self.lines) if at >= after and text in line), None),
                    timeout=timeout, interval=0.02, what=f"{text!r} in meshctl's output",
                    detail=lambda: "\n".join(line for _, line in self.lines[-40:]))


class Load:
    """HTTPS GET /soak at a fixed total rate from several threads; each outcome with its time. The
    app answers that path 404: a path only the load uses, so the metrics sidecar's count of 404s is
    the load's alone (the readiness probes after each reload cross the proxy too, as 200s)."""

    def __init__(self, port: int, ca: Path, rate: float, threads: int = 4):
        self.port, self.context = port, tls_context(ca)
        self.interval = threads / rate
        self.outcomes: list[tuple[float, bool]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, index: int) -> None:
        next_at = time.monotonic() + index * self.interval / len(self.threads)
        while not self.stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            # A slot missed while a request hung is skipped, not sent late: a burst of catch-up
            # requests into a refused port would count one outage many times.
            next_at = max(next_at + self.interval, time.monotonic())
            outcome = self.request()
            with self.lock:
                self.outcomes.append((time.monotonic(), *outcome))

    def request(self) -> tuple:
        """One request's outcome, without its time: (ok,)."""
        try:
            return (http_request(self.port, "/soak", tls=self.context, server_hostname="localhost",
                                 timeout=5).status == 404,)
        except OSError:
            return (False,)

    def sent_between(self, start: float, end: float, *, answered: bool = False) -> int:
        with self.lock:
            return sum(1 for at, ok in self.outcomes if start <= at < end and (ok or not answered))

    def back_after(self, moment: float, window: float = 15.0) -> float:
        """Seconds from `moment` to the first success after the last failure that followed it."""
        with self.lock:
            after = [(at, ok) for at, ok in self.outcomes if moment < at <= moment + window]
        last_failure = max((at for at, ok in after if not ok), default=None)
        if last_failure is None:
            return 0.0
        return next((at for at, ok in after if ok and at > last_failure), moment + window) - moment

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def container(api, project: str, role: str) -> dict | None:
    found = api.containers(filters={"label": [f"meshctl.project={project}", f"meshctl.role={role}"]})
    return found[0] if found else None


def memory_mib(api, project: str, role: str) -> float | None:
    c = container(api, project, role)
    if c is None:
        return None
    stats = api.stats(c["Id"], stream=False)
    mem = stats.get("memory_stats", {})
    usage = mem.get("usage", 0) - (mem.get("stats", {}).get("cache", 0) or 0)
    return round(usage / 2**20, 2)


def requests_counted(port: int) -> float:
    text = http_request(port, "/metrics", timeout=5).body.decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "meshctl_requests_total" and s.labels.get("code") == "404")


def lifetimes(samples: list[tuple[str, str, float, float]], settled: float = 30.0) -> dict[str, list]:
    """Per role, each container's memory once settled (its first reading 30 s or more into its
    life) and at its last reading: growth within one life, which a restart does not hide."""
    out: dict[str, list] = {"proxy": [], "metrics": []}
    lives: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for role, cid, at, mib in samples:
        lives.setdefault((role, cid), []).append((at, mib))
    for (role, _), readings in lives.items():
        born = readings[0][0]
        later = [mib for at, mib in readings if at - born >= settled]
        if len(later) >= 2:
            out[role].append((later[0], later[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chaos", action="store_true",
                        help="examples/shop with faults toggled, sidecars killed and reloads (bench/soak_chaos.py)")
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--rate", type=float, help="requests/s (default 200; 50 with --chaos: each crosses 3 pods)")
    parser.add_argument("--reload-every", type=float, help="seconds (default 30; 60 with --chaos)")
    parser.add_argument("--kill-every", type=float, default=120)
    parser.add_argument("--fault-every", type=float, default=30, help="--chaos: seconds between fault toggles")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.chaos:
        from soak_chaos import run_chaos
        args.rate = args.rate or 50
        args.reload_every = args.reload_every or 60
        return run_chaos(args)
    args.rate = args.rate or 200
    args.reload_every = args.reload_every or 30

    api = docker.from_env().api
    work = Path(tempfile.mkdtemp(prefix="meshctl-soak-"))
    project = f"soak-{os.getpid()}"
    folder = copy_hello(work / "hello",
                        f"name: {project}\nservices:\n  hello:\n    build: .\n    port: 8080\n    health: /healthz\n"
                        '    watch: {sync: {".": /app}}\n    ports: {https: 0, http: 0, metrics: 0}\n')
    proc = subprocess.Popen([*MESHCTL, "up", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "COLUMNS": "200"})
    log = Log(proc)
    result: dict = {}
    try:
        log.wait_for("meshctl: ready")
        urls = meshctl_urls(project)
        https, metrics = port_of(urls["https"]), port_of(urls["metrics"])
        load = Load(https, CertificateAuthority().cert_path, args.rate)
        time.sleep(WARM_UP_S)           # the first memory reading once fixed-size buffers are full
        memory_start = {role: memory_mib(api, project, role) for role in ("proxy", "metrics")}
        started = time.monotonic()
        end = started + args.minutes * 60
        next_reload, next_kill = started + args.reload_every, started + args.kill_every
        kills: list[dict] = []
        reloads: list[tuple[float, float]] = []
        victim = "proxy"
        app = folder / "app.py"
        original = app.read_text()
        samples: list[tuple[str, str, float, float]] = []     # (role, container id, seconds in, MiB)
        next_sample = started
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                for role in ("proxy", "metrics"):
                    c = container(api, project, role)
                    mib = memory_mib(api, project, role)
                    if c is not None and mib is not None:
                        samples.append((role, c["Id"], now - started, mib))
                next_sample += 10
            if now >= next_kill:
                target = container(api, project, victim)
                memory_before = memory_mib(api, project, victim)
                killed_at = time.monotonic()
                api.kill(target["Id"])
                back = log.wait_for(f"the {victim} sidecar restarted in place", after=killed_at, timeout=60)
                if victim == "proxy":
                    time.sleep(3)               # let the outcomes after the restart come in
                answered = load.back_after(killed_at) if victim == "proxy" else None
                kills.append({"role": victim, "at_s": round(killed_at - started, 1), "killed": killed_at,
                              "memory_mib_before": memory_before,
                              "restarted": back, "restart_s": round(back - killed_at, 3),
                              "https_back_s": round(answered, 3) if answered is not None else None})
                victim = "metrics" if victim == "proxy" else "proxy"
                next_kill += args.kill_every
            elif now >= next_reload:
                saved = time.monotonic()
                app.write_text(original + f"\n# soak reload {len(reloads)}\n")
                done = log.wait_for("restart hello", after=saved, timeout=60)
                reloads.append((saved, done))
                next_reload += args.reload_every
            time.sleep(0.05)
        settle = time.monotonic()
        time.sleep(2)
        load.finish()
        memory_end = {role: memory_mib(api, project, role) for role in ("proxy", "metrics")}
        counted = requests_counted(metrics)

        outcomes = load.outcomes
        failed = [at for at, ok in outcomes if not ok]

        def within(at: float, windows) -> bool:
            return any(a <= at <= b + 1.0 for a, b in windows)
        proxy_windows = [(k["killed"], k["restarted"]) for k in kills if k["role"] == "proxy"]
        metrics_windows = [(k["killed"], k["restarted"]) for k in kills if k["role"] == "metrics"]
        last_metrics_restart = max((b for _, b in metrics_windows), default=None)
        measured_from = last_metrics_restart if last_metrics_restart else load.started - 1
        # Only answered requests reached the proxy (those during a proxy kill never did).
        sent_after = load.sent_between(measured_from, settle + 10, answered=True)
        in_window = load.sent_between(metrics_windows[-1][0], metrics_windows[-1][1]) if metrics_windows else 0
        proxy_back = [k["https_back_s"] for k in kills if k["role"] == "proxy" and k["https_back_s"] is not None]
        result = {
            "minutes": args.minutes, "rate_target": args.rate,
            "requests": len(outcomes), "rate_achieved": round(len(outcomes) / (settle + 2 - started + WARM_UP_S), 1),
            "failed": len(failed),
            "failed_during_proxy_restarts": sum(1 for at in failed if within(at, proxy_windows)),
            "failed_during_reloads": sum(1 for at in failed if within(at, reloads)),
            "failed_elsewhere": sum(1 for at in failed if not within(at, proxy_windows) and not within(at, reloads)),
            "reloads": len(reloads),
            "reload_s_median": round(statistics.median(b - a for a, b in reloads), 3) if reloads else None,
            "kills": [{k: v for k, v in kill.items() if k not in ("killed", "restarted")} for kill in kills],
            "proxy_https_back_s_median": round(statistics.median(proxy_back), 3) if proxy_back else None,
            "proxy_https_back_s_max": max(proxy_back) if proxy_back else None,
            "memory_mib_start": memory_start, "memory_mib_end": memory_end,
            "metrics_counted": counted, "answered_since_last_metrics_restart": sent_after,
            "memory_lifetimes": lifetimes(samples),
            "sent_while_metrics_restarted": in_window,
            "metrics_count_consistent": sent_after <= counted <= sent_after + in_window,
            "meshctl_still_running": proc.poll() is None,
        }
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        cleanup(projects=[project])
        shutil.rmtree(work, ignore_errors=True)

    def growth(role: str) -> str:
        a, b = result["memory_mib_start"].get(role), result["memory_mib_end"].get(role)
        return f"{a} → {b} MiB ({(b - a) / a * 100:+.1f}%)" if a and b else f"{a} → {b}"
    rows = [
        ("duration", f"{args.minutes:g} min at {args.rate:g} req/s target ({result['rate_achieved']} achieved)"),
        ("requests sent", str(result["requests"])),
        ("failed", f"{result['failed']} ({result['failed_during_proxy_restarts']} while a killed proxy came back, "
                   f"{result['failed_during_reloads']} during reloads, {result['failed_elsewhere']} elsewhere)"),
        ("hot reloads", f"{result['reloads']} (save → restarted, median {result['reload_s_median']} s)"),
        ("sidecar kills", ", ".join(f"{k['role']}@{k['at_s']:g}s ({k['memory_mib_before']} MiB before)"
                                    for k in result["kills"])),
        ("HTTPS back after a proxy kill", f"median {result['proxy_https_back_s_median']} s, "
                                          f"max {result['proxy_https_back_s_max']} s"),
        ("proxy memory", growth("proxy")),
        ("metrics memory", growth("metrics")),
        *((f"{role} memory, each life", ", ".join(f"{a} → {b} MiB ({(b - a) / a * 100:+.1f}%)"
                                                  for a, b in result["memory_lifetimes"][role]))
          for role in ("proxy", "metrics")),
        ("metrics count", f"{result['metrics_counted']:g} counted, {result['answered_since_last_metrics_restart']} "
                          f"answered since its last restart ({result['sent_while_metrics_restarted']} sent while it "
                          "restarted): "
                          + ("consistent, none counted twice" if result["metrics_count_consistent"] else "MISMATCH")),
        ("meshctl still running", str(result["meshctl_still_running"])),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'soak'.ljust(width)} | result |\n|{'-' * (width + 2)}|---|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
