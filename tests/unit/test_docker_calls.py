"""The Docker adapter (engine/docker.py) on a recording Docker API client, no daemon: what a
ContainerSpec becomes in the create call, how the engine's answers are read (builds, logs, ports,
container lists, execs) and how its refusals come out (missing objects, ports in use, an engine
that is not there)."""

from __future__ import annotations

import json
import socket
import struct

import docker
import docker.errors
import pytest
import requests

from meshctl.engine import docker as adapter
from meshctl.engine.docker import DockerEngine
from meshctl.errors import BuildError, EngineError, ExecTimeout, PortInUse
from meshctl.model import ContainerSpec

CALLS = ("attach_socket", "build", "containers", "create_container", "create_network", "create_volume",
         "exec_create", "exec_inspect", "exec_start", "inspect_container", "inspect_image", "kill", "logs",
         "networks", "pull", "push", "remove_container", "remove_network", "remove_volume", "restart", "start", "stats",
         "stop", "version", "volumes", "wait", "_post")


class RecordingApi(docker.APIClient):
    """The SDK's low-level client with every call that would reach the engine recorded and answered
    from `answers` (a value, an exception to raise, or a function of the call's arguments). Its
    pure helpers (create_host_config, create_networking_config, ...) are the SDK's own."""

    def __init__(self, **answers):
        super().__init__(base_url="unix:///nonexistent.sock", version="1.41")   # no I/O with a version
        self.answers = answers
        self.calls: list[tuple] = []

    def answer(self, call, /, *args, **kwargs):
        self.calls.append((call, args, kwargs))
        found = self.answers.get(call)
        if isinstance(found, BaseException):
            raise found
        return found(*args, **kwargs) if callable(found) else found


for _name in CALLS:
    setattr(RecordingApi, _name, lambda self, *args, _name=_name, **kwargs: self.answer(_name, *args, **kwargs))


class Client:
    def __init__(self, api):
        self.api = api

    def close(self):
        pass


def engine_on(monkeypatch, **answers) -> tuple[DockerEngine, RecordingApi]:
    """An adapter whose every call goes to the SDK (the local socket's fast path is test_unix_http's)."""
    api = RecordingApi(**answers)
    adapter._load_sdk()
    monkeypatch.setattr(adapter.LocalEngine, "get", lambda self, path, query=None: None)
    monkeypatch.setattr(adapter.docker, "from_env", lambda **options: Client(api))
    return DockerEngine(), api


def refusal(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} Client Error", response=response, explanation=explanation)


def the_call(api: RecordingApi, name: str) -> tuple[tuple, dict]:
    [(args, kwargs)] = [(a, k) for n, a, k in api.calls if n == name]
    return args, kwargs


# -- a spec becomes one create call ---------------------------------------------------------------


def test_a_holder_owns_the_ports_and_network_and_is_tied_to_this_process(monkeypatch):
    engine, api = engine_on(monkeypatch, create_container={"Id": "c1"})
    holder = ContainerSpec(name="shop-web-pod", image="meshctl-pod", labels={"meshctl.role": "pod"},
                           command=("sh", "-c", "cat >/dev/null"), network="meshctl-shop", aliases=("web",),
                           ports={15443: 8443, 15080: 0}, tied_to_caller=True, stop_timeout=3)
    assert engine.create(holder) == "c1"
    (image,), call = the_call(api, "create_container")
    assert image == "meshctl-pod" and call["name"] == "shop-web-pod" and call["command"] == ["sh", "-c", "cat >/dev/null"]
    assert call["stdin_open"] is True and call["detach"] is False       # StdinOnce: our attach holds it
    assert call["stop_timeout"] == 3 and call["environment"] is None and call["entrypoint"] is None
    host = call["host_config"]
    assert host["AutoRemove"] is True and host["NetworkMode"] == "meshctl-shop" and "PidMode" not in host
    assert host["PortBindings"] == {"15443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8443"}],
                                    "15080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert call["networking_config"]["EndpointsConfig"]["meshctl-shop"]["Aliases"] == ["web"]


