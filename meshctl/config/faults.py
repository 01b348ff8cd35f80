"""A service's `faults:` (HTTP: abort, delay; TCP: delay, reset), each with `percent` and `from`,
and the same faults as `meshctl fault` flags and a check's `faults:` give them. Every mistake is a
ConfigError naming the field (file:line from mesh.yaml)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

from .fields import keys
from ..errors import MeshctlError
from .spec import Fault, ServiceSpec
from .values import kind_of, parse_duration
from .yamlpos import Where

FAULT_KEYS = keys("fault")
KINDS_BY_PROTOCOL = {"http": ("abort", "delay"), "tcp": ("delay", "reset"),
                     "any": ("abort", "delay", "reset")}     # a check's faults: checked by service later
# A TCP delay waits inside `tcp-request inspect-delay`, which caps it (templates/haproxy-mesh.cfg).
MAX_DELAY = 60.0
_HINT = {"http": "faults: [{abort: 503, percent: 20}, {delay: 300ms, percent: 50, from: [web]}]",
         "tcp": "faults: [{delay: 200ms}, {reset: true, percent: 10}]",
         "any": "faults: {api: {delay: 3s}}"}

Fail = Callable[[tuple, str, str], MeshctlError]     # (field path, problem, hint) → the error to raise


def parse_faults(raw: Any, protocol: str, path: tuple, where: Where) -> tuple[Fault, ...]:
    """services.NAME.faults: a list of faults (one mapping is taken as a list of one), as written
    (in_order gives the order they apply in)."""
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise where.error(path, f"expected a list of faults, found {kind_of(raw)}", hint=_HINT[protocol])
    return tuple(parse_fault(item, protocol, path + (index,), where_fail(where)) for index, item in enumerate(items))


def in_order(faults: Sequence[Fault]) -> tuple[Fault, ...]:
    """Aborts (and resets) before delays: a call that is answered at once is not delayed first."""
    return tuple(sorted(faults, key=lambda fault: fault.kind == "delay"))


def parse_fault(raw: Any, protocol: str, path: tuple, fail: Fail) -> Fault:
    """One fault mapping ({abort: 503, percent: 20, from: [web]}); `fail` builds the error."""
    hint = _HINT[protocol]
    if not isinstance(raw, dict):
        raise fail(path, f"expected a mapping like {{abort: 503, percent: 20}}, found {kind_of(raw)}", hint)
    for key in raw:
        if key not in FAULT_KEYS:
            close = difflib.get_close_matches(str(key), FAULT_KEYS, n=1)
            raise fail(path + (key,), f"unknown field {key!r}",
                       f"did you mean {close[0]!r}?" if close else "allowed here: " + ", ".join(FAULT_KEYS))
    kinds = [key for key in ("abort", "delay", "reset") if key in raw]
    if len(kinds) != 1:
        raise fail(path, "a fault is exactly one of abort, delay or reset" + (f", not {' and '.join(kinds)}"
                                                                             if kinds else ""), hint)
    kind = kinds[0]
    if kind not in KINDS_BY_PROTOCOL[protocol]:
        why = "an HTTP status needs an HTTP service" if kind == "abort" else "reset is a TCP fault"
        raise fail(path + (kind,), f"{kind} on a protocol: {protocol} service: {why}",
                   f"a {protocol} service takes " + " and ".join(KINDS_BY_PROTOCOL[protocol]) + f"; {hint}")
    return Fault(kind=kind, percent=_percent(raw.get("percent", 100), path + ("percent",), fail),
                 callers=_callers(raw.get("from"), path + ("from",), fail), **_value(kind, raw[kind], path + (kind,), fail))


def _value(kind: str, value: Any, path: tuple, fail: Fail) -> dict[str, Any]:
    if kind == "abort":
        if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
            raise fail(path, f"{value!r} is not an HTTP status to answer with (200-599)", "abort: 503")
        return {"status": value}
    if kind == "delay":
        seconds = parse_duration(value)
        if seconds is None or not 0 < seconds <= MAX_DELAY:
            raise fail(path, f"{value!r} is not a delay (above 0, at most {MAX_DELAY:g}s)", "delay: 300ms, or 2s")
        return {"delay": seconds}
    if value is not True:
        raise fail(path, f"expected true, found {value!r}", "reset: true")
    return {}


def _percent(value: Any, path: tuple, fail: Fail) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise fail(path, f"{value!r} is not a percentage (0-100, fractions allowed)", "percent: 20, or 0.5")
    return float(value)


def _callers(value: Any, path: tuple, fail: Fail) -> tuple[str, ...]:
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise fail(path, "expected a list of service names", "from: [web]")
    return tuple(names)


def check_fault_callers(specs: list[ServiceSpec], mtls: str, fail: Fail) -> None:
    """Each fault's `from` names services of this project, which carry an identity to match."""
    names = [s.name for s in specs]
    for spec in specs:
        for index, fault in enumerate(spec.faults):
            path = ("services", spec.name, "faults", index, "from")
            for caller in fault.callers:
                if caller not in names:
                    close = difflib.get_close_matches(caller, names, n=1)
                    raise fail(path, f"no service named {caller!r} in this project",
                               f"did you mean {close[0]!r}?" if close else "services: " + ", ".join(names))
            if fault.callers and (mtls == "off" or spec.tls_terminator != "proxy"):
                why = "mesh.mtls is off" if mtls == "off" else "it runs no proxy sidecar with TLS"
                raise fail(path, f"cannot be matched: {why}, so callers carry no identity",
                           "remove from (the fault then hits every caller), or turn mTLS and the proxy on")


def where_fail(where: Where) -> Fail:
    """A Fail that names mesh.yaml's file:line for the field."""
    return lambda path, problem, hint: where.error(path, problem, hint=hint)




def parse_check_faults(raw: Any, path: tuple, where: Where) -> tuple[tuple[str, tuple[Fault, ...]], ...]:
    """A check's `faults: {api: {delay: 3s}}`: service → a fault or a list of them, held while it runs."""
    if not isinstance(raw, dict) or not raw:
        raise where.error(path, f"expected a mapping of services to faults, found {kind_of(raw)}", hint=_HINT["any"])
    out = []
    for service, faults in raw.items():
        items = [faults] if isinstance(faults, dict) else faults
        if not isinstance(items, list):
            raise where.error(path + (service,), f"expected a fault or a list of them, found {kind_of(faults)}",
                              hint=_HINT["any"])
        out.append((str(service), tuple(parse_fault(item, "any", path + (service, index), where_fail(where))
                                        for index, item in enumerate(items))))
    return tuple(out)


def check_check_faults(specs: list[ServiceSpec], fail: Fail) -> None:
    """Each check's faults name a service of this project that runs a proxy, in kinds its protocol takes."""
    by_name = {s.name: s for s in specs}
    for spec in specs:
        for index, check in enumerate(spec.checks):
            for target, faults in check.faults:
                path = ("services", spec.name, "checks", index, "faults", target)
                if target not in by_name or by_name[target].proxy is None:
                    raise fail(path, f"no service named {target!r} with a proxy in this project",
                               "faults are injected by the service's proxy: services: " + ", ".join(by_name))
                for fault in faults:
                    unknown = [c for c in fault.callers if c not in by_name]
                    if unknown:
                        raise fail(path, f"from: no service named {unknown[0]!r} in this project",
                                   "services: " + ", ".join(by_name))
                    if fault.kind not in KINDS_BY_PROTOCOL[by_name[target].protocol]:
                        raise fail(path, f"{fault.kind} on {target}, a protocol: {by_name[target].protocol} service",
                                   _HINT[by_name[target].protocol])
