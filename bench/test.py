#!/usr/bin/env python3
"""Wall time of `meshctl test` on examples/hello, images already built.

    .venv/bin/python bench/test.py [--runs 5] [--json FILE]

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
import tempfile
import time
from pathlib import Path

from _common import HELLO, MESHCTL, cleanup, emit_json, print_spread, sh, spread

TARGET_WALL_S = 5.0


def run_once(project: str, report: Path) -> dict[str, float]:
    started = time.monotonic()
    result = sh(MESHCTL + ["test", str(HELLO), "--project", project, "--junit", str(report), "--json"])
    wall = time.monotonic() - started
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
            cleanup(projects=[project], images=[f"meshctl-{project}-hello:dev"])

    labels = {"wall": "meshctl test examples/hello (wall)", "ready": "  up to pod ready",
              "checks": "  checks after ready", "rest": "  images, report, teardown, interpreter"}
    rows = {key: spread([r[key] for r in runs]) for key in labels}
    print_spread({labels[key]: row for key, row in rows.items()}, targets={labels["wall"]: TARGET_WALL_S})
    print(f"{int(runs[0]['count'])} checks per run")
    emit_json({"bench": "test", "cores": os.cpu_count(), "checks_per_run": int(runs[0]["count"]), "rows": rows,
               "target_wall_s": TARGET_WALL_S}, args.json)


if __name__ == "__main__":
    main()
