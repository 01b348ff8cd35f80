"""Which services inject wraps, on which port, with which protocol, and what moves to their pod
holder. Pure: the parsed document and the options in, a ServicePlan (or the reason it is left
alone) per service out; nothing is written here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from ..certs import default_sans
from ..config import RESERVED_POD_PORTS, parse_duration
from ..errors import ConfigError, UsageError
from . import document as doc
from .document import Document
from .names import GENERATED_ROLES, MARK, PARKED, sidecar_name, split_sidecar_name
from .ports import PortEntry, parse_entry
from ..config.port_protocol import HTTP, TCP, facts
from .port_choice import choose

# Keys a user may set in a service's x-meshctl block.
SETTINGS = ("inject", "protocol", "port", "health", "hosts", "metrics_path", "tls_port", "metrics_port",
            "timeout")
# What Docker refuses on a container that joins another's network namespace: the holder has them.
MOVED = ("ports", "expose", "networks", "hostname", "domainname", "dns", "dns_search", "dns_opt",
         "extra_hosts", "mac_address", "links")
# What a key merged in from an anchor is overridden with on the app (the anchor is never changed).
EMPTY = {"networks": "{}", "hostname": '""', "domainname": '""', "mac_address": '""'}


@dataclass(frozen=True)
class InjectOptions:
    services: tuple[str, ...] = ()     # empty: every service that publishes a port
    keep_plain: bool = False           # keep the app's own published ports beside the TLS one
    tcp: str = "proxy"                 # services that do not speak HTTP: "proxy" (TCP mode) or "skip"


@dataclass(frozen=True)
class Machine:
    """What the output depends on besides the file: this machine's images, user and folders."""
    project: str
    images: Mapping[str, str]          # role → sidecar image reference (the holder uses the proxy's)
    user: str                          # uid:gid owning the mounted keys (0600)
    state_dir: PurePath                # per-service sidecar configs and certificates live below (relative: to the file)
    # role → the build context of its image, as the file names it (--portable: compose builds a missing one)
    builds: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    service: str
    reason: str

    @property
    def summary(self) -> str:
        return f"{self.service}: left alone: {self.reason}"


@dataclass(frozen=True)
class ServicePlan:
    name: str
    key: doc.Scalar
    node: doc.Mapping
    data: dict[str, Any]               # the service as plain values, merge keys applied
    settings: dict[str, Any]
    protocol: str
    why: str
    app_port: int
    entries: list[PortEntry]
    sans: tuple[str, ...]
    parked: tuple[doc.Scalar, ...]     # the app's own keys the holder now has (renamed x-meshctl-KEY)
    inherited: tuple[str, ...]         # keys merged in from an anchor, overridden on the app
    wrapped: tuple[PortEntry, ...] = field(default=())   # the entries now reaching the sidecars


def services_of(document: Document) -> doc.Mapping:
    """The `services` mapping, after checking this is a compose file at all."""
    found = doc.get(document.root, "services")
    if found is None:
        raise ConfigError(f"{document.source}:1: not a compose file: no top-level `services:`",
                          hint="point meshctl at the compose file (compose.yaml or docker-compose.yml)")
    key, services = found
    if isinstance(services, doc.Scalar) and doc.scalar(services) is None:
        return doc.Mapping("tag:yaml.org,2002:map", [], services.start_mark, services.end_mark)
    if not isinstance(services, doc.Mapping):
        raise document.error(key, "services", f"expected a mapping of service names, found {doc.kind(services)}",
                             hint="services:\n  web:\n    image: nginx")
    for name, service in services.value:
        if not isinstance(service, doc.Mapping) and not (isinstance(service, doc.Scalar) and doc.scalar(service) is None):
            raise document.error(name, f"services.{name.value}", f"expected a mapping of settings, found {doc.kind(service)}",
                                 hint=f"services:\n  {name.value}:\n    image: nginx")
        if isinstance(service, doc.Mapping):
            ports = doc.lookup(service, "ports")
            if ports is not None and not isinstance(ports[1], doc.Sequence) \
                    and not (isinstance(ports[1], doc.Scalar) and doc.scalar(ports[1]) is None):
                raise document.error(ports[0] or name, f"services.{name.value}.ports", "expected a list of ports",
                                     hint='ports: ["8080:80"]')
    return services


