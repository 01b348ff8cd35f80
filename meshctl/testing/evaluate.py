"""Pure evaluation of what a check got back: an HTTP answer or a command's exit code and output
against the declared expectations (status, body, JSON fields, latency), Prometheus text counted,
excerpts for failure messages. No network, no engine: checks.py does the talking."""

from __future__ import annotations

import json
import re
from typing import Any

from ..config import ExecCheck, HttpCheck
from ..runtime.probes import HttpAnswer

EXCERPT_CHARS = 600             # of a response body or a command's output, in a failure message
REQUESTS_METRIC = "meshctl_requests_total"
TCP_CONNECTIONS_METRIC = "meshctl_tcp_connections_total"   # a TCP service's count


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

