"""`meshctl init` looks at the folder: a Dockerfile is built, a runtime's files are run mode, a
compose file points at `meshctl inject`; the file it writes names the schema on its first line."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from meshctl.config import load_project
from meshctl.config.schema import SCHEMA_FILE, mesh_yaml_schema
from tests.unit.fake_engine import meshctl

FOLDERS = {
    "dockerfile": ({"Dockerfile": "FROM debian:bookworm-slim\nEXPOSE 3000\n"}, None, None, 3000),
    "node-start-script": ({"package.json": json.dumps({"scripts": {"start": "node srv.js"}})}, ("npm", "start"),
                          "node", 8080),
    "node-main": ({"package.json": json.dumps({"main": "srv.js"}), "srv.js": ""}, ("node", "srv.js"), "node", 8080),
    "requirements": ({"requirements.txt": "flask\n", "main.py": ""}, ("python3", "main.py"), "python", 8080),
    "pyproject": ({"pyproject.toml": "[project]\nname = 'x'\n", "manage.py": ""},
                  ("python3", "manage.py", "runserver", "0.0.0.0:8080"), "python", 8080),
    "go": ({"go.mod": "module example.com/x\n"}, ("go", "run", "."), "go", 8080),
}


def folder_with(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("kind", FOLDERS)
def test_init_writes_what_the_folder_needs_and_up_would_read_it(tmp_path, kind):
    files, command, runtime, port = FOLDERS[kind]
    folder = folder_with(tmp_path, files)
    result = meshctl("init", str(folder), check=True)
    written = (folder / "mesh.yaml").read_text()
    assert written.splitlines()[0] == f"# yaml-language-server: $schema={SCHEMA_FILE}" and SCHEMA_FILE.is_file()
    jsonschema.validate(yaml.safe_load(written), mesh_yaml_schema())
    [service] = load_project(folder).services
    assert (service.command, service.runtime, service.port) == (command, runtime, port)
    assert service.build == (folder.resolve() if kind == "dockerfile" else None)
    assert f"for {'a Dockerfile' if kind == 'dockerfile' else next(iter(files))}" in result.stderr


@pytest.mark.parametrize("compose", ["compose.yaml", "docker-compose.yml"])
def test_a_compose_folder_is_pointed_at_inject_and_nothing_is_written(tmp_path, compose):
    folder = folder_with(tmp_path, {compose: "services: {web: {image: nginx}}\n", "Dockerfile": "FROM x\n"})
    result = meshctl("init", str(folder))
    assert result.exit_code == 2 and not (folder / "mesh.yaml").exists()
    assert f"meshctl inject {folder / compose}" in result.stderr
    forced = meshctl("init", "--force", str(folder), check=True)
    assert (folder / "mesh.yaml").is_file() and "a Dockerfile" in forced.stderr


def test_an_empty_folder_gets_the_starting_point_and_says_what_is_missing(tmp_path):
    folder = folder_with(tmp_path, {})
    result = meshctl("init", str(folder), check=True)
    assert "build: ." in (folder / "mesh.yaml").read_text()
    assert "no Dockerfile, package.json" in result.stderr
