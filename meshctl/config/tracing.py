"""`mesh: {tracing: {otlp: URL, sample: 0.0-1.0}}`: where the metrics sidecars export spans
(OTLP/HTTP), and the share of traces they export. Without `otlp`, meshctl's own environment's
OTEL_EXPORTER_OTLP_ENDPOINT (the OpenTelemetry SDKs' variable) says where, as it would for an SDK."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from .fields import keys
from .spec import TracingSettings
from .values import kind_of, reject_unknown
from .yamlpos import Where

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
# A collector on the developer's own machine: reached through the loopback forwarder (docs/observability.md).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_URL_HINT = "an OTLP/HTTP collector's base URL, e.g. http://localhost:4318 (spans go to URL/v1/traces)"


def parse_tracing(raw: Any, where: Where) -> TracingSettings | None:
    """The export settings from `mesh.tracing` (raw: its value) and the environment; None: no export."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise where.error(("mesh", "tracing"), f"expected a mapping like {{otlp: http://localhost:4318}}, "
                          f"found {kind_of(raw)}")
    reject_unknown(raw, keys("tracing"), ("mesh", "tracing"), where)
    sample = _sample(raw.get("sample", 1.0), where)
    url = raw.get("otlp")
    if url is not None:
        return TracingSettings(_url(url, ("mesh", "tracing", "otlp"), where), sample)
    from_env = (where.variables or {}).get(ENDPOINT_VARIABLE, "").strip()
    if from_env:
        return TracingSettings(_url(from_env, None, where), sample)
    return None


def _sample(value: Any, where: Where) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0 \
            or math.isnan(value):
        raise where.error(("mesh", "tracing", "sample"), f"expected a share of traces from 0.0 to 1.0, "
                          f"found {value!r}", hint="1.0 exports every trace (the default), 0.1 one in ten, 0 none")
    return float(value)


def _url(value: Any, path: tuple | None, where: Where) -> str:
    """The URL as written (trailing / removed), or the file:line error (the variable's, from the environment)."""
    problem = _url_problem(value)
    if problem is None:
        return str(value).strip().rstrip("/")
    if path is None:
        raise where.error((), f"{ENDPOINT_VARIABLE} in meshctl's environment: {problem}",
                          hint=_URL_HINT + f", or unset {ENDPOINT_VARIABLE}")
    raise where.error(path, problem, hint=_URL_HINT)


def _url_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"expected a URL, found {kind_of(value)}"
    try:
        parts = urlsplit(value.strip())
        parts.port      # noqa: B018 (raises on a port that is not a number)
    except ValueError as exc:
        return f"{value!r} is not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"{value!r}: expected http:// or https://"
    if not parts.hostname:
        return f"{value!r} names no host"
    if parts.query or parts.fragment:
        return f"{value!r}: a base URL has no ?query or #fragment"
    if parts.scheme == "https" and is_loopback(value):
        return f"{value!r}: a collector on this machine is reached through meshctl's forwarder, in plain HTTP"
    return None


def is_loopback(url: str) -> bool:
    """A collector on the developer's machine: containers cannot reach the host's 127.0.0.1."""
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS
