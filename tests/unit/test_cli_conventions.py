"""The conventions every command keeps (issue 26): -h, --version, `version`, shell completion, -o
json|yaml (with --json as its alias), -q, `validate` without an engine, and start-up that loads no
more than the command needs. In-process through typer's CliRunner and the fake engine, except
where the process itself is the point (what `meshctl --version` imports)."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
import sys
from pathlib import Path

import pytest
import typer.main
import yaml

import meshctl as package
from meshctl.cli import reads
from meshctl.cli.app import app
from meshctl.errors import EngineError
from meshctl.planning.images import sidecar_images
from tests.unit.fake_engine import FakeEngine, meshctl, use_on_the_cli

ROOT = Path(__file__).resolve().parents[2]
ENGINE_FREE = {"docker", "requests", "urllib3"}


def command_paths(command=None, path=()):
    """Every command and group of the app, as the words that name it."""
    command = command or typer.main.get_command(app)
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


def test_every_command_answers_h_and_help_alike():
    paths = list(command_paths())
    assert ("validate",) in paths and ("completion",) in paths and ("certs", "ca") in paths
    for path in paths:
        short, long = meshctl(*path, "-h"), meshctl(*path, "--help")
        assert short.exit_code == 0, (path, short.output)
        assert short.stdout.startswith(f"Usage: meshctl {' '.join(path)}".rstrip()) and short.stdout == long.stdout


def test_version_flag_and_short_version_print_the_one_version():
    assert meshctl("--version").stdout == f"meshctl {package.__version__}\n"
    assert meshctl("version", "--short").stdout == f"{package.__version__}\n"


def test_version_names_the_engine_and_the_sidecar_images_or_why_the_engine_is_missing(tmp_path, monkeypatch):
    engine = use_on_the_cli(tmp_path, monkeypatch)
    tags = sidecar_images()
    text = meshctl("version", check=True).stdout.splitlines()
    assert text[:3] == [f"meshctl {package.__version__}", "engine: 20.10-fake (API 1.41)", "sidecar images:"]
    assert sorted(line.strip() for line in text[3:]) == sorted(tags.values())
    engine.images.discard(tags["capture"])
    found = json.loads(meshctl("version", "-o", "json", check=True).stdout)
    assert found["meshctl"] == package.__version__ and found["engine"] == {"version": "20.10-fake", "api_version": "1.41"}
    assert found["sidecar_images"]["capture"] == {"image": tags["capture"], "built": False}
    assert found["sidecar_images"]["haproxy"] == {"image": tags["haproxy"], "built": True}
    use_on_the_cli(tmp_path, monkeypatch, FakeEngine(unreachable=True))
    missing = meshctl("version", "-o", "yaml")
    found = yaml.safe_load(missing.stdout)
    assert missing.exit_code == 0 and "error" in found["engine"]
    assert {image["built"] for image in found["sidecar_images"].values()} == {None}


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o default -F _meshctl_completion meshctl"),
                                               ("zsh", "#compdef meshctl"), ("fish", "complete --command meshctl")])
def test_completion_prints_each_shells_script(shell, marker):
    assert "--install-completion" not in meshctl("-h").stdout       # `meshctl completion` is the one way
    script = meshctl("completion", shell, check=True).stdout
    assert marker in script and "_MESHCTL_COMPLETE" in script
    assert meshctl("completion", "powershell").exit_code == 2


def complete(words: str) -> list[str]:
    """What bash gets on TAB after `words` (typer's protocol: the env vars its script sets)."""
    env = {"_MESHCTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
    result = typer.testing.CliRunner().invoke(app, [], env=env, prog_name="meshctl")
    assert result.exit_code == 0, result.output
    return result.stdout.split()


def test_a_completion_request_answers_commands_options_and_choices():
    assert complete("meshctl va") == ["validate"]
    assert {"--dry-run", "--progress", "--output", "--quiet"} <= set(complete("meshctl up --"))
    assert complete("meshctl ps -o ") == ["text", "json", "yaml"]
    assert complete("meshctl up --progress ") == ["auto", "plain", "quiet"]


def modules_after(*args: str, env: dict[str, str] | None = None) -> set[str]:
    """The top-level packages a `meshctl ARGS` process imported, as a shell runs it."""
    probe = ("import json, sys\n"
             f"sys.argv = ['meshctl', *{list(args)!r}]\n"
             "from meshctl.cli import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "sys.stderr.write('\\nMODULES ' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=60)
    return set(json.loads(done.stderr.rsplit("MODULES ", 1)[1]))


def modules_after_each(*runs: tuple[list[str], dict[str, str] | None]) -> list[set[str]]:
    """modules_after for each (args, env), two processes at a time (each is ~0.25 s of start-up)."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda run: modules_after(*run[0], env=run[1]), runs))


def test_commands_that_need_no_engine_never_import_the_docker_sdk():
    helps = (["-h"], ["up", "-h"], ["version", "--short"], ["completion", "bash"])
    no_engine = {"DOCKER_HOST": "tcp://127.0.0.1:1"}
    words = {"_MESHCTL_COMPLETE": "complete_bash", "COMP_WORDS": "meshctl up --", "COMP_CWORD": "2"}
    version, *after_helps, validate, completing, ps = modules_after_each(
        (["--version"], None), *((args, None) for args in helps),
        (["validate", "-q", str(ROOT / "examples" / "hello")], no_engine), ([], words), (["ps"], no_engine))
    assert not version & {"typer", "click", "rich", *ENGINE_FREE}   # before typer loads
    for args, loaded in zip(helps, after_helps, strict=True):
        assert "typer" in loaded and not loaded & {"rich", "yaml", *ENGINE_FREE}, (args, loaded)
    assert "yaml" in validate and not validate & {"rich", *ENGINE_FREE}
    assert not completing & {"rich", *ENGINE_FREE}
    # The probe sees what a command does load (ps imports the SDK, and finds no engine there).
    assert ps >= ENGINE_FREE


def test_reading_the_mesh_loads_neither_the_config_model_nor_the_certificates(tmp_path):
    # stat and trace answer within 0.3 s (bench/observe.py): the config and sidecars packages load
    # each name on first use, neither command needs the YAML reader or cryptography, and on a local
    # socket the engine's container list is read without the Docker SDK (engine/unix_http.py).
    local = {"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"}
    no_engine = {"DOCKER_HOST": "tcp://127.0.0.1:1"}
    reads = (["stat", "-p", "x", "--window", "1m30s"], ["trace", "-p", "x"])
    *on_local, ps = modules_after_each(*((args, local) for args in reads), (["ps"], local))
    on_remote = modules_after_each(*((args, no_engine) for args in reads))
    for args, loaded, remote in zip(reads, on_local, on_remote, strict=True):
        # ...nor typer: their plain forms are answered before it loads (cli/reads.py).
        assert "meshctl" in loaded and not loaded & {"yaml", "cryptography", "typer", "click", *ENGINE_FREE}, (args, loaded)
        assert remote >= {"docker"}
    assert not ps & {"cryptography", *ENGINE_FREE}


@pytest.mark.parametrize("package", ["meshctl.config", "meshctl.sidecars"])
def test_a_lazy_package_loads_nothing_until_asked_then_gives_every_name_its_stub_lists(package):
    probe = (f"import sys, {package} as p\n"
             f"print(sorted(m for m in sys.modules if m.startswith('{package}.')))\n"
             "missing = [n for n in p.__all__ if getattr(p, n, None) is None]\n"
             "print(len(p.__all__), missing)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    before, listed = done.stdout.splitlines()
    assert before == "[]"                                # `import meshctl.config` imported no submodule
    count, missing = listed.split(" ", 1)
    assert int(count) >= 20 and missing == "[]"          # each name of __init__.pyi is its module's


def test_listing_commands_and_dry_runs_print_json_or_yaml(tmp_path, cli_engine):
    assert meshctl("up", "-d", str(tmp_path)).exit_code == 0
    [entry] = json.loads(meshctl("ps", "-o", "json", check=True).stdout)
    assert entry["project"] == "shop" and entry["service"] == "web"
    assert json.loads(meshctl("ps", "--json", check=True).stdout) == [entry]
    assert yaml.safe_load(meshctl("ps", "-o", "yaml", check=True).stdout) == [entry]
    [plan] = yaml.safe_load(meshctl("up", "--dry-run", "-o", "yaml", str(tmp_path), check=True).stdout)
    assert plan["project"] == "shop" and plan["steps"]
    [plan] = json.loads(meshctl("down", "--dry-run", "-o", "json", str(tmp_path), check=True).stdout)
    assert plan["project"] == "shop" and plan["steps"]
    doctor = meshctl("doctor", "-o", "json")
    findings = json.loads(doctor.stdout)      # the default host ports are this machine's: free or not
    assert {f["name"] for f in findings} >= {"docker engine", "base image", "CA"}
    assert doctor.exit_code == (0 if all(f["ok"] for f in findings) else 1)
    checked = meshctl("test", "-o", "yaml", str(tmp_path))      # the fake serves no HTTP: a check fails
    assert checked.exit_code == 1 and yaml.safe_load(checked.stdout)["project"] == "shop-test"
    assert "meshctl test" in checked.stderr                      # the table went to stderr
    both = meshctl("ps", "--json", "-o", "yaml")
    assert both.exit_code == 2 and "--json and -o yaml ask for two formats" in both.stderr


def test_quiet_leaves_results_and_errors_only(tmp_path, cli_engine):
    up = meshctl("up", "-d", "-q", str(tmp_path), check=True)
    assert up.stderr == "" and "https" in up.stdout
    assert meshctl("down", "-q", str(tmp_path), check=True).output == ""
    assert meshctl("validate", "-q", str(tmp_path), check=True).output == ""
    broken = meshctl("up", "-q", "--no-wait", str(tmp_path))
    assert broken.exit_code == 2 and broken.stderr.startswith("error: --no-wait only makes sense with -d")


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mesh.yaml").write_text(text)
    return folder


DUPLICATE = "name: shop\nservices:\n  web:\n    image: web:1\n    port: 80\n  web:\n    image: web:2\n    port: 81\n"


def no_engine(monkeypatch):
    """An engine that cannot be reached, as with DOCKER_HOST pointing nowhere."""
    def unreachable():
        raise EngineError("cannot reach the Docker engine at tcp://127.0.0.1:1", exit_code=3)
    monkeypatch.setattr(reads, "DockerEngine", unreachable)
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")


def test_validate_checks_without_an_engine_and_shows_where_a_file_is_wrong(tmp_path, monkeypatch):
    no_engine(monkeypatch)
    monkeypatch.setenv("MESHCTL_HOME", str(tmp_path / "home"))
    good = write(tmp_path / "good", "name: shop\nservices:\n  web: {image: web:1, port: 8080}\n")
    valid = meshctl("validate", str(good))
    assert valid.exit_code == 0 and valid.stderr == f"✓ {good}/mesh.yaml: valid (project shop: web)\n"
    assert json.loads(meshctl("validate", "-o", "json", str(good / "mesh.yaml")).stdout) == {
        "valid": True, "file": f"{good}/mesh.yaml", "project": "shop", "services": ["web"]}
    bad = write(tmp_path / "bad", DUPLICATE)
    invalid = meshctl("validate", "-q", str(bad))
    assert invalid.exit_code == 2 and invalid.stdout == ""
    assert invalid.stderr.startswith(f"error: {bad}/mesh.yaml:6: services.web is written twice (first at line 3)\n")
    answer = json.loads(meshctl("validate", "-o", "json", str(bad)).stdout)
    assert answer["valid"] is False and answer["error"].startswith(f"{bad}/mesh.yaml:6: ")
    assert not (tmp_path / "home").exists()          # nothing written: no CA, no configs


def test_every_example_validates_without_an_engine(tmp_path, monkeypatch):
    no_engine(monkeypatch)
    monkeypatch.setenv("MESHCTL_HOME", str(tmp_path))
    examples = sorted(p.parent for p in (ROOT / "examples").glob("*/mesh.yaml"))
    assert len(examples) >= 3
    for folder in examples:
        assert meshctl("validate", "-q", str(folder)).exit_code == 0, folder


def test_up_dry_run_reports_a_config_error_before_asking_the_engine(tmp_path, monkeypatch):
    no_engine(monkeypatch)
    result = meshctl("up", "--dry-run", str(write(tmp_path, DUPLICATE)))
    assert result.exit_code == 2 and "services.web is written twice" in result.stderr
    good = meshctl("up", "--dry-run", str(write(tmp_path / "good", "services:\n  web: {image: web:1, port: 80}\n")))
    assert good.exit_code == 3 and "cannot reach the Docker engine" in good.stderr



def test_a_command_runs_in_an_app_of_its_own_group_and_behaves_as_in_the_whole_one(monkeypatch):
    """typer turns every command into click's at each run (~30 ms for all): a named command gets
    an app of its group alone; help, TAB, --version and unknown names the whole app."""
    import typer.main
    from typer.testing import CliRunner

    from meshctl.cli.app import app, app_for

    assert app_for([]) is app and app_for(["-h"]) is app and app_for(["nope"]) is app
    assert set(typer.main.get_command(app_for(["stat", "-p", "x"])).commands) == {"stat", "top", "tap"}
    assert set(typer.main.get_command(app_for(["certs", "ca"])).commands) == {"certs"}
    monkeypatch.setenv("_MESHCTL_COMPLETE", "complete_bash")
    assert app_for(["stat"]) is app
    monkeypatch.delenv("_MESHCTL_COMPLETE")
    runner = CliRunner()
    names = sorted(typer.main.get_command(app).commands)
    assert len(names) > 20
    for name in names:
        whole, alone = runner.invoke(app, [name, "-h"]), runner.invoke(app_for([name]), [name, "-h"])
        assert (alone.exit_code, alone.output) == (whole.exit_code, whole.output) and whole.exit_code == 0, name
    bad = runner.invoke(app_for(["trace"]), ["trace", "--bogus"])
    assert bad.exit_code == 2 and "No such option: --bogus" in bad.output
