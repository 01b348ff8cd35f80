#!/usr/bin/env python3
"""`meshctl stat` and `meshctl trace` on a project of 10 services, the metrics sidecar's memory
after 100,000 requests, and `meshctl tap` running during load.

    .venv/bin/python bench/observe.py [--services 10] [--runs 10] [--chain-requests 200]
                                      [--requests 100000] [--rounds 10] [--round-requests 3000]
                                      [--json FILE] [--keep]

A project of --services services s0 … s9 (tests/integration/trace_app, Debian's python3), each in
the mesh, s0 calling s1 calling … s9 and forwarding `traceparent` (so a call to s0 is one trace of
19 spans over 10 pods). After `up -d`:

  answer time  --chain-requests calls to s0 (h2load on the host, its published HTTP port), then
               `meshctl stat --json`, `meshctl trace --json` (the recent traces) and `meshctl trace
               ID` each run --runs times as a shell runs them: median wall clock and the CPU seconds
               (user + sys) of the meshctl process.
  memory       s9's metrics sidecar: the agent's RSS (/proc of its process, from the host) and the
               container's cgroup memory (rss), before and after --requests requests to s9's own
               HTTP port (h2load -c 4): its span store full, stat's recent seconds filled.
  tap          --rounds paired rounds of --round-requests requests to s9, alternating without and
               with `meshctl tap s9 --json` running (who goes first alternates too): the CPU µs per
               request of s9's proxy and metrics sidecar (cgroup cpuacct), the median of the
               differences, and how many requests the tap printed.

Prints tables and JSON; never asserts. Removes the project and its images unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import MESHCTL, ROOT, cleanup, emit_json, poll, port_of, sh

from meshctl.engine.docker import DockerEngine as Engine

APP = ROOT / "tests" / "integration" / "trace_app"


def mesh_yaml(name: str, services: int) -> str:
    text = f"name: {name}\nmesh: {{mtls: strict}}\nservices:\n"
    for i in range(services):
        nxt = f'    env: {{NEXT: "http://s{i + 1}:8080/chain"}}\n' if i + 1 < services else ""
        text += (f"  s{i}:\n    build: app\n    port: 8080\n    health: /healthz\n    stop_grace_period: 1s\n"
                 f"    ports: {{https: 0, http: 0, metrics: 0}}\n{nxt}")
    return text


def timed_meshctl(*args: str) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + sys of the process) and stdout of one meshctl command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run = subprocess.run([*MESHCTL, *args], capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise SystemExit(f"meshctl {' '.join(args)} failed:\n{run.stdout}{run.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), run.stdout


def h2load(port: int, path: str, requests: int, clients: int = 4) -> None:
    run = subprocess.run(["h2load", "--h1", "-t", "1", "-c", str(clients), "-n", str(requests),
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=3600)
    if f"{requests} succeeded" not in run.stdout:
        raise SystemExit(f"h2load: not every request succeeded:\n{run.stdout}{run.stderr}")


def pod(engine: Engine, project: str, service: str) -> dict[str, str]:
    return {c.label("role"): c.id for c in engine.containers({"meshctl.project": project, "meshctl.service": service})}


def cpu_ns(container_id: str) -> int:
    return int(Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage").read_text())


def memory(engine: Engine, container_id: str) -> dict[str, float]:
    """The agent's RSS (its process, read on the host) and the container's cgroup rss, in MiB."""
    import docker

    top = docker.from_env().api.top(container_id, ps_args="-o pid,rss,args")
    agent = [row for row in top["Processes"] if "agent.py" in row[-1]]
    stat = dict(line.split() for line in
                Path(f"/sys/fs/cgroup/memory/docker/{container_id}/memory.stat").read_text().splitlines())
    return {"agent_rss_mib": int(agent[0][1]) / 1024 if agent else float("nan"),
            "cgroup_rss_mib": int(stat["rss"]) / (1 << 20)}


def answer_times(project: str, runs: int) -> dict:
    listed = json.loads(timed_meshctl("trace", "-p", project, "--json", "--last", "20")[2])
    deepest = max(listed, key=lambda row: row["spans"])
    commands = {"stat --json": ("stat", "-p", project, "--json"),
                "trace --json (recent)": ("trace", "-p", project, "--json"),
                "trace ID": ("trace", "-p", project, deepest["trace_id"])}
    samples: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in commands}
    for _ in range(runs):                    # interleaved: the machine's load falls on each alike
        for name, args in commands.items():
            wall, cpu, _out = timed_meshctl(*args)
            samples[name]["wall"].append(wall)
            samples[name]["cpu"].append(cpu)
    return {"trace_spans": deepest["spans"],
            **{name: {"median_s": statistics.median(s["wall"]), "min_s": min(s["wall"]), "max_s": max(s["wall"]),
                      "cpu_median_s": statistics.median(s["cpu"]), "runs": runs} for name, s in samples.items()}}


def tap_rounds(project: str, ids: dict[str, str], port: int, rounds: int, requests: int, service: str) -> dict:
    per_request: dict[str, dict[str, list[float]]] = {"without": {"proxy": [], "metrics": []},
                                                      "with tap": {"proxy": [], "metrics": []}}
    printed: list[int] = []
    for i in range(rounds):
        order = ("without", "with tap") if i % 2 == 0 else ("with tap", "without")
        for variant in order:
            tap = None
            if variant == "with tap":
                tap = subprocess.Popen([*MESHCTL, "tap", service, "-p", project, "--json"], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
                assert tap.stderr is not None
                line = tap.stderr.readline()
                if "tapping" not in line:
                    raise SystemExit(f"tap did not start: {line}{tap.stderr.read()}")
            if tap is not None:            # read as it prints (a full pipe would stop the tap)
                reader = threading.Thread(target=lambda t=tap: printed.append(sum(
                    1 for line in t.stdout if '"/chain"' in line)), daemon=True)
                reader.start()
            before = {role: cpu_ns(ids[role]) for role in ("proxy", "metrics")}
            h2load(port, "/chain", requests)
            time.sleep(0.3)            # the agent reads the proxy's events every 50 ms: let it count them
            after = {role: cpu_ns(ids[role]) for role in ("proxy", "metrics")}
            for role in before:
                per_request[variant][role].append((after[role] - before[role]) / requests / 1000)
            if tap is not None:
                tap.terminate()
                tap.wait(timeout=30)
                reader.join(timeout=30)
    result: dict = {"rounds": rounds, "requests_per_round": requests, "tap_printed": printed}
    for role in ("proxy", "metrics"):
        diffs = [w - wo for w, wo in zip(per_request["with tap"][role], per_request["without"][role], strict=True)]
        result[role] = {"without_us": statistics.median(per_request["without"][role]),
                        "with_tap_us": statistics.median(per_request["with tap"][role]),
                        "paired_median_diff_us": statistics.median(diffs),
                        "diff_min_us": min(diffs), "diff_max_us": max(diffs)}
    return result


def memory_after_load(result: dict, engine: Engine, ids: dict[str, str], port: int, requests: int, service: str) -> None:
    result["memory_before"] = memory(engine, ids["metrics"])
    print(f"· {requests} requests to {service}", file=sys.stderr)
    started = time.perf_counter()
    h2load(port, "/chain", requests)
    result["load_seconds"] = time.perf_counter() - started
    time.sleep(1)                      # the agent has read the last events
    result["memory_after"] = memory(engine, ids["metrics"])
    result["store_after"] = json.loads(sh(["docker", "exec", ids["metrics"], "python3", "-c",
                                           "import json,urllib.request;print(json.dumps(json.loads(urllib.request.urlopen("
                                           "'http://127.0.0.1:15018/meshctl/spans', timeout=10).read())['stats']))"],
                                          check=False).stdout or "null")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--chain-requests", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--round-requests", type=int, default=3000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="leave the project running")
    parser.add_argument("--project", help="use this running project (made by an earlier --keep run)")
    parser.add_argument("--only", default="answer,tap,memory", help="which parts: answer, tap, memory")
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is needed on the host: apt-get install nghttp2-client")
    load = os.getloadavg()
    result: dict = {"services": args.services, "load_before": load, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    folder = Path(tempfile.mkdtemp(prefix="bench-observe-"))
    project = args.project or f"bench-observe-{os.getpid()}"
    engine = Engine()
    try:
        if not args.project:
            shutil.copytree(APP, folder / "app")
            (folder / "mesh.yaml").write_text(mesh_yaml(project, args.services))
            print(f"· up -d {project} ({args.services} services)", file=sys.stderr)
            started = time.perf_counter()
            sh([*MESHCTL, "up", "-d", str(folder)], timeout=3600)
            result["up_s"] = time.perf_counter() - started
        urls = {e["service"]: e["urls"] for e in json.loads(sh([*MESHCTL, "ps", "--json", "-p", project]).stdout)}
        first, last = "s0", f"s{args.services - 1}"
        print(f"· {args.chain_requests} calls through the chain", file=sys.stderr)
        h2load(port_of(urls[first]["http"]), "/chain", args.chain_requests, clients=2)
        poll(lambda: max(row["spans"] for row in json.loads(timed_meshctl("trace", "-p", project, "--json")[2]))
             >= 2 * args.services - 1, timeout=120, interval=0.5, what="a whole trace in the stores")
        if "answer" in args.only:
            print("· stat and trace answer times", file=sys.stderr)
            result["answer"] = answer_times(project, args.runs)
        ids = pod(engine, project, last)
        port = port_of(urls[last]["http"])
        if "tap" in args.only:
            print(f"· tap: {args.rounds} paired rounds", file=sys.stderr)
            result["tap"] = tap_rounds(project, ids, port, args.rounds, args.round_requests, last)
        if "memory" in args.only:
            memory_after_load(result, engine, ids, port, args.requests, last)
    finally:
        result["load_after"] = os.getloadavg()
        engine.close()
        if not args.keep and not args.project:
            cleanup(folders=[folder], images=[f"meshctl-{project}-s{i}:dev" for i in range(args.services)])
    report(result)
    emit_json(result, args.json)


def report(result: dict) -> None:
    print(f"\n{result['services']} services, {result['started']}, load average {result['load_before'][0]:.1f} → "
          f"{result['load_after'][0]:.1f}")
    if "answer" in result:
        print(f"answer time (median of {next(v['runs'] for v in result['answer'].values() if isinstance(v, dict))}; "
              f"the trace drawn has {result['answer']['trace_spans']} spans)")
        for name, row in result["answer"].items():
            if isinstance(row, dict):
                print(f"  meshctl {name:24} {1000 * row['median_s']:6.0f} ms ({1000 * row['min_s']:.0f}–"
                      f"{1000 * row['max_s']:.0f})   CPU {1000 * row['cpu_median_s']:5.0f} ms   target < 300 ms")
    if "tap" in result:
        tap = result["tap"]
        print(f"tap during load ({tap['rounds']} paired rounds of {tap['requests_per_round']} requests; "
              f"tap printed {tap['tap_printed']})")
        for role in ("proxy", "metrics"):
            row = tap[role]
            print(f"  {role:8} CPU per request: without {row['without_us']:.1f} µs, with tap {row['with_tap_us']:.1f} µs, "
                  f"paired median difference {row['paired_median_diff_us']:+.1f} µs "
                  f"({row['diff_min_us']:+.1f} … {row['diff_max_us']:+.1f})")
    if "memory_after" in result:
        before, after = result["memory_before"], result["memory_after"]
        print(f"metrics sidecar after {result.get('store_after') or ''}: agent RSS {before['agent_rss_mib']:.1f} → "
              f"{after['agent_rss_mib']:.1f} MiB, cgroup rss {before['cgroup_rss_mib']:.1f} → {after['cgroup_rss_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
