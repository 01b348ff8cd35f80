"""What the ui shows a person for each event and result, rendered to captured consoles: build and
install progress, the supervisor's news (exits, restarts, reloads), errors, ps, dry-run plans and
meshctl test's report."""

from __future__ import annotations

import datetime as dt
import io
import json
import re

import yaml
from rich.console import Console

from meshctl.cli.ui import Ui
from meshctl.cli.ui.checks import CheckTable
from meshctl.errors import ConfigError, EngineError, StartError
from meshctl.events import (
    ERROR,
    FAILED,
    PASSED,
    SKIPPED,
    BuildEvent,
    CheckDone,
    CheckResult,
    ChecksPlanned,
    CheckStarted,
    Exited,
    LogLine,
    Phase,
    PodReady,
    Reloaded,
    Restarted,
)
from meshctl.runtime.status import ServiceStatus
from meshctl.testing.report import Report, ServiceReport


def captured(*, quiet: bool = False, terminal: bool = False) -> Ui:
    """A Ui whose stdout and stderr consoles write to strings (wide: no line is wrapped)."""
    ui = Ui(quiet=quiet)
    ui.out = Console(file=io.StringIO(), width=200, highlight=False, soft_wrap=True)
    ui.err = Console(file=io.StringIO(), width=200, highlight=False, soft_wrap=True, force_terminal=terminal)
    ui.results = ui.out
    return ui


def out(ui: Ui) -> str:
    return ui.out.file.getvalue()


def err(ui: Ui) -> str:
    return ui.err.file.getvalue()


def test_builds_and_installs_show_progress_then_one_line_each_when_done():
    ui = captured()
    ui.progress = "live"       # what auto is on a terminal (a captured console draws no live display)
    ui(BuildEvent("web:1", "start"))
    ui(BuildEvent("dependencies of api", "start", action="install"))
    assert ui._progress is not None
    ui(BuildEvent("web:1", "step", "Step 2/4 : RUN make"))
    ui(BuildEvent("dependencies of api", "step", "added 12 packages\n", action="install"))
    ui(BuildEvent("dependencies of api", "step", "   ", action="install"))      # blank: nothing to show
    ui(BuildEvent("web:1", "done"))
    assert ui._progress is not None                   # the install still runs
    ui(BuildEvent("dependencies of api", "done", action="install"))
    assert ui._progress is None
    text = err(ui)
    assert "  added 12 packages" in text              # an install's output streams as it comes
    assert "Step 2/4" not in text                     # a build's steps only update its progress line
    assert "✓ built web:1 in " in text and "✓ installed dependencies of api in " in text


def test_progress_plain_is_a_line_per_step_even_on_a_terminal_and_quiet_prints_none():
    events = [BuildEvent("web:1", "start"), BuildEvent("web:1", "step", "Step 2/4 : RUN make"),
              BuildEvent("web:1", "step", "---> Running in 1234"), BuildEvent("web:1", "done"),
              Phase("starting web"), PodReady("web", {}, 0.5)]
    plain = captured(terminal=True)
    plain.progress = "plain"
    for event in events:
        plain(event)
    assert plain._progress is None                     # never a live display
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err(plain)).splitlines()     # colours only: no cursor moves
    assert lines[:2] == ["· building web:1", "  web:1: Step 2/4 : RUN make"]
    assert lines[2].startswith("✓ built web:1 in ") and lines[3:] == ["· starting web", "✓ web ready in 0.50s"]
    off_terminal = captured()                          # auto, in a CI log: the same lines
    for event in events:
        off_terminal(event)
    assert err(off_terminal).splitlines()[:2] == lines[:2]
    quiet = captured(quiet=True, terminal=True)
    for event in events:
        quiet(event)
    assert err(quiet) == "" and quiet._progress is None


def test_an_error_stops_the_progress_and_shows_details_message_and_hint():
    ui = captured()
    ui(BuildEvent("web:1", "start"))
    ui.error(StartError("web: the app exited with code 1", hint="check the command", details="boom\nlast line\n"))
    assert ui._progress is None
    assert err(ui).splitlines()[-4:] == ["boom", "last line", "error: web: the app exited with code 1",
                                         "  hint: check the command"]


def test_phases_and_readiness_are_shown_unless_quiet():
    ui = captured()
    ui(Phase("web: starting pod"))
    ui(PodReady("web", {}, 0.5))
    ui(PodReady("api", {}, 0.25, serving=False))
    ui.report_written("JUnit", "r.xml")
    assert err(ui).splitlines() == ["· web: starting pod", "✓ web ready in 0.50s",
                                    "✓ api started (not waiting until it serves) in 0.25s", "· JUnit report: r.xml"]
    quiet = captured(quiet=True)
    for event in (Phase("x"), PodReady("web", {}, 0.5)):
        quiet(event)
    quiet.report_written("JUnit", "r.xml")
    assert err(quiet) == ""


