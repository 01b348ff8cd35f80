"""The commands and their one error funnel, in-process through the fake engine: what each prints,
its exit code, and that an expected failure is a message, never a traceback."""

from __future__ import annotations

import json
import re
import runpy
import sys
from xml.etree import ElementTree

import pytest

import meshctl as package
from meshctl.cli import reads
from meshctl.errors import MeshctlError
from meshctl.planning.images import BASE_IMAGE
from tests.unit.fake_engine import engine_with_images, meshctl, use_on_the_cli


def test_version_and_python_dash_m(monkeypatch, capsys):
    assert meshctl("version", "--short").stdout == f"{package.__version__}\n"
    # `python -m meshctl` runs the same app (in-process here; the installed entry point is run
    # as a process by test_packaging_and_cli).
    monkeypatch.setattr(sys, "argv", ["meshctl", "version", "--short"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("meshctl", run_name="__main__")
    assert done.value.code in (0, None) and capsys.readouterr().out == f"{package.__version__}\n"


def test_typers_own_usage_errors_pass_through_the_funnel_untouched():
    result = meshctl("up", "--no-such-option")
    # click words it "No such option: --x" or "No such option '--x'." depending on its version.
    assert result.exit_code == 2 and re.search(r"No such option:? '?--no-such-option", result.output)
    assert "error:" not in result.output


def test_ctrl_c_in_any_command_is_exit_130_with_a_note(tmp_path, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(reads, "DockerEngine", interrupted)
    result = meshctl("ps")
    assert result.exit_code == 130
    assert result.stderr == "interrupted: everything meshctl started was removed\n"


def test_an_expected_failure_is_its_message_hint_and_exit_code(tmp_path, monkeypatch):
    def unreachable():
        raise MeshctlError("cannot reach the Docker engine", hint="start Docker", exit_code=3)
    monkeypatch.setattr(reads, "DockerEngine", unreachable)
    result = meshctl("down", "--all")
    assert result.exit_code == 3 and isinstance(result.exception, SystemExit)
    assert result.stderr == "error: cannot reach the Docker engine\n  hint: start Docker\n"


def test_an_unexpected_exception_is_not_dressed_up_as_an_expected_one(monkeypatch):
    def broken():
        raise RuntimeError("a bug")
    monkeypatch.setattr(reads, "DockerEngine", broken)
    result = meshctl("ps")
    assert isinstance(result.exception, RuntimeError) and "error:" not in result.output


def test_doctor_exits_1_when_something_is_missing(tmp_path, monkeypatch):
    from meshctl.runtime import doctor

    use_on_the_cli(tmp_path, monkeypatch)
    monkeypatch.setattr(doctor, "port_free", lambda port: True)    # not this machine's ports (others' stacks)
    ready = meshctl("doctor")
    assert ready.exit_code == 0 and "✓ docker engine: 20.10-fake (API 1.41)" in ready.stdout
    assert "✗" not in ready.stdout
    use_on_the_cli(tmp_path, monkeypatch, engine_with_images())
    common_engine = reads.DockerEngine()
    common_engine.images.discard(BASE_IMAGE)
    missing = meshctl("doctor")
    assert missing.exit_code == 1 and "✗ base image:" in missing.stdout


def test_up_and_down_dry_runs_change_nothing(tmp_path, cli_engine):
    plan = meshctl("up", "--dry-run", str(tmp_path))
    assert plan.exit_code == 0 and plan.stdout.startswith("plan for shop\n")
    assert "web: StartContainers shop-web-metrics, shop-web-proxy, shop-web-app  (new)" in plan.stdout
    assert "dry run: nothing was built, created or changed" in plan.stderr
    [as_json] = json.loads(meshctl("up", "--dry-run", "--json", str(tmp_path)).stdout)
    assert as_json["project"] == "shop" and as_json["steps"]
    assert cli_engine.is_empty() and not cli_engine.names("create")

    assert meshctl("up", "-d", str(tmp_path)).exit_code == 0
    down = meshctl("down", "--dry-run", str(tmp_path))
    assert down.exit_code == 0 and "shop-web-app" in down.stdout and len(cli_engine.containers_) == 4
    [every] = json.loads(meshctl("down", "--dry-run", "--all", "--json").stdout)
    assert every["project"] == "shop" and len(cli_engine.containers_) == 4
    assert meshctl("down", "--dry-run", "-p", "other").stdout.startswith("plan for other (no changes)")


def test_a_project_is_named_by_its_folder_or_by_the_one_that_runs(tmp_path, cli_engine, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    nameless = meshctl("logs", "--path", str(elsewhere))
    assert nameless.exit_code == 2 and "no mesh.yaml or Dockerfile, so no project name" in nameless.stderr
    cli_engine.log_lines["shop-web-app"] = ["hello from the app"]
    assert meshctl("up", "-d", str(tmp_path)).exit_code == 0
    only = meshctl("logs", "--path", str(elsewhere))        # the one project that runs
    assert only.exit_code == 0 and "web/app | hello from the app" in only.stdout
    # A folder `up -- CMD` would run is named after the folder.
    node = tmp_path / "My App"
    node.mkdir()
    (node / "package.json").write_text("{}")
    assert meshctl("down", str(node)).stderr == "✓ my-app: nothing was running\n"


def test_meshctl_test_writes_junit_and_json_and_leaves_nothing(tmp_path, cli_engine):
    junit = tmp_path / "reports" / "checks.xml"
    result = meshctl("test", "--junit", str(junit), "--json", str(tmp_path))
    assert result.exit_code == 1        # the fake serves no HTTP: the https check fails
    report = json.loads(result.stdout)  # stdout is the JSON alone; the table went to stderr
    assert report["project"] == "shop-test" and report["exit_code"] == 1
    assert "meshctl test" in result.stderr and f"· JUnit report: {junit}" in result.stderr
    suites = ElementTree.parse(junit).getroot()
    assert suites.find("testsuite").get("name") == "web"
    assert cli_engine.is_empty()


def test_meshctl_test_refuses_what_cannot_work_before_starting_anything(tmp_path, cli_engine):
    folder = meshctl("test", "--junit", str(tmp_path), str(tmp_path))
    assert folder.exit_code == 2 and f"--junit {tmp_path}: is a folder" in folder.stderr
    blocked = tmp_path / "file"
    blocked.write_text("")
    unwritable = meshctl("test", "--junit", str(blocked / "r.xml"), str(tmp_path))
    assert unwritable.exit_code == 2 and "cannot create its folder" in unwritable.stderr
    image = meshctl("test", "--image", "node:20", str(tmp_path))
    assert image.exit_code == 2 and "hint: meshctl test --image node:20 -- CMD" in image.stderr
    assert cli_engine.calls == []


def test_init_picks_the_dockerfiles_port_or_8080_and_overwrites_only_when_forced(tmp_path):
    folder = tmp_path / "Hello World"
    folder.mkdir()
    assert meshctl("init", str(folder)).exit_code == 0
    text = (folder / "mesh.yaml").read_text()
    assert "name: hello-world" in text and "8080" in text
    (folder / "Dockerfile").write_text("FROM x\nEXPOSE 3000\n")
    assert meshctl("init", str(folder)).exit_code == 2
    assert meshctl("init", "--force", str(folder)).exit_code == 0
    assert "3000" in (folder / "mesh.yaml").read_text()


def test_a_meshctl_home_that_cannot_be_written_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    home = tmp_path / "a-file"
    home.write_text("not a folder\n")
    monkeypatch.setenv("MESHCTL_HOME", str(home))
    result = meshctl("certs", "ca")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(f"error: cannot write to {home}/ca: ")
    assert "MESHCTL_HOME" in result.stderr and "Traceback" not in result.output
    assert home.read_text() == "not a folder\n"
