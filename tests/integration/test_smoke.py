"""`meshctl test` against the real engine: passing and failing checks of every kind with their
exit codes, the JUnit report read by a JUnit consumer, teardown after a failed check, SIGTERM and
SIGKILL, a stack that never gets ready, `up -d --wait`, and bad configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml

from tests.support import eventually, hello_project, meshctl_cmd, run_meshctl, running_containers, unique_project

pytestmark = pytest.mark.integration

CHECK_APP = r'''
import json, os, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DOC = {"greeting": "hi", "items": [{"id": 3}], "ok": True}

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/healthz":
            return self.send(int(os.environ.get("HEALTH_STATUS", "200")), b"ok\n")
        if self.path == "/json":
            return self.send(200, json.dumps(DOC).encode(), "application/json")
        if self.path == "/slow":
            time.sleep(0.4)
            return self.send(200, b"slow\n")
        if self.path == "/hang":
            print("checkapp: hanging on /hang", flush=True)
            time.sleep(120)
        if self.path == "/badmetrics":
            return self.send(200, b"this { is not metrics\n")
        self.send(404, b"not found\n")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send(201, json.dumps({"token": self.headers.get("X-Token"), "body": json.loads(body),
                                   "content_type": self.headers.get("Content-Type")}).encode(), "application/json")

    def send(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("checkapp:", fmt % args, flush=True)

server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H)
server.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
print("checkapp: listening, \x1b[32mcoloured\x1b[0m", flush=True)
server.serve_forever(poll_interval=0.1)
'''

PASSING_CHECKS = r"""
      - name: status
        request: /healthz
        expect: {status: 200}
      - name: body substring
        request: /json
        expect: {body_contains: '"greeting"'}
      - name: body regex
        request: /json
        expect: {body_matches: 'items.*"id": \d'}
      - name: json field
        request: /json
        expect: {json: {greeting: hi, items.0.id: 3, ok: true}}
      - name: post with headers and body
        request: {method: POST, path: /echo, headers: {X-Token: s3cret}, body: {n: 1}}
        via: http
        expect: {status: 201, json: {token: s3cret, body.n: 1, content_type: application/json}}
      - name: latency
        request: /healthz
        expect: {max_latency: 2s}
      - name: exec
        exec: test -f /app/app.py
      - name: exec exit code
        exec: [python3, -c, "import sys; print('three'); sys.exit(3)"]
        expect: {exit_code: 3, output_contains: three}
"""

FAILING_CHECKS = r"""
      - name: status
        request: /json
        expect: {status: 404}
      - name: body substring
        request: /json
        expect: {body_contains: nope}
      - name: body regex
        request: /json
        expect: {body_matches: '^zzz'}
      - name: json field
        request: /json
        expect: {json: {greeting: bye}}
      - name: latency
        request: /slow
        expect: {max_latency: 100ms}
      - name: exec exit code
        exec: echo broken >&2; exit 4
      - name: still fine
        request: /healthz
"""


@pytest.fixture(autouse=True)
def remove_app_images(engine):
    """The app images `meshctl test` built for this test's projects go with it."""
    yield
    for project in _built:
        subprocess.run(["docker", "image", "rm", "-f", f"meshctl-{project}-web:dev"], capture_output=True)
    _built.clear()


_built: list[str] = []


def check_project(tmp_path: Path, checks: str, *, metrics_path: str = "", health_status: int = 200) -> tuple[Path, str]:
    """A copy of examples/hello running CHECK_APP with these checks; returns (folder, the project
    `meshctl test` runs: the name + '-test')."""
    name = unique_project("smoke")
    _built.extend([name, f"{name}-test"])
    metrics_line = f"    metrics_path: {metrics_path}\n" if metrics_path else ""
    mesh_yaml = f"""\
name: {name}
services:
  web:
    build: .
    port: 8080
    health: /healthz
    env: {{HEALTH_STATUS: "{health_status}"}}
    stop_grace_period: 2s
    ports: {{https: 0, http: 0, metrics: 0}}
{metrics_line}    checks:{checks}"""
    return hello_project(tmp_path, name=name, mesh_yaml=mesh_yaml, app_py=CHECK_APP), f"{name}-test"


def assert_gone(engine, project: str, within: float = 10.0) -> None:
    eventually(lambda: running_containers(engine, project) == [], within, 0.2, what=f"{project} gone")


def junit_cases(path: Path) -> dict[str, dict]:
    """service → {check name → test case}, as a CI tool reads the report."""
    return {suite.name: {case.name: case for case in suite} for suite in JUnitXml.fromfile(str(path))}


