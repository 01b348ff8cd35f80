"""`pip install .` carries sidecars/, templates/ and runtimes/; commands that need no engine work."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from meshctl.cli.app import app
from meshctl.config import load_project

ROOT = Path(__file__).resolve().parents[2]


def test_a_wheel_carries_sidecars_templates_and_runtimes_and_finds_them(tmp_path):
    # With the build backend at hand (the test extras carry it), pip need not fetch it into an
    # isolated environment first: 3 s instead of 10 here.
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", *isolation, "-q", "-w",
                    str(tmp_path)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("meshctl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "meshctl/mesh.schema.json" in names, "the schema init's editor line points at"
    for folder in ("sidecars", "templates", "runtimes"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                assert f"meshctl/_data/{path.relative_to(ROOT).as_posix()}" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    installed = {**os.environ, "PYTHONPATH": str(target)}
    found = subprocess.run([sys.executable, "-c", "from meshctl.sidecars import data_dir; print(data_dir('sidecars'))"],
                           capture_output=True, text=True, check=True, cwd=tmp_path, env=installed).stdout.strip()
    assert Path(found) == target / "meshctl" / "_data" / "sidecars"
    # The installed entry point (meshctl.cli:main), as a shell sees it: an expected failure is a
    # red message and exit 2, never a traceback.
    (tmp_path / "mesh.yaml").write_text("name: x\n")
    shell = subprocess.run([str(target / "bin" / "meshctl"), "init", str(tmp_path)], capture_output=True,
                           text=True, cwd=tmp_path, env=installed)
    assert shell.returncode == 2 and "mesh.yaml already exists" in shell.stderr
    assert "Traceback" not in shell.stderr and shell.stdout == ""


def test_init_writes_a_mesh_yaml_that_parses(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\nEXPOSE 3000\n")
    runner = CliRunner()
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 0, result.output
    project = load_project(tmp_path)
    [service] = project.services
    assert service.port == 3000 and service.build == tmp_path.resolve()
    again = runner.invoke(app, ["init", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_certs_ca_prints_the_path_and_keeps_the_key_private(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHCTL_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["certs", "ca"])
    assert result.exit_code == 0
    assert Path(result.output.strip()) == tmp_path / "ca" / "ca.pem"
    assert (tmp_path / "ca" / "ca-key.pem").stat().st_mode & 0o777 == 0o600


def test_output_to_a_closed_pipe_is_dropped_instead_of_raising():
    import os

    from meshctl.cli.ui import PipeSafe, Ui
    from meshctl.events import Phase
    read_end, write_end = os.pipe()
    os.close(read_end)                     # tee is gone
    stream = os.fdopen(write_end, "w", buffering=1)
    ui = Ui()
    ui.err.file = PipeSafe(stream)
    ui(Phase("stopping the apps, then the sidecars"))     # EPIPE: must not raise
    ui(Phase("removed"))
    assert ui.err.file.broken
    stream.close()
