"""Sidecars of the user's own on the real engine: ready before the app (the app exits at its
first line if not), stopped after it, listed by ps and logs, least privilege, and one clear
message with exit 3 and nothing left when one never gets ready."""

from __future__ import annotations

import signal
import time

import docker
import pytest

from meshctl.runtime.probes import http_request, tls_context
from tests.conftest import Foreground, hello_project, project_of, ps_json, run_meshctl, running_containers, unique_project
from tests.integration.test_up import ca_path, die_order, port_of

pytestmark = pytest.mark.integration

# The app needs its sidecar at its first line: it asks it for the greeting, or exits 5.
APP_NEEDING_ITS_SIDECAR = '''
import os, signal, socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    with socket.create_connection(("127.0.0.1", 7000), timeout=2) as s:
        GREETING = s.recv(100).decode().strip()
except OSError as exc:
    print(f"app: no sidecar on :7000 ({exc}); exiting", flush=True)
    sys.exit(5)

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        body = f"{GREETING}\\n".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass

server = ThreadingHTTPServer(("0.0.0.0", 8080), H)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print(f"app: the sidecar says {GREETING!r}", flush=True)
server.serve_forever(poll_interval=0.1)
print("app: stopped", flush=True)
'''

# A slow starter: it listens only after two seconds, so an app started before it was ready exits.
GREETER = ("import socket, time; time.sleep(2); s = socket.socket(); "
           "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 7000)); s.listen(8); "
           "print('greeter: listening on :7000', flush=True)\\n"      # YAML's escape: one line in mesh.yaml
           "while True:\\n    c, _ = s.accept(); c.sendall(b'hi from the greeter'); c.close()")


def mesh_yaml(name: str, image: str, ready: str) -> str:
    return f"""\
name: {name}
services:
  hello:
    build: .
    port: 8080
    stop_grace_period: 5s
    ports: {{https: 0, http: 0, metrics: 0}}
    sidecars:
      greeter:
        image: {image}
        entrypoint: [python3, -c, "{GREETER}"]
        env: {{GREETER_MODE: slow}}
        ready: {ready}
"""


@pytest.fixture
def greeter_project(tmp_path, sidecar_images):
    def make(ready: str = "{tcp: 7000}"):
        name = unique_project("side")
        # The metrics sidecar's image has python3: a user's image that is already here.
        return hello_project(tmp_path, mesh_yaml=mesh_yaml(name, sidecar_images["metrics"], ready),
                             app_py=APP_NEEDING_ITS_SIDECAR)
    return make


def test_a_user_sidecar_is_ready_before_the_app_stops_after_it_and_shows_in_ps_and_logs(greeter_project, engine):
    folder = greeter_project()
    project = project_of(folder)
    up = Foreground(str(folder), "--no-watch")
    try:
        up.wait_for_line("meshctl: ready")
        [entry] = ps_json(project)
        assert [c["role"] for c in entry["containers"]] == ["pod", "metrics", "proxy", "greeter", "app"]
        answer = http_request(port_of(entry["urls"]["https"]), "/", tls=tls_context(ca_path()))
        assert answer.status == 200 and answer.body == b"hi from the greeter\n"   # through HTTPS → proxy → app → sidecar
        logs = run_meshctl("logs", "--project", project, check=True).stdout
        assert "hello/greeter" in logs and "greeter: listening on :7000" in logs
        assert "hello/greeter" in up.output                                    # streamed in the foreground too

        api = docker.from_env().api
        attrs = api.inspect_container(f"{project}-hello-greeter")
        host = attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"] and host["ReadonlyRootfs"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        holder = api.inspect_container(f"{project}-hello-pod")["Id"]
        assert host["NetworkMode"] == f"container:{holder}" and host["PidMode"] == f"container:{holder}"   # the pod's namespaces
        assert attrs["Config"]["Labels"]["meshctl.role"] == "greeter"
        assert "GREETER_MODE=slow" in attrs["Config"]["Env"]

        since = time.time()
        up.proc.send_signal(signal.SIGINT)
        assert up.wait(60) == 0, up.output
        order = die_order(project, since)
        assert order[0] == "app" and "greeter" in order[1:-1] and order[-1] == "pod", order
        assert running_containers(engine, project) == []
    finally:
        up.kill()
        run_meshctl("down", str(folder))


def test_a_user_sidecar_that_never_gets_ready_is_one_message_exit_3_and_nothing_left(greeter_project, engine):
    folder = greeter_project(ready="{http: /ready, port: 7001}")      # nothing ever answers there
    project = project_of(folder)
    result = run_meshctl("up", "-d", str(folder), "--timeout", "6")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the greeter sidecar of hello was not ready after 6s" in result.stderr
    assert "services.hello.sidecars.greeter.ready" in result.stderr
    assert "Traceback" not in result.stderr
    assert running_containers(engine, project) == []
