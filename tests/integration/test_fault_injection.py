"""Fault injection on the real engine (examples/shop plus `other`, a second caller of api): faults
with `from` hit only that caller; TCP delay and reset; `meshctl fault` on and off with nothing
restarted and a steady load losing no request to the toggle; readiness unaffected by a 100% abort;
an app running as root cannot reach the proxy's runtime socket; resilience checks in `meshctl test`
that pass, fail with a clear report, and leave no fault behind when interrupted."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import docker
import pytest

from meshctl.runtime.probes import http_request
from meshctl.sidecars import PROXY_PORT
from meshctl.sidecars.faults import PROBE_HEADER, probe_key
from tests.support import (container_events, copy_shop, eventually, meshctl_cmd, metric_sum, port_of, run_meshctl,
                           unique_project, urls)

pytestmark = pytest.mark.integration

PORTS = "    ports: {https: 0, http: 0, metrics: 0}\n"


def shop_yaml(name: str, api_extra: str = "", web_extra: str = "") -> str:
    return (f"name: {name}\nservices:\n"
            f"  web:\n    build: web\n    port: 8080\n    health: /healthz\n{PORTS}{web_extra}"
            f"  other:\n    build: web\n    port: 8080\n    health: /healthz\n{PORTS}"
            "    faults: [{abort: 503}]          # every call, 100%: readiness must not see it\n"
            f"  api:\n    build: api\n    port: 8080\n    health: /healthz\n{PORTS}{api_extra}"
            f"  kv:\n    build: kv\n    port: 7000\n    protocol: tcp\n{PORTS}")


def shop_project(tmp_path: Path, text_of_name) -> tuple[Path, str]:
    folder = tmp_path / "shop"
    copy_shop(folder)
    name = unique_project("faults")
    (folder / "mesh.yaml").write_text(text_of_name(name))
    return folder, name


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine, sidecar_images):
    folder, name = shop_project(tmp_path_factory.mktemp("faults"), lambda n: shop_yaml(n, api_extra=(
        "    faults:\n"
        "      - {delay: 1s, from: [other]}\n"
        "      - {abort: 418, from: [web]}\n")))
    run_meshctl("up", "-d", str(folder), check=True, timeout=900)
    try:
        yield folder, name
    finally:
        run_meshctl("down", str(folder))


def port(project: str, service: str, endpoint: str = "http") -> int:
    return port_of(urls(project)[service][endpoint])


def probe_headers(project: str) -> dict[str, str]:
    """meshctl's own probe key for the project: its proxies let such a request past their faults."""
    secret = (Path(os.environ["MESHCTL_HOME"]) / "probe.secret").read_text().strip()
    return {PROBE_HEADER: probe_key(secret, project)}


def call_through(project: str, caller: str, path: str = "/call?url=http://api:8080/whoami") -> tuple[dict, float]:
    """What `caller`'s app got calling api through the mesh (its own proxy → api's, with its identity).
    The request into the caller carries the probe key: `other`'s own 100% abort lets it in."""
    answer = http_request(port(project, caller), path, timeout=30, headers=probe_headers(project))
    assert answer.status == 200, answer.body
    return json.loads(answer.body), answer.elapsed


def faults_counted(project: str, service: str, **labels: str) -> float:
    text = http_request(port(project, service, "metrics"), "/metrics").body.decode()
    return metric_sum(text, "meshctl_faults_injected_total", **labels)


def meshctl_fault(project: str, *args: str) -> subprocess.CompletedProcess:
    return run_meshctl("fault", *args, "-p", project, check=True, timeout=60)


def containers_of(project: str) -> dict[str, tuple[str, str]]:
    """name → (ID, start time) of every container of the project."""
    api = docker.from_env().api
    return {c["Names"][0].lstrip("/"): (c["Id"], api.inspect_container(c["Id"])["State"]["StartedAt"])
            for c in api.containers(filters={"label": f"meshctl.project={project}"})}


