"""A service's `checks:`, the checks `meshctl test` runs beside the built-in ones: HTTP requests
with what to expect of the answer, and commands run in the app's container."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from .faults import parse_check_faults
from .fields import keys
from .spec import CheckSpec, ExecCheck, HttpCheck
from .values import duration_field, kind_of, reject_unknown, scalar_text
from .yamlpos import Where

# The checks `meshctl test` runs for every service; a declared check may not take these names.
BUILTIN_CHECK_NAMES = ("ready", "https", "certificate", "http", "metrics")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_CHECK_EXAMPLE = ("checks:\n  - name: greets\n    request: {method: GET, path: /}\n"
                  "    expect: {status: 200, body_contains: hi}\n"
                  "  - name: migrations applied\n    exec: [python3, manage.py, check]\n    expect: {exit_code: 0}")


def parse_checks(raw: Any, path: tuple, where: Where, *, has_tls: bool) -> tuple[CheckSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise where.error(path, f"expected a list of checks, found {kind_of(raw)}", hint=_CHECK_EXAMPLE)
    checks: list[CheckSpec] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        check = _parse_check(item, path + (index,), where, has_tls)
        if check.name in BUILTIN_CHECK_NAMES:
            raise where.error(path + (index, "name"), f"{check.name!r} is the name of a built-in check",
                              hint="name it for what it checks, e.g. `name: greets`")
        if check.name in seen:
            raise where.error(path + (index, "name"), f"check name {check.name!r} is also used by check {seen[check.name] + 1}",
                              hint="give each check a different `name`: it names the test case in the report")
        seen[check.name] = index
        checks.append(check)
    return tuple(checks)


def _parse_check(raw: Any, path: tuple, where: Where, has_tls: bool) -> CheckSpec:
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a mapping with `request:` or `exec:`, found {kind_of(raw)}", hint=_CHECK_EXAMPLE)
    reject_unknown(raw, keys("check"), path, where)
    if ("request" in raw) == ("exec" in raw):
        raise where.error(path, "set exactly one of `request` (an HTTP check) or `exec` (a command in the app)",
                          hint=_CHECK_EXAMPLE)
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise where.error(path + ("name",), "expected a short text")
    expect = raw.get("expect") or {}
    if not isinstance(expect, dict):
        raise where.error(path + ("expect",), f"expected a mapping, found {kind_of(expect)}")
    check: CheckSpec = (_parse_exec_check(raw, name, expect, path, where) if "exec" in raw
                        else _parse_http_check(raw, name, expect, path, where, has_tls))
    if "faults" in raw:
        check = replace(check, faults=parse_check_faults(raw["faults"], path + ("faults",), where))
    return check


def _parse_http_check(raw: dict, name: str | None, expect: dict, path: tuple, where: Where,
                      has_tls: bool) -> HttpCheck:
    method, url_path, headers, body = _parse_request(raw["request"], path + ("request",), where)
    # Through the whole chain when there is one; the plain port otherwise.
    via = raw.get("via", "https" if has_tls else "http")
    if via not in ("https", "http"):
        raise where.error(path + ("via",), f"{via!r} is not an endpoint",
                          hint="via: https (HTTPS → proxy → app, the default) or via: http (the plain port)")
    if via == "https" and not has_tls:
        raise where.error(path + ("via",), "this check goes through https, but tls is off for this service (sidecars.tls: false)",
                          hint="use `via: http`, or turn tls back on")
    return HttpCheck(name=(name or f"{method} {url_path}").strip(), path=url_path, method=method,
                     headers=headers, body=body, via=via, **_parse_http_expect(expect, path + ("expect",), where),
                     timeout=duration_field(raw.get("timeout", 10), path + ("timeout",), where))


def _parse_request(request: Any, rpath: tuple, where: Where) -> tuple[str, str, tuple[tuple[str, str], ...], bytes | None]:
    """(method, path, headers, body) of `request:`."""
    if isinstance(request, str):
        # Shorthand: "GET /version" or "/version".
        words = request.split()
        request = {"method": words[0], "path": words[1]} if len(words) == 2 else {"path": request.strip()}
    if not isinstance(request, dict):
        raise where.error(rpath, f"expected a mapping or \"METHOD /path\", found {kind_of(request)}",
                          hint="request: {method: POST, path: /items, headers: {X-Token: t}, body: {name: a}}")
    reject_unknown(request, keys("request"), rpath, where)
    method = request.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise where.error(rpath + ("method",), f"{method!r} is not an HTTP method", hint=", ".join(_METHODS))
    url_path = request.get("path", "/")
    if not isinstance(url_path, str) or not url_path.startswith("/"):
        raise where.error(rpath + ("path",), "expected an HTTP path starting with /", hint="path: /healthz")
    headers = request.get("headers") or {}
    if not isinstance(headers, dict) or any(isinstance(v, (dict, list)) for v in headers.values()):
        raise where.error(rpath + ("headers",), "expected a mapping of header names to values",
                          hint="headers: {Accept: application/json}")
    header_pairs = [(str(k), scalar_text(v)) for k, v in headers.items()]
    body = request.get("body")
    body_bytes = None
    if isinstance(body, (dict, list)):
        # Structured bodies are sent as JSON, with its content type unless one is given.
        body_bytes = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k, _ in header_pairs):
            header_pairs.append(("Content-Type", "application/json"))
    elif body is not None:
        body_bytes = scalar_text(body).encode()
    return method.upper(), url_path, tuple(header_pairs), body_bytes


def _parse_http_expect(expect: dict, epath: tuple, where: Where) -> dict[str, Any]:
    """HttpCheck's expectation fields, from `expect:`."""
    reject_unknown(expect, keys("http_expect"), epath, where)
    status = expect.get("status", [])
    status = [status] if isinstance(status, int) else status
    if not isinstance(status, list) or not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599
                                               for s in status):
        raise where.error(epath + ("status",), "expected a status code (100-599) or a list of them",
                          hint="status: 200   or   status: [200, 204]")
    texts = {}
    for key in ("body_contains", "body_matches"):
        value = expect.get(key)
        if value is not None and not isinstance(value, str):
            raise where.error(epath + (key,), f"expected a text, found {kind_of(value)}")
        texts[key] = value
    if texts["body_matches"] is not None:
        try:
            re.compile(texts["body_matches"])
        except re.error as exc:
            raise where.error(epath + ("body_matches",), f"not a valid regular expression: {exc}") from exc
    fields = expect.get("json") or {}
    if not isinstance(fields, dict):
        raise where.error(epath + ("json",), "expected a mapping of dotted field paths to values",
                          hint='json: {status: ok, "items.0.id": 3}')
    latency = expect.get("max_latency")
    return dict(status=tuple(status), json=tuple((str(k), v) for k, v in fields.items()),
                max_latency=None if latency is None else duration_field(latency, epath + ("max_latency",), where),
                **texts)