def test_a_sidecar_joins_the_holders_namespaces_locked_down(monkeypatch):
    engine, api = engine_on(monkeypatch, create_container={"Id": "c2"})
    proxy = ContainerSpec(name="shop-web-proxy", image="meshctl-haproxy", labels={"meshctl.role": "proxy"},
                          entrypoint=(), env={"A": "1"}, user="99:99", namespace_of="shop-web-pod",
                          mounts=(("/home/x/proxy", "/etc/meshctl", True), ("/tmp/data", "/data", False)),
                          read_only=True, cap_drop=("ALL",), cap_add=("NET_BIND_SERVICE",), no_new_privileges=True,
                          tmpfs=("/run",), restarts_on_failure=True)
    engine.create(proxy)
    _, call = the_call(api, "create_container")
    assert call["detach"] is True and call["stdin_open"] is False and call["networking_config"] is None
    assert call["entrypoint"] == [] and call["environment"] == {"A": "1"} and call["user"] == "99:99"
    host = call["host_config"]
    assert host["NetworkMode"] == host["PidMode"] == "container:shop-web-pod" and "PortBindings" not in host
    assert sorted(host["Binds"]) == ["/home/x/proxy:/etc/meshctl:ro", "/tmp/data:/data:rw"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"] and host["CapAdd"] == ["NET_BIND_SERVICE"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"] and host["Tmpfs"] == {"/run": "rw,noexec,nosuid,size=16m"}
    # Docker refuses a restart policy on an auto-remove container.
    assert not host.get("AutoRemove") and host["RestartPolicy"] == {"Name": "on-failure"}


# -- what the engine answers ----------------------------------------------------------------------


def test_container_lists_filter_by_label_and_read_names_and_published_ports(monkeypatch):
    listed = [{"Id": "a1", "Names": ["/shop-web-pod"], "Labels": {"meshctl.role": "pod"}, "State": "running",
               "ImageID": "sha256:1", "Ports": [{"PrivatePort": 15443, "PublicPort": 8443},
                                                 {"PrivatePort": 15443, "PublicPort": 8444},
                                                 {"PrivatePort": 15080}]},
              {"Id": "a2"}]
    inspected = {"NetworkSettings": {"Ports": {"15443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8443"}],
                                               "15080/tcp": None, "9090/tcp": [{"HostPort": ""}]}}}
    engine, api = engine_on(monkeypatch, containers=listed, inspect_container=inspected)
    pod, bare = engine.containers({"meshctl.project": "shop", "meshctl.version": ""}, all=False)
    _, call = the_call(api, "containers")
    assert call == {"all": False, "filters": {"label": ["meshctl.project=shop", "meshctl.version"]}}
    assert (pod.id, pod.name, pod.state, pod.ports, pod.image_id) == ("a1", "shop-web-pod", "running", {15443: 8443},
                                                                       "sha256:1")
    assert pod.role == "pod" and (bare.name, bare.labels, bare.ports) == ("?", {}, {})
    assert engine.published_ports("a1") == {15443: 8443}


def test_a_build_streams_its_lines_and_returns_the_image_id(monkeypatch, tmp_path):
    chunks = [{"stream": "Step 1/2 : FROM debian\n\n"}, {"stream": " ---> abc\nStep 2/2 : COPY . /app\n"},
              {"aux": {"ID": "sha256:built"}}]
    engine, api = engine_on(monkeypatch, build=lambda **options: iter(chunks))
    lines: list[str] = []
    assert engine.build(tmp_path, "web:1", labels={"a": "b"}, network_mode="host", on_line=lines.append) == "sha256:built"
    assert lines == ["Step 1/2 : FROM debian", " ---> abc", "Step 2/2 : COPY . /app"]
    _, call = the_call(api, "build")
    assert call["tag"] == "web:1" and call["network_mode"] == "host" and call["rm"] and call["forcerm"]


