"""The pure parts of `meshctl test`: expectations, JSON fields, Prometheus counting, the JUnit
report (read back by a JUnit consumer), exit codes; and run_checks against a local HTTP server."""

from __future__ import annotations

import datetime as dt
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from meshctl.runtime.probes import HttpAnswer
from meshctl.config import ExecCheck, HttpCheck, ProjectSpec, ServiceSpec
from meshctl.errors import StartError
from meshctl.events import ERROR, FAILED, PASSED, SKIPPED, CheckDone, CheckResult, ChecksPlanned, CheckStarted
from meshctl.testing.checks import run_checks
from meshctl.testing.evaluate import (exec_problems, excerpt, http_problems, json_field, parse_prometheus,
                                      requests_counted, same_json)
from meshctl.testing.junit import render_junit
from meshctl.testing.report import Report, ServiceReport, with_logs
from meshctl.testing.session import isolated
from meshctl.testing.targets import Target
from tests.unit.fake_engine import engine_with_images, meshctl, use_on_the_cli


def answer(status=200, body=b"", elapsed=0.01) -> HttpAnswer:
    return HttpAnswer(status, body, {}, elapsed)


# -- expectations ---------------------------------------------------------------------------------


def test_default_expectation_is_a_status_below_400():
    check = HttpCheck(name="c", path="/")
    assert http_problems(check, answer(302)) == []
    assert http_problems(check, answer(404)) == ["HTTP 404, expected a status below 400"]


def test_every_expectation_reports_what_came():
    check = HttpCheck(name="c", path="/", status=(200, 201), body_contains="hello", body_matches=r"id=\d+",
                      json=(("items.0.id", 3),), max_latency=0.1)
    problems = http_problems(check, answer(500, b'{"items": [{"id": 4}]}', elapsed=0.25))
    assert problems == ["HTTP 500, expected 200 or 201", "the body does not contain 'hello'",
                        r"the body does not match /id=\d+/", "JSON field 'items.0.id' is 4, expected 3",
                        "answered in 250 ms, more than 100 ms"]
    good = answer(201, b'{"items": [{"id": 3}], "note": "hello id=12"}', elapsed=0.05)
    assert http_problems(check, good) == []


def test_json_expectations_on_a_body_that_is_not_json_or_lacks_the_field():
    check = HttpCheck(name="c", path="/", json=(("a.b", 1),))
    assert http_problems(check, answer(body=b"<html>")) == ["the body is not JSON"]
    assert http_problems(check, answer(body=b'{"a": {}}')) == ["JSON field 'a.b' is missing"]


def test_json_field_walks_objects_and_lists():
    doc = {"a": {"b": [10, {"c": "x"}]}, "n": None}
    assert json_field(doc, "a.b.0") == 10
    assert json_field(doc, "a.b.1.c") == "x"
    assert json_field(doc, "a.b.-1.c") == "x"
    assert json_field(doc, "n") is None
    for missing in ("a.z", "a.b.5", "a.b.x", "a.b.0.c"):
        with pytest.raises(LookupError):
            json_field(doc, missing)


def test_true_is_not_one_but_one_is_one_point_oh():
    assert same_json(1, 1.0) and same_json(True, True) and same_json({"a": [1]}, {"a": [1]})
    assert not same_json(True, 1) and not same_json(1, True) and not same_json("1", 1)


def test_exec_expectations():
    check = ExecCheck(name="e", command=("true",), exit_code=0, output_contains="ready")
    assert exec_problems(check, 0, "all ready\n") == []
    assert exec_problems(check, 2, "nope") == ["exited 2, expected 0", "the output does not contain 'ready'"]


def test_excerpts_keep_the_start_of_a_body_and_the_end_of_an_output():
    assert excerpt(b"short\n") == "short"
    long = "a" * 300 + "b" * 600
    assert excerpt(long).startswith("a" * 300) and excerpt(long).endswith("…")
    assert excerpt(long, tail=True) == "…" + "b" * 600


# -- metrics --------------------------------------------------------------------------------------

EXPOSITION = """\
# HELP meshctl_requests_total Requests through the proxy sidecar
# TYPE meshctl_requests_total counter
meshctl_requests_total{service="web",code="200",method="GET"} 3.0
meshctl_requests_total{service="web",code="404",method="GET"} 1.0
meshctl_requests_total{service="other",code="200",method="GET"} 7.0
# HELP hello_greetings_total Greetings
# TYPE hello_greetings_total counter
hello_greetings_total 2.0
"""


def test_requests_are_counted_per_service_across_codes():
    samples = parse_prometheus(EXPOSITION)
    assert requests_counted(samples, "web") == 4
    assert requests_counted(samples, "other") == 7
    assert requests_counted(samples, "missing") == 0