def _parse_exec_check(raw: dict, name: str | None, expect: dict, path: tuple, where: Where) -> ExecCheck:
    command = raw["exec"]
    if isinstance(command, str) and command.strip():
        command = ("sh", "-c", command)
    elif isinstance(command, list) and command and all(isinstance(c, (str, int, float)) for c in command):
        command = tuple(str(c) for c in command)
    else:
        raise where.error(path + ("exec",), "expected a command: a string (run by sh -c) or a list",
                          hint="exec: [python3, -c, 'import app']")
    epath = path + ("expect",)
    reject_unknown(expect, keys("exec_expect"), epath, where)
    exit_code = expect.get("exit_code", 0)
    if isinstance(exit_code, bool) or not isinstance(exit_code, int) or not 0 <= exit_code <= 255:
        raise where.error(epath + ("exit_code",), "expected an exit code from 0 to 255")
    contains = expect.get("output_contains")
    if contains is not None and not isinstance(contains, str):
        raise where.error(epath + ("output_contains",), f"expected a text, found {kind_of(contains)}")
    label = command[2] if command[:2] == ("sh", "-c") else " ".join(command)
    return ExecCheck(name=(name or f"exec {label}")[:80].strip(), command=command, exit_code=exit_code,
                     output_contains=contains,
                     timeout=duration_field(raw.get("timeout", 30), path + ("timeout",), where))
