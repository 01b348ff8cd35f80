"""The one YAML-with-positions reader (meshctl/config/yamlpos.py) that mesh.yaml and compose files
go through: a key written twice in one mapping is an error naming both lines (YAML parsers keep
the last one silently, so a service written twice used to vanish), merge keys are not duplicates,
and each file keeps its own YAML (mesh.yaml 1.1, compose files 1.2)."""

from __future__ import annotations

from pathlib import Path, PurePath

import pytest
from typer.testing import CliRunner

from meshctl.cli.app import app
from meshctl.config import load_project, parse_project
from meshctl.errors import ConfigError
from meshctl.inject import InjectOptions, Machine, inject_text, uninject_text
from tests.unit.fake_engine import use_on_the_cli

MACHINE = Machine(project="dup", images={"proxy": "meshctl-haproxy:test", "metrics": "meshctl-metrics:test"},
                  user="1000:1000", state_dir=PurePath("/var/lib/meshctl-test/compose/dup-0"))

MESH_TWICE = """\
name: shop
services:
  web:
    image: nginx:1.25
    port: 80
  api:
    image: acme/api
    port: 8080
  web:
    image: acme/web
    port: 8000
"""


def test_a_service_written_twice_in_mesh_yaml_names_both_lines(tmp_path):
    (tmp_path / "mesh.yaml").write_text(MESH_TWICE)
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    assert info.value.message == f"{tmp_path / 'mesh.yaml'}:9: services.web is written twice (first at line 3)"
    assert info.value.exit_code == 2 and "remove one" in info.value.hint


def test_a_key_written_twice_inside_a_service_names_both_lines():
    text = "services:\n  web:\n    image: acme/web\n    port: 80\n    env: {A: 1}\n    port: 8080\n"
    with pytest.raises(ConfigError) as info:
        parse_project(text)
    assert info.value.message == "mesh.yaml:6: services.web.port is written twice (first at line 4)"


def test_a_duplicate_in_mesh_yaml_exits_2_from_the_cli(tmp_path, monkeypatch):
    engine = use_on_the_cli(tmp_path, monkeypatch)        # a fake engine: nothing real starts, ever
    (tmp_path / "mesh.yaml").write_text(MESH_TWICE)
    result = CliRunner().invoke(app, ["up", "-d", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "mesh.yaml:9: services.web is written twice (first at line 3)" in result.output
    assert engine.is_empty()


def test_merge_keys_in_mesh_yaml_are_not_duplicates():
    text = ("services:\n  web: &base\n    image: acme/web\n    port: 80\n"
            "  api:\n    <<: *base\n    port: 8080\n")
    web, api = parse_project(text).services
    assert (api.image, api.port, web.port) == ("acme/web", 8080, 80)


COMPOSE_TWICE = """\
services:
  web:
    image: nginx
    ports: ["8080:80"]
  db:
    image: postgres:16
  web:
    image: acme/web
    ports: ["8081:80"]
"""


def test_a_service_written_twice_in_a_compose_file_fails_inject_with_exit_2_and_writes_nothing(tmp_path, monkeypatch):
    source = tmp_path / "compose.yaml"
    source.write_text(COMPOSE_TWICE)
    out = tmp_path / "compose.mesh.yaml"
    monkeypatch.setenv("MESHCTL_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["inject", "--no-build", str(source), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert f"{source}:7: services.web is written twice (first at line 2)" in result.output
    assert not out.exists() and not (tmp_path / "home").exists()
    assert source.read_text() == COMPOSE_TWICE


def test_a_key_written_twice_in_a_compose_service_is_found_at_any_depth():
    text = "services:\n  web:\n    image: nginx\n    ports:\n      - target: 80\n        published: 8080\n" \
           "        target: 81\n"
    with pytest.raises(ConfigError) as info:
        inject_text(text, InjectOptions(), MACHINE, "compose.yaml")
    assert info.value.message == "compose.yaml:7: services.web.ports.0.target is written twice (first at line 5)"


def test_merge_keys_in_a_compose_file_are_not_duplicates():
    """A service merges anchors (`<<: *a`, `<<: [*a, *b]`, two `<<` keys) and sets keys they set too."""
    text = """\
x-app: &app
  image: acme/web
  restart: always
x-env: &env
  environment: {A: "1"}
services:
  web:
    <<: *app
    image: acme/web:2
    ports: ["8080:80"]
  api:
    <<: [*app, *env]
    restart: "no"
    ports: ["8081:80"]
  worker:
    <<: *app
    <<: *env
    image: acme/worker
"""
    result = inject_text(text, InjectOptions(), MACHINE, "compose.yaml")
    assert {i.service for i in result.injected} == {"web", "api"}
    assert uninject_text(result.text, "compose.yaml").text == text


def test_compose_files_keep_yaml_1_2_and_mesh_yaml_keeps_yaml_1_1():
    """The one reader, two resolvers: `off` is a string to Compose, false in mesh.yaml (as before)."""
    project = parse_project("mesh: {mtls: off}\nservices:\n  web: {image: nginx:1.25, port: 80}\n")
    assert project.services[0].mesh is None
    from meshctl.inject import document as doc
    document = doc.parse("services:\n  web:\n    environment: {DEBUG: off, MODE: 0755}\n", "compose.yaml")
    assert doc.value(document.root) == {"services": {"web": {"environment": {"DEBUG": "off", "MODE": 755}}}}


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "compose_corpus").rglob("*.yaml")),
                         ids=lambda p: p.name)
def test_no_corpus_file_has_a_key_written_twice(path):
    """The corpus' anchors and merge keys (04-rails-sidekiq-anchors, 21-real-anchors-keep-plain…) read."""
    from meshctl.inject import document as doc
    doc.parse(path.read_text(), path.name)