def test_log_lines_are_prefixed_by_service_and_role_in_one_column():
    ui = captured()
    ui(LogLine("web", "app", "listening"))
    ui(LogLine("web", "metrics", "scraping"))
    ui(LogLine("web", "app", "GET /"))
    assert out(ui).splitlines() == ["web/app | listening", "web/metrics | scraping", "web/app     | GET /"]


def test_the_supervisors_news():
    ui = captured()
    ui(Exited("web", "app", 3, tail=("Traceback", "ValueError")))
    ui(Exited("web", "proxy", 137))
    ui(Restarted("web", "proxy", 0.3))
    ui(Restarted("web", "metrics", 0.1, error=EngineError("no such image")))
    ui(Restarted("web", "proxy", 0.1, gave_up="it exited 5 times in 30s"))
    ui(Restarted("web", "pod", 1.5))
    ui(Restarted("web", "pod", 1.5, error=RuntimeError("holder gone")))
    assert err(ui).splitlines() == [
        "! web: the app exited with code 3, its last lines:", "    Traceback", "    ValueError",
        "! web: the proxy sidecar exited with code 137, printing nothing",
        "↻ web: the proxy sidecar restarted in place in 0.30s (the app was left alone)",
        "! web: restarting the metrics sidecar failed: no such image",
        ("✗ web: not restarting the proxy sidecar again: it exited 5 times in 30s. The app keeps running without "
         "it; fix the cause and save mesh.yaml, or stop meshctl (Ctrl-C) and run `meshctl up` again"),
        "↻ web: pod rebuilt in 1.50s",
        "✗ web: the pod could not be rebuilt: holder gone"]


def test_a_reload_says_what_changed_and_what_was_done_or_why_not():
    ui = captured()
    ui(Reloaded(("app.py",), "restarted web's app", 0.42))
    changed = ("a.py", "b.py", "c.py", "d.py", "e.py")
    ui(Reloaded(changed, "rebuilt web", 2.0, error=ConfigError("mesh.yaml:3: port: expected a number",
                                                                hint="port: 8080", details="the build's tail")))
    ui(Reloaded(("mesh.yaml",), "reloaded the proxy", 0.1, error=ConfigError("bad")))
    assert err(ui).splitlines() == [
        "↻ app.py → restarted web's app in 0.42s",
        "✗ a.py, b.py, c.py (+2 more) → rebuilt web (2.00s)", "the build's tail",
        "  mesh.yaml:3: port: expected a number", "  hint: port: 8080",
        "✗ mesh.yaml → reloaded the proxy (0.10s)", "  bad"]


def status(service: str, state: str = "running", mesh=None, **urls: str) -> ServiceStatus:
    containers = [{"role": "app", "state": "exited"}, {"role": "proxy", "state": "running"}]
    return ServiceStatus("shop", service, state, urls, containers if state != "running" else [], mesh)


def test_ps_lists_urls_under_each_service_and_where_it_stands_in_the_mesh(capsys):
    ui = captured()
    ui.ps([status("web", https="https://localhost:8443", metrics="http://localhost:9090/metrics",
                  mesh={"identity": "spiffe://shop/web", "mtls": "strict"}),
           status("api", "degraded", mesh={"identity": "spiffe://shop/api", "mtls": "permissive", "allow": [],
                                           "protocol": "tcp"}),
           status("db", mesh={"outside": True}),
           status("kv", mesh={"identity": "spiffe://shop/kv", "mtls": "strict", "allow": ["web", "api"]})],
)
    lines = out(ui).splitlines()
    assert any(line.startswith("shop/web (running)") and "https://localhost:8443" in line for line in lines)
    assert any("metrics" in line and "http://localhost:9090/metrics" in line for line in lines)
    assert any(line.startswith("shop/api (degraded: app exited, proxy running)") and "–" in line for line in lines)
    assert "shop/web: spiffe://shop/web, mTLS strict, callers: every service of the project" in lines
    assert "shop/api: spiffe://shop/api, mTLS permissive (TCP), callers: no one" in lines
    assert "shop/kv: spiffe://shop/kv, mTLS strict, callers: web, api" in lines
    assert ("shop/db: outside the mesh (no sidecars): reached by name in plain TCP, without mTLS or identity"
            in lines)
    empty = captured()
    empty.ps([])
    assert out(empty) == "no meshctl stacks are running\n"
    empty.ps([status("web", https="https://localhost:8443")], output="json")
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["urls"] == {"https": "https://localhost:8443", "http": None, "metrics": None}
    empty.ps([status("web", https="https://localhost:8443")], output="yaml")
    [entry] = yaml.safe_load(capsys.readouterr().out)
    assert entry["project"] == "shop" and entry["urls"]["https"] == "https://localhost:8443"


def result(name: str, outcome: str, message: str = "", excerpt: str = "", seconds: float = 0.01) -> CheckResult:
    return CheckResult("web", name, "builtin", outcome, seconds, message, excerpt)


def report(*results: CheckResult, logs=(), **options) -> Report:
    return Report("shop-test", (ServiceReport("web", results, logs),), dt.datetime.now(dt.timezone.utc), 1.25,
                  **options)


