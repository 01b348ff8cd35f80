#!/usr/bin/env python3
"""How long meshctl takes to answer before it does any work (issue 26's start-up targets:
`--version` < 0.1 s, `-h` and a completion request < 0.3 s, no Docker SDK for what needs no engine).

    .venv/bin/python bench/startup.py [--runs 10] [--json FILE]

Runs each command as a shell runs it (the installed `meshctl` script beside this Python, importing
this checkout), --runs times, and prints a table of medians (min, max) and JSON:
  --version             answered before typer loads
  -h                    the top-level help
  completion request    what bash runs on TAB after `meshctl up --` (typer's completion protocol)
  version --short       a command that needs nothing
  validate              examples/hello/mesh.yaml checked without an engine (DOCKER_HOST points nowhere)
  ps                    a command that talks to the engine (the engine's answer included)
A command that exits non-zero (a missing command, a missing engine) is shown with its exit code.
Beside the wall-clock times, the CPU seconds the process used (user + sys): on a machine other work
shares, they move far less than the wall clock. Never asserts.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import HELLO, MESHCTL, ROOT, emit_json, print_spread, spread

TARGETS = {"--version": 0.1, "-h": 0.3, "completion request": 0.3}
NOWHERE = {"DOCKER_HOST": "tcp://127.0.0.1:1"}
COMMANDS: dict[str, tuple[list[str], dict[str, str]]] = {
    "--version": (["--version"], {}),
    "-h": (["-h"], {}),
    "completion request": ([], {"_MESHCTL_COMPLETE": "complete_bash", "COMP_WORDS": "meshctl up --",
                                "COMP_CWORD": "2"}),
    "version --short": (["version", "--short"], {}),
    "validate": (["validate", str(HELLO)], NOWHERE),
    "ps": (["ps"], {}),
}


def meshctl_command() -> list[str]:
    """The console script pip installed beside this Python (what a shell runs), else `python -m meshctl`."""
    script = Path(sys.executable).with_name("meshctl")
    return [sys.executable, str(script)] if script.is_file() else MESHCTL


def time_once(args: list[str], extra_env: dict[str, str]) -> tuple[float, float, int]:
    """Wall-clock seconds, CPU seconds (user + sys) and the exit code of one run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra_env}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([*meshctl_command(), *args], capture_output=True, env=env, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="Also write the JSON here.")
    options = parser.parse_args()
    rows: dict[str, dict] = {}
    for label, (args, extra_env) in COMMANDS.items():
        time_once(args, extra_env)       # warm the page cache and the .pyc files
        runs = [time_once(args, extra_env) for _ in range(options.runs)]
        codes = sorted({code for *_, code in runs})
        rows[label] = {**spread([wall for wall, _, _ in runs]), "cpu_median_s": round(statistics.median(
            cpu for _, cpu, _ in runs), 3), "exit_codes": codes}
    labelled = {(label if row["exit_codes"] == [0] else f"{label} (exit {row['exit_codes']})"): row
                for label, row in rows.items()}
    print_spread(labelled, first="command", targets={k: v for k, v in TARGETS.items() if k in labelled})
    print("CPU seconds (user + sys), medians: " + ", ".join(f"{label} {row['cpu_median_s']:.3f}"
                                                            for label, row in rows.items()))
    emit_json({"bench": "startup", "python": sys.version.split()[0], "runs": options.runs, "commands": rows},
              options.json)


if __name__ == "__main__":
    main()
