"""meshctl inject: add proxy and metrics sidecar services to a compose file, and take them out.

Pure: a parsed compose document (ruamel round-trip tree) in, the same document changed out, with
what the CLI must write beside it (sidecar configs, certificates to issue). No files, no Docker,
no printing. `inject` first takes out anything injected before, so injecting twice changes
nothing; every part it adds is marked `x-meshctl`, which is all `uninject` needs.

Per service, the app keeps its name, networks and everything else; what changes:
  ports        published app ports now reach the proxy: its HTTPS port (HTTP services; the proxy
               terminates TLS itself) or its TCP port; the metrics port is published on
               127.0.0.1; the original list is kept under x-meshctl.injected.ports for uninject
  NAME-mesh-proxy / -metrics   new services in the app's network namespace
                               (network_mode: service:NAME)

Files injected before the proxy terminated TLS also have a NAME-mesh-tls service (HTTPS → tls →
proxy → app); uninject takes it out like any other sidecar, and re-injecting such a file gives the
new shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString

from . import __version__
from .certs import default_sans
from .config import (RESERVED_POD_PORTS, MetricsSettings, ProxySettings, ServiceSpec, TlsSettings,
                     parse_duration)
from .errors import ConfigError, UsageError, located
from .model import labels, split_image_ref
from .sidecars import (CONFIG_MOUNT, KINDS, METRICS_PORT, PROXY_PORT, PROXY_STATS_PORT, READY_PATH,
                       SIDECAR_STOP_TIMEOUT, TLS_PORT, metrics_env, proxy_stats_url, render_proxy, render_tcp_proxy,
                       shell_http_check, shell_tls_chain_check)

MARK = "x-meshctl"
GENERATED_BY = "meshctl inject"
SIDECAR_INFIX = "-mesh-"
# The sidecars inject adds, HTTP and TCP alike. For an HTTP service the proxy terminates HTTPS itself
# (one stage fewer per request than a tls sidecar in front of it, as `meshctl up` does).
HTTP_ROLES = ("proxy", "metrics")
TCP_ROLES = HTTP_ROLES
# Marks the sidecar that serves HTTPS, for `meshctl test --compose`: x-meshctl.terminates-tls.
TERMINATES_TLS = "terminates-tls"
# Keys a user may set in a service's x-meshctl block; `injected` and `sidecar-of` are meshctl's.
SETTINGS = ("inject", "protocol", "port", "health", "hosts", "metrics_path", "tls_port", "metrics_port",
            "timeout")
HEALTH_INTERVAL = "2s"

# Well-known ports and images of servers that do not speak HTTP: an HTTP proxy would break them.
TCP_PORTS = {5432: "PostgreSQL", 3306: "MySQL", 6379: "Redis", 27017: "MongoDB", 11211: "Memcached",
             5672: "AMQP", 9042: "Cassandra", 9092: "Kafka", 2181: "ZooKeeper", 4222: "NATS",
             1433: "SQL Server", 1521: "Oracle", 1883: "MQTT", 26257: "CockroachDB", 2379: "etcd",
             9000: "ClickHouse native", 6650: "Pulsar", 7687: "Neo4j Bolt", 25: "SMTP", 22: "SSH"}
TCP_IMAGES = {"postgres": "PostgreSQL", "postgresql": "PostgreSQL", "postgis": "PostgreSQL",
              "timescaledb": "PostgreSQL", "pgvector": "PostgreSQL", "mysql": "MySQL", "mariadb": "MariaDB",
              "percona": "MySQL", "redis": "Redis", "valkey": "Valkey", "keydb": "KeyDB", "dragonfly": "Redis",
              "mongo": "MongoDB", "mongodb": "MongoDB", "memcached": "Memcached", "rabbitmq": "AMQP",
              "cassandra": "Cassandra", "scylla": "Cassandra", "kafka": "Kafka", "zookeeper": "ZooKeeper",
              "nats": "NATS", "mssql": "SQL Server", "mosquitto": "MQTT", "etcd": "etcd", "neo4j": "Neo4j Bolt"}


@dataclass(frozen=True)
class InjectOptions:
    services: tuple[str, ...] = ()     # empty: every service that publishes a port
    keep_plain: bool = False           # keep the app's own published ports beside the TLS one
    tcp: str = "proxy"                 # services that do not speak HTTP: "proxy" (TCP mode) or "skip"


@dataclass(frozen=True)
class Machine:
    """What the output depends on besides the file: this machine's images, user and folders."""
    project: str
    images: Mapping[str, str]          # role → sidecar image reference
    user: str                          # uid:gid owning the mounted keys (0600)
    state_dir: PurePath                # per-service sidecar configs and certificates live below


