"""A callee's `traffic:` as its callers' outbound backend applies it (timeout, retries, circuit
breaker, split), and `allow:` route rules as the callee's mesh listener applies them, from
templates/haproxy-traffic.cfg. haproxy.py places what these return."""

from __future__ import annotations

from ..config import AllowRule, CircuitBreaker, TrafficPolicy
from ..config.traffic import DEFAULT_TIMEOUT
from .data import template_parts

TRAFFIC = "haproxy-traffic.cfg"
# mesh.yaml's retry conditions → HAProxy's retry-on (Envoy's meanings: 5xx includes no answer at
# all; reset is a callee that closed without answering).
RETRY_ON = {
    "5xx": "conn-failure empty-response junk-response response-timeout 500 501 502 503 504",
    "gateway-error": "502 503 504",
    "reset": "empty-response",
    "connect-failure": "conn-failure",
}
# Always retried, whatever `on` says: a refused connection, or one closed without an answer, while
# the callee's proxy restarts (a reload must cost nothing).
RESTART_WINDOW = ("conn-failure", "empty-response")


def _part(name: str, /, **fields: str) -> str:
    return template_parts(TRAFFIC)[name].substitute(fields)


def _option(name: str, /, **fields: str) -> str:
    """A part that continues a line (a server's options)."""
    return _part(name, **fields).removesuffix("\n")


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def retry_on(conditions: tuple[str, ...]) -> str:
    words = [*RESTART_WINDOW, *(w for c in conditions for w in RETRY_ON.get(c, c).split())]
    return " ".join(dict.fromkeys(words))


# HAProxy 2.6 pauses min(timeout connect, 1 s) before retrying a refused connection to the same
# server, and counts those retries in `retries` with the answer-based ones (one count: `attempts`).
# A callee's proxy restarting in place (killed or crashed: its pod, and so its address, stays)
# refuses for about a second here, longer than attempts × the caller's 200 ms; so a backend with
# retries pauses up to PAUSE_MAX.
PAUSE_MAX = 1.0


def connection_pause(per_try_timeout: float, connect_timeout: float) -> float:
    """A backend with retries: its `timeout connect`, the pause before a refused connection is
    tried again. At most PAUSE_MAX (HAProxy's own cap) and per_try_timeout, so a refused try costs
    no more of the caller's `timeout` than an answered one; never less than the caller's own
    sidecars.proxy.connect_timeout."""
    return max(connect_timeout, min(PAUSE_MAX, per_try_timeout))


def backend_rules(name: str, key: str, policy: TrafficPolicy, connect_timeout: float) -> str:
    """The lines `traffic:` adds to a caller's backend to_<name> (`key` names its breaker's state;
    `connect_timeout` is the caller's sidecars.proxy.connect_timeout)."""
    text = _timeouts(policy)
    if policy.retries is not None:
        pause = connection_pause(policy.retries.per_try_timeout, connect_timeout)
        text += _part("retries", attempts=str(policy.retries.attempts), retry_on=retry_on(policy.retries.on),
                      methods=" ".join(policy.retries.methods), pause=_ms(pause),
                      window=f"{policy.retries.attempts * pause:g}s")
    breaker = policy.circuit_breaker or CircuitBreaker()
    # The breaker refuses first; the count of failed calls runs on every answer, HAProxy's own included.
    fields = {"name": name, "key": key, "errors": str(breaker.consecutive_errors),
              "open_ms": str(round(breaker.open_for * 1000))}
    if breaker.consecutive_errors is not None:
        text += _part("breaker-refuse", **fields)
    if breaker.max_pending is not None:
        text += _part("max-pending", name=name, max_pending=str(breaker.max_pending))
    if breaker.consecutive_errors is not None:
        text += _part("breaker-count", **fields)
    return text


def _timeouts(policy: TrafficPolicy) -> str:
    if policy.timeout is None and policy.retries is None:
        return ""
    whole = DEFAULT_TIMEOUT if policy.timeout is None else policy.timeout
    per_try = policy.retries.per_try_timeout if policy.retries else whole
    return _part("timeout", whole=_ms(whole), whole_text=f"{whole:g}s", per_try=_ms(per_try))


def breaker_init(key: str, policy: TrafficPolicy | None) -> str:
    """A global section starting the breaker's error count at 0 (before its backend)."""
    breaker = policy.circuit_breaker if policy else None
    if breaker is None or breaker.consecutive_errors is None:
        return ""
    return _part("breaker-init", key=key)


def servers(name: str, policy: TrafficPolicy | None) -> list[tuple[str, str]]:
    """(service, server options) for each server of to_<name>: the split's targets by weight, else
    `name` alone; with max_connections each gets its maxconn."""
    split = policy.split if policy and policy.split else ((name, 0),)
    breaker = policy.circuit_breaker if policy else None
    limit = _option("max-connections", max_connections=str(breaker.max_connections)) \
        if breaker is not None and breaker.max_connections is not None else ""
    return [(target, (_option("split-server-options", weight=str(weight)) if len(split) > 1 else "") + limit)
            for target, weight in split]


def route_gate(rules: tuple[AllowRule, ...], refuse: str) -> str:
    """acl lines and one refusal unless some rule lets the call in."""
    acls, conditions = "", []
    for index, rule in enumerate(rules):
        names = []
        if rule.callers is not None:
            acls += _part("rule-callers", index=str(index), callers=" ".join(rule.callers))
            names.append(f"allow_{index}")
        if rule.methods:
            acls += _part("rule-methods", index=str(index), methods=" ".join(rule.methods))
            names.append(f"allow_{index}_methods")
        path_acls = _path_acls(index, rule.paths)
        if path_acls:
            acls += path_acls
            names.append(f"allow_{index}_paths")
        conditions.append(" ".join(names) or "TRUE")
    return acls + _part("rules", refuse=refuse, conditions=" || ".join(conditions))


def _path_acls(index: int, paths: tuple[str, ...]) -> str:
    """Istio's path forms: exact, a prefix ending in * (`*` alone: any path), a suffix starting with *."""
    if "*" in paths:
        return ""
    kinds = {"exact": [p for p in paths if "*" not in p],
             "prefix": [p[:-1] for p in paths if p.endswith("*")],
             "suffix": [p[1:] for p in paths if p.startswith("*")]}
    return "".join(_part(f"rule-paths-{kind}", index=str(index), paths=" ".join(found))
                   for kind, found in kinds.items() if found)


def rule_text(rule: AllowRule) -> str:
    """A rule as `meshctl ps` shows it: the caller's name alone for the shorthand."""
    who = "any service" if rule.callers is None else ",".join(rule.callers)
    how = " ".join(filter(None, (",".join(rule.methods), " ".join(rule.paths))))
    return f"{who} ({how})" if how else who
