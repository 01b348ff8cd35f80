"""`bench/soak.py --chaos`: examples/shop (web → api → kv) under steady HTTPS load on web's
/visits, with a fault toggled on api every `--fault-every` seconds (an abort of 503 at 20% for half
the period, then cleared), a sidecar killed every `--kill-every` seconds (in turn: api's proxy, the
entry web's proxy, kv's proxy, api's metrics) and a hot reload every `--reload-every` seconds (in
turn: api's server.js, web's app.py). api's callers retry refused or reset connections
(`traffic: retries`), so a kill of api's proxy happens behind web's retrying proxy.

Every failed request is put in one bin, first that fits: `injected` (web's 502 saying api answered
503 while the fault was on), `entry proxy restart` (inside a killed web proxy's restart window, up
to its first answer again), and `other` (the target: 0), with `other` split by what was going on
(another sidecar's kill, a reload). The metrics give the other side: faults api's proxy counted,
retries web's proxy counted. Memory of every proxy and metrics sidecar per container life (a kill
starts a new one): its first reading a minute into the life against its last. Prints a table and
JSON; never asserts. Restarts are seen through the engine (container ids and start times), not
through the console's wording.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import docker
from _common import MESHCTL, cleanup, copy_shop, emit_json, poll, port_of, sh
from prometheus_client.parser import text_string_to_metric_families

from meshctl.certs import CertificateAuthority
from meshctl.runtime.probes import http_request, tls_context
from soak import Load

KILLS = [("api", "proxy"), ("web", "proxy"), ("kv", "proxy"), ("api", "metrics")]
RELOADS = [("api", "server.js"), ("web", "app.py")]


class ShopLoad(Load):
    """HTTPS GET /visits on web at a fixed total rate (soak.py's Load); each outcome as (time,
    status, api's status)."""

    def request(self) -> tuple:
        status, api_status = 0, 0
        try:
            answer = http_request(self.port, "/visits", tls=self.context, server_hostname="localhost", timeout=10)
            status = answer.status
            if status != 200:
                api_status = json.loads(answer.body or b"{}").get("api_status", 0)
        except (OSError, ValueError):
            pass
        return status, api_status

    def first_ok_after(self, moment: float, timeout: float = 60) -> float:
        def seen() -> float | None:
            with self.lock:
                return next((at for at, status, _ in self.outcomes if at > moment and status == 200), None)
        return poll(seen, timeout=timeout, interval=0.05, what="a 200 from web")



def find(api, project: str, service: str, role: str) -> dict | None:
    found = api.containers(filters={"label": [f"meshctl.project={project}", f"meshctl.service={service}",
                                              f"meshctl.role={role}"]})
    return found[0] if found else None


def memory_mib(api, container_id: str) -> float | None:
    try:
        mem = api.stats(container_id, stream=False).get("memory_stats", {})
    except (docker.errors.APIError, ValueError):     # gone, or going: a kill under way
        return None
    usage = mem.get("usage", 0) - (mem.get("stats", {}).get("cache", 0) or 0)
    return round(usage / 2**20, 2) if usage else None


def counter(port: int, name: str, **labels: str) -> float | None:
    # A metrics sidecar killed near the end may still be coming back: read once it answers.
    try:
        text = poll(lambda: _metrics_text(port), timeout=60, interval=0.5, what=f"/metrics on {port}")
    except Exception:       # reported as not read (None), beside the rest of the run's figures
        return None
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def _metrics_text(port: int) -> str | None:
    try:
        return http_request(port, "/metrics", timeout=5).body.decode()
    except OSError:
        return None


def started_at(api, container_id: str) -> str:
    return api.inspect_container(container_id)["State"]["StartedAt"]


def run_chaos(args) -> None:
    engine = docker.from_env().api
    work = Path(tempfile.mkdtemp(prefix="meshctl-chaos-"))
    project = f"chaos-{os.getpid()}"
    folder = work / "shop"
    copy_shop(folder)
    mesh = (folder / "mesh.yaml").read_text().replace("name: shop", f"name: {project}")
    for service in ("web", "api", "kv"):
        ports = "{https: 0, http: 0, metrics: 0}" if service != "kv" else "{metrics: 0}"
        mesh = mesh.replace(f"    build: {service}\n",
                            f"    build: {service}\n    watch: {{sync: {{\".\": /app}}}}\n    ports: {ports}\n")
    mesh = mesh.replace("    allow: [web]",
                        "    allow: [web]\n    traffic: {retries: {attempts: 3, on: [reset, connect-failure]}}")
    (folder / "mesh.yaml").write_text(mesh)
    console = Path(tempfile.gettempdir()) / f"{project}.console.log"     # kept: what meshctl up printed
    proc = subprocess.Popen([*MESHCTL, "up", str(folder)], stdout=console.open("w"), stderr=subprocess.STDOUT)
    result: dict = {}
    try:
        def entries() -> dict[str, dict]:
            out = subprocess.run([*MESHCTL, "ps", "--json", "--project", project], capture_output=True, text=True)
            listed = json.loads(out.stdout or "[]") if out.returncode == 0 else []
            ready = {e["service"]: e for e in listed if e.get("state") == "running"}
            return ready if {"web", "api", "kv"} <= set(ready) and ready["web"]["urls"].get("https") else None
        ps = poll(entries, timeout=600, interval=1.0, what="the shop running")
        web_https = port_of(ps["web"]["urls"]["https"])
        poll(lambda: http_request(web_https, "/visits", tls=tls_context(CertificateAuthority().cert_path),
                                  server_hostname="localhost", timeout=10).status == 200 or None,
             timeout=120, interval=0.5, what="web's /visits answering 200")
        web_metrics, api_metrics = (port_of(ps[s]["urls"]["metrics"]) for s in ("web", "api"))
        load = ShopLoad(web_https, CertificateAuthority().cert_path, args.rate)
        started = time.monotonic()
        end = started + args.minutes * 60
        next_fault, next_kill, next_reload = started + args.fault_every, started + args.kill_every, \
            started + args.reload_every
        fault_windows: list[tuple[float, float]] = []
        fault_on_at: float | None = None
        kills: list[dict] = []
        reloads: list[dict] = []
        samples: list[tuple[str, str, float, float]] = []      # (service/role, container id, seconds in, MiB)
        next_sample = started
        kill_turn = reload_turn = 0
        # Work that waits (a restart, a reload) runs on its own thread so the fault toggles stay on time.
        pending: list[threading.Thread] = []

        def kill(service: str, role: str) -> None:
            victim = find(engine, project, service, role)
            if victim is None:
                return
            before = started_at(engine, victim["Id"])
            killed = time.monotonic()
            engine.kill(victim["Id"])

            def running_again() -> bool | None:
                c = find(engine, project, service, role)     # restarted in place, or replaced
                return (c is not None and (c["Id"] != victim["Id"] or started_at(engine, c["Id"]) != before)) or None
            poll(running_again, timeout=120, interval=0.1, what=f"{service}'s {role} running again")
            back = time.monotonic()
            entry = {"service": service, "role": role, "at_s": round(killed - started, 1), "killed": killed,
                     "running_again_s": round(back - killed, 2), "restarted": back}
            if (service, role) == ("web", "proxy"):
                entry["restarted"] = load.first_ok_after(back)
                entry["https_back_s"] = round(entry["restarted"] - killed, 2)
            kills.append(entry)

        def reload(service: str, filename: str) -> None:
            app = find(engine, project, service, "app")
            before = started_at(engine, app["Id"]) if app else ""
            saved = time.monotonic()
            path = folder / service / filename
            comment = "//" if filename.endswith(".js") else "#"
            path.write_text(path.read_text() + f"\n{comment} chaos reload {len(reloads)}\n")
            poll(lambda: ((c := find(engine, project, service, "app")) and started_at(engine, c["Id"]) != before) or None,
                 timeout=120, interval=0.1, what=f"{service}'s app restarted")
            reloads.append({"service": service, "saved": saved, "done": time.monotonic(),
                            "s": round(time.monotonic() - saved, 2)})

        def sample(now: float) -> None:
            """Each sidecar's memory (docker stats takes a second or two a container: off the loop)."""
            for service in ("web", "api", "kv"):
                for role in ("proxy", "metrics"):
                    c = find(engine, project, service, role)
                    mib = memory_mib(engine, c["Id"]) if c else None
                    if c is not None and mib is not None:
                        samples.append((f"{service} {role}", c["Id"], now - started, mib))
        sampling = threading.Thread()

        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample and not sampling.is_alive():
                sampling = threading.Thread(target=sample, args=(now,), daemon=True)
                sampling.start()
                next_sample += 10
            if fault_on_at is None and now >= next_fault:
                # The window opens when the command starts: the proxy applies the fault before
                # the command returns (~1 s before, under load).
                fault_on_at = time.monotonic()
                sh([*MESHCTL, "fault", "api", "--abort", "503", "--percent", "20", "--project", project])
            elif fault_on_at is not None and now >= next_fault + args.fault_every / 2:
                sh([*MESHCTL, "fault", "api", "--clear", "--project", project])
                fault_windows.append((fault_on_at, time.monotonic()))
                fault_on_at = None
                next_fault += args.fault_every
            if now >= next_kill:
                pending.append(threading.Thread(target=kill, args=KILLS[kill_turn % len(KILLS)], daemon=True))
                pending[-1].start()
                kill_turn += 1
                next_kill += args.kill_every
            if now >= next_reload:
                pending.append(threading.Thread(target=reload, args=RELOADS[reload_turn % len(RELOADS)], daemon=True))
                pending[-1].start()
                reload_turn += 1
                next_reload += args.reload_every
            time.sleep(0.05)
        if fault_on_at is not None:
            sh([*MESHCTL, "fault", "api", "--clear", "--project", project])
            fault_windows.append((fault_on_at, time.monotonic()))
        for t in pending:
            t.join(120)
        time.sleep(2)
        load.finish()
        injected_counted = counter(api_metrics, "meshctl_faults_injected_total")
        retries_counted = counter(web_metrics, "meshctl_retries_total")

        def inside(at: float, windows, slack: float = 1.0) -> bool:
            return any(a <= at <= b + slack for a, b in windows)
        entry_windows = [(k["killed"], k["restarted"]) for k in kills if (k["service"], k["role"]) == ("web", "proxy")]
        other_kill_windows = [(k["killed"], k["restarted"]) for k in kills if (k["service"], k["role"]) != ("web", "proxy")]
        reload_windows = [(r["saved"], r["done"]) for r in reloads]
        bins = {"injected": 0, "entry_proxy_restart": 0, "other": 0,
                "other_during_kill": 0, "other_during_reload": 0, "other_elsewhere": 0}
        unexplained: list[dict] = []         # the first failures binned `other`, to look into
        by_kill: dict[str, int] = {}
        for at, status, api_status in load.outcomes:
            if status == 200:
                continue
            if status == 502 and api_status == 503 and inside(at, fault_windows, slack=0.5):
                bins["injected"] += 1
            elif inside(at, entry_windows, slack=0.0):
                bins["entry_proxy_restart"] += 1
            else:
                bins["other"] += 1
                key = ("other_during_kill" if inside(at, other_kill_windows) else
                       "other_during_reload" if inside(at, reload_windows) else "other_elsewhere")
                bins[key] += 1
                if key == "other_during_kill":      # whose kill: api's proxy behind web's retries should cost nothing
                    victim = next(f"{k['service']} {k['role']}" for k in kills if (k["service"], k["role"]) != ("web", "proxy")
                                  and k["killed"] <= at <= k["restarted"] + 1.0)
                    by_kill[victim] = by_kill.get(victim, 0) + 1
                if len(unexplained) < 30:
                    unexplained.append({"at_s": round(at - started, 2), "status": status, "api_status": api_status,
                                        "while": key.removeprefix("other_")})

        lives: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for who, cid, at, mib in samples:
            lives.setdefault((who, cid), []).append((at, mib))
        memory: dict[str, list[dict]] = {}
        for (who, _), readings in lives.items():
            born = readings[0][0]
            later = [(at, mib) for at, mib in readings if at - born >= 60]
            if len(later) >= 2:
                first, last = later[0][1], later[-1][1]
                memory.setdefault(who, []).append({"minutes": round((later[-1][0] - later[0][0]) / 60, 1),
                                                   "first": first, "last": last,
                                                   "growth_pct": round((last - first) / first * 100, 1)})
        result = {
            "minutes": args.minutes, "rate_target": args.rate, "requests": len(load.outcomes),
            "failed": sum(1 for _, status, _ in load.outcomes if status != 200), **bins, "other_by_kill": by_kill,
            "fault_toggles": len(fault_windows), "faults_injected_counted": injected_counted,
            "retries_counted_by_web": retries_counted,
            "kills": [{k: v for k, v in kill.items() if k not in ("killed", "restarted")} for kill in kills],
            "reloads": [{"service": r["service"], "s": r["s"]} for r in reloads],
            "reload_s_median": round(statistics.median(r["s"] for r in reloads), 2) if reloads else None,
            "memory_per_life": memory,
            "other_failures_first": unexplained,
            "meshctl_still_running": proc.poll() is None, "console": str(console),
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

    rows = [
        ("duration", f"{args.minutes:g} min, {result['requests']} requests to web's /visits at {args.rate:g}/s"),
        ("failed", f"{result['failed']}: {result['injected']} by the injected fault, "
                   f"{result['entry_proxy_restart']} inside a killed entry proxy's restart, {result['other']} other"),
        ("other, by what was going on", f"{result['other_during_kill']} during another sidecar's kill"
                                        + (f" ({', '.join(f'{n} {who}' for who, n in sorted(result['other_by_kill'].items()))})"
                                           if result['other_by_kill'] else "") + ", "
                                        f"{result['other_during_reload']} during a reload, "
                                        f"{result['other_elsewhere']} elsewhere"),
        ("fault toggles", f"{result['fault_toggles']}; api's proxy counted {result['faults_injected_counted']} "
                          f"injected; web's proxy counted {result['retries_counted_by_web']} retries"),
        ("sidecar kills", ", ".join(f"{k['service']} {k['role']}@{k['at_s']:g}s (running in {k['running_again_s']} s"
                                    + (f", HTTPS back in {k['https_back_s']} s" if "https_back_s" in k else "") + ")"
                                    for k in result["kills"])),
        ("hot reloads", f"{len(result['reloads'])} (save → app restarted, median {result['reload_s_median']} s)"),
        *((f"{who} memory, each life", ", ".join(f"{m['first']} → {m['last']} MiB ({m['growth_pct']:+.1f}%, "
                                                   f"{m['minutes']:g} min)" for m in lives_of))
          for who, lives_of in sorted(result["memory_per_life"].items())),
        ("meshctl still running", f"{result['meshctl_still_running']} (its console: {result['console']})"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'chaos soak'.ljust(width)} | result |\n|{'-' * (width + 2)}|---|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    emit_json(result, args.json)
