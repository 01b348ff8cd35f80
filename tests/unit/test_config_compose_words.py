"""Compose's vocabulary in mesh.yaml: Go durations, `environment:` beside `env:`."""

from pathlib import Path

import pytest

from meshctl.config import parse_duration, parse_project
from meshctl.errors import ConfigError


def parse(tmp_path: Path, text: str):
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\nEXPOSE 8080\n")
    source = tmp_path / "mesh.yaml"
    source.write_text(text)
    return parse_project(text, source=source, root=tmp_path)


@pytest.mark.parametrize("value, seconds", [
    ("1m30s", 90), ("500us", 0.0005), ("500µs", 0.0005), ("1h2m", 3720), ("2.5s", 2.5), ("250ns", 250e-9),
    ("1h2m3.5s", 3723.5), ("15", 15), ("15s", 15), ("500ms", 0.5), (0.2, 0.2)])
def test_go_durations(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["1m30", "30s1", "-1s", "1d", "ms", "1.2.3s", ""])
def test_not_go_durations(value):
    assert parse_duration(value) is None


def test_go_durations_in_mesh_yaml(tmp_path):
    project = parse(tmp_path, "services:\n  web:\n    build: .\n    stop_grace_period: 1m30s\n"
                              "    sidecars: {proxy: {timeout: 1m, connect_timeout: 500us}}\n")
    [web] = project.services
    assert web.stop_grace_period == 90 and web.proxy.timeout == 60 and web.proxy.connect_timeout == 0.0005


def test_a_bad_duration_names_line_and_the_go_form(tmp_path):
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, "services:\n  web:\n    build: .\n    stop_grace_period: 1m30x\n")
    assert "mesh.yaml:4: services.web.stop_grace_period" in caught.value.message
    assert "1m30s" in caught.value.hint


@pytest.mark.parametrize("env", [
    "environment: [GREETING=hi, 'EMPTY=', 'EQ=a=b']",
    "environment: {GREETING: hi, EMPTY: '', EQ: a=b}",
    "env: [GREETING=hi, 'EMPTY=', 'EQ=a=b']",
    "env: {GREETING: hi, EMPTY: '', EQ: a=b}",
])
def test_environment_is_env_in_list_or_mapping_form(tmp_path, env):
    [web] = parse(tmp_path, f"services:\n  web:\n    build: .\n    {env}\n").services
    assert dict(web.env) == {"GREETING": "hi", "EMPTY": "", "EQ": "a=b"}


def test_a_user_sidecar_takes_environment_too(tmp_path):
    [web] = parse(tmp_path, "services:\n  web:\n    build: .\n    sidecars:\n      cache:\n        image: redis:7\n"
                            "        environment: [MODE=fast]\n").services
    assert dict(web.user_sidecars[0].env) == {"MODE": "fast"}


def test_env_and_environment_together_is_an_error_at_the_second(tmp_path):
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, "services:\n  web:\n    build: .\n    env: {A: 1}\n    environment: [B=2]\n")
    assert "mesh.yaml:5: services.web.environment" in caught.value.message and "give one" in caught.value.message


def test_a_list_item_that_is_not_name_equals_value(tmp_path):
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, "services:\n  web:\n    build: .\n    environment:\n      - A=1\n      - {B: 2}\n")
    assert "mesh.yaml:6: services.web.environment.1" in caught.value.message


def test_a_misspelt_environment_says_did_you_mean(tmp_path):
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, "services:\n  web:\n    build: .\n    enviroment: [A=1]\n")
    assert "mesh.yaml:4" in caught.value.message and caught.value.hint == "did you mean 'environment'?"
