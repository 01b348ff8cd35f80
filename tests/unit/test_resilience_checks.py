"""Resilience checks (a declared check's `faults:`): parsed and checked against the project, run
after the others with the faults applied and cleared around each (after a failure, an error or an
interrupt too), and reported in JUnit with the faults in the case's output."""

from __future__ import annotations

import datetime as dt
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from meshctl.config import Fault, HttpCheck, parse_project
from meshctl.errors import Cancelled, ConfigError, MeshctlError
from meshctl.events import ERROR, FAILED, PASSED, CheckDone
from meshctl.testing.junit import render_junit
from meshctl.testing.report import Report, ServiceReport
from meshctl.testing.resilience import run_resilience_check
from meshctl.testing.targets import Target

SHOP = """\
name: shop
services:
  web:
    image: web
    port: 8080
    checks:
      - name: web answers while api is slow
        request: GET /
        faults: {api: {delay: 3s}}
        expect: {status: 200, max_latency: 2.5s}
      - name: plain
        request: GET /
  api: {image: api, port: 8080}
  kv: {image: kv, port: 7000, protocol: tcp}
"""


def parse(tmp_path: Path, text: str):
    (tmp_path / "mesh.yaml").write_text(text)
    return parse_project(text, source=tmp_path / "mesh.yaml", root=tmp_path)


def test_a_checks_faults_parse_and_it_runs_after_the_metrics_check(tmp_path):
    [web, *_] = parse(tmp_path, SHOP).services
    slow, plain = web.checks
    assert slow.faults == (("api", (Fault("delay", delay=3.0),)),) and plain.faults == ()
    target = Target("web", {"https": "x", "metrics": "y"}, checks=web.checks)
    assert target.check_names()[-3:] == ("plain", "metrics", "web answers while api is slow")


@pytest.mark.parametrize(("old", "new", "words"), [
    ("{api: {delay: 3s}}", "{apj: {delay: 3s}}", "no service named 'apj' with a proxy"),
    ("{api: {delay: 3s}}", "{kv: {abort: 503}}", "abort on kv, a protocol: tcp service"),
    ("{api: {delay: 3s}}", "{api: {delay: 3s, percent: 200}}", "not a percentage"),
    ("{api: {delay: 3s}}", "[api]", "expected a mapping of services to faults"),
])
def test_a_checks_bad_faults_are_one_error_at_their_line(tmp_path, old, new, words):
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, SHOP.replace(old, new))
    assert "mesh.yaml:9: services.web.checks.0.faults" in caught.value.message and words in caught.value.message


CHECK = HttpCheck("survives", "/", faults=(("api", (Fault("abort", status=503),)), ("kv", (Fault("reset", 10.0),))))


def run(outcome, *, inject=None, stop=None):
    calls, events = [], []

    def record(service, faults):
        calls.append((service, faults))
        if inject is not None:
            inject(service, faults)

    result = run_resilience_check("web", CHECK, "http", outcome, inject=record, emit=events.append, stop=stop)
    return result, calls, events


def test_faults_are_applied_before_the_check_and_cleared_after_it_passes_or_fails():
    for outcome in ((PASSED, "HTTP 200", ""), (FAILED, "expected 200, got 502", "try again")):
        result, calls, events = run(lambda outcome=outcome: outcome)
        assert calls == [("api", CHECK.faults[0][1]), ("kv", CHECK.faults[1][1]), ("api", None), ("kv", None)]
        assert result.outcome == outcome[0] and result.faults == "api: abort 503; kv: reset 10%"
        assert result.message.startswith("with faults (api: abort 503; kv: reset 10%): ")
        assert isinstance(events[-1], CheckDone) and events[-1].result == result


def test_a_fault_that_cannot_be_applied_is_an_error_and_what_was_applied_is_cleared():
    def inject(service, faults):
        if service == "kv" and faults is not None:
            raise MeshctlError("kv has no running proxy")
    result, calls, _ = run(lambda: (PASSED, "", ""), inject=inject)
    assert result.outcome == ERROR and "could not be applied: kv has no running proxy" in result.message
    assert calls[-2:] == [("api", None), ("kv", None)]


def test_an_interrupt_in_the_middle_of_a_check_clears_its_faults_then_cancels():
    stop, started = threading.Event(), threading.Event()

    def slow_check():
        started.set()
        threading.Event().wait(30)         # a request held by a long delay
        return PASSED, "", ""

    threading.Thread(target=lambda: (started.wait(5), stop.set()), daemon=True).start()
    calls: list = []
    with pytest.raises(Cancelled):
        run_resilience_check("web", CHECK, "http", slow_check, inject=lambda s, f: calls.append((s, f)),
                             emit=lambda e: None, stop=stop)
    assert calls[-2:] == [("api", None), ("kv", None)]


def test_junit_carries_the_faults_in_the_cases_output():
    result, _, _ = run(lambda: (FAILED, "expected 502, got 200", ""))
    report = Report("shop", (ServiceReport("web", (result,)),), dt.datetime.now(dt.timezone.utc), 1.0)
    case = ET.fromstring(render_junit(report).split("\n", 1)[1]).find(".//testcase")
    assert case is not None and case.get("name") == "survives"
    assert case.findtext("system-out") == "faults held while it ran: api: abort 503; kv: reset 10%"
    assert "with faults (api: abort 503; kv: reset 10%): expected 502, got 200" in (case.findtext("failure") or "")
