"""What runs, read back from Docker's labels (meshctl's only record): the containers and
networks of meshctl's stacks, and `meshctl ps`. Queries only: nothing here changes anything."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .urls import host_ports_by_name, urls_for
from ..engine.base import Engine
from ..model import HOLDER, OUTSIDE_MESH, PROJECT_LABEL, ContainerInfo, selector
from ..sidecars.addresses import MESH_FILE
import contextlib


def managed_containers(engine: Engine, project: str | None = None, **labels: str) -> list[ContainerInfo]:
    """Containers of meshctl's own stacks. Sidecars that `meshctl inject` wrote into a compose
    file carry meshctl.* labels too (meshctl.source=compose), but compose owns them: `down`, `ps`
    and plans leave them alone. Only those with a role: the classic builder's step containers of an
    app image carry its project label (and its service's) while it builds, and are no pod's."""
    return [c for c in engine.containers(selector(project, **{"role": "", **labels}))
            if c.label("source") != "compose"]


def project_networks(engine: Engine, project: str) -> list[str]:
    return sorted(n["Name"] for n in engine.networks(selector(project)))


def project_volumes(engine: Engine, project: str) -> list[str]:
    """A project's dependency caches (run mode): `down` keeps them, `down --volumes` removes them."""
    return sorted(v["Name"] for v in engine.volumes(selector(project)))


def project_names(engine: Engine) -> list[str]:
    names = {c.label("project") for c in managed_containers(engine)}
    names |= {n.get("Labels", {}).get(PROJECT_LABEL, "") for n in engine.networks(selector())}
    return sorted(n for n in names if n)


def orphan_networks(engine: Engine) -> list[str]:
    """meshctl networks whose project has no container left (a meshctl that was SIGKILLed)."""
    live = {c.label("project") for c in managed_containers(engine) if c.state == "running"}
    return sorted(n["Name"] for n in engine.networks(selector())
                  if n.get("Labels", {}).get(PROJECT_LABEL) not in live)


@dataclass(frozen=True)
class ServiceStatus:
    project: str
    service: str
    state: str
    urls: dict[str, str]
    containers: list[dict[str, str]]
    mesh: dict[str, Any] | None = None     # identity, mtls, allow (None: every service), capture
    faults: str = ""                       # the faults its proxy injects now, in words ("" none)

    def as_json(self) -> dict[str, Any]:
        return {"project": self.project, "service": self.service, "state": self.state,
                "urls": {k: self.urls.get(k) for k in ("https", "http", "metrics")},
                "containers": self.containers, "mesh": self.mesh, "faults": self.faults}


def mesh_of(home: Path, project: str, service: str) -> dict[str, Any] | None:
    """The mesh settings rendered beside the service's proxy config (sidecars.MESH_FILE)."""
    try:
        return json.loads((home / "projects" / project / service / "proxy" / MESH_FILE).read_text())
    except (OSError, ValueError):
        return None


def active_faults(home: Path, project: str, service: str) -> str:
    # Imported here: `stat` and `trace` read status() without a home, and need neither module.
    from .faults import read_faults
    from ..sidecars.faults import describe

    faults = read_faults(home, project, service)
    if faults is None or not faults.active:
        return ""
    return "; ".join(describe(f) for f in faults.active) + (" (live)" if faults.live is not None else "")


def pods(engine: Engine, project: str | None = None) -> dict[tuple[str, str], list[ContainerInfo]]:
    """(project, service) → its pod's containers, in name order."""
    groups: dict[tuple[str, str], list[ContainerInfo]] = {}
    for c in managed_containers(engine, project):
        groups.setdefault((c.label("project"), c.service), []).append(c)
    return dict(sorted(groups.items()))


def pod_state(members: list[ContainerInfo]) -> str:
    states = {c.state for c in members}
    if states == {"running"} and any(c.role == HOLDER for c in members):
        return "running"
    return "stopped" if "running" not in states else "degraded"


def pod_urls(members: list[ContainerInfo]) -> dict[str, str]:
    """Port name → URL on the host, from the labels and bound ports of the pod's holder."""
    holder = next((c for c in members if c.role == HOLDER), None)
    if holder is not None:
        with contextlib.suppress(ValueError):
            return urls_for(host_ports_by_name(json.loads(holder.label("ports") or "{}"), holder.ports),
                            holder.label("protocol") or "http")
    return {}


def status(engine: Engine, project: str | None = None, *, home: Path | None = None) -> list[ServiceStatus]:
    # Imported here: the sidecars' definitions (0.04 s) are for listings; stat reads pods() alone.
    from ..sidecars import start_rank

    out = []
    for (proj, service), members in pods(engine, project).items():
        holder = next((c for c in members if c.role == HOLDER), None)
        urls, state = pod_urls(members), pod_state(members)
        containers = [{"name": c.name, "role": c.role, "state": c.state}
                      for c in sorted(members, key=lambda c: start_rank(c.role))]
        mesh = mesh_of(home, proj, service) if home is not None else None
        if holder is not None and holder.label("mesh") == OUTSIDE_MESH:
            mesh = {"outside": True, "identity": None, "mtls": "off", "allow": None, "calls": []}
        out.append(ServiceStatus(proj, service, state, urls, containers, mesh,
                                 faults=active_faults(home, proj, service) if home is not None else ""))
    return out
