"""The dependency floors CI runs the unit tier on (.ci/lowest-deps) come from pyproject.toml by
.ci/floors.py: every runtime dependency pinned at its declared floor, none without one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def floors(pyproject: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / ".ci" / "floors.py"), *args, str(pyproject)],
                          capture_output=True, text=True)


def test_every_runtime_dependency_is_pinned_at_its_floor():
    pins = floors(ROOT / "pyproject.toml").stdout.split()
    assert {"typer==0.22.0", "click==8.2.0", "docker==7.2.0", "pyyaml==6.0.1"} <= set(pins)
    assert all("==" in pin for pin in pins) and len(pins) == len(set(pins)) >= 8


def test_a_dependency_without_a_floor_stops_the_run_with_its_name(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["rich>=13.0.0", "typer"]\n')
    done = floors(pyproject)
    assert done.returncode != 0 and "'typer' has no plain `>=` floor" in done.stderr
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["rich<15", "docker>=7.2"]\n'
                         '[project.optional-dependencies]\ntest = ["pytest>=8"]\n')
    assert "rich<15" in floors(pyproject).stderr                 # a cap alone is no floor
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["rich>=13.0.0,<15", "docker>=7.2"]\n'
                         '[project.optional-dependencies]\ntest = ["pytest>=8"]\n')
    assert floors(pyproject).stdout.split() == ["rich==13.0.0", "docker==7.2"]    # a floor with a cap is pinned
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["docker>=7.2"]\n'
                         '[project.optional-dependencies]\ntest = ["pytest>=8"]\n')
    assert floors(pyproject).stdout.split() == ["docker==7.2"]
    # The cached venv's key changes with the pins, the test extras and the Python.
    key = floors(pyproject, "--key").stdout
    assert "docker==7.2" in key and "pytest>=8" in key and sys.version.split()[0] in key


def test_ci_runs_the_unit_tier_on_the_floors():
    lowest = (ROOT / ".ci" / "lowest-deps").read_text()
    assert ".ci/floors.py" in lowest and "-c \"$venv/floors.txt\"" in lowest and "tests/unit" in lowest
    assert "bash .ci/lowest-deps" in (ROOT / ".ci" / "test").read_text()
