"""`meshctl test`: bring a stack up, run the built-in and declared checks against it, tear it down.

    Target          what the checks of one service need: its URLs, certificate names, checks, app container
    run_checks      every target's checks (services in parallel, checks in order) → ServiceReports
    Harness         what differs between stacks: start, logs, teardown (a Stack here; compose_check.py)
    run_harness     start, checks, teardown, always → Report;  run_smoke_test: that for `meshctl test PATH`
    render_junit / Report.as_json   pure renderings of a Report

Progress goes out as CheckStarted / CheckDone events that ui.py renders; nothing here prints.
Only the checks talk to the network (the published ports) and, for `exec` checks, to the engine."""

from __future__ import annotations

import datetime as dt
import json
import queue
import re
import signal
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..certs import default_sans
from ..runtime.probes import HttpAnswer, http_request, tcp_connect, tls_context
from ..config import CheckSpec, ExecCheck, HttpCheck, ProjectSpec
from ..engine.base import Engine
from ..errors import Cancelled, MeshctlError
from ..events import ERROR, FAILED, PASSED, SKIPPED, CheckDone, CheckResult, ChecksPlanned, CheckStarted, PodReady
from ..model import APP
from ..runtime.stack import Stack
from ..runtime.supervise import Tracker, teardown
from ..sidecars import PROXY_PORT

LOG_LINES = 50                  # per container of a failing service, on stderr and in the report
EXCERPT_CHARS = 600             # of a response body or a command's output, in a failure message
METRICS_SETTLE = 5.0            # seconds the proxy's access events may take to reach the metrics sidecar
REQUESTS_METRIC = "meshctl_requests_total"
TCP_CONNECTIONS_METRIC = "meshctl_tcp_connections_total"   # a TCP service's count



# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ServiceReport:
    service: str
    results: tuple[CheckResult, ...]
    # Container role → its last log lines; filled in only when a check of the service failed.
    logs: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)


@dataclass(frozen=True)
class Report:
    project: str
    services: tuple[ServiceReport, ...]
    started: dt.datetime
    seconds: float
    error: MeshctlError | None = None     # the stack could not start (or a build failed)
    interrupted: str = ""                 # the signal that stopped the run, if one did

    @property
    def ok(self) -> bool:
        return self.error is None and not self.interrupted and all(s.ok for s in self.services)

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        if self.interrupted:
            # The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM).
            return 128 + getattr(signal.Signals, self.interrupted, signal.SIGINT).value
        return 0 if self.ok else 1

    def as_json(self) -> dict[str, Any]:
        return {
            "project": self.project, "ok": self.ok, "exit_code": self.exit_code,
            "started": self.started.isoformat(timespec="seconds"), "seconds": round(self.seconds, 3),
            "error": None if self.error is None else {"message": self.error.message, "hint": self.error.hint},
            "interrupted": self.interrupted or None,
            "services": [{"service": s.service, "ok": s.ok, "checks": [r.as_json() for r in s.results],
                          "logs": {role: list(lines) for role, lines in s.logs}} for s in self.services],
        }


# ---------------------------------------------------------------------------------------------
# What the checks of one service reach


@dataclass(frozen=True)
class Target:
    service: str
    urls: dict[str, str]                   # "https", "http", "metrics" → URL on the host
    health: str = "/"
    hostnames: tuple[str, ...] = ()        # the names the certificate must verify for (SNI)
    checks: tuple[CheckSpec, ...] = ()
    counts_requests: bool = True           # a proxy feeds the metrics sidecar its access events
    app_container: str | None = None       # where `exec` checks run
    # A container in the pod to reach the proxy from when it has no host port (an injected
    # compose service publishes only TLS and metrics).
    proxy_inside: str | None = None
    protocol: str = "http"                 # tcp: TCP connects through the chain, never an HTTP request

    def port(self, name: str) -> int:
        return urlsplit(self.urls[name]).port or 0

    def check_names(self) -> tuple[str, ...]:
        """In the order they run: the metrics check last, as it counts the requests before it."""
        first = [n for n, endpoint in (("https", "https"), ("certificate", "https"), ("http", "http"))
                 if endpoint in self.urls or (n == "http" and self.proxy_inside)]
        return ("ready", *first, *(c.name for c in self.checks), *(["metrics"] if "metrics" in self.urls else []))