@dataclass(frozen=True)
class Injected:
    service: str
    protocol: str                      # "http" or "tcp"
    why: str                           # why that protocol
    app_port: int
    roles: tuple[str, ...]
    files: dict[PurePath, str]         # rendered sidecar configs to write
    cert_dir: PurePath | None          # where to issue the TLS certificate (HTTP only)
    sans: tuple[str, ...]
    entry: str                         # where outside traffic now enters, for the summary
    metrics: str                       # where the metrics are published, for the summary
    # Sidecar services an earlier injection gave it and this one does not (web-mesh-tls, from before
    # the proxy terminated TLS). A container of theirs still running would keep taking connections
    # on the HTTPS port beside the proxy (HAProxy binds it with SO_REUSEPORT): compose must remove it.
    retired: tuple[str, ...] = ()
    retired_dirs: tuple[PurePath, ...] = ()   # their config folders (the old tls one holds a private key)

    @property
    def summary(self) -> str:
        chain = "proxy (HTTPS) → app" if self.protocol == "http" else "TCP proxy → app"
        text = f"{self.service}: injected ({self.protocol}: {self.why}): {self.entry} → {chain}:{self.app_port}; {self.metrics}"
        if self.retired:
            text += (f"; {', '.join(self.retired)} is gone: `docker compose up -d --remove-orphans` removes its"
                     " container, which would keep taking connections")
        return text


@dataclass(frozen=True)
class Skipped:
    service: str
    reason: str

    @property
    def summary(self) -> str:
        return f"{self.service}: left alone: {self.reason}"