def test_a_test_report_shows_the_table_the_failures_their_excerpts_and_logs_then_a_verdict(capsys):
    ui = captured()
    failed = report(result("ready", PASSED, "/ answered", seconds=1.5), result("https", FAILED, "HTTP 500",
                                                                            excerpt="Internal\nError"),
                    result("metrics", ERROR, "could not run"), result("tap", SKIPPED),
                    logs=(("app", ("booting", "crashed")),))
    ui.test_report(failed, output="json")
    table = out(ui)
    assert "meshctl test" in table and "✓ passed" in table and "1.50 s" in table and "10 ms" in table
    assert "✗ failed" in table and "! error" in table and "– skipped" in table
    lines = err(ui).splitlines()
    assert lines[:3] == ["✗ web / https: HTTP 500", "    Internal", "    Error"]
    assert "✗ web / metrics: could not run" in lines
    assert "last log lines of web:" in lines and "web/app | crashed" in lines
    assert lines[-1] == "✗ 2 of 4 checks failed (1.2s)"
    assert json.loads(capsys.readouterr().out)["project"] == "shop-test"

    passed = captured()
    passed.test_report(report(result("ready", PASSED)))
    assert err(passed).splitlines() == ["✓ 1 checks passed in 1.2s"]
    stopped = captured()
    stopped.test_report(report(result("ready", PASSED), interrupted="SIGINT"))
    assert err(stopped).splitlines()[-1] == "! stopped by SIGINT; everything meshctl started was removed"


def test_when_the_stack_did_not_start_the_error_is_the_news_not_the_ready_check():
    ui = captured()
    ui.test_report(report(result("ready", FAILED, "not ready in 60s"), error=StartError("web: not ready")))
    assert out(ui) == "" and "not ready in 60s" not in err(ui)     # the CLI raises the error itself


def test_the_live_check_table_fills_in_as_results_come_and_stops_when_all_are_done():
    ui = captured(terminal=True)
    ui.results = ui.err
    ui(BuildEvent("web:1", "start"))
    ui(ChecksPlanned((("web", "ready"), ("web", "https"))))
    assert ui._progress is None                       # builds are over once checks are planned
    table = ui._checks
    assert table is not None and table.live is not None
    ui(CheckStarted("web", "ready"))
    assert table.rows[("web", "ready")][0] == "[yellow]… running[/]"
    ui(CheckDone(result("ready", PASSED, "/ answered")))
    assert not table.stopped
    ui(CheckDone(result("https", FAILED, "HTTP 500\nmore")))
    assert table.stopped
    ui.test_report(report(result("ready", PASSED), result("https", FAILED, "HTTP 500")))
    assert ui._checks is None
    rendered = Console(file=io.StringIO(), width=100)
    rendered.print(table.render())
    assert "HTTP 500" in rendered.file.getvalue() and "more" not in rendered.file.getvalue()


def test_progress_plain_prints_each_check_as_it_ends_then_the_table_once():
    ui = captured(terminal=True)
    ui.progress = "plain"
    ui(ChecksPlanned((("web", "ready"), ("web", "https"))))
    assert ui._checks is not None and ui._checks.live is None      # no live table, even on a terminal
    ui(CheckStarted("web", "ready"))
    ui(CheckDone(result("ready", PASSED, "/ answered", seconds=0.012)))
    ui(CheckDone(result("https", FAILED, "HTTP 500\nmore", seconds=1.5)))
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err(ui)).splitlines()
    assert lines == ["✓ passed web / ready (12 ms): / answered", "✗ failed web / https (1.50 s): HTTP 500"]
    assert out(ui).count("meshctl test") == 1 and "HTTP 500" in out(ui)       # the table, once, on stdout
    quiet = captured(quiet=True)
    quiet(ChecksPlanned((("web", "ready"),)))
    quiet(CheckDone(result("ready", PASSED)))
    assert err(quiet) == ""


def test_in_a_ci_log_the_check_table_prints_once():
    console = Console(file=io.StringIO(), width=120)
    table = CheckTable((("web", "ready"),), console)
    assert table.live is None
    table.update(CheckDone(result("ready", PASSED, "/ answered")))
    table.stop()                                        # a second stop prints nothing more
    assert console.file.getvalue().count("/ answered") == 1


def test_columns_are_padded_by_their_text_not_their_markup():
    from rich.console import Console

    from meshctl.cli.ui.columns import aligned

    text = aligned(("service", "offset", "status"), [["web [x]", "+0.50 ms", ("503", "red")], ["api", "+12.25 ms", "200"]],
                   right=frozenset({1}))
    console = Console(width=200, no_color=True, highlight=False)
    with console.capture() as shown:
        console.print(text)
    assert shown.get().splitlines() == ["service    offset status",
                                        "web [x]  +0.50 ms 503",
                                        "api     +12.25 ms 200"]
    assert "[red]503[/]" in text and "[bold]service[/]" in text
