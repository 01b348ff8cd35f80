"""Fault injection in the proxy: the maps of faults by caller (mesh.yaml's, rendered; the live
one `meshctl fault` changes), the listeners' rules and the Lua action (templates/haproxy-faults.*),
and the key meshctl's own probes carry to skip them. Pure: the runtime writes and applies."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from ..config import Fault, ServiceSpec
from ..config.faults import MAX_DELAY, in_order
from .addresses import CONFIG_MOUNT
from ..home import derived_key
from .data import template, template_parts

FAULTS = "haproxy-faults.cfg"
LUA_FILE = "faults.lua"
DECLARED_MAP = "faults.map"        # rendered from mesh.yaml
LIVE_MAP = "faults-live.map"       # `meshctl fault`'s: written by the runtime, seeded empty, never re-rendered
SUMMARY = "faults.json"            # what `meshctl fault` checks a live fault against, and lists
LIVE_SUMMARY = "faults-live.json"  # the live faults as given (absent: none)
HOST = "-"                         # the map key of calls with no identity (the published ports)
PROBE_HEADER = "x-meshctl-probe"
PROBE_KEY_ENV = "MESHCTL_PROBE_KEY"


def map_path(name: str) -> str:
    return f"{CONFIG_MOUNT}/{name}"


def encode(fault: Fault) -> str:
    """KIND:VALUE:PERCENT, what faults.lua reads."""
    value = fault.status if fault.kind == "abort" else round(fault.delay * 1000) if fault.kind == "delay" else 0
    percent = f"{fault.percent:.6f}".rstrip("0").rstrip(".")
    return f"{fault.kind}:{value}:{percent}"


def fault_entries(faults: Sequence[Fault], callers: Iterable[str]) -> dict[str, str]:
    """Caller (a service's name, or HOST) → the faults that hit its calls, in the order they apply.
    A fault with `from` hits only those callers; calls with no identity match only faults without."""
    entries = {}
    for caller in (HOST, *callers):
        hits = [encode(f) for f in in_order(faults) if not f.callers or caller in f.callers]
        if hits:
            entries[caller] = ",".join(hits)
    return entries


def callers_of(service: ServiceSpec) -> tuple[str, ...]:
    """Who may call a service's mesh listener with an identity: the project's other meshed services."""
    mesh = service.mesh
    return tuple(name for name, _ in (*mesh.peers, *mesh.tcp_peers)) if mesh else ()


def map_text(entries: dict[str, str], what: str) -> str:
    return f"# {what}: caller → faults (KIND:VALUE:PERCENT), written by meshctl\n" + "".join(
        f"{caller} {spec}\n" for caller, spec in entries.items())


def fault_files(service: ServiceSpec) -> dict[str, str]:
    """The proxy's fault files: the Lua action and mesh.yaml's map (the live map is seeded apart)."""
    declared = fault_entries(service.faults, callers_of(service))
    summary = {"protocol": service.protocol, "callers": list(callers_of(service)),
               "declared": [as_dict(f) for f in service.faults]}
    return {LUA_FILE: template("haproxy-faults.lua").template,
            DECLARED_MAP: map_text(declared, f"services.{service.name}.faults in mesh.yaml"),
            SUMMARY: json.dumps(summary, indent=2) + "\n"}


def as_dict(fault: Fault) -> dict[str, object]:
    """A fault as mesh.yaml writes it ({abort: 503, percent: 20, from: [web]})."""
    value: object = fault.status if fault.kind == "abort" else f"{fault.delay * 1000:g}ms" if fault.kind == "delay" else True
    return {fault.kind: value, "percent": fault.percent, **({"from": list(fault.callers)} if fault.callers else {})}


def describe(fault: Fault) -> str:
    """abort 503 20% from web; delay 300ms; reset 10%."""
    what = {"abort": f"abort {fault.status}", "delay": f"delay {fault.delay * 1000:g}ms", "reset": "reset"}[fault.kind]
    percent = "" if fault.percent == 100 else f" {fault.percent:g}%"
    return what + percent + (f" from {', '.join(fault.callers)}" if fault.callers else "")


def seeded_files() -> dict[str, str]:
    """Files a proxy needs to exist that meshctl writes only when they are missing."""
    return {LIVE_MAP: map_text({}, "meshctl fault (live)")}


def fault_rules(protocol: str, *, mesh: bool) -> str:
    """A listener's fault rules: on the mesh listener the caller is its certificate's name."""
    caller = "ssl_c_s_dn(CN)" if mesh else f"str({HOST})"
    return template_parts(FAULTS)[protocol].substitute(
        caller=caller, source="mesh" if mesh else "host", live_map=map_path(LIVE_MAP),
        declared_map=map_path(DECLARED_MAP), max_delay=f"{int(MAX_DELAY * 1000)}ms").removesuffix("\n")


def lua_global() -> str:
    return template_parts(FAULTS)["global"].substitute(config_mount=CONFIG_MOUNT).removesuffix("\n")


def probe_key(secret: str, project: str) -> str:
    """The key a stack's proxies honour in PROBE_HEADER: from meshctl's own secret (MESHCTL_HOME,
    0600), one per project; an app sees neither."""
    return derived_key(secret, "probe", project)
