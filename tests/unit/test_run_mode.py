"""`meshctl up -- CMD` with no Dockerfile: the runtime picked from the folder, its image built
once by content hash, the folder mounted at /app in sync mode, dependencies installed once into a
volume keyed by the dependency files' hash (reused until they change; a failed install leaves
nothing), `down` keeping the cache and `down --volumes` removing it. Config, plans and the
executor on the recording fake engine: no daemon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from meshctl.config import runtimes
from meshctl.config import load_project, parse_project
from meshctl.errors import BuildError, ConfigError
from meshctl.events import BuildEvent
from meshctl.planning.images import runtime_image_ref
from meshctl.planning.steps import BuildImage, InstallDependencies
from meshctl.runtime.stack import down_project
from meshctl.planning.watch import CONVERGE, RESTART, classify
from tests.unit.fake_engine import engine_with_images, meshctl, stack_on

NODE = runtime_image_ref("node")
PYTHON = runtime_image_ref("python")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def folder_with(tmp_path: Path, name: str = "shop", **files: str) -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, text in files.items():
        (folder / filename.replace("__", ".")).write_text(text)
    return folder


# ---------------------------------------------------------------------------------------------
# Which runtime, and the project `-- CMD` makes


@pytest.mark.parametrize("files, command, runtime", [
    ({"package__json": "{}"}, ("node", "server.js"), "node"),
    ({"requirements__txt": "flask\n"}, ("python3", "app.py"), "python"),
    ({"pyproject__toml": "[project]\nname = 'x'\n"}, ("uvicorn", "app:app"), "python"),
    ({"go__mod": "module x\n"}, ("go", "run", "."), "go"),
    ({}, ("python3", "app.py"), "python"),                                   # no file: the program says it
    ({"package__json": "{}", "requirements__txt": ""}, ("python3", "a.py"), "python"),   # two files: the program
])
def test_the_runtime_is_picked_from_the_folder_then_the_program(tmp_path, files, command, runtime):
    assert runtimes.detect(folder_with(tmp_path, **files), command).name == runtime


def test_up_dash_dash_in_a_bare_folder_is_run_mode_named_after_the_folder(tmp_path):
    folder = folder_with(tmp_path, "My Shop", package__json="{}")
    project = load_project(folder, command=("node", "server.js"))
    [service] = project.services
    assert project.name == service.name == "my-shop"
    assert (service.runtime, service.source, service.port) == ("node", folder.resolve(), 8080)
    assert service.command == ("node", "server.js") and service.watch.sync == ((".", "/app"),)
    assert dict(service.ports) == {"https": 8443, "http": 8080, "metrics": 9090}
    assert load_project(folder, command=("node", "s.js"), port=5000).services[0].port == 5000


def test_image_with_dash_dash_runs_the_command_in_that_image_with_the_folder(tmp_path):
    folder = folder_with(tmp_path, app__rb="puts 1\n")
    [service] = load_project(folder, image="ruby:3.3", command=("ruby", "app.rb")).services
    assert (service.image, service.runtime, service.source) == ("ruby:3.3", None, folder.resolve())


def test_a_folder_no_runtime_fits_asks_for_one(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_project(folder_with(tmp_path, run__sh="x"), command=("./run.sh",))
    assert "cannot tell which runtime runs './run.sh'" in caught.value.message
    assert "--runtime" in caught.value.hint and "--image" in caught.value.hint
    with pytest.raises(ConfigError, match="--runtime java: not a runtime meshctl builds"):
        load_project(folder_with(tmp_path), command=("java",), runtime="java")


def test_a_dockerfile_stays_the_build_and_dash_dash_replaces_its_command(tmp_path):
    folder = folder_with(tmp_path, Dockerfile="FROM debian:bookworm-slim\nEXPOSE 9000\n")
    [service] = load_project(folder, command=("python3", "x.py")).services
    assert service.build == folder.resolve() and service.command == ("python3", "x.py") and service.source is None


def test_mesh_yaml_run_mode_forms(tmp_path):
    folder = folder_with(tmp_path, package__json="{}")
    (folder / "web").mkdir()
    text = """\
services:
  api: {command: [node, server.js]}
  worker: {runtime: python, command: python3 worker.py, port: 9000}
  ruby: {image: "ruby:3.3", source: web, command: [ruby, app.rb]}
  plain: {image: "nginx:1.25", port: 80}