def targets_for(project: ProjectSpec, urls: dict[str, dict[str, str]] | None = None,
                app_containers: dict[str, str] | None = None) -> list[Target]:
    """The targets of a stack meshctl started: service name → its URLs and app container.
    Without URLs, the targets it would have (to name the checks that could not run)."""
    out = []
    for service in project.services:
        service_urls = urls.get(service.name) if urls is not None else {name: "" for name, _ in service.ports}
        if service_urls is None:
            continue
        out.append(Target(
            service=service.name, urls=service_urls, health=service.health,
            hostnames=default_sans(service.name, service.tls.hosts) if service.tls else (),
            checks=service.checks, counts_requests=bool(service.proxy and service.metrics),
            app_container=(app_containers or {}).get(service.name), protocol=service.protocol))
    return out


# ---------------------------------------------------------------------------------------------
# Running the checks


class _Session:
    """The checks of one service, in order; counts the requests that went through its proxy."""

    def __init__(self, target: Target, engine: Engine | None, context: ssl.SSLContext | None,
                 emit: Callable[[Any], None]):
        self.target = target
        self.engine = engine
        self.context = context
        self.emit = emit
        self.proxied = 0

    def run(self, ready_seconds: float) -> list[CheckResult]:
        t = self.target
        results = [self._result("ready", "builtin", PASSED, ready_seconds,
                                "a TCP connection went through the whole chain" if t.protocol == "tcp"
                                else f"{t.health} answered through the whole chain")]
        self.emit(CheckDone(results[0]))
        baseline = self._requests_counted() if "metrics" in t.urls else None
        steps: list[tuple[str, str, Callable[[], tuple[str, str, str]]]] = []
        if "https" in t.urls:
            steps.append(("https", "builtin", self._https))
            steps.append(("certificate", "builtin", self._certificate))
        if "http" in t.urls or t.proxy_inside:
            steps.append(("http", "builtin", self._http))
        for check in t.checks:
            if isinstance(check, HttpCheck):
                steps.append((check.name, "http", lambda c=check: self._declared_http(c)))
            else:
                steps.append((check.name, "exec", lambda c=check: self._exec(c)))
        if "metrics" in t.urls:
            steps.append(("metrics", "builtin", lambda: self._metrics(baseline)))
        for name, kind, step in steps:
            self.emit(CheckStarted(t.service, name))
            started = time.monotonic()
            try:
                outcome, message, excerpt = step()
            except Exception as exc:  # a check that cannot run is an error of that check, not of meshctl
                outcome, message, excerpt = ERROR, f"{type(exc).__name__}: {exc}", ""
            result = self._result(name, kind, outcome, time.monotonic() - started, message, excerpt)
            results.append(result)
            self.emit(CheckDone(result))
        return results

    def _result(self, name: str, kind: str, outcome: str, seconds: float, message: str,
                excerpt: str = "") -> CheckResult:
        return CheckResult(self.target.service, name, kind, outcome, seconds, message, excerpt)

    # -- built in -------------------------------------------------------------------------------

    def _tcp(self, name: str) -> tuple[str, str, str]:
        """A TCP service's https or http endpoint: a connection (a verified TLS handshake on https)."""
        tls = self.context if name == "https" else None
        what = f"a TCP connection to {self.target.urls[name]}" + (" (verified TLS → proxy → app)" if tls else "")
        try:
            tcp_connect(self.target.port(name), tls=tls, timeout=5.0)
        except ssl.SSLCertVerificationError as exc:
            return FAILED, f"{what}: the certificate did not verify: {exc.verify_message}", ""
        except OSError as exc:
            return FAILED, f"{what}: {_describe(exc)}", ""
        self.proxied += 1
        return PASSED, what, ""

    def _https(self) -> tuple[str, str, str]:
        t = self.target
        if t.protocol == "tcp":
            return self._tcp("https")
        return self._below_500(f"GET {t.health} over https (HTTPS → proxy → app)",
                               lambda: http_request(t.port("https"), t.health, tls=self.context,
                                                    server_hostname="localhost"))

    def _http(self) -> tuple[str, str, str]:
        t = self.target
        if t.protocol == "tcp" and "http" in t.urls:
            return self._tcp("http")
        if "http" not in t.urls:
            return self._http_inside()
        return self._below_500(f"GET {t.health} over plain http", lambda: http_request(t.port("http"), t.health))

    def _http_inside(self) -> tuple[str, str, str]:
        """Plain HTTP to the proxy from inside the pod: bash's /dev/tcp, as the sidecar images have no curl."""
        what = f"GET {self.target.health} to the proxy on 127.0.0.1:{PROXY_PORT} inside the pod"
        script = (f"exec 3<>/dev/tcp/127.0.0.1/{PROXY_PORT} && printf 'GET {self.target.health} HTTP/1.0\\r\\n"
                  f"Host: localhost\\r\\nUser-Agent: meshctl-test\\r\\n\\r\\n' >&3 && "
                  "read -t 5 -r _ code _ <&3 && echo \"$code\"")
        if self.engine is None or self.target.proxy_inside is None:
            return ERROR, f"{what}: no container to send it from", ""
        code, output = self.engine.exec(self.target.proxy_inside, ["bash", "-c", script])
        status = output.strip().splitlines()[-1] if output.strip() else ""
        if code != 0 or not status.isdigit():
            return FAILED, f"{what}: no answer", excerpt(output)
        self.proxied += 1
        if int(status) >= 500:
            return FAILED, f"{what}: HTTP {status}, expected below 500", ""
        return PASSED, f"{what}: HTTP {status}", ""

    def _below_500(self, what: str, request: Callable[[], HttpAnswer]) -> tuple[str, str, str]:
        try:
            answer = request()
        except ssl.SSLCertVerificationError as exc:
            return FAILED, f"{what}: the certificate did not verify: {exc.verify_message}", ""
        except OSError as exc:
            return FAILED, f"{what}: {_describe(exc)}", ""
        self.proxied += 1
        if answer.status >= 500:
            return FAILED, f"{what}: HTTP {answer.status}, expected below 500", excerpt(answer.body)
        return PASSED, f"{what}: HTTP {answer.status} in {answer.elapsed * 1000:.0f} ms", ""

    def _certificate(self) -> tuple[str, str, str]:
        port = self.target.port("https")
        problems, subject = [], ""
        for name in self.target.hostnames:
            try:
                subject = verify_certificate(port, name, self.context)
            except ssl.SSLCertVerificationError as exc:
                problems.append(f"{name}: {exc.verify_message}")
            except OSError as exc:
                problems.append(f"{name}: {_describe(exc)}")
        if problems:
            return FAILED, "the certificate does not verify against meshctl's CA for " + "; ".join(problems), ""
        return PASSED, f"verifies against meshctl's CA for {', '.join(self.target.hostnames)} ({subject})", ""

    def _metrics(self, baseline: float | None) -> tuple[str, str, str]:
        url = self.target.urls["metrics"]
        deadline = time.monotonic() + METRICS_SETTLE
        while True:
            try:
                answer = http_request(self.target.port("metrics"), urlsplit(url).path or "/metrics")
            except OSError as exc:
                return FAILED, f"GET {url}: {_describe(exc)}", ""
            if answer.status != 200:
                return FAILED, f"GET {url}: HTTP {answer.status}, expected 200", excerpt(answer.body)
            try:
                samples = parse_prometheus(answer.body.decode("utf-8", "replace"))
            except ValueError as exc:
                return FAILED, f"GET {url}: not Prometheus text: {exc}", excerpt(answer.body)
            if not self.target.counts_requests or not self.proxied:
                return PASSED, f"{len(samples)} samples of Prometheus text (no proxied requests to count)", ""
            metric, what = self._counted_as()
            counted = requests_counted(samples, self.target.service, metric) - (baseline or 0)
            if counted >= self.proxied:
                return PASSED, (f"{len(samples)} samples of Prometheus text; {metric} counted the "
                                f"{self.proxied} {what} the checks made"), ""
            if time.monotonic() >= deadline:
                return FAILED, (f"{metric}{{service=\"{self.target.service}\"}} grew by {counted:g}, "
                                f"but the checks made {self.proxied} {what} through the proxy"), \
                    excerpt(answer.body)
            time.sleep(0.05)

    def _counted_as(self) -> tuple[str, str]:
        """The counter the checks' traffic lands in: requests, or a TCP service's connections."""
        if self.target.protocol == "tcp":
            return TCP_CONNECTIONS_METRIC, "connections"
        return REQUESTS_METRIC, "requests"

    def _requests_counted(self) -> float | None:
        try:
            answer = http_request(self.target.port("metrics"), urlsplit(self.target.urls["metrics"]).path)
            return requests_counted(parse_prometheus(answer.body.decode("utf-8", "replace")), self.target.service,
                                    self._counted_as()[0])
        except (OSError, ValueError):
            return None

    # -- declared -------------------------------------------------------------------------------

    def _declared_http(self, check: HttpCheck) -> tuple[str, str, str]:
        what = f"{check.method} {check.path} over {check.via}"
        try:
            answer = http_request(self.target.port(check.via), check.path,
                                  tls=self.context if check.via == "https" else None,
                                  server_hostname="localhost", method=check.method,
                                  headers=dict(check.headers), body=check.body, timeout=check.timeout)
        except ssl.SSLCertVerificationError as exc:
            return FAILED, f"{what}: the certificate did not verify: {exc.verify_message}", ""
        except OSError as exc:
            return FAILED, f"{what}: {_describe(exc)}", ""
        self.proxied += 1
        problems = http_problems(check, answer)
        if problems:
            return FAILED, f"{what}: " + "; ".join(problems), excerpt(answer.body)
        return PASSED, f"{what}: HTTP {answer.status} in {answer.elapsed * 1000:.0f} ms", ""

    def _exec(self, check: ExecCheck) -> tuple[str, str, str]:
        if self.engine is None or self.target.app_container is None:
            return ERROR, "no app container to run the command in", ""
        done: queue.Queue = queue.Queue()

        def run() -> None:
            try:
                done.put(self.engine.exec(self.target.app_container, list(check.command)))
            except BaseException as exc:  # handed to the waiting thread
                done.put(exc)

        threading.Thread(target=run, name=f"exec-{check.name}", daemon=True).start()
        try:
            outcome = done.get(timeout=check.timeout)
        except queue.Empty:
            return FAILED, f"`{_shell(check.command)}` did not finish within {check.timeout:g}s", ""
        if isinstance(outcome, BaseException):
            raise outcome
        code, output = outcome
        problems = exec_problems(check, code, output)
        if problems:
            return FAILED, f"`{_shell(check.command)}`: " + "; ".join(problems), excerpt(output, tail=True)
        return PASSED, f"`{_shell(check.command)}` exited {code}", ""