def plan(document: Document, options: InjectOptions) -> tuple[list[ServicePlan], list[Skipped]]:
    services = services_of(document)
    top = doc.get(document.root, MARK)
    if top is not None:
        raise document.error(top[0], MARK, "the top-level x-meshctl block is meshctl inject's own",
                             hint="rename it (x-meshctl is written and removed by meshctl inject)")
    if services.flow_style and services.value:
        raise document.error(services, "services", "written in flow style ({...}); meshctl inject adds services "
                             "as blocks", hint="write `services:` as a block mapping, one service per line")
    names = [str(k.value) for k, _ in services.value]
    unknown = [name for name in options.services if name not in names]
    if unknown:
        raise UsageError(f"no service named {unknown[0]!r} in {document.source}",
                         hint="services: " + (", ".join(names) or "none"))
    if options.tcp not in ("proxy", "skip"):
        raise UsageError(f"--tcp {options.tcp!r}: expected proxy or skip")
    joined: dict[str, list[str]] = {}
    merged_by: dict[int, list[str]] = {}       # a service another one merges (`<<: *web`) would pass on its edits
    for key, service in services.value:
        if isinstance(service, doc.Mapping):
            for source in doc.merge_sources(service):
                merged_by.setdefault(id(source), []).append(str(key.value))
    for key, service in services.value:
        mode = doc.value(service).get("network_mode") if isinstance(service, doc.Mapping) else None
        if isinstance(mode, str) and mode.startswith("service:"):
            joined.setdefault(mode.split(":", 1)[1], []).append(str(key.value))
    plans: list[ServicePlan] = []
    skipped: list[Skipped] = []
    services_data = doc.value(services)
    for key, service in services.value:
        name = str(key.value)
        if options.services and name not in options.services:
            continue
        outcome = _plan_one(document, key, service, options, joined.get(name, []), services_data)
        if id(service) in merged_by and not isinstance(outcome, Skipped):
            outcome = Skipped(name, f"{', '.join(merged_by[id(service)])} merges it (<<: *anchor): its copy would "
                                    "join this pod too; move what they share to an x- anchor of its own")
        if isinstance(outcome, Skipped):
            skipped.append(outcome)
        else:
            plans.append(outcome)
    taken = set(names)
    for item in plans:
        for role in GENERATED_ROLES:
            if sidecar_name(item.name, role) in taken:
                node = next(k for k, _ in services.value if k.value == sidecar_name(item.name, role))
                raise document.error(node, f"services.{node.value}",
                                     f"this name is taken: meshctl names the {role} service of {item.name} so",
                                     hint=f"rename that service, or opt {item.name} out with x-meshctl: {{inject: false}}")
    return plans, skipped


def _plan_one(document: Document, key: doc.Scalar, service: doc.Node, options: InjectOptions,
              joined_by: list[str], services_data: dict[str, Any]) -> ServicePlan | Skipped:
    name = str(key.value)
    if not isinstance(service, doc.Mapping):
        return Skipped(name, "publishes no ports")
    if split_sidecar_name(name) is not None and MARK in doc.keys(service):
        return Skipped(name, "a service meshctl generated")
    data = doc.value(service)
    settings = _settings(document, name, service)
    for parked_key in (k for k, _ in service.value if isinstance(k, doc.Scalar) and str(k.value).startswith(PARKED)):
        if str(parked_key.value)[len(PARKED):] in MOVED:
            raise document.error(parked_key, f"services.{name}.{parked_key.value}",
                                 "a key meshctl inject writes, in a service without its pod",
                                 hint=f"rename it back to {str(parked_key.value)[len(PARKED):]}, or remove it")
    base = _extended(data, services_data)
    reason = _why_no_pod(name, data, settings, joined_by, base)
    if reason is not None:
        return Skipped(name, reason)
    found = doc.lookup(service, "ports")
    if found is None or not isinstance(found[1], doc.Sequence) or not found[1].value:
        if data.get("extends") is not None:
            return Skipped(name, "publishes no ports here (ports from `extends` are not seen: repeat them here)")
        return Skipped(name, "publishes no ports")
    entries = [parse_entry(node, f"services.{name}.ports[{index}]", document)
               for index, node in enumerate(found[1].value)]
    if settings.get("port") is None and not any(e.single_tcp for e in entries):
        if all(e.protocol != "tcp" for e in entries):
            return Skipped(name, "publishes only UDP/SCTP ports")
        return Skipped(name, "no single TCP container port to wrap (ranges or variables); "
                             "set x-meshctl.port to the port the app listens on")
    declared = {e.target: e.app_protocol for e in entries if e.app_protocol and e.target is not None}
    # Evidence from the service extended in this file too (its image, healthcheck, labels).
    choice = choose(entries, facts({**base, **data}), port=settings.get("port"), protocol=settings.get("protocol"),
                    app_protocol_of=declared.get)
    assert choice is not None
    if choice.entry_port in RESERVED_POD_PORTS:
        return Skipped(name, f"its port {choice.entry_port} is one the sidecars use inside the namespace (15000-15099)")
    if choice.protocol == TCP and options.tcp == "skip":
        return Skipped(name, f"does not speak HTTP ({choice.why}); --tcp skip leaves it alone")
    parked, inherited = _moved_keys(service)
    wrapped = tuple(e for e in entries if e.target == choice.entry_port and e.protocol == "tcp")
    sans = default_sans(name, _aliases(data) + tuple(settings.get("hosts") or ()))
    return ServicePlan(name, key, service, data, settings, choice.protocol, choice.why, choice.entry_port, entries,
                       sans, tuple(parked), tuple(inherited), () if options.keep_plain else wrapped)



