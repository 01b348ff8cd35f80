"""Sidecars of the user's own on the real engine: ready before the app (the app exits at its
first line if not), stopped after it, listed by ps and logs, least privilege, and one clear
message with exit 3 and nothing left when one never gets ready."""

from __future__ import annotations

import signal
import time

import docker
import pytest

from meshctl.runtime.probes import http_request, tls_context
from tests.support import (APP_NEEDING_ITS_SIDECAR, Foreground, ca_path, die_order, greeter_mesh_yaml, hello_project,
                           port_of, project_of, ps_json, run_meshctl, running_containers, unique_project)

pytestmark = pytest.mark.integration


@pytest.fixture
def greeter_project(tmp_path, sidecar_images):
    def make(ready: str = "{tcp: 7000}"):
        name = unique_project("side")
        # The metrics sidecar's image has python3: a user's image that is already here.
        return hello_project(tmp_path, mesh_yaml=greeter_mesh_yaml(name, sidecar_images["metrics"], ready),
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
