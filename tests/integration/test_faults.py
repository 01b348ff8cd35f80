"""Faults survived, on the real engine: a killed sidecar is restarted in place while the app keeps
its container, a crash loop is given up on without taking the app down, an app that answers 5xx
fails readiness fast with its answers, and a closed
stdout never stops a teardown. Waits are polls with generous deadlines; no timing is asserted
(bench/soak.py measures how fast HTTPS comes back)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import docker
import pytest

from meshctl.runtime.probes import http_request, tls_context
from tests.support import (APP_NEEDING_ITS_SIDECAR, Foreground, ca_path, counter, eventually, greeter_mesh_yaml,
                           hello_project, meshctl_cmd, port_of, project_of, ps_json, run_meshctl, running_containers,
                           unique_project)

pytestmark = pytest.mark.integration


def container_of(engine, project: str, role: str):
    found = list(engine.containers({"meshctl.project": project, "meshctl.role": role}, all=False))
    return found[0] if found else None


class Load:
    """HTTPS requests one after another until stopped, each verified against meshctl's CA."""

    def __init__(self, port: int):
        self.port, self.context = port, tls_context(ca_path())
        self.outcomes: list[tuple[float, bool]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                ok = http_request(self.port, "/", tls=self.context, server_hostname="localhost", timeout=5).status == 200
            except OSError:
                ok = False
            self.outcomes.append((time.monotonic(), ok))
            time.sleep(0.01)

    def succeeded_since(self, moment: float) -> bool:
        return any(ok for at, ok in self.outcomes if at > moment)

    def sent_since(self, moment: float) -> int:
        return sum(1 for at, _ in self.outcomes if at > moment)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)


@pytest.fixture
def foreground_hello(tmp_path, engine, sidecar_images):
    folder = hello_project(tmp_path)
    project = project_of(folder)
    up = Foreground(str(folder), "--no-watch")
    try:
        up.wait_for_line("meshctl: ready")
        yield up, folder, project
    finally:
        up.kill()
        run_meshctl("down", str(folder))


def test_a_killed_proxy_is_restarted_in_place_under_load_and_the_app_keeps_its_container(foreground_hello, engine):
    up, _folder, project = foreground_hello
    [entry] = ps_json(project)
    app = container_of(engine, project, "app")
    load = Load(port_of(entry["urls"]["https"]))
    try:
        eventually(lambda: load.succeeded_since(0), 60, 0.05, what="a first answer")
        killed_at = time.monotonic()
        docker.from_env().api.kill(container_of(engine, project, "proxy").id)
        up.wait_for_line("the proxy sidecar restarted in place", timeout=60)
        eventually(lambda: load.succeeded_since(time.monotonic() - 0.2), 60, 0.05, what="HTTPS answering again")
        settled = time.monotonic()
        # Requests after it came back, to see that every one of them is answered.
        eventually(lambda: load.sent_since(settled) >= 50, 60, 0.05, what="50 requests since HTTPS answered again")
    finally:
        load.stop()
    assert up.proc.poll() is None, up.output                       # meshctl keeps running
    assert container_of(engine, project, "app").id == app.id        # the app was left alone
    assert "the proxy sidecar exited with code 137" in up.output
    # Every request failed only while the proxy was down: before the kill and after it came back, all answered.
    assert all(ok for at, ok in load.outcomes if at < killed_at or at > settled)


def test_a_killed_metrics_sidecar_restarts_from_zero_without_counting_old_requests_again(foreground_hello, engine):
    up, _folder, project = foreground_hello
    [entry] = ps_json(project)
    https, metrics = port_of(entry["urls"]["https"]), port_of(entry["urls"]["metrics"])
    context = tls_context(ca_path())

    def counted() -> float:
        text = http_request(metrics, "/metrics").body.decode()
        return sum(counter(text, "meshctl_requests_total", code=code) for code in ("200",))
    for _ in range(5):
        assert http_request(https, "/", tls=context, server_hostname="localhost").status == 200
    # The old agent has these before it dies. (Events it never got stay in the proxy's ring and go
    # to the next agent, rightly counted there once: the proxy's forwarder may still be waiting out
    # its 1 s reconnect pause from the start, when the agent was not yet listening.)
    eventually(lambda: counted() >= 5, 60, 0.05, what="the first 5 requests counted")
    before = container_of(engine, project, "metrics")
    docker.from_env().api.kill(before.id)
    up.wait_for_line("the metrics sidecar restarted in place", timeout=60)
    assert container_of(engine, project, "metrics").id != before.id
    sent = 7
    for _ in range(sent):
        assert http_request(https, "/", tls=context, server_hostname="localhost").status == 200
    # A Prometheus counter reset: it counts from zero, and the proxy's ring is not replayed into it.
    eventually(lambda: counted() >= sent, 60, 0.05, what=f"{sent} requests counted")
    # One more request, a 404, after them: the events come in order, so once it is counted anything
    # the ring might have replayed before it would be counted too.
    http_request(https, "/counted-last", tls=context, server_hostname="localhost")     # the app answers 404
    eventually(lambda: counter(http_request(metrics, "/metrics").body.decode(), "meshctl_requests_total",
                               code="404") >= 1, 60, 0.05, what="the last request counted")
    assert counted() == sent
    assert up.proc.poll() is None