@dataclass(frozen=True)
class InjectResult:
    document: Any
    injected: tuple[Injected, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    @property
    def roles(self) -> tuple[str, ...]:
        used = {role for item in self.injected for role in item.roles}
        return tuple(r for r in HTTP_ROLES if r in used)


@dataclass(frozen=True)
class UninjectResult:
    document: Any
    restored: tuple[str, ...] = ()     # app services whose ports came back
    removed: tuple[str, ...] = ()      # sidecar services taken out


# ---------------------------------------------------------------------------------------------
# The compose document


class _Source:
    """Names the file and line of a node for error messages."""

    def __init__(self, name: str):
        self.name = name

    def error(self, node: Any, key: Any, path: str, problem: str, hint: str | None = None) -> ConfigError:
        line = None
        try:
            if key is None:
                line = node.lc.line + 1
            else:
                line = node.lc.key(key)[0] + 1
        except (AttributeError, KeyError, TypeError, IndexError):
            pass
        return ConfigError(f"{located(self.name, line)}: {path}: {problem}", hint=hint)


def compose_services(document: Any, source: str) -> CommentedMap:
    """The `services` mapping, after checking this is a compose file at all."""
    src = _Source(source)
    if document is None:
        raise ConfigError(f"{source}: the file is empty, not a compose file",
                          hint="a compose file has a top-level `services:` mapping")
    if not isinstance(document, dict):
        raise src.error(document, None, "top level", f"expected a mapping with `services:`, found {_kind(document)}",
                        hint="a compose file has a top-level `services:` mapping")
    if "services" not in document:
        raise ConfigError(f"{source}:1: not a compose file: no top-level `services:`",
                          hint="point meshctl at the compose file (compose.yaml or docker-compose.yml)")
    services = document["services"]
    if not isinstance(services, dict):
        raise src.error(document, "services", "services", f"expected a mapping of service names, found {_kind(services)}",
                        hint="services:\n  web:\n    image: nginx")
    for name, service in services.items():
        if service is not None and not isinstance(service, dict):
            raise src.error(services, name, f"services.{name}", f"expected a mapping of settings, found {_kind(service)}")
        if isinstance(service, dict) and "ports" in service and service.get("ports") is not None \
                and not isinstance(service.get("ports"), list):
            raise src.error(service, "ports", f"services.{name}.ports", "expected a list of ports",
                            hint='ports: ["8080:80"]')
    return services


# ---------------------------------------------------------------------------------------------
# Text in, text out: what the CLI calls


def inject_text(text: str, options: InjectOptions, machine: Machine, source: str) -> tuple[str, InjectResult]:
    """The injected text. Fast and byte-exact when the file has the usual shapes: what meshctl
    added before is cut out as text, the rest is loaded once, and the changes are written into the
    original text (inject_render); otherwise the changed tree is dumped."""
    from . import compose_yaml
    from .inject_render import render_injected

    base = _without_injection(text)
    if base is not None:
        try:
            document, layout = compose_yaml.load(base[0], source)
            result = inject(document, options, machine, source, previously=base[2])
        except ConfigError:
            pass     # report it against the whole text, so that its line number is right
        else:
            if not result.injected:
                return base[0], result
            rendered = render_injected(base[0], result, layout)
            return (rendered if rendered is not None else compose_yaml.dump(result.document, layout)), result
    document, layout = compose_yaml.load(text, source)
    result = inject(document, options, machine, source)
    return compose_yaml.dump(result.document, layout), result


def uninject_text(text: str, source: str) -> tuple[str, UninjectResult]:
    """The text without anything meshctl injected; `document` is None when it was done on the text."""
    from . import compose_yaml

    base = _without_injection(text)
    if base is not None:
        return base[0], UninjectResult(None, base[1], base[2])
    document, layout = compose_yaml.load(text, source)
    result = uninject(document, source)
    return compose_yaml.dump(result.document, layout), result


def _without_injection(text: str) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """(text, restored, removed) with meshctl's parts taken out as text, or None when that cannot be
    done safely (then the tree does it)."""
    from .inject_render import render_uninjected

    stripped = without_generated_blocks(text)
    removed = tuple(m.group(2) for m in map(_GENERATED_HEAD.match, text.splitlines())
                    if m and m.group(2) != MARK) if stripped is not None else ()
    rendered = render_uninjected(stripped if stripped is not None else text)
    if rendered is None:
        return None
    return rendered[0], rendered[1], removed


# ---------------------------------------------------------------------------------------------
# Uninject


def uninject(document: Any, source: str = "compose.yaml") -> UninjectResult:
    """Take out every part meshctl added; the document is changed in place and returned."""
    services = compose_services(document, source)
    removed = tuple(name for name, service in services.items() if _sidecar_of(service) is not None)
    for name in removed:
        del services[name]
    restored = []
    for name, service in services.items():
        block = service.get(MARK) if isinstance(service, dict) else None
        if not isinstance(block, dict) or "injected" not in block:
            continue
        record = block["injected"]
        if isinstance(record, dict) and record.get("ports") is not None:
            service["ports"] = record["ports"]
        elif "ports" in service:
            del service["ports"]          # the ports came from a merge key (or there were none)
        del block["injected"]
        if not block:
            del service[MARK]
        restored.append(name)
    top = document.get(MARK)
    if isinstance(top, dict) and top.get("generated-by") == GENERATED_BY:
        del document[MARK]
    return UninjectResult(document, tuple(restored), removed)


# -mesh-tls: files injected by versions before the proxy terminated TLS.
_GENERATED_HEAD = re.compile(r"^( *)(x-meshctl|[A-Za-z0-9._-]+-mesh-(?:tls|proxy|metrics)):[ ]*$")


def without_generated_blocks(text: str) -> str | None:
    """The text with the blocks `inject` generated cut out, exactly as written: a shortcut so that
    re-injecting or uninjecting a large file does not parse hundreds of sidecar services with the
    (slow, pure-Python) round-trip parser. None when the text holds nothing of the sort, or
    anything that does not look exactly like meshctl's own output (the caller then takes the
    long way, which handles everything)."""
    lines = text.splitlines(keepends=True)
    keep: list[str] = []
    index, cut = 0, False
    while index < len(lines):
        head = _GENERATED_HEAD.match(lines[index])
        body = lines[index + 1] if index + 1 < len(lines) else ""
        indent = len(head.group(1)) if head else 0
        ours = head and (
            body.lstrip().startswith('generated-by: "meshctl inject"') if head.group(2) == MARK
            else body.lstrip().startswith("<<: *meshctl-"))
        if not ours:
            keep.append(lines[index])
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() and not lines[end].lstrip().startswith("#") \
                and len(lines[end]) - len(lines[end].lstrip(" ")) > indent:
            end += 1
        following = next((line for line in lines[end:] if line.strip() and not line.lstrip().startswith("#")), "")
        if following and len(following) - len(following.lstrip(" ")) > indent:
            return None          # a comment or blank line inside the block: not verbatim meshctl output
        index, cut = end, True
    return "".join(keep) if cut else None


def _sidecar_of(service: Any) -> str | None:
    block = service.get(MARK) if isinstance(service, dict) else None
    if isinstance(block, dict) and block.get("sidecar-of") is not None:
        return str(block["sidecar-of"])
    return None


# ---------------------------------------------------------------------------------------------
# Inject


def inject(document: Any, options: InjectOptions, machine: Machine, source: str = "compose.yaml", *,
           previously: tuple[str, ...] = ()) -> InjectResult:
    """Add the sidecars to the selected services; the document is changed in place and returned.
    `previously`: sidecar services already taken out of the text (inject_text's shortcut)."""
    previous = set(previously) | set(uninject(document, source).removed)
    services = compose_services(document, source)
    src = _Source(source)
    top = document.get(MARK)
    if top is not None:
        raise src.error(document, MARK, MARK, "the top-level x-meshctl block is meshctl inject's own",
                        hint="rename it (x-meshctl is written and removed by meshctl inject)")
    unknown = [name for name in options.services if name not in services]
    if unknown:
        raise UsageError(f"no service named {unknown[0]!r} in {source}",
                         hint="services: " + ", ".join(str(n) for n in services))
    if options.tcp not in ("proxy", "skip"):
        raise UsageError(f"--tcp {options.tcp!r}: expected proxy or skip")

    plans: list[_Plan] = []
    skipped: list[Skipped] = []
    for name, service in services.items():
        name = str(name)
        if options.services and name not in options.services:
            continue
        outcome = _plan(name, service, options, src)
        (skipped if isinstance(outcome, Skipped) else plans).append(outcome)
    if not plans:
        return InjectResult(document, (), tuple(skipped))

    taken = set(map(str, services))
    for plan in plans:
        for role in plan.roles:
            if sidecar_name(plan.name, role) in taken:
                raise src.error(services, sidecar_name(plan.name, role), f"services.{sidecar_name(plan.name, role)}",
                                f"this name is taken: meshctl names the {role} sidecar of {plan.name} so",
                                hint=f"rename that service, or opt {plan.name} out with x-meshctl: {{inject: false}}")

    defaults = {role: _role_defaults(role, machine) for role in HTTP_ROLES
                if any(role in plan.roles for plan in plans)}
    injected = [_apply(plan, services, defaults, machine, options.keep_plain, previous) for plan in plans]
    block = _top_block(defaults)
    document.insert(list(document).index("services"), MARK, block)
    return InjectResult(document, tuple(injected), tuple(skipped))


def sidecar_name(service: str, role: str) -> str:
    return f"{service}{SIDECAR_INFIX}{role}"


@dataclass
class _Plan:
    name: str
    service: CommentedMap
    settings: dict[str, Any]
    protocol: str
    why: str
    app_port: int
    entries: list[_PortEntry]
    sans: tuple[str, ...] = ()
    roles: tuple[str, ...] = field(default=())


def _plan(name: str, service: Any, options: InjectOptions, src: _Source) -> _Plan | Skipped:
    if not isinstance(service, dict):
        return Skipped(name, "publishes no ports")
    settings = _settings(name, service, src)
    if settings.get("inject") is False:
        return Skipped(name, "x-meshctl.inject is false")
    network_mode = str(service.get("network_mode") or "")
    if network_mode == "host":
        return Skipped(name, "network_mode: host has no namespace of its own for sidecars to join")
    if network_mode.startswith(("service:", "container:")):
        return Skipped(name, f"network_mode: {network_mode}: it lives in another namespace")
    if network_mode == "none":
        return Skipped(name, "network_mode: none")
    replicas = _replicas(service)
    if replicas > 1:
        return Skipped(name, f"runs {replicas} replicas: sidecars in one namespace would serve only one")
    ports = service.get("ports") or []
    if not ports:
        if service.get("extends") is not None:
            return Skipped(name, "publishes no ports here (ports from `extends` are not seen: repeat them here)")
        return Skipped(name, "publishes no ports")
    entries = [_parse_port(entry, index, name, src, ports) for index, entry in enumerate(ports)]
    app_port = settings.get("port")
    if app_port is None:
        app_port = next((e.target for e in entries if e.target is not None and e.protocol == "tcp"), None)
    if app_port is None:
        if all(e.protocol != "tcp" for e in entries):
            return Skipped(name, "publishes only UDP/SCTP ports")
        return Skipped(name, "no single TCP container port to wrap (ranges or variables); "
                             "set x-meshctl.port to the port the app listens on")
    if app_port in RESERVED_POD_PORTS:
        return Skipped(name, f"its port {app_port} is one the sidecars use inside the namespace (15000-15099)")
    protocol, why = _protocol(service, settings, app_port, entries)
    if protocol == "tcp" and options.tcp == "skip":
        return Skipped(name, f"does not speak HTTP ({why}); --tcp skip leaves it alone")
    roles = HTTP_ROLES if protocol == "http" else TCP_ROLES
    sans = default_sans(name, _aliases(service) + tuple(settings.get("hosts") or ()))
    return _Plan(name, service, settings, protocol, why, app_port, entries, sans, roles)


def _settings(name: str, service: CommentedMap, src: _Source) -> dict[str, Any]:
    block = service.get(MARK)
    if block is None:
        return {}
    path = f"services.{name}.{MARK}"
    if not isinstance(block, dict):
        raise src.error(service, MARK, path, f"expected a mapping, found {_kind(block)}",
                        hint="x-meshctl: {protocol: tcp}   or   x-meshctl: {inject: false}")
    out: dict[str, Any] = {}
    for key, value in block.items():
        if key == "injected":
            continue
        if key not in SETTINGS:
            raise src.error(block, key, f"{path}.{key}", "unknown setting", hint="settings: " + ", ".join(SETTINGS))
        where = (block, key, f"{path}.{key}")
        if key == "inject" and not isinstance(value, bool):
            raise src.error(*where, "expected true or false")
        if key == "protocol" and value not in ("http", "tcp"):
            raise src.error(*where, f"expected http or tcp, found {value!r}")
        if key in ("port", "tls_port", "metrics_port") and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535):
            raise src.error(*where, f"{value!r} is not a port number")
        if key in ("health", "metrics_path") and not (isinstance(value, str) and value.startswith("/")):
            raise src.error(*where, "expected an HTTP path starting with /", hint=f"{key}: /healthz")
        if key == "hosts" and not (isinstance(value, list) and all(isinstance(h, str) and h for h in value)):
            raise src.error(*where, "expected a list of host names")
        if key == "timeout":
            seconds = parse_duration(value)
            if seconds is None:
                raise src.error(*where, f"{value!r} is not a duration", hint="timeout: 30s")
            value = seconds
        out[key] = value
    return out


