"""`meshctl up` against the real engine: HTTPS that verifies, metrics that parse and count,
the lifecycle (stop orders, SIGKILL tie, app exits), side-by-side projects, and bad input."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time

import docker
import pytest

from meshctl.runtime.probes import http_request, tls_context
from tests.support import (Foreground, ca_path, container_events, counter, die_order, eventually, hello_project,
                           port_of, project_of, ps_json, run_meshctl, running_containers, unique_project)

pytestmark = pytest.mark.integration


def test_detached_stack_serves_verified_https_and_real_metrics(detached_hello, engine, tmp_path):
    folder, project, entry = detached_hello
    assert entry["project"] == project and entry["service"] == "hello" and entry["state"] == "running"
    assert {c["role"] for c in entry["containers"]} == {"pod", "app", "proxy", "metrics"}   # the proxy serves HTTPS
    assert all(c["state"] == "running" for c in entry["containers"])
    https, http, metrics = (port_of(entry["urls"][k]) for k in ("https", "http", "metrics"))

    # HTTPS through the proxy to the app verifies against meshctl's CA, for every name in the SANs.
    context = tls_context(ca_path())
    for name in ("localhost", "127.0.0.1", "hello"):
        answer = http_request(https, "/", tls=context, server_hostname=name)
        assert answer.status == 200 and answer.body == b"hi from meshctl\n"
    # ... and not against the system's trust store, nor for a name it was not issued for.
    with pytest.raises(ssl.SSLCertVerificationError):
        http_request(https, "/", tls=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        http_request(https, "/", tls=context, server_hostname="example.com")
    assert http_request(http, "/healthz").body == b"ok\n"

    # Metrics: lint with promtool, and the counter moves by exactly what we send.
    def scrape() -> str:
        return http_request(metrics, "/metrics").body.decode()

    before = counter(scrape(), "meshctl_requests_total", code="404", method="GET", service="hello")
    for _ in range(7):
        assert http_request(https, "/missing", tls=context).status == 404
    # The access events reach the metrics sidecar over the proxy's ring a moment later: poll.
    eventually(lambda: counter(scrape(), "meshctl_requests_total", code="404", method="GET", service="hello")
               >= before + 7, 10, 0.05)
    text = scrape()
    assert counter(text, "meshctl_requests_total", code="404", method="GET", service="hello") == before + 7
    assert counter(text, "meshctl_request_duration_seconds_count", service="hello") >= before + 7
    assert counter(text, "hello_greetings_total") >= 3        # the app's own metrics, merged in
    assert counter(text, "meshctl_app_metrics_up", service="hello") == 1
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # Labels, localhost-only ports, least privilege, no Docker socket anywhere.
    api = docker.from_env().api
    for c in entry["containers"]:
        attrs = api.inspect_container(c["name"])
        labels = attrs["Config"]["Labels"]
        assert labels["meshctl.project"] == project and labels["meshctl.service"] == "hello"
        assert labels["meshctl.role"] == c["role"]
        assert not any("docker.sock" in (m.get("Source") or "") for m in attrs["Mounts"])
        for bindings in (attrs["HostConfig"]["PortBindings"] or {}).values():
            assert all(b["HostIp"] == "127.0.0.1" for b in bindings)
        if c["role"] in ("proxy", "tls", "metrics", "pod"):
            assert attrs["HostConfig"]["ReadonlyRootfs"] and attrs["HostConfig"]["CapDrop"] == ["ALL"]
            assert "no-new-privileges:true" in attrs["HostConfig"]["SecurityOpt"]
    [network] = api.networks(names=[f"meshctl-{project}"])
    assert network["Labels"]["meshctl.project"] == project

    # Logs of one service, prefixed by role: the app's lines; the proxy's start-up chatter only with --role (or -v).
    logs = run_meshctl("logs", "hello", "--project", project, check=True).stdout
    assert "hello/app" in logs and "listening on :8080" in logs and "New worker" not in logs
    proxy = run_meshctl("logs", "hello", "--project", project, "--role", "proxy", check=True).stdout
    assert "hello/proxy | [NOTICE]" in proxy and "New worker" in proxy and "hello/app" not in proxy

    # `up -d` again with nothing changed keeps every container; `down` twice is fine.
    ids = {c.name: c.id for c in running_containers(engine, project)}
    run_meshctl("up", "-d", str(folder), check=True)
    assert {c.name: c.id for c in running_containers(engine, project)} == ids
    state = ca_path().parent.parent / "projects" / project        # its configs and leaf key
    assert (state / "hello" / "proxy" / "key.pem").exists()
    assert "removed 4 containers" in run_meshctl("down", str(folder), check=True).stderr
    assert not state.exists() and ca_path().exists()                 # the CA stays
    assert running_containers(engine, project) == []
    assert api.networks(names=[f"meshctl-{project}"]) == []
    assert "nothing was running" in run_meshctl("down", str(folder), check=True).stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_app_first_then_sidecars(tmp_path, engine, sidecar_images, signum):
    folder = hello_project(tmp_path)
    project = project_of(folder)
    up = Foreground(str(folder))
    try:
        up.wait_for_line("meshctl: ready")
        up.wait_for_line("hello/app")
        since = time.time()
        up.proc.send_signal(signum)
        assert up.wait(60) == 0, up.output
        assert "hello: stopped" in up.output  # the app got SIGTERM and shut down cleanly
        order = die_order(project, since)
        assert order[0] == "app", order
        assert set(order[1:3]) == {"metrics", "proxy"} and order[-1] == "pod", order
        assert running_containers(engine, project) == []
    finally:
        up.kill()
        run_meshctl("down", str(folder))


def test_sigkill_of_meshctl_leaves_no_container_running_and_down_removes_its_network(tmp_path, engine, sidecar_images):
    folder = hello_project(tmp_path)
    project = project_of(folder)
    up = Foreground(str(folder))
    try:
        up.wait_for_line("meshctl: ready")
        assert len(running_containers(engine, project)) == 4   # pod, metrics, proxy (serving HTTPS), app
        up.proc.kill()
        up.wait(10)
        eventually(lambda: [c.state for c in running_containers(engine, project) if c.state == "running"] == [],
                   10, 0.2)   # the limit
        # The network stays (nobody is left to remove it): doctor names it, and down removes it.
        networks = lambda: [n["Name"] for n in engine.networks({"meshctl.project": project})]
        assert networks() == [f"meshctl-{project}"]
        doctor = run_meshctl("doctor")
        assert f"meshctl-{project}" in doctor.stdout and "meshctl down --all" in doctor.stdout
        down = run_meshctl("down", str(folder), check=True)
        assert "left by a meshctl that was killed" in down.stdout + down.stderr
        assert networks() == []
    finally:
        up.kill()
        run_meshctl("down", str(folder))


EXITING_APP = '''
import os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers(); self.wfile.write(b"ok\\n")
        if self.path == "/exit":
            print("exiting on request, goodbye", flush=True)
            threading.Thread(target=lambda: os._exit(7)).start()
    def log_message(self, *a): pass

print("up and waiting", flush=True)
ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
'''


def test_app_that_exits_ends_meshctl_with_its_code(tmp_path, engine, sidecar_images):
    folder = hello_project(tmp_path, app_py=EXITING_APP)
    project = project_of(folder)
    up = Foreground(str(folder))
    try:
        up.wait_for_line("meshctl: ready")
        [entry] = ps_json(project)
        http_request(port_of(entry["urls"]["http"]), "/exit")
        assert up.wait(60) == 7, up.output
        assert "the app exited with code 7" in up.output
        assert "goodbye" in up.output.split("exited with code 7")[1]  # its last lines, after the message
        assert running_containers(engine, project) == []
    finally:
        up.kill()
        run_meshctl("down", str(folder))


def test_app_that_exits_at_once_is_a_clear_start_error(tmp_path, engine, sidecar_images):
    folder = hello_project(tmp_path, app_py="import sys\nprint('missing DATABASE_URL', flush=True)\nsys.exit(3)\n")
    project = project_of(folder)
    result = run_meshctl("up", str(folder))
    assert result.returncode == 3, result.stderr
    assert "the app exited with code 3 before it was ready" in result.stderr
    assert "missing DATABASE_URL" in result.stderr
    assert running_containers(engine, project) == []


def test_two_projects_side_by_side_and_an_image_wrapped_without_a_file(tmp_path, engine, sidecar_images):
    first = hello_project(tmp_path / "one")
    first_name = project_of(first)
    second_name = unique_project("image")
    run_meshctl("up", "-d", str(first), check=True)
    try:
        image = f"meshctl-{first_name}-hello:dev"
        run_meshctl("up", "-d", "--image", image, "--port", "8080", "--project", second_name, check=True,
                    cwd=tmp_path)
        context = tls_context(ca_path())
        for name in (first_name, second_name):
            [entry] = ps_json(name)
            assert http_request(port_of(entry["urls"]["https"]), "/", tls=context).status == 200
        run_meshctl("down", "--project", second_name, check=True)
        assert running_containers(engine, second_name) == []
        [entry] = ps_json(first_name)
        assert http_request(port_of(entry["urls"]["https"]), "/", tls=context).status == 200
    finally:
        run_meshctl("down", "--project", second_name)
        run_meshctl("down", str(first))


# -- bad input: one message, a non-zero exit, nothing left running ---------------------------------


def test_invalid_yaml_and_schema_errors_name_the_line(tmp_path):
    folder = hello_project(tmp_path, mesh_yaml="services:\n  hello:\n    build: .\n    port: 8080\n   health: /\n")
    result = run_meshctl("up", str(folder))
    assert result.returncode == 2
    assert f"{folder / 'mesh.yaml'}:5" in result.stderr and "not valid YAML" in result.stderr
    folder = hello_project(tmp_path, mesh_yaml="services:\n  hello:\n    build: .\n    sidecars:\n      tracer: {}\n")
    result = run_meshctl("up", str(folder))
    assert result.returncode == 2
    assert "mesh.yaml:5: services.hello.sidecars.tracer: sidecar 'tracer' needs exactly one of `image` or `build`" \
        in result.stderr
    assert "sidecars are: tls, proxy, metrics" in result.stderr


def test_failing_build_shows_the_log_tail(tmp_path, engine, sidecar_images):
    folder = hello_project(tmp_path, dockerfile="FROM debian:bookworm-slim\nRUN echo compiling && exit 42\n")
    project = project_of(folder)
    result = run_meshctl("up", str(folder))
    assert result.returncode == 3
    assert "compiling" in result.stderr and "failed" in result.stderr
    assert running_containers(engine, project) == []


def test_port_in_use_names_the_port_and_the_option(tmp_path, engine, sidecar_images):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        name = unique_project("busy")
        folder = hello_project(tmp_path, mesh_yaml=f"name: {name}\nservices:\n  hello:\n    build: .\n"
                                                   f"    ports: {{https: {port}, http: 0, metrics: 0}}\n")
        result = run_meshctl("up", str(folder))
    assert result.returncode == 3, result.stderr
    assert f"host port {port} is already in use" in result.stderr
    assert "services.hello.ports.https" in result.stderr
    assert running_containers(engine, name) == []


def test_unreachable_engine_is_one_clear_message(tmp_path):
    folder = hello_project(tmp_path)
    result = run_meshctl("up", str(folder), env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert result.returncode == 3
    assert "cannot reach the Docker engine" in result.stderr and "Traceback" not in result.stderr


STUBBORN_APP = '''
import signal
from http.server import BaseHTTPRequestHandler, HTTPServer

signal.signal(signal.SIGTERM, signal.SIG_IGN)   # ignores the polite stop

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers(); self.wfile.write(b"ok\\n")
    def log_message(self, *a): pass

print("serving, and ignoring SIGTERM", flush=True)
HTTPServer(("0.0.0.0", 8080), H).serve_forever()
'''


def test_second_ctrl_c_forces_the_stop(tmp_path, engine, sidecar_images):
    name = unique_project("force")
    folder = hello_project(tmp_path, app_py=STUBBORN_APP, mesh_yaml=(
        f"name: {name}\nservices:\n  hello:\n    build: .\n    stop_grace_period: 60s\n"
        "    ports: {https: 0, http: 0, metrics: 0}\n"))
    up = Foreground(str(folder))
    try:
        up.wait_for_line("meshctl: ready")
        since = time.time()
        up.proc.send_signal(signal.SIGINT)
        up.wait_for_line("stopping the apps")
        # The app got its SIGTERM (and ignores it): meshctl now waits out its grace period.
        eventually(lambda: [e for e in container_events(name, since, "kill")
                            if e["Actor"]["Attributes"].get("meshctl.role") == "app"
                            and e["Actor"]["Attributes"].get("signal") == "15"], 30, what="SIGTERM sent to the app")
        assert up.proc.poll() is None          # still waiting out the app's 60 s grace period
        up.proc.send_signal(signal.SIGINT)
        up.wait(30)                            # far sooner than the grace period
        assert "forced: killing every container now" in up.output
        eventually(lambda: running_containers(engine, name) == [], 10, 0.2)
    finally:
        up.kill()
        run_meshctl("down", "--project", name, "--force")


def test_services_of_a_project_reach_each_other_by_name(tmp_path, engine, sidecar_images):
    name = unique_project("multi")
    folder = hello_project(tmp_path, mesh_yaml=(
        f"name: {name}\nservices:\n"
        "  web:\n    build: .\n    health: /healthz\n    ports: {https: 0, http: 0, metrics: 0}\n"
        "  api:\n    build: .\n    env: {GREETING: api}\n    sidecars: {tls: false}\n"
        "    ports: {http: 0, metrics: 0}\n"
        "  edge:\n    build: .\n    env: {GREETING: edge}\n    sidecars: {proxy: false}\n"
        "    ports: {https: 0, http: 0, metrics: 0}\n"))
    run_meshctl("up", "-d", str(folder), check=True)
    try:
        entries = {e["service"]: e for e in ps_json(name)}
        assert set(entries) == {"web", "api", "edge"}
        assert entries["api"]["urls"]["https"] is None          # tls: false publishes no https port
        assert {c["role"] for c in entries["api"]["containers"]} == {"pod", "app", "proxy", "metrics"}
        # Without a proxy, the tls sidecar terminates HTTPS in front of the app, verified by the CA.
        assert {c["role"] for c in entries["edge"]["containers"]} == {"pod", "app", "tls", "metrics"}
        answer = http_request(port_of(entries["edge"]["urls"]["https"]), "/", tls=tls_context(ca_path()),
                              server_hostname="edge")
        assert answer.status == 200 and answer.body == b"edge from meshctl\n"
        web_app = next(c for c in running_containers(engine, name)
                       if c.label("service") == "web" and c.label("role") == "app")
        fetch = ("import urllib.request;"
                 "print(urllib.request.urlopen('http://api:15080/', timeout=5).read().decode(), end='')")
        code, output = engine.exec(web_app.id, ["python3", "-c", fetch])
        assert code == 0 and output == "api from meshctl\n", output
    finally:
        run_meshctl("down", str(folder))
    assert running_containers(engine, name) == []


def test_detached_no_wait_returns_once_started(tmp_path, engine, sidecar_images):
    folder = hello_project(tmp_path)
    project = project_of(folder)
    try:
        result = run_meshctl("up", "-d", "--no-wait", str(folder), check=True)
        assert "started (not waiting until it serves)" in result.stderr
        assert {c.label("role") for c in running_containers(engine, project)} == {"pod", "metrics", "proxy", "app"}
        assert run_meshctl("up", "--no-wait", str(folder)).returncode == 2
    finally:
        run_meshctl("down", str(folder))