def test_a_failed_build_carries_the_logs_tail_and_a_hint_for_its_cause(monkeypatch, tmp_path):
    dns = [{"stream": "Step 2/2 : RUN apt-get update\n"},
           {"error": "Temporary failure resolving 'deb.debian.org'\nE: Unable to fetch\n"}]
    engine, _ = engine_on(monkeypatch, build=lambda **options: iter(dns))
    with pytest.raises(BuildError) as failed:
        engine.build(tmp_path, "web:1", labels={}, network_mode=None)
    assert failed.value.message == f"building web:1 from {tmp_path} failed: E: Unable to fetch"
    assert "MESHCTL_BUILD_NETWORK=host" in failed.value.hint
    assert failed.value.details.splitlines()[0] == "Step 2/2 : RUN apt-get update"
    assert failed.value.exit_code == 3
    engine, _ = engine_on(monkeypatch, build=refusal(404, "pull access denied for nosuch/base"))
    with pytest.raises(BuildError) as missing:
        engine.build(tmp_path, "web:1", labels={}, network_mode=None)
    assert "pull access denied" in missing.value.message and "seed-base-image" in missing.value.hint
    engine, _ = engine_on(monkeypatch, build=lambda **options: iter([{"error": "COPY failed: no source files"}]))
    with pytest.raises(BuildError) as dockerfile:
        engine.build(tmp_path, "web:1", labels={}, network_mode=None)
    assert dockerfile.value.hint.startswith("fix the Dockerfile")


def test_an_engine_that_is_not_there_says_where_it_was_looked_for_and_how_to_start_one(monkeypatch, tmp_path):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))     # the default context
    gone = requests.exceptions.ConnectionError("Connection refused")
    engine, _ = engine_on(monkeypatch, version=gone, build=gone)
    for attempt in (engine.version, lambda: engine.build(tmp_path, "web:1", labels={}, network_mode=None)):
        with pytest.raises(EngineError) as refused:
            attempt()
        assert refused.value.message == ("cannot reach the Docker engine at unix:///var/run/docker.sock "
                                         "(the default socket): connection refused: nothing listens there")
        assert "sudo systemctl start docker" in refused.value.hint and refused.value.exit_code == 3

    def no_socket(**options):
        raise docker.errors.DockerException("Error while fetching server API version: No such file")
    monkeypatch.setattr(adapter.docker, "from_env", no_socket)
    with pytest.raises(EngineError, match="at unix:///var/run/docker.sock .the default socket.: there is no socket at "
                                          "/var/run/docker.sock$"):
        DockerEngine().version()
    engine, _ = engine_on(monkeypatch, version=docker.errors.DockerException("TLS misconfigured"))
    with pytest.raises(EngineError, match="^could not reach the Docker engine: TLS misconfigured$"):
        engine.version()


def test_a_port_taken_on_start_names_the_port_and_the_setting_to_change(monkeypatch):
    taken = refusal(500, "driver failed programming external connectivity: Bind for 127.0.0.1:8443 failed: "
                         "port is already allocated")
    engine, _ = engine_on(monkeypatch, start=taken)
    with pytest.raises(PortInUse) as in_use:
        engine.start("c1", name="shop-web-pod", port_hints={8443: "ports.https of web"})
    assert in_use.value.message == "host port 8443 is already in use" and in_use.value.exit_code == 3
    assert in_use.value.hint == "stop what listens on 127.0.0.1:8443, or change ports.https of web (0 = a free port)"
    engine, _ = engine_on(monkeypatch, start=refusal(500, "listen tcp4: address already in use"))
    with pytest.raises(PortInUse, match="^a host port of this pod is already in use$"):
        engine.start("c1")
    engine, _ = engine_on(monkeypatch, start=refusal(500, "OCI runtime create failed"))
    with pytest.raises(EngineError, match="could not start container c1: OCI runtime create failed") as other:
        engine.start("c1")
    assert not isinstance(other.value, PortInUse)


def test_what_is_already_gone_is_fine_and_what_is_in_use_is_said(monkeypatch):
    missing = docker.errors.NotFound("No such object")
    engine, api = engine_on(monkeypatch, inspect_image=missing, inspect_container=missing,
                            stop=refusal(409, "is not running"), remove_container=missing, remove_network=missing,
                            remove_volume=refusal(409, "volume is in use"), logs=missing)
    assert engine.image_id("web:1") is None and engine.inspect("c1") is None
    assert engine.published_ports("c1") == {}
    engine.stop("c1", timeout=2.4)
    assert engine.remove_network("meshctl-shop") is True and engine.remove_volume("cache") is False
    assert list(engine.logs("c1", follow=False)) == []
    assert the_call(api, "stop") == (("c1",), {"timeout": 2})
    assert [name for name, _, _ in api.calls if name == "remove_container"] == ["remove_container"]
    engine, _ = engine_on(monkeypatch, remove_network=refusal(403, "network has active endpoints"))
    assert engine.remove_network("meshctl-shop") is False
    engine, _ = engine_on(monkeypatch, remove_network=refusal(500, "something else"))
    with pytest.raises(EngineError, match="could not remove network meshctl-shop: something else"):
        engine.remove_network("meshctl-shop")