def test_a_crash_loop_is_given_up_on_and_the_app_keeps_running(foreground_hello, engine):
    up, _folder, project = foreground_hello
    app = container_of(engine, project, "app")
    api = docker.from_env().api
    killed: set[str] = set()
    for _ in range(5):
        proxy = eventually(lambda: (c := container_of(engine, project, "proxy")) and c.id not in killed and c,
                           60, 0.05, what="the proxy running again")
        killed.add(proxy.id)
        api.kill(proxy.id)
    up.wait_for_line("not restarting the proxy sidecar again", timeout=60)
    assert "5 times within 60s" in up.output
    assert up.proc.poll() is None and container_of(engine, project, "app").id == app.id


FAILING_HEALTH = '''
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"database connection refused: db:5432"
        self.send_response(500); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass

print("starting with DATABASE_URL unset", flush=True)
ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
'''


def test_an_app_that_keeps_answering_5xx_fails_readiness_with_its_answers_in_the_report(tmp_path, engine,
                                                                                       sidecar_images):
    folder = hello_project(tmp_path, app_py=FAILING_HEALTH)
    project = project_of(folder)
    junit = tmp_path / "report.xml"
    result = run_meshctl("test", str(folder), "--timeout", "600", "--junit", str(junit), timeout=300)
    assert result.returncode == 3, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "answered HTTP 500" in output and "failing, not starting" in output
    report = ET.parse(junit).getroot()
    text = ET.tostring(report, encoding="unicode")
    assert "database connection refused" in text           # the answers
    assert "starting with DATABASE_URL unset" in text      # the app's last log lines
    assert running_containers(engine, project) == []


def test_ctrl_c_with_stdout_closed_still_removes_everything(tmp_path, engine, sidecar_images):
    folder = hello_project(tmp_path)
    project = project_of(folder)
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(meshctl_cmd("up", str(folder), "--no-watch"), stdout=write_end, stderr=write_end,
                            env={**os.environ, "COLUMNS": "200"})
    os.close(write_end)
    reader = os.fdopen(read_end)
    try:
        for line in reader:                       # `| tee log` until the stack is up
            if "meshctl: ready" in line:
                break
        reader.close()                            # tee is gone: every later write gets EPIPE
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        eventually(lambda: not running_containers(engine, project)
                   and not engine.networks({"meshctl.project": project}), 60, 0.05,
                   what="no container and no network left")
    finally:
        if proc.poll() is None:
            proc.kill()
        run_meshctl("down", str(folder))


def test_a_killed_user_sidecar_is_restarted_in_place_too(tmp_path, engine, sidecar_images):
    folder = hello_project(tmp_path, mesh_yaml=greeter_mesh_yaml(unique_project("side"), sidecar_images["metrics"],
                                                                 "{tcp: 7000}"), app_py=APP_NEEDING_ITS_SIDECAR)
    project = project_of(folder)
    up = Foreground(str(folder), "--no-watch")
    try:
        up.wait_for_line("meshctl: ready")
        app, greeter = container_of(engine, project, "app"), container_of(engine, project, "greeter")
        docker.from_env().api.kill(greeter.id)
        up.wait_for_line("the greeter sidecar restarted in place", timeout=60)
        assert container_of(engine, project, "greeter").id != greeter.id
        assert container_of(engine, project, "app").id == app.id and up.proc.poll() is None
        [entry] = ps_json(project)
        answer = http_request(port_of(entry["urls"]["https"]), "/", tls=tls_context(ca_path()))
        assert answer.status == 200
    finally:
        up.kill()
        run_meshctl("down", str(folder))


def test_a_detached_pods_killed_sidecars_are_started_again_in_place_and_down_leaves_nothing(detached_hello, engine):
    """`up -d` leaves no meshctl process to supervise the pod: Docker restarts its sidecars (a
    restart policy, as compose's `restart: on-failure`), in place, with the app left alone."""
    folder, project, entry = detached_hello
    https, metrics = port_of(entry["urls"]["https"]), port_of(entry["urls"]["metrics"])
    context = tls_context(ca_path())
    client = docker.from_env()
    app = container_of(engine, project, "app")
    for role in ("proxy", "metrics"):
        before = container_of(engine, project, role)
        # A crash, as the kernel's OOM killer or a bug makes one: the process dies by SIGKILL (137).
        # (`docker kill` would not do: Docker takes it for a stop by hand and leaves it stopped.)
        os.kill(client.api.inspect_container(before.id)["State"]["Pid"], signal.SIGKILL)
        eventually(lambda cid=before.id: client.api.inspect_container(cid)["RestartCount"] >= 1
                   and client.api.inspect_container(cid)["State"]["Running"], 60, 0.05,
                   what=f"the {role} sidecar running again")
        assert container_of(engine, project, role).id == before.id
    eventually(lambda: http_request(https, "/", tls=context, server_hostname="localhost", timeout=5).status == 200,
               60, 0.05, what="HTTPS answering again")
    # Counting again (from zero: a Prometheus counter reset) the requests since it came back; its
    # port listens again only a moment after its container runs.
    eventually(lambda: counter(http_request(metrics, "/metrics").body.decode(), "meshctl_requests_total",
                               code="200") >= 1, 60, 0.05, what="the answered requests counted")
    assert container_of(engine, project, "app").id == app.id
    assert [e["state"] for e in ps_json(project)] == ["running"]
    # Still no capability in any long-running container, restart policy or not.
    for c in engine.containers({"meshctl.project": project}, all=False):
        assert not client.api.inspect_container(c.id)["HostConfig"]["CapAdd"], c.name

    run_meshctl("down", str(folder), check=True)
    # Nothing left, not even a stopped container: a sidecar that restarts is not auto-removed.
    assert engine.containers({"meshctl.project": project}, all=True) == []

