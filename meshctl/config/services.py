"""One service of mesh.yaml: how it is built or run, its port and protocol, health, env, its
sidecars, checks and watch settings, and the host ports it publishes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .fields import keys
from .check_specs import parse_checks
from .faults import parse_faults
from .depends import parse_depends_on
from .port_protocol import TCP, Facts, port_protocol
from .run_mode import RUN_MODE_PORT, parse_run_mode, parse_watch, run_mode_sync
from .sidecar_settings import parse_sidecars
from .traffic import parse_allow, parse_traffic
from .spec import DEFAULT_HOST_PORTS, PORT_NAMES, RESERVED_POD_PORTS, HttpCheck, ServiceSpec
from .values import (
    NAME_HINT, NAME_RE, build_or_image, command_field, duration_field, env_settings, kind_of, port_field,
    reject_unknown,
)
from .yamlpos import Where

_SERVICE_KEYS = keys("service")
PROTOCOLS = ("http", "tcp")
_HEALTH_HINT = "health: /healthz (HTTP), or for a TCP service health: {tcp: true} or health: {exec: [CMD, ...]}"


def parse_service(name: str, raw: Any, index: int, root: Path, where: Where) -> ServiceSpec:
    """services.NAME; `index` 0 is the first service, the one given the default host ports."""
    path = ("services", name)
    if not NAME_RE.match(name):
        raise where.error(path, f"service name {name!r} is not valid", hint=NAME_HINT)
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a mapping of settings, found {kind_of(raw)}")
    reject_unknown(raw, _SERVICE_KEYS, path, where)

    command = command_field(raw.get("command"), path + ("command",), where)
    build, build_options, image = build_or_image(raw, path, where, root, "nginx:1.25")
    runtime, source = parse_run_mode(raw, build, image, command, path, where, root)
    port = _app_port(raw, build and build_options.dockerfile_path(build), source, path, where)
    protocol = _parse_protocol(raw, port, image, path, where)
    health, health_exec = _parse_health(raw, protocol, path, where)
    metrics_path = raw.get("metrics_path")
    if metrics_path is not None and (not isinstance(metrics_path, str) or not metrics_path.startswith("/")):
        raise where.error(path + ("metrics_path",), "expected an HTTP path starting with /",
                          hint="metrics_path: /metrics")
    env_pairs = env_settings(raw, path, where)
    sidecars = parse_sidecars(raw.get("sidecars"), path + ("sidecars",), where, root)
    stop_grace = duration_field(raw.get("stop_grace_period", 10), path + ("stop_grace_period",), where)
    watch = parse_watch(raw.get("watch"), path + ("watch",), where)
    if source is not None and not watch.sync:
        watch = replace(watch, sync=run_mode_sync(root, source))
    checks = parse_checks(raw.get("checks"), path + ("checks",), where, has_tls=sidecars["tls"] is not None)
    allow = parse_allow(raw.get("allow"), path + ("allow",), where)
    traffic = parse_traffic(raw.get("traffic"), path + ("traffic",), where)

    spec = ServiceSpec(name=name, port=port, build=build, build_options=build_options, image=image, health=health,
                       env=env_pairs, command=command, metrics_path=metrics_path,
                       stop_grace_period=stop_grace, watch=watch, checks=checks, allow=allow, traffic=traffic, runtime=runtime,
                       source=source, protocol=protocol, health_exec=health_exec,
                       faults=parse_faults(raw.get("faults"), protocol, path + ("faults",), where),
                       depends_on=parse_depends_on(raw.get("depends_on"), path + ("depends_on",), where), **sidecars)
    _reject_http_only_settings(spec, path, where)
    return with_ports(spec, _host_ports(raw.get("ports"), index, spec, path, where))


def _app_port(raw: dict, dockerfile: Path | None, source: Path | None, path: tuple, where: Where) -> int:
    """`port:`, else the Dockerfile's EXPOSE, else run mode's default."""
    if "port" in raw:
        port = port_field(raw["port"], "port", where, path + ("port",), allow_zero=False)
    elif dockerfile is not None and (exposed := dockerfile_exposed_port(dockerfile.read_text())):
        port = exposed
    elif source is not None:
        port = RUN_MODE_PORT
    else:
        raise where.error(path + ("port",), "missing: the port the app listens on inside the pod",
                          hint="port: 8080")
    if port in RESERVED_POD_PORTS:
        raise where.error(path + ("port",), f"port {port} is one the sidecars use inside the pod (15000-15099)",
                          hint="make the app listen on another port")
    return port


def _reject_http_only_settings(spec: ServiceSpec, path: tuple, where: Where) -> None:
    if spec.protocol == "tcp" and any(isinstance(c, HttpCheck) for c in spec.checks):
        raise where.error(path + ("checks",), "HTTP checks need an HTTP service; this one is protocol: tcp",
                          hint="use `exec:` checks for a TCP service")
    if spec.protocol == "tcp" and spec.metrics_path is not None:
        raise where.error(path + ("metrics_path",), "the metrics sidecar reads an app's own metrics over HTTP; "
                          "this one is protocol: tcp", hint="remove metrics_path (its connections are counted anyway)")


def _host_ports(raw_ports: Any, index: int, spec: ServiceSpec, path: tuple, where: Where) -> dict[str, int]:
    """`ports:` over the defaults (the first service's well-known ports, free ones for the rest)."""
    ports = default_ports(index, spec)
    if raw_ports is None:
        return ports
    if not isinstance(raw_ports, dict):
        raise where.error(path + ("ports",), f"expected a mapping, found {kind_of(raw_ports)}",
                          hint="ports: {https: 8443, http: 8080, metrics: 9090}")
    reject_unknown(raw_ports, keys("ports"), path + ("ports",), where)
    for key, value in raw_ports.items():
        ports[key] = port_field(value, key, where, path + ("ports", key), allow_zero=True)
    return ports


def _parse_protocol(raw: dict, port: int, image: str | None, path: tuple, where: Where) -> str:
    """`protocol:` as written; else tcp where the port or image is plainly not HTTP, by the same
    evidence `meshctl inject` weighs (config/port_protocol.py), else http."""
    if "protocol" in raw:
        value = raw["protocol"]
        if not isinstance(value, str) or value.lower() not in PROTOCOLS:
            raise where.error(path + ("protocol",), f"unknown protocol {value!r}",
                              hint="protocol: http (the default: an HTTP proxy) or protocol: tcp (any other "
                                   "TCP protocol: a database, a line protocol)")
        return value.lower()
    return inferred_protocol(port, image)


def inferred_protocol(port: int, image: str | None) -> str:
    """tcp where the port or the image plainly is not HTTP (5432, redis:7…), else http."""
    verdict, _why = port_protocol(port, Facts(image))
    return "tcp" if verdict == TCP else "http"


def _parse_health(raw: dict, protocol: str, path: tuple, where: Where) -> tuple[str, tuple[str, ...] | None]:
    """(HTTP path, exec command). A TCP service is ready on a TCP connect through its chain
    (`{tcp: true}`, the default) or a command in its app container; never an HTTP request."""
    health = raw.get("health", "/" if protocol == "http" else {"tcp": True})
    if protocol == "http":
        if not isinstance(health, str) or not health.startswith("/"):
            raise where.error(path + ("health",), "expected an HTTP path starting with /", hint=_HEALTH_HINT)
        return health, None
    if not isinstance(health, dict) or len(health) != 1 or next(iter(health)) not in ("tcp", "exec") \
            or health.get("tcp", True) is not True:
        raise where.error(path + ("health",), "a TCP service is checked by a TCP connect or a command, "
                          f"not {health!r}", hint=_HEALTH_HINT)
    if "exec" in health:
        command = command_field(health["exec"], path + ("health", "exec"), where)
        if not command:
            raise where.error(path + ("health", "exec"), "expected a command", hint=_HEALTH_HINT)
        return "/", command
    return "/", None


def with_ports(spec: ServiceSpec, ports: dict[str, int]) -> ServiceSpec:
    # A port exists only for what runs: https needs tls, metrics needs metrics; http is the
    # proxy's (or, with no proxy, the app's own port).
    wanted = [p for p in PORT_NAMES if (p != "https" or spec.tls) and (p != "metrics" or spec.metrics)]
    return replace(spec, ports=tuple((p, ports[p]) for p in wanted if p in ports))


def default_ports(index: int, spec: ServiceSpec) -> dict[str, int]:
    return {p: (DEFAULT_HOST_PORTS[p] if index == 0 else 0) for p in PORT_NAMES}


def reject_duplicate_host_ports(specs: list[ServiceSpec], where: Where) -> None:
    seen: dict[int, tuple] = {}
    for spec in specs:
        for key, port in spec.ports:
            if port == 0:
                continue
            path = ("services", spec.name, "ports", key)
            if port in seen:
                raise where.error(path, f"host port {port} is also used by {'.'.join(seen[port])}",
                                  hint="give each a different port, or 0 for a free one")
            seen[port] = path


def dockerfile_exposed_port(text: str) -> int | None:
    """The first EXPOSE port of a Dockerfile's text, if any."""
    for line in text.splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and parts[0].upper() == "EXPOSE":
            token = parts[1].split("/")[0]
            if token.isdigit():
                return int(token)
    return None
