"""The names inject writes and reads back, defined once: the marker key, the sidecar services'
names, the prefix that parks an app's own keys while its pod holder has them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model import HOLDER

MARK = "x-meshctl"                 # a service's settings and meshctl's records; the top-level shared block
GENERATED_BY = "meshctl inject"    # the top-level block's `generated-by:`
SIDECAR_INFIX = "-mesh-"           # web → web-mesh-pod, web-mesh-proxy, web-mesh-metrics
SIDECAR_OF = "sidecar-of"          # x-meshctl.sidecar-of: the app a generated service belongs to
TERMINATES_TLS = "terminates-tls"  # x-meshctl.terminates-tls: the sidecar serving HTTPS (meshctl test --compose)
PARKED = "x-meshctl-"              # `ports:` → `x-meshctl-ports:` while the holder publishes them
POD = HOLDER                       # the holder service's role: it owns the namespace and the published ports
ROLES = ("proxy", "metrics")       # the sidecars every injected service gets, HTTP and TCP alike
GENERATED_ROLES = (POD, *ROLES)
# Roles of services older versions generated (web-mesh-tls: before the proxy terminated TLS).
LEGACY_ROLES = ("tls",)


def sidecar_name(service: str, role: str) -> str:
    return f"{service}{SIDECAR_INFIX}{role}"


def holder_name(service: str) -> str:
    return sidecar_name(service, POD)


def split_sidecar_name(name: str) -> tuple[str, str] | None:
    """(app, role) of a generated service's name, or None."""
    app, infix, role = name.rpartition(SIDECAR_INFIX)
    if infix and app and role in (*GENERATED_ROLES, *LEGACY_ROLES):
        return app, role
    return None


def sidecar_of(service: Any) -> str | None:
    """The app a generated service belongs to (its x-meshctl.sidecar-of), from plain data."""
    block = service.get(MARK) if isinstance(service, Mapping) else None
    if isinstance(block, Mapping) and block.get(SIDECAR_OF) is not None:
        return str(block[SIDECAR_OF])
    return None