def _replicas(service: CommentedMap) -> int:
    deploy = service.get("deploy")
    value = deploy.get("replicas") if isinstance(deploy, dict) else service.get("scale")
    try:
        return int(value) if value is not None else 1
    except (TypeError, ValueError):
        return 1


def _aliases(service: CommentedMap) -> tuple[str, ...]:
    """Other names the service answers to on its networks: they go into its certificate."""
    names = []
    networks = service.get("networks")
    if isinstance(networks, dict):
        for settings in networks.values():
            if isinstance(settings, dict) and isinstance(settings.get("aliases"), list):
                names += [str(a) for a in settings["aliases"]]
    for key in ("hostname", "container_name"):
        if isinstance(service.get(key), str) and "$" not in service[key]:
            names.append(service[key])
    return tuple(n for n in names if "$" not in n)


def _protocol(service: CommentedMap, settings: dict, app_port: int, entries: list[_PortEntry]) -> tuple[str, str]:
    if "protocol" in settings:
        return settings["protocol"], "x-meshctl.protocol"
    for entry in entries:
        if entry.target == app_port and entry.app_protocol:
            if entry.app_protocol.lower() in ("http", "http1", "http/1.1"):
                return "http", f"app_protocol: {entry.app_protocol}"
            return "tcp", f"app_protocol: {entry.app_protocol}"
    if app_port in TCP_PORTS:
        return "tcp", f"port {app_port} is {TCP_PORTS[app_port]}'s"
    image = str(service.get("image") or "")
    repository = split_image_ref(image)[0]
    for token in re.split(r"[/_.-]", repository.lower()):
        if token in TCP_IMAGES:
            return "tcp", f"image {image} is {TCP_IMAGES[token]}"
    return "http", "the default"