def test_passing_checks_of_every_kind_exit_0_with_a_clean_report(tmp_path, engine, sidecar_images):
    folder, project = check_project(tmp_path, PASSING_CHECKS)
    report = tmp_path / "out" / "report.xml"
    result = run_meshctl("test", str(folder), "--junit", str(report), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["project"] == project
    [web] = data["services"]
    assert [c["name"] for c in web["checks"]] == [
        "ready", "https", "certificate", "http", "status", "body substring", "body regex", "json field",
        "post with headers and body", "latency", "exec", "exec exit code", "metrics"]
    assert all(c["outcome"] == "passed" for c in web["checks"]), web["checks"]
    messages = {c["name"]: c["message"] for c in web["checks"]}
    assert "localhost, 127.0.0.1, ::1, web" in messages["certificate"]
    assert "counted the 8 requests" in messages["metrics"]     # https, http and six declared HTTP checks
    assert web["logs"] == {}

    xml = JUnitXml.fromfile(str(report))
    [suite] = list(xml)
    assert suite.name == "web" and suite.tests == 13 and suite.failures == 0 and suite.errors == 0
    assert all(case.is_passed for case in suite)
    assert "13 checks passed" in result.stderr
    assert_gone(engine, project)


def test_failing_checks_of_every_kind_exit_1_with_failures_logs_and_teardown(tmp_path, engine, sidecar_images):
    folder, project = check_project(tmp_path, FAILING_CHECKS, metrics_path="/badmetrics")
    report = tmp_path / "report.xml"
    result = run_meshctl("test", str(folder), "--junit", str(report))
    assert result.returncode == 1, result.stdout + result.stderr

    cases = junit_cases(report)["web"]
    failed = {name for name, case in cases.items() if case.result}
    assert failed == {"status", "body substring", "body regex", "json field", "latency", "exec exit code", "metrics"}
    assert cases["ready"].is_passed and cases["https"].is_passed and cases["still fine"].is_passed

    def failure(name: str) -> Failure:
        [result] = cases[name].result
        assert isinstance(result, Failure)
        return result

    assert "HTTP 200, expected 404" in failure("status").message
    assert '"greeting": "hi"' in failure("status").text                    # the response excerpt
    assert "does not contain 'nope'" in failure("body substring").message
    assert "does not match /^zzz/" in failure("body regex").message
    assert "JSON field 'greeting' is \"hi\", expected \"bye\"" in failure("json field").message
    assert "more than 100 ms" in failure("latency").message
    assert "exited 4, expected 0" in failure("exec exit code").message and "broken" in failure("exec exit code").text
    assert "not Prometheus text" in failure("metrics").message
    # The failing service's last log lines, app and sidecars: in the report and on stderr.
    logs = cases["status"].system_out
    assert 'app | checkapp: "GET /slow HTTP/1.1" 200' in logs and "proxy | " in logs
    assert len([line for line in logs.splitlines() if line.startswith("app | ")]) <= 50
    assert 'checkapp: "GET /slow HTTP/1.1" 200' in result.stderr
    assert "7 of 12 checks failed" in result.stderr
    assert_gone(engine, project)


def test_a_stack_that_never_gets_ready_exits_3_with_its_logs(tmp_path, engine, sidecar_images):
    folder, project = check_project(tmp_path, "\n      - request: /json\n", health_status=503)
    report = tmp_path / "report.xml"
    result = run_meshctl("test", str(folder), "--junit", str(report), "--timeout", "3")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "was not ready after 3s" in result.stderr and "HTTP 503" in result.stderr
    answered = 'checkapp: "GET /healthz HTTP/1.1" 503'
    assert "web/app" in result.stderr and answered in result.stderr            # its logs
    cases = junit_cases(report)["web"]
    [error] = cases["ready"].result
    assert isinstance(error, Error) and "not ready after 3s" in error.message
    assert f"app | {answered}" in cases["ready"].system_out
    assert all(case.is_skipped for name, case in cases.items() if name != "ready")
    assert_gone(engine, project)


def test_up_detached_wait_exits_3_when_not_ready_and_leaves_nothing(tmp_path, engine, sidecar_images):
    folder, project = check_project(tmp_path, "\n      - request: /json\n", health_status=503)
    result = run_meshctl("up", "-d", "--wait", "--timeout", "3", str(folder))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "not ready after 3s" in result.stderr
    assert_gone(engine, project.removesuffix("-test"))


HANGING_CHECK = """
      - name: hangs
        request: /hang
        timeout: 120s
"""


@pytest.mark.parametrize("how, when", [("SIGTERM", "checks"), ("SIGKILL", "checks"), ("SIGTERM", "start"),
                                       ("SIGINT", "start")])
def test_a_stopped_or_killed_test_run_leaves_no_container_within_10s(tmp_path, engine, sidecar_images, how, when):
    # "checks": a check hangs on the app; "start": the app never gets ready (its health is 503).
    folder, project = check_project(tmp_path, HANGING_CHECK, health_status=200 if when == "checks" else 503)
    report = tmp_path / "report.xml"
    proc = subprocess.Popen(meshctl_cmd("test", str(folder), "--junit", str(report)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
    try:
        sign = "hanging on /hang" if when == "checks" else '"GET /healthz HTTP/1.1" 503'

        def signed() -> bool:
            if any(sign in line for line in engine_logs(engine, project)):
                return True
            assert proc.poll() is None, proc.communicate()[0]
            return False
        eventually(signed, 180, what=f"{sign!r} in the app's log")
        proc.send_signal(getattr(signal, how))
        code = proc.wait(30)
        output = proc.stdout.read() if proc.stdout else ""
        assert_gone(engine, project, within=10)
        if how == "SIGKILL":
            assert code == -signal.SIGKILL
            return
        assert code == 128 + getattr(signal, how), output
        assert f"stopped by {how}" in output
        cases = junit_cases(report)["web"]
        assert cases["hangs"].is_skipped
        assert cases["ready"].is_passed if when == "checks" else cases["ready"].is_skipped
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        run_meshctl("down", "--project", project)


def engine_logs(engine, project: str) -> list[str]:
    apps = [c for c in running_containers(engine, project) if c.label("role") == "app"]
    return [line for c in apps for line in engine.logs(c.id, follow=False, tail=500)]


def test_bad_checks_exit_2_before_anything_starts(tmp_path, engine):
    folder, project = check_project(tmp_path, "\n      - request: /\n        expect: {stauts: 200}\n")
    result = run_meshctl("test", str(folder))
    assert result.returncode == 2
    assert "mesh.yaml:" in result.stderr and "unknown field 'stauts'" in result.stderr and "did you mean" in result.stderr
    assert running_containers(engine, project) == []
    assert run_meshctl("test", str(folder / "missing")).returncode == 2
    assert run_meshctl("test", str(folder), "--junit", str(tmp_path)).returncode == 2


def test_compose_mode_checks_an_injected_stack_and_leaves_a_running_one_running(tmp_path, engine, sidecar_images):
    from meshctl.engine.compose import ComposeCli

    name = unique_project("compose")
    hello_project(tmp_path)                       # tmp_path/hello: the app's build folder
    (tmp_path / "compose.yaml").write_text(f"""\
name: {name}
services:
  web:
    build: ./hello
    image: meshctl-{name}-web:dev
    environment: {{GREETING: hi}}
    ports: ["127.0.0.1::8080"]
    x-meshctl: {{health: /healthz, metrics_path: /metrics}}
""")
    injected = tmp_path / "compose.mesh.yaml"
    run_meshctl("inject", str(tmp_path / "compose.yaml"), "-o", str(injected), check=True)
    # The proxy serves HTTPS itself: `test --compose` finds it by its x-meshctl mark.
    assert "web-mesh-tls" not in injected.read_text() and "terminates-tls: true" in injected.read_text()
    compose = ComposeCli(injected)

    def containers() -> list:
        return list(engine.containers({"com.docker.compose.project": name}))

    try:
        report = tmp_path / "report.xml"
        result = run_meshctl("test", "--compose", str(injected), "--junit", str(report))
        assert result.returncode == 0, result.stdout + result.stderr
        cases = junit_cases(report)["web"]
        assert list(cases) == ["ready", "https", "certificate", "http", "metrics"]
        assert all(case.is_passed for case in cases.values())
        assert containers() == []                 # started by meshctl test, so taken down

        compose.up(120)                           # started by someone else: left running
        result = run_meshctl("test", "--compose", str(injected), "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "counted the 2 requests" in json.loads(result.stdout)["services"][0]["checks"][-1]["message"]
        assert {c.state for c in containers()} == {"running"}
    finally:
        compose.down()
        subprocess.run(["docker", "image", "rm", "-f", f"meshctl-{name}-web:dev"], capture_output=True)
    assert run_meshctl("test", "--compose", str(tmp_path / "compose.yaml")).returncode == 2   # not injected
