"""The adapter's fast path (engine/unix_http.py): container lists and the version read over a
local engine's Unix socket with the standard library, against a real HTTP server on a Unix socket;
which engines it takes (and which it leaves to the SDK); an engine that is not there."""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pytest

from meshctl.engine.docker import DockerEngine
from meshctl.engine.unix_http import local_endpoint
from meshctl.errors import EngineError


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine_socket(tmp_path):
    """A Unix socket answering as an engine would: `answers` maps a path to (status, JSON body);
    `seen` collects each request's path and query."""
    seen: list[tuple[str, dict[str, list[str]]]] = []
    answers: dict[str, tuple[int, object]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlsplit(self.path)
            seen.append((url.path, parse_qs(url.query)))
            status, body = answers.get(url.path, (404, {"message": "page not found"}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def address_string(self):      # a Unix peer has no (host, port)
            return "local"

        def log_message(self, *args):
            pass

    path = str(tmp_path / "docker.sock")
    server = _Server(path, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield path, answers, seen
    server.shutdown()
    server.server_close()


def test_containers_and_the_version_are_read_over_the_socket_without_the_sdk(engine_socket, monkeypatch):
    path, answers, seen = engine_socket
    answers["/containers/json"] = (200, [{"Id": "a1", "Names": ["/shop-web-pod"], "State": "running",
                                          "Labels": {"meshctl.role": "pod"}, "ImageID": "sha256:1",
                                          "Ports": [{"PrivatePort": 15443, "PublicPort": 8443}]}])
    answers["/version"] = (200, {"Version": "28.2.2", "ApiVersion": "1.50"})
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    engine = DockerEngine()
    [pod] = engine.containers({"meshctl.project": "shop", "meshctl.version": ""}, all=False)
    assert (pod.id, pod.name, pod.state, pod.role, pod.ports) == ("a1", "shop-web-pod", "running", "pod", {15443: 8443})
    assert seen == [("/containers/json", {"all": ["0"], "filters": [json.dumps(
        {"label": ["meshctl.project=shop", "meshctl.version"]})]})]
    assert engine.version()["Version"] == "28.2.2"
    assert engine._client is None        # the SDK was never asked to connect


def test_a_refusal_is_an_engine_error_with_the_engines_message(engine_socket, monkeypatch):
    path, answers, _ = engine_socket
    answers["/containers/json"] = (500, {"message": "invalid filter 'labl'"})
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    with pytest.raises(EngineError, match=r"refused GET /containers/json \(500\): invalid filter 'labl'") as refused:
        DockerEngine().containers({"meshctl.project": "shop"})
    assert refused.value.exit_code == 3


def test_an_engine_that_is_not_there_names_the_socket_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    with pytest.raises(EngineError) as gone:
        DockerEngine().containers({"meshctl.project": "shop"})
    assert gone.value.message == (f"cannot reach the Docker engine at unix://{tmp_path}/none.sock (from DOCKER_HOST): "
                                  f"there is no socket at {tmp_path}/none.sock")
    assert "DOCKER_HOST" in gone.value.hint


def test_only_an_engine_on_a_local_socket_is_taken_the_rest_is_the_sdks(tmp_path):
    home = {"HOME": str(tmp_path)}
    assert local_endpoint(environ=home).url == "unix:///var/run/docker.sock"
    assert local_endpoint(environ={"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}).source == "DOCKER_HOST"
    assert local_endpoint("unix:///x.sock", environ={"DOCKER_HOST": "tcp://h:2375"}).socket_path == "/x.sock"
    assert local_endpoint(environ={"DOCKER_HOST": "tcp://h:2375"}) is None
    assert local_endpoint(environ={"DOCKER_HOST": "ssh://me@h"}) is None
    assert local_endpoint(environ={**home, "DOCKER_CONTEXT": "rootless"}) is None
    assert local_endpoint(environ={**home, "DOCKER_CONTEXT": "default"}) is not None
    (tmp_path / ".docker").mkdir()
    config = tmp_path / ".docker" / "config.json"
    config.write_text(json.dumps({"currentContext": "desktop-linux"}))
    assert local_endpoint(environ=home) is None                          # the CLI's chosen context
    config.write_text(json.dumps({"currentContext": "default", "auths": {}}))
    assert local_endpoint(environ=home) is not None
    config.write_text("{not json")
    assert local_endpoint(environ=home) is None                          # the SDK reads it, and says what is wrong
    assert local_endpoint(environ={"DOCKER_CONFIG": str(tmp_path / "elsewhere")}) is not None