def test_faults_with_from_hit_only_that_caller_and_are_counted(stack):
    _folder, project = stack
    web_said, _ = call_through(project, "web")
    assert web_said["status"] == 418 and "fault injected by meshctl: abort 418" in web_said["body"]
    other_said, elapsed = call_through(project, "other")
    assert other_said["status"] == 200 and elapsed >= 1.0               # delayed, then answered
    assert json.loads(other_said["body"])["caller"].endswith("/sa/other")
    direct = http_request(port(project, "api"), "/whoami")                # the host: no identity, no fault
    assert direct.status == 200 and json.loads(direct.body)["caller"] is None
    assert eventually(lambda: faults_counted(project, "api", kind="abort", source="web"), 30, 0.2) >= 1
    assert eventually(lambda: faults_counted(project, "api", kind="delay", source="other"), 30, 0.2) >= 1
    assert faults_counted(project, "api", source="host") == 0


def test_readiness_and_the_built_in_probes_are_unaffected_by_a_100_percent_abort(stack):
    _folder, project = stack
    # `other` came up (readiness through its proxy passed) though every call to it is aborted…
    assert http_request(port(project, "other"), "/healthz").status == 503
    # …and meshctl's probe key is honoured; a guessed one is not.
    assert http_request(port(project, "other"), "/healthz", headers=probe_headers(project)).status == 200
    assert http_request(port(project, "other"), "/healthz", headers={PROBE_HEADER: "a guess"}).status == 503


def kv_line(project: str, line: str = "PING") -> tuple[str, float]:
    """One line to kv's published plain TCP port, as a direct client: its answer ('' if closed)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port(project, "kv")), timeout=30) as conn:
        conn.sendall(line.encode() + b"\n")
        try:
            reply = conn.makefile("rb").readline().decode().strip()
        except ConnectionResetError:
            reply = ""
    return reply, time.monotonic() - started


def test_tcp_delay_and_reset_live_and_through_the_mesh(stack):
    _folder, project = stack
    assert kv_line(project)[0] == "PONG"
    meshctl_fault(project, "kv", "--delay", "1s")
    reply, elapsed = kv_line(project)
    assert reply == "PONG" and elapsed >= 1.0
    meshctl_fault(project, "kv", "--reset")
    assert kv_line(project)[0] == ""                                      # closed without an answer
    through, _ = call_through(project, "web", "/tcp?host=kv&port=7000&line=PING")
    assert through["closed"] is True                                     # behind web's proxy: end of stream
    # A client in the pod's network (no port proxy of Docker's between) gets a TCP reset.
    # The reset may come before the send returns or only at the read: either is a reset (a close
    # without one reads b'' and prints it).
    direct = (f"import socket\ns = socket.create_connection(('127.0.0.1', {PROXY_PORT}))\n"
              "try:\n    s.sendall(b'PING\\n')\n    print(repr(s.recv(100)))\n"
              "except ConnectionResetError:\n    print('reset')\n")
    _code, said = docker.from_env().containers.get(f"{project}-kv-app").exec_run(["python3", "-c", direct])
    assert said.decode().strip() == "reset"
    meshctl_fault(project, "kv", "--clear")
    assert kv_line(project)[0] == "PONG"
    assert eventually(lambda: faults_counted(project, "kv", kind="reset"), 30, 0.2) >= 2
    assert faults_counted(project, "kv", kind="delay", source="host") >= 1


def test_toggling_a_fault_restarts_nothing_and_loses_no_request(stack):
    _folder, project = stack
    before = containers_of(project)
    api_port = port(project, "api")
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                statuses.append(http_request(api_port, "/whoami", timeout=10).status)
            except OSError:
                statuses.append(0)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        for _ in range(3):
            shown = meshctl_fault(project, "api", "--delay", "20ms").stdout
            assert "delay 20ms (live" in shown
            assert "faults: delay 20ms (live)" in run_meshctl("ps", "-p", project, check=True).stdout
            meshctl_fault(project, "api", "--clear")
    finally:
        stop.set()
        loader.join(15)
    assert statuses and set(statuses) == {200}, f"{statuses.count(0)} failed, others: {set(statuses)}"
    assert eventually(lambda: faults_counted(project, "api", kind="delay", source="host"), 30, 0.2) >= 1
    assert containers_of(project) == before                            # same IDs, same start times
    listed = json.loads(run_meshctl("fault", "--list", "--json", "-p", project, check=True).stdout)
    assert {s["service"]: s["live"] for s in listed}["api"] is None    # back to mesh.yaml's


def test_a_live_fault_survives_a_reload_of_the_proxy(stack):
    _folder, project = stack
    meshctl_fault(project, "api", "--abort", "429")
    try:
        docker.from_env().containers.get(f"{project}-api-proxy").kill(signal="SIGUSR2")   # hot reload
        eventually(lambda: http_request(port(project, "api"), "/whoami").status == 429, 10, 0.2,
                   what="the live abort after the reload")
    finally:
        meshctl_fault(project, "api", "--clear")
    assert http_request(port(project, "api"), "/whoami").status == 200


def test_an_app_running_as_root_cannot_reach_the_proxys_runtime_socket(stack):
    _folder, project = stack
    app = docker.from_env().containers.get(f"{project}-api-app")
    script = ('for p in /proc/[0-9]*; do c=$(cat $p/comm); case $c in haproxy|python3) '
              'echo "$c $(cat $p/root/tmp/haproxy.sock 2>&1 </dev/null | head -1) | $(ls $p/root/etc/meshctl 2>&1 | head -1)";; '
              'esac; done')
    _code, output = app.exec_run(["sh", "-c", script], user="0")
    lines = output.decode().splitlines()
    proxy_lines = [line for line in lines if line.startswith("haproxy ")]
    assert proxy_lines, output                     # the proxy's processes are in sight (one PID namespace)…
    assert all(line.count("Permission denied") == 2 for line in proxy_lines), lines    # …but not their files
    # The metrics sidecar's files are reachable the same way: the proxy's are protected, not the path.
    assert any(line.startswith("python3 ") and "Permission denied" not in line for line in lines), lines


RESILIENCE_CHECKS = """\
    checks:
      - name: web shows an error page when api fails
        request: GET /
        faults: {api: {abort: 503}}
        expect: {status: 502, body_contains: "try again"}   # the issue's and docs/traffic.md's check, verbatim
      - name: web answers while api fails
        request: GET /
        faults: {api: {abort: 503}}
        expect: {status: 200}