def verify_certificate(port: int, hostname: str, context: ssl.SSLContext) -> str:
    """Handshake with `hostname` as SNI and verify the chain and the name; return the subject."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as raw:
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            cert = tls.getpeercert() or {}
    return ", ".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)


def run_checks(targets: list[Target], *, engine: Engine | None, ca_path: Path | None,
               on_event: Callable[[Any], None], ready_seconds: dict[str, float] | None = None,
               stop: threading.Event | None = None) -> list[ServiceReport]:
    """Every target's checks: services in parallel, each service's checks in order (the metrics
    check counts the requests of those before it). Events reach `on_event` on this thread only.
    Returns when all are done, or raises Cancelled when `stop` is set."""
    context = tls_context(ca_path) if ca_path is not None else None
    events: queue.Queue = queue.Queue()
    results: dict[str, list[CheckResult]] = {}
    on_event(ChecksPlanned(tuple((t.service, name) for t in targets for name in t.check_names())))

    def worker(target: Target) -> None:
        session = _Session(target, engine, context, events.put)
        try:
            results[target.service] = session.run((ready_seconds or {}).get(target.service, 0.0))
        finally:
            events.put(("finished", target.service))

    # Daemon threads: an interrupted run must not wait for a hung check before tearing down.
    for target in targets:
        threading.Thread(target=worker, args=(target,), name=f"checks-{target.service}", daemon=True).start()
    pending = {t.service for t in targets}
    while pending:
        if stop is not None and stop.is_set():
            raise Cancelled("interrupted")
        try:
            event = events.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(event, tuple):
            pending.discard(event[1])
        else:
            on_event(event)
    return [ServiceReport(t.service, tuple(results.get(t.service, ()))) for t in targets]


# ---------------------------------------------------------------------------------------------
# Pure evaluation


def http_problems(check: HttpCheck, answer: HttpAnswer) -> list[str]:
    """What an answer got wrong against the check's expectations; empty when it passes."""
    problems = []
    if check.status:
        if answer.status not in check.status:
            problems.append(f"HTTP {answer.status}, expected {' or '.join(map(str, check.status))}")
    elif answer.status >= 400:
        problems.append(f"HTTP {answer.status}, expected a status below 400")
    text = answer.body.decode("utf-8", "replace")
    if check.body_contains is not None and check.body_contains not in text:
        problems.append(f"the body does not contain {check.body_contains!r}")
    if check.body_matches is not None and not re.search(check.body_matches, text):
        problems.append(f"the body does not match /{check.body_matches}/")
    if check.json:
        try:
            document = json.loads(text)
        except ValueError:
            problems.append("the body is not JSON")
        else:
            for field_path, expected in check.json:
                try:
                    actual = json_field(document, field_path)
                except LookupError:
                    problems.append(f"JSON field {field_path!r} is missing")
                    continue
                if not same_json(actual, expected):
                    problems.append(f"JSON field {field_path!r} is {json.dumps(actual)}, expected {json.dumps(expected)}")
    if check.max_latency is not None and answer.elapsed > check.max_latency:
        problems.append(f"answered in {answer.elapsed * 1000:.0f} ms, more than {check.max_latency * 1000:.0f} ms")
    return problems


