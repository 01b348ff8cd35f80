"""Run mode: a command whose program cannot be in the runtime (a package's command, with a source
folder that lists no dependencies) fails before anything is built or started, saying which folder
was read and which folder does name the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl.config import load_project
from meshctl.errors import ConfigError
from tests.unit.fake_engine import engine_with_images, meshctl


def project_folder(tmp_path: Path, mesh_yaml: str, **files: str) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "mesh.yaml").write_text(mesh_yaml)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


GUNICORN = "services:\n  web:\n    command: [gunicorn, app:app]\n"


def test_a_package_command_with_no_dependencies_names_the_folder_and_the_one_that_has_them(tmp_path):
    folder = project_folder(tmp_path, GUNICORN, **{"bin/requirements.txt": "gunicorn==22.0\nflask\n"})
    with pytest.raises(ConfigError) as caught:
        load_project(folder)
    message = caught.value.message
    assert message.startswith(f"{folder / 'mesh.yaml'}:3: services.web.command: 'gunicorn' comes from a python package")
    assert f"{folder.resolve()} (mesh.yaml's folder: no `source:` given), lists none" in message
    assert caught.value.hint == "source: bin holds a requirements.txt that names gunicorn: set `source: bin` on this service"


def test_with_source_pointing_there_it_parses(tmp_path):
    folder = project_folder(tmp_path, GUNICORN + "    source: bin\n", **{"bin/requirements.txt": "gunicorn==22.0\n"})
    [web] = load_project(folder).services
    assert web.runtime == "python" and web.source == (folder / "bin").resolve()


def test_when_no_folder_names_it_the_hint_says_where_to_add_it(tmp_path):
    folder = project_folder(tmp_path, "services:\n  web:\n    command: uvicorn app:app --port 8080\n    source: src\n",
                            **{"src/app.py": ""})
    with pytest.raises(ConfigError) as caught:
        load_project(folder)
    assert "'uvicorn' comes from a python package" in caught.value.message and "(its `source:`)" in caught.value.message
    assert caught.value.hint.startswith(f"add uvicorn to requirements.txt in {(folder / 'src').resolve()}")


@pytest.mark.parametrize("requirements", ["gunicorn\n", "flask\n", "Gunicorn[gevent]>=21 ; python_version>'3'\n"])
def test_a_folder_that_lists_dependencies_is_trusted(tmp_path, requirements):
    """It names the package, or lists others (one may bring it): that cannot be known here."""
    folder = project_folder(tmp_path, GUNICORN, **{"requirements.txt": requirements})
    assert load_project(folder).services[0].command == ("gunicorn", "app:app")


def test_the_runtime_s_own_programs_need_no_dependencies(tmp_path):
    folder = project_folder(tmp_path, "services:\n  web:\n    command: [python3, -m, http.server, '8080']\n")
    assert load_project(folder).services[0].runtime == "python"


def test_up_says_it_before_anything_is_built_or_started(tmp_path, monkeypatch):
    from meshctl.cli import reads

    folder = project_folder(tmp_path, GUNICORN, **{"bin/requirements.txt": "gunicorn\n"})
    engine = engine_with_images()
    monkeypatch.setattr(reads, "DockerEngine", lambda: engine)
    monkeypatch.setenv("MESHCTL_HOME", str(tmp_path / "home"))
    result = meshctl("up", "-d", str(folder))
    assert result.exit_code == 2 and "source: bin" in result.stderr
    assert engine.calls == []


def test_dash_dash_in_a_folder_with_no_dependencies(tmp_path):
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "requirements.txt").write_text("# nothing yet\n")
    with pytest.raises(ConfigError) as caught:
        load_project(folder, command=("gunicorn", "app:app"))
    assert caught.value.message.startswith("-- gunicorn app:app: 'gunicorn' comes from a python package")
