"""`mesh:` (mtls, capture) and each service's `allow`, resolved into every proxy's MeshSettings:
which peers it reaches over the mesh, and who may call it."""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import Any

from .faults import check_check_faults, check_fault_callers, where_fail
from .fields import keys
from .spec import MTLS_MODES, MeshSettings, ServiceSpec
from .traffic import check_traffic
from .values import kind_of, reject_unknown
from .yamlpos import Where


def with_mesh(project: str, raw: Any, specs: list[ServiceSpec], where: Where) -> list[ServiceSpec]:
    """The services with their MeshSettings (meshed ones) or outside_mesh (those with no sidecars)."""
    mtls, capture = _parse_mesh(raw, where)
    _check_allow(specs, mtls, where)
    check_fault_callers(specs, mtls, where_fail(where))
    check_check_faults(specs, where_fail(where))
    # The mesh listener needs the proxy and its certificate.
    meshed = [s for s in specs if s.tls_terminator == "proxy"]
    if mtls == "off" or len(meshed) < 2:
        meshed = []
    check_traffic(specs, meshed, where)
    if not meshed:
        return specs
    if capture:
        _reject_shared_ports(specs, meshed, where)
    out = []
    for spec in specs:
        if spec not in meshed:
            # No sidecars: reached by name, in plain TCP, by everyone (`meshctl ps` says so).
            out.append(replace(spec, outside_mesh=spec.proxy is None and spec.tls is None and spec.metrics is None))
            continue
        others = [s for s in meshed if s.name != spec.name]
        peers = tuple((s.name, s.port) for s in others if s.protocol == "http")
        tcp_peers = tuple((s.name, s.port) for s in others if s.protocol == "tcp")
        traffic = tuple((s.name, s.traffic) for s in others if s.traffic is not None)
        out.append(replace(spec, mesh=MeshSettings(project, mtls, capture, peers, spec.allow, tcp_peers, traffic)))
    return out


def _parse_mesh(raw: Any, where: Where) -> tuple[str, bool]:
    """(mtls mode, capture) from `mesh:`."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise where.error(("mesh",), f"expected a mapping like {{mtls: strict}}, found {kind_of(raw)}")
    reject_unknown(raw, keys("mesh"), ("mesh",), where)
    mtls = raw.get("mtls", "strict")
    if mtls is False:          # YAML 1.1 reads a bare `off` as false
        mtls = "off"
    if not isinstance(mtls, str) or mtls not in MTLS_MODES:
        raise where.error(("mesh", "mtls"), f"unknown mode {mtls!r}",
                          hint="strict (mTLS between pods, plaintext from other pods refused), permissive "
                               "(both accepted) or off (no mesh)")
    capture = raw.get("capture", True)
    if not isinstance(capture, bool):
        raise where.error(("mesh", "capture"), f"expected true or false, found {kind_of(capture)}")
    return mtls, capture


def _check_allow(specs: list[ServiceSpec], mtls: str, where: Where) -> None:
    """Each `allow` names services of this project, and can be enforced (callers carry an identity)."""
    names = [s.name for s in specs]
    for spec in specs:
        for caller in (c for rule in spec.allow or () for c in rule.callers or ()):
            if caller not in names:
                close = difflib.get_close_matches(caller, names, n=1)
                raise where.error(("services", spec.name, "allow"), f"no service named {caller!r} in this project",
                                  hint=f"did you mean {close[0]!r}?" if close else "services: " + ", ".join(names))
        if spec.allow is not None and (mtls == "off" or spec.tls_terminator != "proxy"):
            why = "mesh.mtls is off" if mtls == "off" else "it runs no proxy sidecar with TLS"
            raise where.error(("services", spec.name, "allow"), f"cannot be enforced: {why}, so callers carry "
                              "no identity", hint="remove allow, or turn mTLS and the proxy on")


def _reject_shared_ports(specs: list[ServiceSpec], meshed: list[ServiceSpec], where: Where) -> None:
    """Capture redirects by destination port, and a TCP connection carries no Host: so a TCP
    service's port, and the port of a service outside the mesh, must be no other service's (HTTP
    services may share one: their proxies route by Host)."""
    by_port: dict[int, list[ServiceSpec]] = {}
    for spec in specs:
        by_port.setdefault(spec.port, []).append(spec)
    for port, sharing in by_port.items():
        routed_by_port = [s for s in sharing if s.protocol == "tcp" or s not in meshed]
        if len(sharing) > 1 and routed_by_port:
            spec = routed_by_port[0]
            other = next(s for s in sharing if s is not spec)
            what = "a TCP service" if spec in meshed else "outside the mesh"
            raise where.error(("services", spec.name, "port"), f"port {port} is also {other.name}'s, and {spec.name} "
                              f"is {what}: the mesh tells its connections apart by port alone",
                              hint=f"make {spec.name} (or {other.name}) listen on another port, or set "
                                   "`mesh: {capture: false}`")