"""


def test_resilience_checks_pass_fail_with_a_clear_report_and_hold_faults_only_while_they_run(tmp_path, engine,
                                                                                            sidecar_images):
    folder, _name = shop_project(tmp_path, lambda n: shop_yaml(n, web_extra=RESILIENCE_CHECKS))
    junit = tmp_path / "junit.xml"
    result = run_meshctl("test", str(folder), "--junit", str(junit), timeout=900)
    assert result.returncode == 1, result.stdout + result.stderr
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    passed, failed = cases["web shows an error page when api fails"], cases["web answers while api fails"]
    assert passed.find("failure") is None and failed.find("failure") is not None
    for case in (passed, failed):
        assert "faults held while it ran: api: abort 503" in (case.findtext("system-out") or "")
    failure = failed.find("failure")
    assert failure is not None and failure.get("message", "").startswith("with faults (api: abort 503): ")
    assert "HTTP 502, expected 200" in failure.get("message", "")
    # Every other check passed around them (built-in ones included): the faults held only while those two ran.
    failing = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None]
    assert failing == ["web answers while api fails"]


def test_an_interrupt_in_the_middle_of_a_resilience_check_clears_its_fault(tmp_path, engine, sidecar_images):
    slow = ("    checks:\n      - name: waits on a slow api\n        request: GET /\n"
            "        faults: {api: {delay: 40s}}\n        timeout: 60s\n")
    folder, name = shop_project(tmp_path, lambda n: shop_yaml(n, web_extra=slow))
    since = time.time()
    proc = subprocess.Popen(meshctl_cmd("test", str(folder)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        live = Path(os.environ["MESHCTL_HOME"]) / "projects" / f"{name}-test" / "api" / "proxy" / "faults-live.json"
        eventually(live.exists, 600, 0.1, what="the check's fault applied")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    # Two commands ran in api's proxy, both successfully: the fault applied, then cleared, before
    # the stack was torn down.
    execs = [e for e in container_events(f"{name}-test", since, "exec_die")
             if e["Actor"]["Attributes"].get("name") == f"{name}-test-api-proxy"]
    assert [e["Actor"]["Attributes"].get("exitCode") for e in execs] == ["0", "0"], execs
    assert "stopped by SIGINT" in output
