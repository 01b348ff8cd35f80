"""A service's `traffic:` (how every caller's proxy calls it: timeout, retries, circuit breaker,
canary split) and its `allow:` route rules; then the checks that need the whole project (a split's
targets, who may call them). Every mistake names file:line and the field."""

from __future__ import annotations

import difflib
import math
from typing import Any

from .fields import keys
from .spec import AllowRule, CircuitBreaker, RetryPolicy, ServiceSpec, TrafficPolicy
from .values import duration_field, kind_of, reject_unknown
from .yamlpos import Where

_TRAFFIC_KEYS = keys("traffic")
_RETRY_KEYS = keys("retries")
_BREAKER_KEYS = keys("circuit_breaker")
_RULE_KEYS = keys("allow_rule")
# What `retries.on` may name: Envoy's names, and the statuses HAProxy 2.6 can retry on.
RETRY_CONDITIONS = ("5xx", "gateway-error", "reset", "connect-failure")
RETRY_STATUSES = (401, 403, 404, 408, 425, 500, 501, 502, 503, 504)
DEFAULT_RETRY_ON = ("connect-failure", "reset", "5xx")
DEFAULT_RETRY_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
# The whole wait when `timeout` is not written: the proxy's own default.
DEFAULT_TIMEOUT = 15.0
_TRAFFIC_HINT = "traffic: {timeout: 2s, retries: {attempts: 3, on: [5xx, reset, connect-failure]}}"
_ALLOW_HINT = 'allow: [web, {from: admin, methods: [GET, POST], paths: ["/admin/*"]}]'


def parse_traffic(raw: Any, path: tuple, where: Where) -> TrafficPolicy | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a mapping, found {kind_of(raw)}", hint=_TRAFFIC_HINT)
    reject_unknown(raw, _TRAFFIC_KEYS, path, where)
    timeout = _positive_duration(raw["timeout"], path + ("timeout",), where) if "timeout" in raw else None
    retries = _parse_retries(raw.get("retries"), timeout, path + ("retries",), where)
    breaker = _parse_breaker(raw.get("circuit_breaker"), path + ("circuit_breaker",), where)
    split = _parse_split(raw.get("split"), path + ("split",), where)
    return TrafficPolicy(timeout=timeout, retries=retries, circuit_breaker=breaker, split=split)


def _parse_retries(raw: Any, timeout: float | None, path: tuple, where: Where) -> RetryPolicy | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a mapping, found {kind_of(raw)}",
                          hint="retries: {attempts: 3, on: [5xx, reset, connect-failure], per_try_timeout: 500ms}")
    if True in raw:           # YAML 1.1 reads a bare `on` key as true
        raw = {("on" if key is True else key): value for key, value in raw.items()}
    reject_unknown(raw, _RETRY_KEYS, path, where)
    attempts = _count(raw.get("attempts", 2), path + ("attempts",), where, low=0)
    on = _retry_on(raw.get("on", list(DEFAULT_RETRY_ON)), path + ("on",), where)
    methods = _methods(raw.get("methods", list(DEFAULT_RETRY_METHODS)), path + ("methods",), where)
    whole = DEFAULT_TIMEOUT if timeout is None else timeout
    if "per_try_timeout" not in raw:
        return RetryPolicy(attempts, on, whole / (attempts + 1), methods)
    per_try = _positive_duration(raw["per_try_timeout"], path + ("per_try_timeout",), where)
    if (attempts + 1) * per_try > whole + 1e-9:
        written = "timeout" if timeout is not None else f"the default timeout ({whole:g}s)"
        raise where.error(path + ("per_try_timeout",), f"{attempts + 1} tries of {per_try:g}s outlive {written}: "
                          "no attempt may outlive the caller's whole wait",
                          hint=f"per_try_timeout at most {_round_down_ms(whole / (attempts + 1))}, fewer attempts, "
                               "or a longer traffic.timeout")
    return RetryPolicy(attempts, on, per_try, methods)


def _round_down_ms(seconds: float) -> str:
    return f"{math.floor(seconds * 1000)}ms"