def same_json(actual: Any, expected: Any) -> bool:
    """Equal as JSON values: true is not 1, but 1 is 1.0."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    return actual == expected


def exec_problems(check: ExecCheck, code: int, output: str) -> list[str]:
    problems = []
    if code != check.exit_code:
        problems.append(f"exited {code}, expected {check.exit_code}")
    if check.output_contains is not None and check.output_contains not in output:
        problems.append(f"the output does not contain {check.output_contains!r}")
    return problems


def json_field(document: Any, dotted: str) -> Any:
    """`items.0.id` → document["items"][0]["id"]; raises LookupError when a step is missing."""
    value = document
    for step in dotted.split(".") if dotted else ():
        if isinstance(value, list):
            if not step.lstrip("-").isdigit():
                raise LookupError(dotted)
            value = value[int(step)]
        elif isinstance(value, dict):
            value = value[step]
        else:
            raise LookupError(dotted)
    return value


def parse_prometheus(text: str) -> list[Any]:
    """Every sample of a Prometheus text exposition; ValueError when it does not parse."""
    from prometheus_client.parser import text_string_to_metric_families

    if not text.strip():
        raise ValueError("the endpoint answered an empty body")
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def requests_counted(samples: list[Any], service: str, metric: str = REQUESTS_METRIC) -> float:
    return sum(s.value for s in samples if s.name == metric and s.labels.get("service") == service)


def excerpt(data: bytes | str, *, tail: bool = False) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    if len(text) <= EXCERPT_CHARS:
        return text
    return ("…" + text[-EXCERPT_CHARS:]) if tail else (text[:EXCERPT_CHARS] + "…")


def _describe(exc: OSError) -> str:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "no answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}"


def _shell(command: tuple[str, ...]) -> str:
    return command[2] if command[:2] == ("sh", "-c") else " ".join(command)


def with_logs(report: ServiceReport, logs: dict[str, list[str]]) -> ServiceReport:
    return replace(report, logs=tuple((role, tuple(lines[-LOG_LINES:])) for role, lines in logs.items()))


# ---------------------------------------------------------------------------------------------
# JUnit XML (what GitHub Actions reporters, GitLab and Jenkins ingest)

_NOT_XML = re.compile("\x1b\\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """XML 1.0 cannot carry most control characters (a log's colour codes): drop them."""
    return _NOT_XML.sub("", text)


def render_junit(report: Report) -> str:
    """One testsuite per service, one testcase per check; a failure carries its message and the
    response excerpt; a failing service's container logs go in its system-out."""
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    root = ET.Element("testsuites", name=f"meshctl test {report.project}")
    timestamp = report.started.replace(microsecond=0).isoformat()
    for service in report.services:
        counts = {"tests": len(service.results), "failures": service.count(FAILED),
                  "errors": service.count(ERROR), "skipped": service.count(SKIPPED)}
        suite = ET.SubElement(root, "testsuite", name=service.service, timestamp=timestamp, hostname="localhost",
                              time=f"{service.seconds:.3f}", **{k: str(v) for k, v in counts.items()})
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="project", value=report.project)
        logs = _logs_text(service)
        for result in service.results:
            case = ET.SubElement(suite, "testcase", name=result.name, classname=f"{report.project}.{service.service}",
                                 time=f"{result.seconds:.3f}")
            if result.outcome in (FAILED, ERROR):
                body = result.message + (f"\n\nresponse:\n{result.excerpt}" if result.excerpt else "")
                ET.SubElement(case, "failure" if result.outcome == FAILED else "error",
                              message=_xml_text(result.message),
                              type="CheckFailed" if result.outcome == FAILED else "CheckError").text = _xml_text(body)
                if logs:
                    ET.SubElement(case, "system-out").text = _xml_text(logs)
            elif result.outcome == SKIPPED:
                ET.SubElement(case, "skipped", message=_xml_text(result.message))
        if logs:
            ET.SubElement(suite, "system-out").text = _xml_text(logs)
        for key in totals:
            totals[key] += counts[key]
    root.set("time", f"{report.seconds:.3f}")
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _logs_text(service: ServiceReport) -> str:
    return "\n".join(f"{role} | {line}" for role, lines in service.logs for line in lines)