# ---------------------------------------------------------------------------------------------
# Published ports: short ("[ip:][host:]container[/proto]") and long syntax


@dataclass(frozen=True)
class _PortEntry:
    raw: Any
    target: int | None          # one container port; None for a range or a variable
    protocol: str
    host_ip: str | None
    published: str | None       # as written: "8080", "8000-8010", "${PORT}"; None: a free one
    long: bool
    app_protocol: str | None = None


def _parse_port(raw: Any, index: int, name: str, src: _Source, ports: CommentedSeq) -> _PortEntry:
    if isinstance(raw, dict):
        target = raw.get("target")
        published = raw.get("published")
        return _PortEntry(raw, _single_port(target), str(raw.get("protocol") or "tcp").lower(),
                          str(raw["host_ip"]) if raw.get("host_ip") is not None else None,
                          str(published) if published not in (None, "") else None, True,
                          str(raw["app_protocol"]) if raw.get("app_protocol") else None)
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise src.error(ports, None, f"services.{name}.ports[{index}]",
                        f"expected a port like \"8080:80\" or a mapping with target:, found {_kind(raw)}")
    if isinstance(raw, int):
        return _PortEntry(raw, raw, "tcp", None, None, False)
    parts, protocol = _split_short(str(raw))
    published = parts[-2] if len(parts) >= 2 and parts[-2] != "" else None
    host_ip = ":".join(parts[:-2]) or None if len(parts) >= 3 else None
    return _PortEntry(raw, _single_port(parts[-1]), (protocol or "tcp").lower(), host_ip, published, False)