def _retry_on(raw: Any, path: tuple, where: Where) -> tuple[str, ...]:
    hint = "on: [5xx, reset, connect-failure] (also gateway-error, or a status: " + \
        ", ".join(map(str, RETRY_STATUSES)) + ")"
    if not isinstance(raw, list) or not raw:
        raise where.error(path, f"expected a list of retry conditions, found {kind_of(raw)}", hint=hint)
    for i, item in enumerate(raw):
        if item not in RETRY_CONDITIONS and not (isinstance(item, int) and item in RETRY_STATUSES):
            close = difflib.get_close_matches(str(item), RETRY_CONDITIONS, n=1)
            raise where.error(path + (i,), f"unknown retry condition {item!r}",
                              hint=f"did you mean {close[0]!r}?" if close else hint)
    return tuple(str(item) for item in raw)


def _methods(raw: Any, path: tuple, where: Where) -> tuple[str, ...]:
    hint = "methods: [GET, PUT] (any of " + ", ".join(HTTP_METHODS) + ")"
    if not isinstance(raw, list) or not raw:
        raise where.error(path, f"expected a list of HTTP methods, found {kind_of(raw)}", hint=hint)
    for i, item in enumerate(raw):
        if not isinstance(item, str) or item.upper() not in HTTP_METHODS:
            raise where.error(path + (i,), f"{item!r} is not an HTTP method", hint=hint)
    return tuple(dict.fromkeys(item.upper() for item in raw))


def _parse_breaker(raw: Any, path: tuple, where: Where) -> CircuitBreaker | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise where.error(path, f"expected a mapping of settings, found {kind_of(raw)}",
                          hint="circuit_breaker: {consecutive_errors: 5, open_for: 10s, max_connections: 100, "
                               "max_pending: 50}")
    reject_unknown(raw, _BREAKER_KEYS, path, where)
    counts = {key: _count(raw[key], path + (key,), where, low=1)
              for key in ("consecutive_errors", "max_connections", "max_pending") if key in raw}
    if "open_for" in raw and "consecutive_errors" not in raw:
        raise where.error(path + ("open_for",), "open_for is how long the breaker stays open after "
                          "consecutive_errors failed calls, and consecutive_errors is not set",
                          hint="add consecutive_errors: 5, or remove open_for")
    open_for = _positive_duration(raw.get("open_for", 30), path + ("open_for",), where)
    return CircuitBreaker(open_for=open_for, **counts)


def _parse_split(raw: Any, path: tuple, where: Where) -> tuple[tuple[str, int], ...]:
    if raw is None:
        return ()
    hint = "split: {api: 90, api-v2: 10} (service names to percentages summing to 100)"
    if not isinstance(raw, dict) or not raw:
        raise where.error(path, f"expected a mapping of service names to percentages, found {kind_of(raw)}",
                          hint=hint)
    for name, weight in raw.items():
        _count(weight, path + (name,), where, low=0, high=100)
    if sum(raw.values()) != 100:
        raise where.error(path, f"the percentages sum to {sum(raw.values())}, not 100", hint=hint)
    return tuple((str(name), weight) for name, weight in raw.items())