# ---------------------------------------------------------------------------------------------
# The whole run: up, checks, teardown


def isolated(project: ProjectSpec, *, rename: bool = True) -> ProjectSpec:
    """The copy of a project `meshctl test` runs: its own name (`<name>-test`) and free host
    ports, so it never touches, nor collides with, a stack `meshctl up` runs from the same folder."""
    services = tuple(replace(s, ports=tuple((port_name, 0) for port_name, _ in s.ports)) for s in project.services)
    return replace(project, name=f"{project.name}-test" if rename else project.name, services=services)


def not_run(target: Target, outcome: str, message: str, done: tuple[CheckResult, ...] = ()) -> ServiceReport:
    """A service whose checks could not all run: the ones that did, then the rest as `outcome`."""
    finished = {r.name for r in done}
    declared = {c.name: ("http" if isinstance(c, HttpCheck) else "exec") for c in target.checks}
    rest = tuple(CheckResult(target.service, name, declared.get(name, "builtin"), outcome, 0.0, message)
                 for name in target.check_names() if name not in finished)
    return ServiceReport(target.service, done + rest)


@dataclass(frozen=True)
class Harness:
    """What differs between the stacks `meshctl test` can check: how to start one (returning its
    targets), where its logs are, how to take it down."""
    project: str
    planned: list[Target]                                  # the targets it will have, to name checks
    start: Callable[[], list[Target]]
    tails: Callable[[str], dict[str, list[str]]]           # service → container role → last lines
    teardown: Callable[[], None]
    engine: Engine | None
    ca_path: Path | None
    ready: dict[str, float] = field(default_factory=dict)  # service → seconds to ready, as start() learns them