def test_logs_come_as_lines_however_the_stream_cuts_them(monkeypatch):
    engine, api = engine_on(monkeypatch, logs=lambda *a, **k: iter([b"first li", b"ne\r\nsecond\nthi", b"rd"]))
    assert list(engine.logs("c1", follow=True, tail=5)) == ["first line", "second", "third"]
    assert the_call(api, "logs")[1]["tail"] == 5
    broken = iter([b"one\n"])

    def cut():
        yield from broken
        raise requests.exceptions.ChunkedEncodingError("the container went away")
    engine, _ = engine_on(monkeypatch, logs=lambda *a, **k: cut())
    assert list(engine.logs("c1", follow=True)) == ["one"]


def test_an_exec_gives_its_exit_code_and_output(monkeypatch):
    engine, api = engine_on(monkeypatch, exec_create={"Id": "e1"}, exec_start=b"ok\n",
                            exec_inspect={"ExitCode": 0})
    assert engine.exec("c1", ["cat", "/etc/hostname"]) == (0, "ok\n")
    assert the_call(api, "exec_create") == (("c1", ["cat", "/etc/hostname"]), {"stdout": True, "stderr": True})
    engine, _ = engine_on(monkeypatch, exec_create={"Id": "e1"}, exec_start=b"", exec_inspect={"ExitCode": None})
    assert engine.exec("c1", ["true"]) == (-1, "")


def test_a_pull_that_the_registry_refuses_says_so(monkeypatch):
    engine, api = engine_on(monkeypatch, pull=lambda *a, **k: iter([{"status": "Pulling"}, {"error": "denied"}]))
    with pytest.raises(EngineError, match="^pulling redis@sha256:abc failed: denied$"):
        engine.pull("redis@sha256:abc")
    assert the_call(api, "pull") == (("redis",), {"tag": "sha256:abc", "stream": True, "decode": True})


def test_a_push_goes_to_the_registry_its_name_says_and_a_refusal_says_what_to_check(monkeypatch):
    engine, api = engine_on(monkeypatch, push=lambda *a, **k: iter([{"status": "Pushing"}, {"error": "unauthorized"}]))
    with pytest.raises(EngineError, match="^pushing reg.example:5000/team/web:abc failed: unauthorized$") as caught:
        engine.push("reg.example:5000/team/web:abc")
    assert "docker login reg.example:5000" in caught.value.hint
    assert the_call(api, "push") == (("reg.example:5000/team/web",), {"tag": "abc", "stream": True, "decode": True})


def test_a_containers_exit_is_read_from_the_wait_it_registered(monkeypatch):
    class Response:
        def __init__(self, status, content):
            self.status_code, self.content, self.closed = status, content, False

        def close(self):
            self.closed = True
    exited = Response(200, json.dumps({"StatusCode": 7}).encode())
    engine, api = engine_on(monkeypatch, _post=exited)
    assert engine.watch_exit("c1")() == 7 and exited.closed
    assert the_call(api, "_post")[1]["params"] == {"condition": "removed"}
    engine, api = engine_on(monkeypatch, _post=Response(200, b"not json"))
    assert engine.watch_exit("c1", restarts=True)() is None
    assert the_call(api, "_post")[1]["params"] == {"condition": "next-exit"}
    engine, _ = engine_on(monkeypatch, _post=Response(404, b""))
    assert engine.watch_exit("c1")() is None


def test_an_exec_stream_is_demultiplexed_in_order():
    from meshctl.engine.wire import demultiplexed

    def frame(stream: int, payload: bytes) -> bytes:
        return struct.pack(">BxxxL", stream, len(payload)) + payload
    assert demultiplexed(frame(1, b"out ") + frame(2, b"err ") + frame(1, b"more") + b"\x01\x00") == b"out err more"


