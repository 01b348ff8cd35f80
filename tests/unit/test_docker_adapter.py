"""The Docker adapter's pure parts, with no daemon: how SDK errors are translated at the boundary
(and the exit code each one gives the CLI)."""

from __future__ import annotations

import socket
import time

import docker.errors
import pytest
import requests

from meshctl.engine import docker as adapter
from meshctl.engine import wire
from meshctl.errors import EngineError
from tests.unit.fake_engine import (
    FakeEngine,
    engine_with_images,
    meshctl,
    use_on_the_cli,
)


def api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} Client Error", response=response, explanation=explanation)


def translated(exc: Exception) -> EngineError:
    with pytest.raises(EngineError) as caught, adapter._translated("create container shop-web-pod"):
        raise exc
    return caught.value


@pytest.mark.parametrize("exc", [api_error(409, 'Conflict. The container name "/shop-web-pod" is already in use'),
                                 docker.errors.NotFound("No such container: shop-web-pod")],
                         ids=["conflict", "not-found"])
def test_a_clash_or_a_missing_object_is_the_engines_refusal_exit_3(exc):
    error = translated(exc)
    assert error.exit_code == 3
    assert error.message.startswith("could not create container shop-web-pod: ")


class Clashing(FakeEngine):
    """A container name already taken by something meshctl did not make: the real adapter's
    translation of Docker's 409."""

    def create(self, spec):
        with adapter._translated(f"create container {spec.name}"):
            raise api_error(409, f'Conflict. The container name "/{spec.name}" is already in use')


def test_meshctl_test_reports_a_name_clash_as_exit_3_not_as_a_failed_check(tmp_path, monkeypatch):
    engine = engine_with_images()
    clashing = Clashing(images=engine.images)
    use_on_the_cli(tmp_path, monkeypatch, clashing)
    result = meshctl("test", str(tmp_path))
    assert result.exit_code == 3, result.output
    assert "is already in use" in result.output


# -- wire.py: what the engine sends back -----------------------------------------------------------


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_an_exec_stream_is_demultiplexed_in_order():
    assert wire.demultiplexed(frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"")) == b"out\nerr\n"
    assert wire.demultiplexed(frame(1, b"cut") + b"\x01\x00") == b"cut"        # a torn header is dropped


def test_read_until_returns_everything_or_none_at_the_deadline():
    ours, theirs = socket.socketpair()
    theirs.sendall(b"abc")
    theirs.close()
    assert wire.read_until(ours, time.monotonic() + 5) == b"abc"
    ours, theirs = socket.socketpair()
    started = time.monotonic()
    assert wire.read_until(ours, started + 0.2) is None                     # nothing came, nothing closed
    assert time.monotonic() - started < 2
    wire.close_hijacked(ours)
    theirs.close()


def test_an_exec_is_killed_only_if_its_pid_is_the_containers_here(tmp_path):
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cgroup").write_text("12:pids:/docker/abc123\n")
    (tmp_path / "42" / "status").write_text("Name:\tsleep\nNSpid:\t42\t7\n")
    assert wire.owned_by(42, "abc123", proc=str(tmp_path)) and not wire.owned_by(42, "def", proc=str(tmp_path))
    assert not wire.owned_by(43, "abc123", proc=str(tmp_path))               # not here (a remote engine)
    assert wire.namespace_pid(42, proc=str(tmp_path)) == 7 and wire.namespace_pid(43, proc=str(tmp_path)) is None


def test_pure_readers_of_the_engines_answers():
    assert wire.label_filter({"meshctl.project": "shop", "meshctl.role": ""}) == {
        "label": ["meshctl.project=shop", "meshctl.role"]}
    assert wire.port_map({"8443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40001"}], "9/tcp": None}) == {8443: 40001}
    assert wire.port_from_error("Bind for 127.0.0.1:8443 failed: port is already allocated") == 8443
    assert wire.port_from_error("no such image") is None
    info = wire.container_info({"Id": "c1", "Names": ["/shop-web-app"], "State": "running", "Labels": None,
                                "Ports": [{"PrivatePort": 8081, "PublicPort": 40000}, {"PrivatePort": 9}]})
    assert (info.name, info.ports, info.labels) == ("shop-web-app", {8081: 40000}, {})
    assert "MESHCTL_BUILD_NETWORK=host" in wire.build_hint("Temporary failure resolving deb.debian.org")


class ExecApi:
    """The SDK's exec calls: "hung" is a command still running as host pid 4242; every other
    exec (the kill from inside) ends at once with code 0."""

    def __init__(self):
        self.commands = []

    def exec_inspect(self, exec_id):
        return {"Running": True, "Pid": 4242, "ContainerID": "c1"} if exec_id == "hung" else {"ExitCode": 0}

    def exec_create(self, container, command, **options):
        self.commands.append((container, command))
        return {"Id": "kill"}

    def exec_start(self, exec_id, socket=False):
        ours, theirs = socket_pair()
        theirs.close()
        return ours


socket_pair = socket.socketpair     # exec_start's own `socket` argument hides the module


def test_without_the_right_to_signal_it_the_hung_command_is_killed_from_inside_once(monkeypatch):
    engine = adapter.DockerEngine()
    engine._client = type("Client", (), {"api": ExecApi()})()
    monkeypatch.setattr(adapter, "owned_by", lambda pid, container: True)
    monkeypatch.setattr(adapter, "namespace_pid", lambda pid: 7)

    def refused(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(adapter.os, "kill", refused)
    assert engine._kill_exec("hung", inside=True) == "it was killed"
    assert engine.api.commands == [("c1", ["sh", "-c", "kill -KILL 7"])]
    assert "may still be running" in engine._kill_exec("hung", inside=False)    # that kill is not killed in turn