@pytest.mark.parametrize("text", ["", "   \n", "<html>not metrics</html>\n", "metric{unclosed 1\n"])
def test_what_is_not_prometheus_text_is_refused(text):
    with pytest.raises(ValueError):
        parse_prometheus(text)


# -- the report -----------------------------------------------------------------------------------


def sample_report(**overrides) -> Report:
    web = ServiceReport("web", (
        CheckResult("web", "ready", "builtin", PASSED, 0.8, "ready"),
        CheckResult("web", "https", "builtin", PASSED, 0.01, "HTTP 200"),
        CheckResult("web", "greets", "http", FAILED, 0.02, "GET / over https: HTTP 500, expected 200",
                    "boom \x1b[31mred\x1b[0m \x00 trace"),
        CheckResult("web", "migrated", "exec", ERROR, 0.0, "no app container to run the command in"),
    ))
    web = with_logs(web, {"app": [f"line {i}" for i in range(80)], "proxy": ["GET / 500"]})
    api = ServiceReport("api", (
        CheckResult("api", "ready", "builtin", PASSED, 0.5, "ready"),
        CheckResult("api", "metrics", "builtin", SKIPPED, 0.0, "not run"),
    ))
    values = {"project": "shop-test", "services": (web, api), "started": dt.datetime(2026, 1, 2, 3, 4, 5,
                                                                                tzinfo=dt.timezone.utc),
                  "seconds": 2.5}
    values.update(overrides)
    return Report(**values)


def test_junit_has_a_suite_per_service_a_case_per_check_and_failures_with_excerpts(tmp_path):
    path = tmp_path / "report.xml"
    path.write_text(render_junit(sample_report()))
    xml = JUnitXml.fromfile(str(path))
    suites = {suite.name: suite for suite in xml}
    assert set(suites) == {"web", "api"}
    web, api = suites["web"], suites["api"]
    assert (web.tests, web.failures, web.errors, web.skipped) == (4, 1, 1, 0)
    assert (api.tests, api.failures, api.errors, api.skipped) == (2, 0, 0, 1)
    cases = {case.name: case for case in web}
    assert list(cases) == ["ready", "https", "greets", "migrated"]
    assert cases["ready"].is_passed and cases["https"].is_passed
    [failure] = cases["greets"].result
    assert isinstance(failure, Failure)
    assert failure.message == "GET / over https: HTTP 500, expected 200"
    assert "boom red  trace" in failure.text           # colour codes and NUL cannot be XML: dropped
    assert isinstance(cases["migrated"].result[0], Error)
    assert cases["greets"].classname == "shop-test.web"
    # The failing service's logs: its last 50 lines per container, in the case and the suite.
    assert "app | line 79" in cases["greets"].system_out and "app | line 29" not in cases["greets"].system_out
    assert "proxy | GET / 500" in web._elem.find("system-out").text
    assert isinstance({c.name: c for c in api}["metrics"].result[0], Skipped)
    assert api._elem.find("system-out") is None


def test_exit_codes():
    assert sample_report().exit_code == 1
    passing = sample_report(services=(sample_report().services[1],))
    assert passing.ok and passing.exit_code == 0
    assert sample_report(error=StartError("not ready")).exit_code == 3
    assert sample_report(interrupted="SIGTERM").exit_code == 143
    assert sample_report(interrupted="SIGINT").exit_code == 130


def test_json_carries_results_logs_and_the_error():
    data = sample_report(error=StartError("web was not ready after 3s", hint="raise --timeout")).as_json()
    assert data["ok"] is False and data["exit_code"] == 3
    assert data["error"] == {"message": "web was not ready after 3s", "hint": "raise --timeout"}
    web = data["services"][0]
    assert [c["outcome"] for c in web["checks"]] == [PASSED, PASSED, FAILED, ERROR]
    assert len(web["logs"]["app"]) == 50 and web["logs"]["app"][-1] == "line 79"


def test_the_test_copy_of_a_project_has_its_own_name_and_free_ports():
    service = ServiceSpec(name="web", port=8080, image="web:1", ports=(("https", 8443), ("http", 8080)))
    project = ProjectSpec(name="shop", root=Path("."), services=(service,))
    copy = isolated(project)
    assert copy.name == "shop-test" and copy.services[0].ports == (("https", 0), ("http", 0))
    assert isolated(project, rename=False).name == "shop"


def test_check_names_put_metrics_last():
    target = Target("web", {"https": "", "http": "", "metrics": ""},
                    checks=(HttpCheck(name="greets", path="/"), ExecCheck(name="migrated", command=("true",))))
    assert target.check_names() == ("ready", "https", "certificate", "http", "greets", "migrated", "metrics")
    assert Target("web", {"http": ""}).check_names() == ("ready", "http")


# -- run_checks against a local server (no Docker) --------------------------------------------------


