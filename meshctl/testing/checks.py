"""Running `meshctl test`'s checks against a started stack: the built-in ones (ready, https,
certificate, http, metrics) and the declared ones (http, exec), services in parallel and each
service's checks in order. Progress goes out as CheckStarted / CheckDone events; nothing here
prints. Only this module talks to the network (the published ports) and, for `exec` checks and
plain HTTP from inside a pod, to the engine. evaluate.py judges what came back."""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import CheckSpec, ExecCheck, Fault, HttpCheck
from ..engine.base import Engine
from ..errors import Cancelled, ExecTimeout, MeshctlError
from ..events import ERROR, FAILED, PASSED, CheckDone, CheckResult, ChecksPlanned, CheckStarted
from ..runtime.probes import HttpAnswer, http_request, tcp_connect, tls_context
from ..sidecars import PROXY_PORT
from .evaluate import (REQUESTS_METRIC, TCP_CONNECTIONS_METRIC, exec_problems, excerpt, http_problems,
                       parse_prometheus, requests_counted)
from .report import ServiceReport
from .resilience import Inject, run_resilience_check
from .targets import Target

METRICS_SETTLE = 5.0            # seconds the proxy's access events may take to reach the metrics sidecar


class ServiceChecks:
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
            if not check.faults:       # those run after every service's others (resilience.py)
                steps.append((check.name, check_kind(check), partial(self.declared, check)))
        if "metrics" in t.urls:
            steps.append(("metrics", "builtin", lambda: self._metrics(baseline)))
        for name, kind, step in steps:
            self.emit(CheckStarted(t.service, name))
            started = time.monotonic()
            try:
                outcome, message, shown = step()
            except Exception as exc:  # a check that cannot run is an error of that check, not of meshctl
                outcome, message, shown = ERROR, f"{type(exc).__name__}: {exc}", ""
            result = self._result(name, kind, outcome, time.monotonic() - started, message, shown)
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
                                                    server_hostname="localhost", headers=t.probe_headers()))

    def _http(self) -> tuple[str, str, str]:
        t = self.target
        if t.protocol == "tcp" and "http" in t.urls:
            return self._tcp("http")
        if "http" not in t.urls:
            return self._http_inside()
        return self._below_500(f"GET {t.health} over plain http",
                               lambda: http_request(t.port("http"), t.health, headers=t.probe_headers()))

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
        if self.context is None:
            return ERROR, "no CA to verify the certificate against", ""
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

    def declared(self, check: CheckSpec) -> tuple[str, str, str]:
        return self._declared_http(check) if isinstance(check, HttpCheck) else self._exec(check)

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
        try:
            code, output = self.engine.exec(self.target.app_container, list(check.command), timeout=check.timeout)
        except ExecTimeout:
            return FAILED, f"`{_shell(check.command)}` did not finish within {check.timeout:g}s", ""
        problems = exec_problems(check, code, output)
        if problems:
            return FAILED, f"`{_shell(check.command)}`: " + "; ".join(problems), excerpt(output, tail=True)
        return PASSED, f"`{_shell(check.command)}` exited {code}", ""


def _no_faults(service: str, faults: tuple[Fault, ...] | None) -> None:
    raise MeshctlError("faults need the proxies `meshctl up` runs (meshctl inject's have no fault injection)")


def check_kind(check: CheckSpec) -> str:
    return "http" if isinstance(check, HttpCheck) else "exec"


def verify_certificate(port: int, hostname: str, context: ssl.SSLContext) -> str:
    """Handshake with `hostname` as SNI and verify the chain and the name; return the subject."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as raw, \
            context.wrap_socket(raw, server_hostname=hostname) as tls:
        cert: dict[str, Any] = tls.getpeercert() or {}
    return ", ".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)


def run_checks(targets: list[Target], *, engine: Engine | None, ca_path: Path | None,
               on_event: Callable[[Any], None], ready_seconds: dict[str, float] | None = None,
               stop: threading.Event | None = None, inject: Inject | None = None) -> list[ServiceReport]:
    """Every target's checks: services in parallel, each service's checks in order (the metrics
    check counts the requests of those before it), then the checks with faults one at a time
    (`inject` sets a service's live faults). Events reach `on_event` on this thread only.
    Returns when all are done, or raises Cancelled when `stop` is set."""
    context = tls_context(ca_path) if ca_path is not None else None
    events: queue.Queue = queue.Queue()
    results: dict[str, list[CheckResult]] = {}
    on_event(ChecksPlanned(tuple((t.service, name) for t in targets for name in t.check_names())))

    def worker(target: Target) -> None:
        checks = ServiceChecks(target, engine, context, events.put)
        try:
            results[target.service] = checks.run((ready_seconds or {}).get(target.service, 0.0))
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
    for target in targets:
        runner = ServiceChecks(target, engine, context, on_event)
        for check in (c for c in target.checks if c.faults):
            results.setdefault(target.service, []).append(run_resilience_check(
                target.service, check, check_kind(check), partial(runner.declared, check),
                inject=inject or _no_faults, emit=on_event, stop=stop))
    return [ServiceReport(t.service, tuple(results.get(t.service, ()))) for t in targets]



def _describe(exc: OSError) -> str:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "no answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}"


def _shell(command: tuple[str, ...]) -> str:
    return command[2] if command[:2] == ("sh", "-c") else " ".join(command)

