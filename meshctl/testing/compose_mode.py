"""`meshctl test --compose FILE`: the built-in checks against a stack `meshctl inject` wrote.

The file says which services were injected (their `x-meshctl.injected` record, their sidecars'
`meshctl.role` labels, and which sidecar serves HTTPS: the proxy marked `x-meshctl.terminates-tls`,
or a `tls` sidecar in files injected before the proxy terminated TLS) and with which settings
(health path, extra host names); `docker compose ps` says where their published ports landed. A
stack that is not running is started here with `docker compose up -d --wait` and taken down after,
always; one already running is left as found. Compose itself is run through engine/compose.py's ComposeCli.
Unlike `meshctl test PATH`, nothing ties a compose stack to this process: after a SIGKILL,
`docker compose -f FILE down` removes it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.base import Engine
from ..certs import CertificateAuthority, default_sans
from ..engine.compose import ComposeCli
from ..errors import MeshctlError, ConfigError, UsageError
from ..events import Phase
from ..inject import MARK, TERMINATES_TLS, holder_name, sidecar_name, sidecar_of
from ..inject.names import POD, split_sidecar_name
from ..model import ROLE_LABEL
from ..sidecars import METRICS_PORT, TLS_PORT
from .report import LOG_LINES, Report
from .session import Harness, run_harness
from .targets import Target


@dataclass(frozen=True)
class InjectedService:
    name: str
    roles: tuple[str, ...]          # the sidecars inject gave it: proxy, metrics (older files: tls too)
    health: str = "/"
    hosts: tuple[str, ...] = ()     # extra certificate names (x-meshctl.hosts)
    tls_terminator: str | None = None   # the role serving HTTPS: proxy (older files: tls); TCP: None

    @property
    def https(self) -> bool:
        return self.tls_terminator is not None

    @property
    def http_proxy(self) -> bool:
        """An HTTP proxy: it answers plain HTTP inside the pod and feeds the metrics sidecar."""
        return self.https and "proxy" in self.roles


# ---------------------------------------------------------------------------------------------
# Pure: the compose document and `docker compose ps` → targets


def injected_services(document: Any, source: str) -> list[InjectedService]:
    """The app services `meshctl inject` wrapped, with the roles of their sidecars."""
    services = document.get("services") if isinstance(document, dict) else None
    if not isinstance(services, dict):
        raise ConfigError(f"{source}: not a compose file: no top-level `services:` mapping",
                          hint="pass the file `meshctl inject` wrote, e.g. compose.mesh.yaml")
    roles: dict[str, list[str]] = {}
    terminators: dict[str, str] = {}
    for service in services.values():
        app = sidecar_of(service)
        if app is not None:
            block = service[MARK]
            service_labels = service.get("labels") or {}
            role = service_labels.get(ROLE_LABEL) if isinstance(service_labels, dict) else None
            if role:
                if role != POD:
                    roles.setdefault(app, []).append(str(role))
                if block.get(TERMINATES_TLS) is True or role == "tls":     # tls: an older file's sidecar
                    terminators[app] = str(role)
    found = []
    for name, service in services.items():
        block = service.get(MARK) if isinstance(service, dict) else None
        block = block if isinstance(block, dict) else {}
        if str(name) not in roles and "injected" not in block:     # injected: an older version's record
            continue
        hosts = block.get("hosts") or []
        found.append(InjectedService(str(name), tuple(roles.get(str(name), ())), str(block.get("health") or "/"),
                                     tuple(str(h) for h in hosts if isinstance(h, str)), terminators.get(str(name))))
    if not found:
        raise UsageError(f"{source}: no service in it was injected by `meshctl inject`",
                         hint="meshctl inject compose.yaml -o compose.mesh.yaml, then meshctl test --compose compose.mesh.yaml")
    return found


def compose_targets(services: list[InjectedService], containers: list[dict[str, Any]]) -> list[Target]:
    """Targets from `docker compose ps --format json`: the pod's holder (or, in files injected by
    older versions, the app) publishes the HTTPS and metrics ports; the proxy's plain HTTP port
    has no host port, so plain HTTP goes from inside the proxy's own container."""
    by_service = {c.get("Service"): c for c in containers}
    targets = []
    for service in services:
        app = by_service.get(service.name) or {}
        holder = by_service.get(holder_name(service.name)) or app
        published = {int(p["TargetPort"]): int(p["PublishedPort"]) for p in holder.get("Publishers") or []
                     if p.get("PublishedPort")}
        urls = {}
        if service.https and TLS_PORT in published:
            urls["https"] = f"https://localhost:{published[TLS_PORT]}/"
        if "metrics" in service.roles and METRICS_PORT in published:
            urls["metrics"] = f"http://localhost:{published[METRICS_PORT]}/metrics"
        proxy = by_service.get(sidecar_name(service.name, "proxy")) or {}
        targets.append(Target(
            service=service.name, urls=urls, health=service.health,
            hostnames=default_sans(service.name, service.hosts) if "https" in urls else (),
            counts_requests=service.http_proxy, app_container=app.get("ID"),
            proxy_inside=proxy.get("ID") if service.http_proxy else None))
    return targets


def planned_targets(services: list[InjectedService]) -> list[Target]:
    """The targets before anything runs, without URLs: they name the checks that could not run."""
    return [Target(s.name, {**({"https": "", "http": ""} if s.https else {}),
                            **({"metrics": ""} if "metrics" in s.roles else {})}) for s in services]


def parse_ps(output: str) -> list[dict[str, Any]]:
    """`docker compose ps --format json`: one object per line (v2.21+) or one array (older v2)."""
    text = output.strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# The run


def run_compose_test(engine: Engine, file: Path, *, interrupts: Any, on_event: Callable[[Any], None],
                     ready_timeout: float) -> Report:
    from ..inject import document as compose_document

    if not file.is_file():
        raise UsageError(f"{file}: no such file", hint="pass the compose file `meshctl inject` wrote")
    parsed = compose_document.parse(file.read_text(encoding="utf-8"), str(file))
    document = compose_document.value(parsed.root)
    services = injected_services(document, str(file))
    compose = ComposeCli(file)
    names = {s.name for s in services}
    running = {c.get("Service") for c in parse_ps(compose.ps()) if c.get("State") == "running"}
    started_here = not names <= running
    ready: dict[str, float] = {}
    project = str(document.get("name") or file.resolve().parent.name)

    def start() -> list[Target]:
        if started_here:
            on_event(Phase(f"docker compose -f {file} up -d --wait"))
            began = time.monotonic()
            compose.up(ready_timeout)
            ready.update({name: time.monotonic() - began for name in names})
        return compose_targets(services, parse_ps(compose.ps()))

    def tails(service: str) -> dict[str, list[str]]:
        out = {}
        for container in parse_ps(compose.ps(all_=True)):
            name = container.get("Service", "")
            generated = split_sidecar_name(name)
            if name == service or (generated and generated[0] == service):
                role = generated[1] if generated else "app"
                out[role] = list(engine.logs(container["ID"], follow=False, tail=LOG_LINES))
        return out

    def teardown() -> None:
        if started_here:
            on_event(Phase(f"docker compose -f {file} down"))
            try:
                compose.down()
            except MeshctlError as exc:     # the report stands; say what may be left running
                on_event(Phase(f"{exc.message}: run `docker compose -f {file} down` to remove what is left"))

    harness = Harness(project, planned_targets(services), start, tails, teardown, engine,
                      CertificateAuthority().cert_path, ready)
    return run_harness(harness, interrupts=interrupts, on_event=on_event)