def _split_short(text: str) -> tuple[list[str], str | None]:
    """Split on ':' outside ${...} and [...] (variables and IPv6 addresses); peel off /proto."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    protocol = None
    if "/" in current and "}" not in current.rsplit("/", 1)[1]:
        current, protocol = current.rsplit("/", 1)
    parts.append(current)
    return parts, protocol


def _single_port(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _retarget(entry: _PortEntry, pod_port: int) -> Any:
    """The same published port, now reaching `pod_port` inside the namespace; same syntax."""
    raw = entry.raw
    if entry.long:
        new = _copy_map(raw)
        new["target"] = str(pod_port) if isinstance(raw.get("target"), str) else pod_port
        return new
    if isinstance(raw, int):
        return pod_port
    parts, protocol = _split_short(str(raw))
    text = ":".join(parts[:-1] + [str(pod_port)]) + (f"/{protocol}" if protocol else "")
    return type(raw)(text) if isinstance(raw, ScalarString) else text


def _copy(raw: Any) -> Any:
    """A fresh node: sharing one object between two places would make ruamel write an anchor."""
    if isinstance(raw, dict):
        return _copy_map(raw)
    if isinstance(raw, ScalarString):
        return type(raw)(str(raw))
    return raw


def _copy_map(raw: dict) -> CommentedMap:
    new = CommentedMap()
    for key, value in raw.items():
        new[key] = _copy(value)
    if isinstance(raw, CommentedMap) and raw.fa.flow_style():
        new.fa.set_flow_style()
    return new


def _new_port(entries: list[_PortEntry], host_ip: str | None, published: int | None, pod_port: int) -> Any:
    """A port entry meshctl adds, in the syntax the list already uses."""
    if entries and entries[0].long:
        new = CommentedMap()
        new["target"] = pod_port
        if host_ip:
            new["host_ip"] = host_ip
        if published:
            new["published"] = str(published)
        if entries[0].raw.fa.flow_style():
            new.fa.set_flow_style()
        return new
    host = str(published) if published else ""
    if host_ip:
        return DoubleQuotedScalarString(f"{host_ip}:{host}:{pod_port}")
    return DoubleQuotedScalarString(f"{host}:{pod_port}" if host else str(pod_port))


def _rewired_ports(plan: _Plan, keep_plain: bool) -> tuple[CommentedSeq, str]:
    entry_port = TLS_PORT if plan.protocol == "http" else PROXY_PORT
    new = CommentedSeq()
    taken_over = []
    for entry in plan.entries:
        if entry.target == plan.app_port and entry.protocol == "tcp" and not keep_plain:
            new.append(_retarget(entry, entry_port))
            taken_over.append(entry)
        else:
            new.append(_copy(entry.raw))
    if taken_over:
        first = taken_over[0]
        entry_text = "host " + (f"{first.host_ip}:" if first.host_ip else "") + (first.published or "(free port)")
    else:
        # --keep-plain, or the app port is only in a range: the entry point gets its own host port.
        first_app = next((e for e in plan.entries if e.target == plan.app_port), None)
        host_ip = first_app.host_ip if first_app else None
        new.append(_new_port(plan.entries, host_ip, plan.settings.get("tls_port"), entry_port))
        entry_text = f"host {plan.settings.get('tls_port') or '(free port)'}"
    new.append(_new_port(plan.entries, "127.0.0.1", plan.settings.get("metrics_port"), METRICS_PORT))
    ports = plan.service.get("ports")
    if isinstance(ports, CommentedSeq) and ports.fa.flow_style():
        new.fa.set_flow_style()
    return new, entry_text


# ---------------------------------------------------------------------------------------------
# The sidecar services


def _healthcheck(script: str) -> dict[str, Any]:
    # `$$`: compose would interpolate a single `$`. bash's /dev/tcp: the images have no curl.
    return {"test": ["CMD", "bash", "-c", script], "interval": HEALTH_INTERVAL, "timeout": "3s",
            "retries": 3, "start_period": "120s"}


def _role_defaults(role: str, machine: Machine) -> dict[str, Any]:
    """What every sidecar of a role shares; written once under the top-level x-meshctl. The
    proxy's check is an HTTP service's (HTTPS → proxy → app); a TCP proxy has its own."""
    kind = KINDS[role]
    out: dict[str, Any] = {"image": machine.images[role]}
    if kind.command:
        out["command"] = list(kind.command)
    out.update({"user": machine.user, "read_only": True, "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges:true"], "tmpfs": ["/tmp"],
                "stop_grace_period": f"{SIDECAR_STOP_TIMEOUT}s"})
    assert kind.compose_health is not None
    out["healthcheck"] = _healthcheck(kind.compose_health)
    return out


def _top_block(defaults: dict[str, dict]) -> Any:
    from .compose_yaml import GeneratedMap

    block = GeneratedMap({"generated-by": GENERATED_BY, "version": __version__},
                         anchors={role: f"meshctl-{role}" for role in defaults})
    for role, values in defaults.items():
        block[role] = GeneratedMap(values)
    return block


def _apply(plan: _Plan, services: CommentedMap, defaults: dict[str, dict], machine: Machine,
           keep_plain: bool, previous: set[str]) -> Injected:
    from .compose_yaml import GeneratedMap

    name, service = plan.name, plan.service
    spec = ServiceSpec(name=name, port=plan.app_port, metrics_path=plan.settings.get("metrics_path"),
                       proxy=ProxySettings(timeout=plan.settings.get("timeout", ProxySettings.timeout)),
                       tls=TlsSettings(hosts=plan.sans), metrics=MetricsSettings())
    folder = machine.state_dir / name
    files: dict[PurePath, str] = {}
    # HTTP: the proxy terminates TLS; its folder gets the certificate bundle beside the config.
    files[folder / "proxy" / "haproxy.cfg"] = (render_proxy(machine.project, spec) if plan.protocol == "http"
                                              else render_tcp_proxy(machine.project, spec, plan.why))

    # The app: published ports rewired, the original list kept for uninject.
    new_ports, entry_text = _rewired_ports(plan, keep_plain)
    _record_and_replace_ports(service, new_ports)

    sidecars: list[tuple[str, GeneratedMap]] = []
    profiles = service.get("profiles")
    for role in plan.roles:
        own: dict[str, Any] = {"network_mode": f"service:{name}"}
        if role == "proxy":
            own["volumes"] = [{"type": "bind", "source": str(folder / role), "target": CONFIG_MOUNT, "read_only": True}]
        else:
            env = metrics_env(spec)
            if plan.protocol == "tcp":
                env["MESHCTL_APP_METRICS"] = proxy_stats_url()
            own["environment"] = {k: v for k, v in env.items() if v}
        # Start order only; readiness is the healthchecks' job (the proxy's tries HTTPS → proxy →
        # app), so the sidecars start together and `up --wait` waits about one check interval.
        own["depends_on"] = {name: {"condition": "service_started"}}
        if role == "proxy" and plan.protocol == "tcp":
            # HAProxy answers on its stats port, and the app accepts connections.
            own["healthcheck"] = _healthcheck(
                shell_http_check(PROXY_STATS_PORT, READY_PATH, '[ "$$code" = 200 ]')
                + f" && exec 4<>/dev/tcp/127.0.0.1/{plan.app_port}")
        elif role == "proxy" and "health" in plan.settings:
            own["healthcheck"] = _healthcheck(shell_tls_chain_check(plan.settings["health"], strict=True))
        if profiles:
            own["profiles"] = [str(p) for p in profiles]   # started and stopped with the app
        if service.get("restart") is not None:
            own["restart"] = str(service["restart"])        # back after a reboot when the app is
        own["labels"] = labels(machine.project, name, role, source="compose")
        own[MARK] = {"sidecar-of": name}
        if role == "proxy" and plan.protocol == "http":
            own[MARK][TERMINATES_TLS] = True
        sidecars.append((sidecar_name(name, role),
                         GeneratedMap({**defaults[role], **own}, merge_from=(f"meshctl-{role}", defaults[role]))))
    position = list(services).index(name) + 1
    for offset, (sidecar, body) in enumerate(sidecars):
        services.insert(position + offset, sidecar, body)
    retired = [role for role in KINDS if role not in plan.roles and sidecar_name(name, role) in previous]
    return Injected(service=name, protocol=plan.protocol, why=plan.why, app_port=plan.app_port, roles=plan.roles,
                    files=files, cert_dir=folder / "proxy" if plan.protocol == "http" else None, sans=plan.sans,
                    entry=entry_text, metrics=f"metrics on host 127.0.0.1:{plan.settings.get('metrics_port') or '(free port)'}"
                                              f" (`docker compose port {name} {METRICS_PORT}`)",
                    retired=tuple(sidecar_name(name, role) for role in retired),
                    retired_dirs=tuple(folder / role for role in retired))


def _record_and_replace_ports(service: CommentedMap, new_ports: CommentedSeq) -> None:
    own = "ports" in getattr(service, "_ok", set(service))
    record = CommentedMap()
    record["ports"] = service["ports"] if own else None
    block = service.get(MARK)
    service["ports"] = new_ports
    if isinstance(block, dict):
        block["injected"] = record
        return
    block = CommentedMap()
    block["injected"] = record
    keys = list(service)
    if own and not getattr(service, "merge", None) and "ports" in keys:
        service.insert(keys.index("ports") + 1, MARK, block)
    else:
        service[MARK] = block


def _kind(value: Any) -> str:
    for kind, text in ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"), (str, "a string"),
                       ((int, float), "a number"), (type(None), "nothing")):
        if isinstance(value, kind):
            return text
    return type(value).__name__