def _why_no_pod(name: str, data: dict[str, Any], settings: dict[str, Any], joined_by: list[str],
                base: dict[str, Any]) -> str | None:
    """Why a service cannot have a pod of its own, from how it is networked and run; None: it can."""
    if settings.get("inject") is False:
        return "x-meshctl.inject is false"
    network_mode = str(data.get("network_mode") or "")
    if network_mode == "host":
        return "network_mode: host has no namespace of its own for sidecars to join"
    if network_mode.startswith(("service:", "container:")):
        return f"network_mode: {network_mode}: it lives in another namespace"
    if network_mode == "none":
        return "network_mode: none"
    if network_mode:
        return f"network_mode: {network_mode}: only a service on compose networks gets a pod"
    if joined_by:
        return f"{', '.join(joined_by)} joins its namespace (network_mode: service:{name})"
    replicas = _replicas(data)
    if replicas > 1:
        return f"runs {replicas} replicas: sidecars in one namespace would serve only one"
    inherited_by_extends = [k for k in MOVED if k != "ports" and base.get(k) not in (None, "", [], {})]
    if inherited_by_extends:
        extended = data["extends"] if isinstance(data["extends"], str) else data["extends"].get("service")
        return (f"extends {extended}, which sets {', '.join(inherited_by_extends)}: Compose would merge that "
                "beside network_mode; set it on this service instead")
    return None


def _moved_keys(service: doc.Mapping) -> tuple[list[doc.Scalar], list[str]]:
    """The keys that move to the holder: the service's own (parked), and those merged in from an
    anchor (also under a parked key of their own: parking would unveil them)."""
    parked, inherited = [], []
    for moved in MOVED:
        own = doc.get(service, moved)
        if own is not None:
            parked.append(own[0])
        if any(doc.lookup(source, moved) is not None for source in doc.merge_sources(service)):
            inherited.append(moved)
    return parked, inherited

def _extended(data: dict[str, Any], services: dict[str, Any]) -> dict[str, Any]:
    """The service this one extends in the same file (`extends: base` or `{service: base}`), as
    plain data; {} for none, or one in another file (not seen)."""
    extends = data.get("extends")
    if isinstance(extends, str):
        extends = {"service": extends}
    if not isinstance(extends, dict) or extends.get("file"):
        return {}
    base = services.get(str(extends.get("service")))
    return base if isinstance(base, dict) else {}


def _settings(document: Document, name: str, service: doc.Mapping) -> dict[str, Any]:
    found = doc.lookup(service, MARK)
    if found is None:
        return {}
    key, block = found
    path = f"services.{name}.{MARK}"
    if not isinstance(block, doc.Mapping):
        raise document.error(key or block, path, f"expected a mapping, found {doc.kind(block)}",
                             hint="x-meshctl: {protocol: tcp}   or   x-meshctl: {inject: false}")
    out: dict[str, Any] = {}
    for setting, node in block.value:
        field_name = str(setting.value)
        value = doc.value(node)
        where = (setting, f"{path}.{field_name}")
        if field_name == "injected":        # an older version's record (uninject takes it out first)
            continue
        if field_name not in SETTINGS:
            raise document.error(*where, "unknown setting", hint="settings: " + ", ".join(SETTINGS))
        if field_name == "inject" and not isinstance(value, bool):
            raise document.error(*where, "expected true or false", hint="inject: false")
        if field_name == "protocol" and value not in (HTTP, TCP):
            raise document.error(*where, f"expected http or tcp, found {value!r}",
                                 hint="protocol: tcp for anything that is not HTTP/1.1 (gRPC, databases, DNS over TCP)")
        if field_name in ("port", "tls_port", "metrics_port") and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535):
            raise document.error(*where, f"{value!r} is not a port number", hint=f"{field_name}: 8080")
        if field_name in ("health", "metrics_path") and not (isinstance(value, str) and value.startswith("/")):
            raise document.error(*where, "expected an HTTP path starting with /", hint=f"{field_name}: /healthz")
        if field_name == "hosts" and not (isinstance(value, list) and all(isinstance(h, str) and h for h in value)):
            raise document.error(*where, "expected a list of host names", hint="hosts: [shop.example.test]")
        if field_name == "timeout":
            seconds = parse_duration(value)
            if seconds is None:
                raise document.error(*where, f"{value!r} is not a duration", hint="timeout: 30s")
            value = seconds
        out[field_name] = value
    return out


def _replicas(data: dict[str, Any]) -> int:
    deploy = data.get("deploy")
    value = deploy.get("replicas") if isinstance(deploy, dict) and deploy.get("replicas") is not None else data.get("scale")
    try:
        return int(value) if value is not None else 1
    except (TypeError, ValueError):
        return 1


def _aliases(data: dict[str, Any]) -> tuple[str, ...]:
    """Other names the service answers to on its networks: the holder answers to them, and they
    go into the certificate."""
    names: list[str] = []
    networks = data.get("networks")
    if isinstance(networks, dict):
        for settings in networks.values():
            if isinstance(settings, dict) and isinstance(settings.get("aliases"), list):
                names += [str(a) for a in settings["aliases"]]
    for key in ("hostname", "container_name"):
        if isinstance(data.get(key), str) and data[key]:
            names.append(data[key])
    return tuple(dict.fromkeys(n for n in names if "$" not in n))