def _count(value: Any, path: tuple, where: Where, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"{low}-{high}" if high is not None else f"{low} or more"
        raise where.error(path, f"expected a whole number ({bound}), found {value!r}",
                          hint=f"write a number like {max(low, 1) if high is None else high}")
    return value


def _positive_duration(value: Any, path: tuple, where: Where) -> float:
    seconds = duration_field(value, path, where)
    if seconds <= 0:
        raise where.error(path, "expected a duration above 0", hint="write it like 2s or 500ms")
    return seconds


def parse_allow(raw: Any, path: tuple, where: Where) -> tuple[AllowRule, ...] | None:
    """`allow:`: service names (today's shorthand) and rules {from, methods, paths}."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise where.error(path, f"expected a list of service names and rules, found {kind_of(raw)}", hint=_ALLOW_HINT)
    return tuple(_allow_rule(item, path + (i,), where) for i, item in enumerate(raw))


def _allow_rule(raw: Any, path: tuple, where: Where) -> AllowRule:
    if isinstance(raw, str):
        return AllowRule(callers=(raw,))
    if not isinstance(raw, dict) or not raw:
        raise where.error(path, f"expected a service name or a rule, found {kind_of(raw)}", hint=_ALLOW_HINT)
    reject_unknown(raw, _RULE_KEYS, path, where)
    callers = raw.get("from")
    if isinstance(callers, str):
        callers = [callers]
    if callers is not None and (not isinstance(callers, list) or not callers
                                or not all(isinstance(c, str) for c in callers)):
        raise where.error(path + ("from",), "expected a service name or a list of them", hint=_ALLOW_HINT)
    methods = _methods(raw["methods"], path + ("methods",), where) if "methods" in raw else ()
    paths = raw.get("paths", [])
    if not isinstance(paths, list) or ("paths" in raw and not paths):
        raise where.error(path + ("paths",), f"expected a list of paths, found {kind_of(paths)}", hint=_ALLOW_HINT)
    for i, item in enumerate(paths):
        _check_path(item, path + ("paths", i), where)
    return AllowRule(callers=tuple(callers) if callers is not None else None, methods=methods, paths=tuple(paths))


def _check_path(value: Any, path: tuple, where: Where) -> None:
    """Istio's forms: exact (/a/b), a prefix ending in * (/a/*), a suffix starting with * (*.json)."""
    ok = isinstance(value, str) and value and (value == "*" or "*" not in value.strip("*")) and \
        not (value.startswith("*") and value.endswith("*") and value != "*") and \
        (value.startswith(("/", "*")))
    if not ok:
        raise where.error(path, f"{value!r} is not a path rule",
                          hint='an exact path ("/health"), a prefix ending in * ("/admin/*") or a suffix '
                               'starting with * ("*.json")')


def allowed_callers(rules: tuple[AllowRule, ...] | None, everyone: set[str]) -> set[str]:
    """The services some rule lets in (for any method and path)."""
    if rules is None:
        return set(everyone)
    return set().union(*((set(everyone) if r.callers is None else set(r.callers)) for r in rules))


def check_traffic(specs: list[ServiceSpec], meshed: list[ServiceSpec], where: Where) -> None:
    """What needs the whole project: traffic and route rules only where a caller's and the callee's
    proxy can apply them, split targets that exist, and a split target letting in every caller of
    the service it stands in for."""
    names = [s.name for s in specs]
    for spec in specs:
        path = ("services", spec.name)
        if spec.protocol == "tcp" and spec.traffic is not None:
            raise where.error(path + ("traffic",), "traffic: is HTTP's (timeouts, retries, splits of requests); "
                              "this service is protocol: tcp", hint="remove traffic:")
        if spec.protocol == "tcp" and any(r.methods or r.paths for r in spec.allow or ()):
            raise where.error(path + ("allow",), "methods and paths need HTTP; this service is protocol: tcp",
                              hint="allow: [api] (service names only)")
        if spec.traffic is not None and spec not in meshed:
            raise where.error(path + ("traffic",), "callers' proxies apply traffic:, and this service is not in "
                              "a mesh (mTLS off, no proxy, or no other service)", hint="remove traffic:")
        for target, _weight in spec.traffic.split if spec.traffic else ():
            _check_split_target(spec, target, specs, names, meshed, where)


def _check_split_target(spec: ServiceSpec, target: str, specs: list[ServiceSpec], names: list[str],
                        meshed: list[ServiceSpec], where: Where) -> None:
    path = ("services", spec.name, "traffic", "split", target)
    if target not in names:
        close = difflib.get_close_matches(target, names, n=1)
        raise where.error(path, f"no service named {target!r} in this project",
                          hint=f"did you mean {close[0]!r}?" if close else "services: " + ", ".join(names))
    other = next(s for s in specs if s.name == target)
    if other not in meshed or other.protocol != "http":
        raise where.error(path, f"{target} must be an HTTP service in the mesh (a proxy with TLS), as "
                          f"{spec.name} is", hint=f"give {target} its proxy sidecar, or split to another service")
    everyone = {s.name for s in meshed}
    missing = sorted(allowed_callers(spec.allow, everyone - {spec.name})
                     - allowed_callers(other.allow, everyone) - {target})
    if missing:
        raise where.error(path, f"{', '.join(missing)} may call {spec.name} but not {target}, which gets "
                          f"part of {spec.name}'s calls", hint=f"add {', '.join(missing)} to {target}'s allow")