def run_harness(harness: Harness, *, interrupts: Any, on_event: Callable[[Any], None]) -> Report:
    """Start, run the checks, tear down, always. Never raises for what the report can say: a
    build or start failure, a failed check, a signal."""
    started_at = dt.datetime.now(dt.timezone.utc)
    started = time.monotonic()
    finished: dict[str, list[CheckResult]] = {}    # what a signal must not lose

    def watch(event: Any) -> None:
        if isinstance(event, CheckDone):
            finished.setdefault(event.result.service, []).append(event.result)
        on_event(event)

    services: list[ServiceReport] = []
    error: MeshctlError | None = None
    interrupted = ""
    try:
        try:
            targets = harness.start()
        except Cancelled:
            raise
        except MeshctlError as exc:
            error = exc
            services = [_start_failure(harness, t, exc) for t in harness.planned]
        else:
            services = run_checks(targets, engine=harness.engine, ca_path=harness.ca_path, on_event=watch,
                                  ready_seconds=harness.ready, stop=interrupts.stop)
            services = [s if s.ok else with_logs(s, harness.tails(s.service)) for s in services]
    except Cancelled:
        interrupted = interrupts.signal_name or "SIGINT"
        services = [not_run(t, SKIPPED, f"not run: meshctl was stopped by {interrupted}",
                            tuple(finished.get(t.service, ()))) for t in harness.planned]
    finally:
        harness.teardown()
    return Report(harness.project, tuple(services), started_at, time.monotonic() - started, error=error,
                  interrupted=interrupted)


