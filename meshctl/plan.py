"""Convergence plans: desired pods + the containers Docker reports (by label) → ordered actions.
Pure, like docker-compose's convergence plan, and tested without a daemon."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._docker import ContainerInfo, ContainerSpec
from .pod import APP, CONFIG_HASH, FILES_HASH, HOLDER, Pod


@dataclass(frozen=True)
class PodPlan:
    pod: Pod
    remove: tuple[ContainerInfo, ...]     # stale containers of this pod, removed first (app first)
    create: tuple[ContainerSpec, ...]     # then created and started, in start order
    keep: tuple[ContainerInfo, ...]       # already running as desired
    reload: tuple[ContainerInfo, ...] = ()   # running as desired but with new config files

    @property
    def unchanged(self) -> bool:
        return not self.remove and not self.create and not self.reload


def plan_pod(pod: Pod, observed: Iterable[ContainerInfo]) -> PodPlan:
    """Keep what runs with the same config hash; replace what differs. A replaced holder takes
    the whole pod with it: containers in a lost namespace keep only a loopback interface."""
    mine = {c.name: c for c in observed if c.label("service") == pod.service.name}
    holder = mine.get(pod.holder.name)
    if holder is None or not _same(holder, pod.holder):
        stale = tuple(mine.values())
        return PodPlan(pod, remove=tuple(stop_order(stale)), create=pod.containers, keep=())
    remove, create, keep, reload = [], [], [holder], []
    for spec in pod.containers[1:]:
        current = mine.pop(spec.name, None)
        if current is not None and _same(current, spec):
            keep.append(current)
            if current.labels.get(FILES_HASH, "") != spec.labels.get(FILES_HASH, ""):
                reload.append(current)
            continue
        if current is not None:
            remove.append(current)
        create.append(spec)
    mine.pop(pod.holder.name, None)
    remove.extend(mine.values())  # containers of roles no longer wanted
    # The app starts after its sidecars; if a sidecar is recreated, restart the app after it too.
    if any(spec.labels["meshctl.role"] != APP for spec in create) and pod.app not in create:
        current_app = next((c for c in keep if c.name == pod.app.name), None)
        if current_app is not None:
            keep.remove(current_app)
            remove.append(current_app)
        create.append(pod.app)
    reload = [c for c in reload if c in keep]
    return PodPlan(pod, remove=tuple(stop_order(remove)), create=tuple(create), keep=tuple(keep),
                   reload=tuple(reload))


def _same(current: ContainerInfo, spec: ContainerSpec) -> bool:
    return current.state == "running" and current.labels.get(CONFIG_HASH) == spec.labels[CONFIG_HASH]


_STOP_RANK = {APP: 0, HOLDER: 2}   # apps first, then sidecars (1), then holders


def stop_phases(containers: Iterable[ContainerInfo]) -> list[list[ContainerInfo]]:
    """Groups to stop one after the other; the members of a group can stop in parallel."""
    phases: dict[int, list[ContainerInfo]] = {0: [], 1: [], 2: []}
    for c in sorted(containers, key=lambda c: c.name):
        phases[_STOP_RANK.get(c.label("role"), 1)].append(c)
    return [phases[k] for k in (0, 1, 2) if phases[k]]


def stop_order(containers: Iterable[ContainerInfo]) -> list[ContainerInfo]:
    return [c for phase in stop_phases(containers) for c in phase]
