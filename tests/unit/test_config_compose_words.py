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


def parse_with(tmp_path: Path, text: str, monkeypatch, shell: dict | None = None, dotenv: str | None = None):
    """mesh.yaml read as `meshctl up` reads it: the shell's environment over .env beside it."""
    for name in ("PORT", "GREETING", "TOKEN", "MODE", "RETRIES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (shell or {}).items():
        monkeypatch.setenv(name, value)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    return parse(tmp_path, text)


def test_port_from_a_variable_default_becomes_a_number(tmp_path, monkeypatch):
    [web] = parse_with(tmp_path, "services:\n  web:\n    build: .\n    port: ${PORT:-8081}\n", monkeypatch).services
    assert web.port == 8081


def test_the_shell_wins_over_dotenv(tmp_path, monkeypatch):
    text = "services:\n  web:\n    build: .\n    port: ${PORT}\n    env: {GREETING: '${GREETING} there', MODE: $MODE}\n"
    [web] = parse_with(tmp_path, text, monkeypatch, shell={"PORT": "9001"},
                       dotenv="# local settings\nPORT=7000\nexport GREETING='hello'\nMODE=fast # inline comment\n").services
    assert web.port == 9001 and dict(web.env) == {"GREETING": "hello there", "MODE": "fast"}


@pytest.mark.parametrize("template, value", [
    ("${MODE-unset}", ""), ("${MODE:-empty}", "empty"), ("${MODE:+set}", ""), ("${GREETING+set}", "set"),
    ("$$MODE costs $$5", "$MODE costs $5"), ("${TOKEN:-${GREETING}}", "hi"), ("${TOKEN}", ""),
])
def test_compose_operators(tmp_path, monkeypatch, template, value):
    text = f"services:\n  web:\n    build: .\n    env: {{X: '{template}'}}\n"
    [web] = parse_with(tmp_path, text, monkeypatch, shell={"MODE": "", "GREETING": "hi"}).services
    assert dict(web.env) == {"X": value}


def test_a_missing_required_variable_is_a_file_line_error(tmp_path, monkeypatch):
    text = "services:\n  web:\n    build: .\n    env:\n      TOKEN: ${TOKEN:?ask the team for a token}\n"
    with pytest.raises(ConfigError) as caught:
        parse_with(tmp_path, text, monkeypatch)
    assert caught.value.message.endswith(
        "mesh.yaml:5: services.web.env.TOKEN: variable TOKEN is required: ask the team for a token")
    assert ".env" in caught.value.hint


def test_a_variable_that_is_not_a_number_still_says_port(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as caught:
        parse_with(tmp_path, "services:\n  web:\n    build: .\n    port: ${PORT:-web}\n", monkeypatch)
    assert "mesh.yaml:4: services.web.port: 'web' is not a port number" in caught.value.message


def test_a_malformed_variable_and_a_malformed_dotenv_line(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as caught:
        parse_with(tmp_path, "services:\n  web:\n    build: .\n    command: echo ${PORT\n", monkeypatch)
    assert "mesh.yaml:4: services.web.command: not a valid variable" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        parse_with(tmp_path, "services:\n  web:\n    build: .\n", monkeypatch, dotenv="A=1\nnot a line\n")
    assert caught.value.message.startswith(f"{tmp_path / '.env'}:2: expected NAME=VALUE")


def test_variables_fill_numbers_and_booleans_where_expected(tmp_path, monkeypatch):
    text = ("services:\n  web:\n    build: .\n    sidecars: {proxy: {retries: $RETRIES}}\n"
            "  api:\n    build: .\nmesh: {capture: '${MODE:-false}'}\n")
    web, _api = parse_with(tmp_path, text, monkeypatch, shell={"RETRIES": "5"}).services
    assert web.proxy.retries == 5 and web.mesh.capture is False


def test_a_bare_name_passes_the_variable_through(tmp_path, monkeypatch):
    text = "services:\n  web:\n    build: .\n    environment: [GREETING, TOKEN, MODE=x]\n"
    [web] = parse_with(tmp_path, text, monkeypatch, dotenv="GREETING=from-dotenv\n").services
    assert dict(web.env) == {"GREETING": "from-dotenv", "MODE": "x"}
