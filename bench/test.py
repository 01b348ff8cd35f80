#!/usr/bin/env python3
"""Wall time of `meshctl test` on examples/hello, images already built.

    .venv/bin/python bench/test [--runs 5] [--json FILE]

One untimed run first builds what is missing. Then, per run, the wall time of the whole command
(`meshctl test examples/hello --junit FILE --json`: up, readiness, every check, the report,
teardown, Python's start) and, from its JSON report, the parts: pod ready, the checks after it,
and the rest (images checked, teardown, interpreter). Target (issue 5, 2 cores): wall < 5 s.
Prints a table and a JSON line; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello"
MESHCTL = [sys.executable, "-m", "meshctl"]
TARGET_WALL_S = 5.0


def run_once(project: str, report: Path) -> dict[str, float]:
    started = time.monotonic()
    result = subprocess.run(MESHCTL + ["test", str(HELLO), "--project", project, "--junit", str(report), "--json"],
                            capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"meshctl test exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    data = json.loads(result.stdout)
    checks = [c for s in data["services"] for c in s["checks"]]
    ready = sum(c["seconds"] for c in checks if c["name"] == "ready")
    after_ready = sum(c["seconds"] for c in checks if c["name"] != "ready")
    return {"wall": wall, "ready": ready, "checks": after_ready, "rest": wall - ready - after_ready,
            "count": len(checks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    os.environ.setdefault("MESHCTL_BUILD_NETWORK", "host")
    project = f"bench-test-{os.getpid()}"
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        try:
            run_once(project, report)   # builds the app image for this project name; not timed
            for _ in range(args.runs):
                runs.append(run_once(project, report))
        finally:
            subprocess.run(MESHCTL + ["down", "--project", project], capture_output=True)
            subprocess.run(["docker", "image", "rm", "-f", f"meshctl-{project}-hello:dev"], capture_output=True)

    labels = {"wall": "meshctl test examples/hello (wall)", "ready": "  up to pod ready",
              "checks": "  checks after ready", "rest": "  images, report, teardown, interpreter"}
    rows = {key: {"median_s": round(statistics.median(r[key] for r in runs), 3),
                  "min_s": round(min(r[key] for r in runs), 3), "max_s": round(max(r[key] for r in runs), 3),
                  "runs": len(runs)} for key in labels}
    width = max(len(label) for label in labels.values())
    print(f"{'step'.ljust(width)}  median    min      max      target")
    for key, row in rows.items():
        target = f"< {TARGET_WALL_S:g} s" if key == "wall" else ""
        print(f"{labels[key].ljust(width)}  {row['median_s']:6.3f}s  {row['min_s']:6.3f}s  {row['max_s']:6.3f}s  {target}")
    print(f"{int(runs[0]['count'])} checks per run")
    summary = {"bench": "test", "cores": os.cpu_count(), "checks_per_run": int(runs[0]["count"]), "rows": rows,
               "target_wall_s": TARGET_WALL_S}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