"""
    api, worker, ruby, plain = parse_project(text, source=folder / "mesh.yaml", root=folder).services
    assert (api.runtime, api.source, api.port, api.watch.sync) == ("node", folder, 8080, ((".", "/app"),))
    assert (worker.runtime, worker.port, worker.command) == ("python", 9000, ("sh", "-c", "python3 worker.py"))
    assert (ruby.image, ruby.source, ruby.watch.sync) == ("ruby:3.3", folder / "web", (("web", "/app"),))
    assert plain.source is None and plain.watch.sync == ()          # an image alone runs as it is


@pytest.mark.parametrize("service, where, words", [
    ("{runtime: node}", "mesh.yaml:2: services.a", "a `command` to run in your folder"),
    ("{runtime: java, command: [java]}", "mesh.yaml:2: services.a.runtime", "'java' is not a runtime"),
    ("{build: ., runtime: node, command: [x]}", "mesh.yaml:2: services.a", "exactly one of `build`"),
    ("{command: [./run]}", "mesh.yaml:2: services.a.command", "cannot tell which runtime runs './run'"),
    ("{image: x, source: nowhere, command: [x]}", "mesh.yaml:2: services.a.source", "'nowhere' is not a folder"),
])
def test_run_mode_errors_name_file_line_and_field(tmp_path, service, where, words):
    folder = folder_with(tmp_path, Dockerfile="FROM x\n")
    with pytest.raises(ConfigError) as caught:
        parse_project(f"services:\n  a: {service}\n", source=folder / "mesh.yaml", root=folder)
    assert where in caught.value.message and words in caught.value.message and caught.value.exit_code == 2


# ---------------------------------------------------------------------------------------------
# Plans and the executor on the fake engine


def node_app(tmp_path: Path, dependencies: dict | None = None) -> Path:
    return folder_with(tmp_path, package__json=json.dumps({"name": "shop", "dependencies": dependencies or {}}),
                       server__js="require('http')\n")


def run_project(folder: Path, command=("node", "server.js")):
    from dataclasses import replace

    project = load_project(folder, command=command)
    services = tuple(replace(s, ports=tuple((k, 0) for k, _ in s.ports)) for s in project.services)
    return replace(project, services=services)


def test_the_runtime_image_is_built_once_and_a_dependency_free_app_installs_nothing(tmp_path, home):
    engine = engine_with_images()
    project = run_project(node_app(tmp_path))
    stack_on(engine, project, home).up()
    assert engine.names("build") == [NODE] and engine.names("create_volume") == []
    app = next(c["spec"] for c in engine.containers_.values() if c["spec"].role == "app")
    assert app.image == NODE and app.workdir == "/app" and app.command == ("node", "server.js")
    assert (str(tmp_path / "shop"), "/app", True) in app.mounts                 # read-only: sync mode
    assert all(read_only for _, _, read_only in app.mounts)                      # no cache volume: nothing to write
    assert app.cap_drop == ("ALL",) and app.no_new_privileges and app.user == stack_on(engine, project, home).settings.user
    assert app.env["PORT"] == "8080" and app.env["HOME"] == "/tmp"
    again = stack_on(engine, project, home).plan_up()
    assert not [s for _, s in again.all_steps() if isinstance(s, BuildImage)]    # tagged by content: built once


def test_dependencies_install_once_into_a_labelled_volume_the_app_mounts(tmp_path, home):
    engine = engine_with_images(exit_on_start={"shop-shop-install": 0},
                                log_lines={"shop-shop-install": ["added 1 package in 1s"]})
    events: list = []
    project = run_project(node_app(tmp_path, {"left-pad": "1.3.0"}))
    stack_on(engine, project, home, events=events).up()
    [volume] = engine.volumes_
    labels = engine.volumes_[volume]
    assert volume.startswith("meshctl-shop-shop-deps-")
    assert labels["meshctl.project"] == "shop" and labels["meshctl.role"] == "deps" and labels["meshctl.runtime"] == "node"
    calls = [c[:2] for c in engine.calls]
    assert calls.index(("create_volume", volume)) < calls.index(("start", "shop-shop-install")) \
        < calls.index(("create", "shop-shop-pod"))                      # installed before the pod starts
    install = [e for e in events if isinstance(e, BuildEvent) and e.action == "install"]
    assert [e.phase for e in install] == ["start", "step", "done"] and install[1].text == "added 1 package in 1s"
    app = next(c["spec"] for c in engine.containers_.values() if c["spec"].role == "app")
    assert (volume, "/node_modules", False) in app.mounts
    # The second up finds the cache and installs nothing.
    mark = len(engine.calls)
    stack_on(engine, project, home).up()
    assert ("create", "shop-shop-install") not in engine.calls[mark:]


def test_the_install_container_is_least_privileged_and_sees_the_folder_read_only(tmp_path, home, monkeypatch):
    monkeypatch.setenv("MESHCTL_BUILD_NETWORK", "host")
    monkeypatch.setenv("MESHCTL_INSTALL_CA", str(tmp_path / "ca.pem"))
    engine = engine_with_images()
    plan = stack_on(engine, run_project(folder_with(tmp_path, requirements__txt="six\n"), ("python3", "a.py")),
                    home).plan_up()
    [install] = [s for _, s in plan.all_steps() if isinstance(s, InstallDependencies)]
    spec = install.spec
    assert spec.image == PYTHON and spec.network == "host" and spec.cap_drop == ("ALL",) and spec.no_new_privileges
    assert (str(tmp_path / "shop"), "/app", True) in spec.mounts and (install.volume, "/deps", False) in spec.mounts
    assert (str(tmp_path / "ca.pem"), runtimes.INSTALL_CA, True) in spec.mounts
    assert spec.env["PIP_CERT"] == runtimes.INSTALL_CA and "pip install --target /deps" in spec.command[0]
    assert install.files == ("requirements.txt",)


def test_a_failed_install_is_one_message_with_its_tail_and_leaves_nothing(tmp_path, home):
    lines = ["npm ERR! code ENOTFOUND", "npm ERR! network request to https://registry.npmjs.org/left-pad failed"]
    engine = engine_with_images(exit_on_start={"shop-shop-install": 1}, log_lines={"shop-shop-install": lines})
    with pytest.raises(BuildError) as caught:
        stack_on(engine, run_project(node_app(tmp_path, {"left-pad": "1.3.0"})), home).up()
    assert caught.value.exit_code == 3
    assert "shop: installing its dependencies (package.json) failed with exit code 1" in caught.value.message
    assert "registry.npmjs.org/left-pad failed" in caught.value.message and "ENOTFOUND" in caught.value.details
    assert engine.is_empty() and engine.volumes_ == {}                          # no half-made cache
    assert ("create", "shop-shop-app") not in engine.calls


def test_a_changed_dependency_file_converges_onto_a_new_cache_and_replaces_the_app(tmp_path, home):
    engine = engine_with_images(exit_on_start={"shop-shop-install": 0})
    folder = node_app(tmp_path, {"left-pad": "1.3.0"})
    project = run_project(folder)
    stack = stack_on(engine, project, home)
    stack.up()
    [first] = engine.volumes_
    assert classify(project, {folder / "server.js"}).actions == {"shop": RESTART}       # sync mode
    (folder / "package.json").write_text(json.dumps({"dependencies": {"left-pad": "1.2.0"}}))
    assert classify(project, {folder / "package.json"}).actions == {"shop": CONVERGE}
    engine.exit_on_start["shop-shop-install"] = 0
    mark = len(engine.calls)
    stack.converge(project)
    second = next(v for v in engine.volumes_ if v != first)
    after = [c[:2] for c in engine.calls[mark:]]
    assert after.index(("create_volume", second)) < after.index(("stop", "shop-shop-app")) \
        < after.index(("create", "shop-shop-app"))
    app = next(c["spec"] for c in engine.containers_.values() if c["spec"].role == "app")
    assert (second, "/node_modules", False) in app.mounts
    assert first in engine.volumes_                   # the old cache stays until down --volumes


def test_down_keeps_the_cache_and_down_volumes_removes_it(tmp_path, home):
    engine = engine_with_images(exit_on_start={"shop-shop-install": 0})
    stack_on(engine, run_project(node_app(tmp_path, {"a": "1"})), home).up()
    assert down_project(engine, "shop", home=home).volumes == ()
    assert len(engine.volumes_) == 1 and not engine.containers_
    removed = down_project(engine, "shop", home=home, volumes=True)
    assert len(removed.volumes) == 1 and "1 dependency cache volume" in removed.summary()
    assert engine.volumes_ == {}


def test_the_cli_takes_the_command_after_dashes(tmp_path, monkeypatch):
    from meshctl.runtime import apply
    from meshctl.cli import reads
    from tests.unit.fake_engine import Prober

    engine = engine_with_images()
    monkeypatch.setattr(reads, "DockerEngine", lambda: engine)
    monkeypatch.setattr(apply, "probe_for", Prober(engine))
    monkeypatch.setenv("MESHCTL_HOME", str(tmp_path / "home"))
    folder = node_app(tmp_path)
    result = meshctl("up", "--dry-run", "--json", str(folder), "--", "node", "server.js", "--inspect")
    assert result.exit_code == 0, result.output
    [plan] = json.loads(result.stdout)
    assert {"step": "BuildImage", "target": NODE} in [{k: s[k] for k in ("step", "target")} for s in plan["steps"]]
    assert meshctl("up", str(folder), "--").exit_code == 2