def _start_failure(harness: Harness, target: Target, exc: MeshctlError) -> ServiceReport:
    if target.service in harness.ready:
        done = (CheckResult(target.service, "ready", "builtin", PASSED, harness.ready[target.service], "ready"),)
        return not_run(target, SKIPPED, "not run: another service did not start", done)
    failed = CheckResult(target.service, "ready", "builtin", ERROR, 0.0, exc.message, exc.details or "")
    return with_logs(not_run(target, SKIPPED, f"not run: {exc.message}", (failed,)), harness.tails(target.service))


def run_smoke_test(engine: Engine, project: ProjectSpec, *, interrupts: Any, on_event: Callable[[Any], None],
                   ready_timeout: float) -> Report:
    """`meshctl test PATH`: a Stack tied to this process (SIGKILL takes it down too)."""

    ready: dict[str, float] = {}

    def watch(event: Any) -> None:
        if isinstance(event, PodReady):
            ready[event.service] = event.seconds
        on_event(event)

    tracker = Tracker(engine)
    stack = Stack(engine, project, on_event=watch, tied=True, watch=tracker, ready_timeout=ready_timeout,
                  cancel=interrupts.stop)

    def start() -> list[Target]:
        running = stack.up()
        apps = {s.name: tracker.find(s.name, APP) for s in project.services}
        return targets_for(project, {r.service: r.urls for r in running},
                           {name: tracked.id for name, tracked in apps.items() if tracked is not None})

    harness = Harness(project.name, targets_for(project), start, tracker.tails,
                      teardown=lambda: teardown(stack, interrupts, on_event), engine=engine, ca_path=stack.ca.cert_path,
                      ready=ready)
    return run_harness(harness, interrupts=interrupts, on_event=on_event)