def test_an_exec_with_a_timeout_reads_its_stream_until_it_ends_or_the_deadline(monkeypatch):
    def frame(payload: bytes) -> bytes:
        return struct.pack(">BxxxL", 1, len(payload)) + payload
    ours, theirs = socket.socketpair()
    theirs.sendall(frame(b"done\n"))
    theirs.close()
    engine, api = engine_on(monkeypatch, exec_create={"Id": "e1"}, exec_start=ours, exec_inspect={"ExitCode": 3})
    assert engine.exec("c1", ["check"], timeout=5) == (3, "done\n")
    assert the_call(api, "exec_start") == (("e1",), {"socket": True})

    ours, theirs = socket.socketpair()           # a command that never ends
    engine, _ = engine_on(monkeypatch, exec_create={"Id": "e2"}, exec_start=ours,
                          exec_inspect={"Running": False, "Pid": 0})
    with pytest.raises(ExecTimeout) as hung:
        engine.exec("c1", ["sleep", "60"], timeout=0.2)
    assert hung.value.message == "`sleep 60` did not finish within 0.2s; it has ended since"
    assert hung.value.exit_code == 3
    theirs.close()


def test_an_execs_process_is_found_by_its_containers_cgroup_and_its_pid_inside(tmp_path):
    from meshctl.engine.wire import namespace_pid, owned_by

    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cgroup").write_text("0::/system.slice/docker-abc123def.scope\n")
    (tmp_path / "42" / "status").write_text("Name:\tsleep\nNSpid:\t42\t7\n")
    assert owned_by(42, "abc123def", proc=str(tmp_path)) and not owned_by(42, "other", proc=str(tmp_path))
    assert not owned_by(42, "", proc=str(tmp_path)) and not owned_by(43, "abc123def", proc=str(tmp_path))
    assert namespace_pid(42, proc=str(tmp_path)) == 7 and namespace_pid(43, proc=str(tmp_path)) is None


def test_a_command_the_image_does_not_have_is_said_in_meshctl_s_words(monkeypatch):
    runc = refusal(400, 'OCI runtime create failed: runc create failed: unable to start container process: '
                        'exec: "gunicorn": executable file not found in $PATH: unknown')
    engine, _ = engine_on(monkeypatch, start=runc)
    with pytest.raises(EngineError) as caught:
        engine.start("c1", name="shop-web-app")
    assert caught.value.message == ("shop-web-app: its command's program 'gunicorn' is not on the image's PATH, "
                                    "so it cannot start")
    assert "requirements.txt" in caught.value.hint and "source:" in caught.value.hint
    assert "OCI runtime" not in caught.value.message + caught.value.hint
    engine, _ = engine_on(monkeypatch, start=refusal(400, 'OCI runtime create failed: exec: "./run.sh": '
                                                         'stat ./run.sh: no such file or directory: unknown'))
    with pytest.raises(EngineError, match=r"^shop-web-app: its command's program './run.sh' is not in the container"):
        engine.start("c1", name="shop-web-app")


def test_a_restart_that_leaves_no_running_container_is_an_error(monkeypatch):
    """Docker 20.10 under load may remove an auto-remove container during its restart: refused
    ("marked for removal"), or the restart answers and the container is removing or gone."""
    running = {"State": {"Status": "running"}}
    engine, api = engine_on(monkeypatch, restart=None, inspect_container=running)
    engine.restart("c1", timeout=4.6)
    assert the_call(api, "restart") == (("c1",), {"timeout": 5})
    for after in ({"State": {"Status": "removing"}}, docker.errors.NotFound("No such container")):
        engine, _ = engine_on(monkeypatch, restart=None, inspect_container=after)
        with pytest.raises(EngineError, match="could not restart container c1: it is (removing|removed) after"):
            engine.restart("c1", timeout=5)
    marked = refusal(500, "Cannot restart container c1: container is marked for removal and cannot be started")
    engine, _ = engine_on(monkeypatch, restart=marked, inspect_container=running)
    with pytest.raises(EngineError, match="marked for removal"):
        engine.restart("c1", timeout=5)
