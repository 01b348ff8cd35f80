"""No engine: the message names the endpoint tried (DOCKER_HOST, a docker context, the default
socket), why it failed, and advice that fits it. Through the real Docker SDK pointed at addresses
where nothing answers (a closed local port, a missing socket, an unknown scheme): no daemon."""

from __future__ import annotations

import errno
import json
import socket

import pytest
from docker.context import ContextAPI

from meshctl.engine.docker import DockerEngine, endpoint
from meshctl.engine.unreachable import DEFAULT_SOCKET, Endpoint, unreachable
from meshctl.errors import EngineError
from tests.unit.fake_engine import FakeEngine, meshctl, use_on_the_cli


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    """A docker CLI config of our own (no current context), and no DOCKER_HOST."""
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    return config


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]          # closed once the probe is: connections are refused


def failure(monkeypatch, docker_host: str | None = None) -> EngineError:
    if docker_host is not None:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
    with pytest.raises(EngineError) as failed:
        DockerEngine().version()
    return failed.value


def test_docker_host_refused_names_the_address_and_never_advises_systemctl(docker_config, monkeypatch):
    port = closed_port()
    error = failure(monkeypatch, f"tcp://127.0.0.1:{port}")
    assert error.message == (f"cannot reach the Docker engine at tcp://127.0.0.1:{port} (from DOCKER_HOST): "
                             "connection refused: nothing listens there")
    assert error.hint.startswith("DOCKER_HOST names that engine") and "systemctl" not in error.hint
    assert error.exit_code == 3


def test_a_missing_socket_and_an_unknown_scheme_say_so(docker_config, monkeypatch, tmp_path):
    missing = failure(monkeypatch, f"unix://{tmp_path}/docker.sock")
    assert missing.message.endswith(f"(from DOCKER_HOST): there is no socket at {tmp_path}/docker.sock")
    scheme = failure(monkeypatch, "htp://127.0.0.1:2375")
    assert scheme.message.endswith("(from DOCKER_HOST): an address of a kind the Docker SDK does not know")
    assert scheme.hint == "DOCKER_HOST takes unix:///PATH, tcp://HOST:PORT or ssh://USER@HOST (it is 'htp://127.0.0.1:2375')"


def test_a_docker_context_is_followed_and_named(docker_config, monkeypatch, tmp_path):
    ContextAPI.create_context("elsewhere", host=f"unix://{tmp_path}/remote.sock")
    (docker_config / "config.json").write_text(json.dumps({"currentContext": "elsewhere"}))
    assert endpoint() == Endpoint(f"unix://{tmp_path}/remote.sock", "context", "elsewhere")
    error = failure(monkeypatch)
    assert error.message == (f"cannot reach the Docker engine at unix://{tmp_path}/remote.sock (the docker context "
                             f"`elsewhere`): there is no socket at {tmp_path}/remote.sock")
    assert "docker context use default" in error.hint and "systemctl" not in error.hint
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")           # DOCKER_HOST wins, as with the docker CLI
    assert endpoint() == Endpoint("tcp://127.0.0.1:1", "DOCKER_HOST")


def test_the_default_socket_gets_the_advice_for_this_machine(docker_config):
    assert endpoint() == Endpoint(DEFAULT_SOCKET, "default")
    default = Endpoint(DEFAULT_SOCKET, "default")
    absent = unreachable(default, FileNotFoundError(errno.ENOENT, "No such file or directory"))
    assert absent.message == ("cannot reach the Docker engine at unix:///var/run/docker.sock (the default socket): "
                              "there is no socket at /var/run/docker.sock")
    assert absent.hint.startswith("start Docker (`sudo systemctl start docker`")
    denied = unreachable(default, PermissionError(errno.EACCES, "Permission denied"))
    assert denied.message.endswith("permission denied on /var/run/docker.sock")
    assert "usermod -aG docker" in denied.hint


def test_doctor_reports_the_missing_engine_without_pointing_at_itself(tmp_path, monkeypatch):
    use_on_the_cli(tmp_path, monkeypatch, FakeEngine(unreachable=True))
    result = meshctl("doctor")
    assert result.exit_code == 1
    assert "✗ docker engine: cannot reach the Docker engine at unix:///var/run/docker.sock" in result.stdout
    assert "meshctl doctor" not in result.output