class FakeApp:
    """Plain HTTP on one port, and a metrics endpoint counting the requests it saw."""

    def __init__(self, counts: bool = True):
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/metrics":
                    body = (f'meshctl_requests_total{{service="web",code="200",method="GET"}} '
                            f'{outer.requests if counts else 0}\n').encode()
                else:
                    outer.requests += 1
                    body = b'{"greeting": "hi"}' if self.path != "/boom" else b"trace"
                self.send_response(500 if self.path == "/boom" else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://localhost:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeEngine:
    def __init__(self):
        self.commands = []

    def exec(self, container_id, command, *, timeout=None):
        self.commands.append((container_id, command))
        return (0, "ok\n") if command[0] == "true" else (1, "it broke\n")


@pytest.fixture
def fake_app():
    app = FakeApp()
    yield app
    app.close()


def test_run_checks_reports_every_check_in_order_and_counts_requests(fake_app):
    engine = FakeEngine()
    target = Target("web", {"http": fake_app.url + "/", "metrics": fake_app.url + "/metrics"}, health="/healthz",
                    checks=(HttpCheck(name="greets", path="/", via="http", json=(("greeting", "hi"),)),
                            HttpCheck(name="boom", path="/boom", via="http"),
                            ExecCheck(name="fine", command=("true",)),
                            ExecCheck(name="broken", command=("false",))),
                    app_container="abc123")
    events = []
    [report] = run_checks([target], engine=engine, ca_path=None, on_event=events.append,
                          ready_seconds={"web": 0.5})
    outcomes = {r.name: r.outcome for r in report.results}
    assert outcomes == {"ready": PASSED, "http": PASSED, "greets": PASSED, "boom": FAILED, "fine": PASSED,
                        "broken": FAILED, "metrics": PASSED}
    by_name = {r.name: r for r in report.results}
    assert by_name["boom"].excerpt == "trace" and "HTTP 500" in by_name["boom"].message
    assert "exited 1, expected 0" in by_name["broken"].message and by_name["broken"].excerpt == "it broke"
    assert "counted the 3 requests" in by_name["metrics"].message
    assert engine.commands == [("abc123", ["true"]), ("abc123", ["false"])]
    assert isinstance(events[0], ChecksPlanned) and events[0].names[-1] == ("web", "metrics")
    assert [type(e) for e in events[1:4]] == [CheckDone, CheckStarted, CheckDone]


def test_metrics_that_miss_the_requests_fail(monkeypatch):
    monkeypatch.setattr("meshctl.testing.checks.METRICS_SETTLE", 0.2)
    frozen = FakeApp(counts=False)   # the proxy's counter never moves
    try:
        target = Target("web", {"http": frozen.url + "/", "metrics": frozen.url + "/metrics"})
        [report] = run_checks([target], engine=None, ca_path=None, on_event=lambda e: None)
    finally:
        frozen.close()
    metrics = {r.name: r for r in report.results}["metrics"]
    assert metrics.outcome == FAILED and "grew by 0, but the checks made 1 requests" in metrics.message


def test_an_unreachable_endpoint_fails_its_check():
    target = Target("web", {"http": "http://localhost:1/"})
    [report] = run_checks([target], engine=None, ca_path=None, on_event=lambda e: None)
    http = report.results[1]
    assert http.outcome == FAILED and "connection refused" in http.message


def test_services_run_side_by_side_and_report_in_their_order():
    first, second = FakeApp(), FakeApp()
    try:
        targets = [Target(name, {"http": app.url + "/"}, checks=(HttpCheck(name="greets", path="/", via="http"),))
                   for name, app in (("web", first), ("api", second))]
        reports = run_checks(targets, engine=None, ca_path=None, on_event=lambda e: None)
    finally:
        first.close()
        second.close()
    assert [r.service for r in reports] == ["web", "api"]
    assert all(r.ok and [c.name for c in r.results] == ["ready", "http", "greets"] for r in reports)
    assert first.requests == second.requests == 2


def test_an_exec_check_that_hangs_fails_at_its_timeout_and_the_run_goes_on(tmp_path, monkeypatch):
    """The bound is the engine's (the fake's hanging exec ends at the timeout it is given), not a
    thread of the checks' own: a command that hangs cannot outlive its check."""
    engine = use_on_the_cli(tmp_path, monkeypatch, engine_with_images(hanging_exec={"shop-test-web-app"}))
    with (tmp_path / "mesh.yaml").open("a") as mesh:
        mesh.write("    checks:\n      - {name: hangs, exec: sleep 60, timeout: 0.5s}\n")
    started = time.monotonic()
    result = meshctl("test", str(tmp_path))
    assert time.monotonic() - started < 30
    assert "hangs: `sleep 60` did not finish within 0.5s" in result.output, result.output
    assert ("exec", "shop-test-web-app", ("sh", "-c", "sleep 60")) in engine.calls
    assert result.exit_code == 1 and engine.is_empty()
