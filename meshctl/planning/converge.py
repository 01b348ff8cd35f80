"""Convergence of one pod, as in Compose v2: compare what runs (by its config-hash label and image
ID) with the pod's ContainerSpecs, keep what matches, replace what differs, reload in place what only
got new files, and list the steps that get there in start order (holder, sidecar groups each waited
for, the app, its wait until it serves). Also the stop order of any set of containers (apps, then
sidecars, then holders), which `down` and every replacement use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from ..model import APP, CONFIG_HASH, HOLDER, ContainerInfo, ContainerSpec
from ..sidecars import (CAPTURE, SidecarKind, capture_rules, chain_of, kind_of, kinds_for, published_ports,
                        serving_readiness, stop_group)
from ..sidecars.faults import PROBE_HEADER
from .pod import Pod
from .steps import Announce, AwaitServices, Keep, RemoveContainers, RunOnce, SignalReload, StartContainers, Step, WaitReady


def removals(containers: Iterable[ContainerInfo], why: str, *, force: bool = False) -> list[Step]:
    """Stop order as successive steps: apps (their grace period), then sidecars, then holders;
    each group in parallel. `force` kills everything at once."""
    containers = sorted(containers, key=lambda c: c.name)
    if not containers:
        return []
    if force:
        return [RemoveContainers(tuple(containers), why, force=True)]
    return [RemoveContainers(tuple(group), why) for group in stop_phases(containers)]


def stop_phases(containers: Iterable[ContainerInfo]) -> list[list[ContainerInfo]]:
    """Groups to stop one after the other; the members of a group can stop in parallel."""
    phases: dict[int, list[ContainerInfo]] = {0: [], 1: [], 2: []}
    for c in sorted(containers, key=lambda c: c.name):
        phases[stop_group(c.role)].append(c)
    return [phases[k] for k in (0, 1, 2) if phases[k]]


def stop_order(containers: Iterable[ContainerInfo]) -> list[ContainerInfo]:
    return [c for phase in stop_phases(containers) for c in phase]


@dataclass(frozen=True)
class PodPlan:
    """The containers of one pod: what to remove, create, keep, and reload in place."""
    pod: Pod
    remove: tuple[ContainerInfo, ...]     # stale containers of this pod, removed first (app first)
    create: tuple[ContainerSpec, ...]     # then created and started, in start order
    keep: tuple[ContainerInfo, ...]       # already running as desired
    reload: tuple[ContainerInfo, ...] = ()   # running as desired but with new config files
    why: dict[str, str] = field(default_factory=dict)   # container name → why it is replaced or created

    @property
    def unchanged(self) -> bool:
        return not self.remove and not self.create and not self.reload


def plan_pod(pod: Pod, observed: Iterable[ContainerInfo], refreshed: Iterable[str] = (),
             image_ids: Mapping[str, str] | None = None) -> PodPlan:
    """Keep what runs with the same config hash; replace what differs. A replaced holder takes
    the whole pod with it: containers in a lost namespace keep only a loopback interface.
    `refreshed`: roles whose mounted files this plan rewrites (config, certificate): a kept
    container of theirs reloads in place. (Decided from the files, not a label: a label cannot
    change on a running container, so it would stay stale after the first reload.)
    `image_ids`: ref → the ID its tag names now; a container created from another ID is replaced
    (a rebuilt app keeps its tag, so its settings alone cannot tell)."""
    image_ids = image_ids or {}

    def same(current: ContainerInfo, spec: ContainerSpec) -> bool:
        return _difference(current, spec, image_ids) is None

    mine = {c.name: c for c in observed if c.service == pod.service.name}
    why: dict[str, str] = {}
    holder = mine.get(pod.holder.name)
    if holder is None or not same(holder, pod.holder):
        why.update({s.name: "new" for s in pod.containers})
        if holder is not None:
            why.update({s.name: "the holder changed, and with it the pod's namespace" for s in pod.containers})
            why[pod.holder.name] = _difference(holder, pod.holder, image_ids) or ""
        return PodPlan(pod, remove=tuple(stop_order(mine.values())), create=pod.containers, keep=(), why=why)
    remove, create, keep, reload = [], [], [holder], []
    for spec in pod.containers[1:]:
        current = mine.pop(spec.name, None)
        if current is not None and same(current, spec):
            keep.append(current)
            if spec.role in refreshed:
                reload.append(current)
            continue
        if current is not None:
            remove.append(current)
        why[spec.name] = (_difference(current, spec, image_ids) if current is not None else None) or "new"
        create.append(spec)
    mine.pop(pod.holder.name, None)
    remove.extend(mine.values())  # containers of roles no longer wanted
    # The app starts after its sidecars; if a sidecar is recreated, restart the app after it too.
    if any(spec.role != APP for spec in create) and pod.app not in create:
        current_app = next((c for c in keep if c.name == pod.app.name), None)
        if current_app is not None:
            keep.remove(current_app)
            remove.append(current_app)
        why[pod.app.name] = "its sidecars are recreated: it starts after them"
        create.append(pod.app)
    reload = [c for c in reload if c in keep]
    return PodPlan(pod, remove=tuple(stop_order(remove)), create=tuple(create), keep=tuple(keep),
                   reload=tuple(reload), why=why)


def _difference(current: ContainerInfo, spec: ContainerSpec, image_ids: Mapping[str, str]) -> str | None:
    """Why the running container is not what the spec asks for; None when it is."""
    if current.state != "running":
        return f"it is {current.state or 'not running'}"
    if current.labels.get(CONFIG_HASH) != spec.labels[CONFIG_HASH]:
        return "its settings changed"
    wanted = image_ids.get(spec.image)
    if wanted and current.image_id and current.image_id != wanted:
        return f"its image {spec.image} was rebuilt"
    return None


def pod_steps(pod: Pod, containers: Iterable[ContainerInfo], image_ids: Mapping[str, str], refreshed: set[str],
              *, wait_serving: bool) -> list[Step]:
    """The steps that bring one pod from what runs to its Pod: keep, stop what differs, reload in
    place, then start what is missing in start order, each sidecar group waited for, the app last
    (or with the last group when it needs none of them to start)."""
    service = pod.service
    plan = plan_pod(pod, containers, refreshed, image_ids)
    ports = published_ports(service)
    steps: list[Step] = []
    steps += [Keep(c, "unchanged") for c in plan.keep if c not in plan.reload]
    steps += removals(plan.remove, f"replaced: {_reasons(plan)}")
    for current in plan.reload:
        kind = kind_of(service, current.role)
        if kind is not None and kind.reload_signal:
            steps.append(SignalReload(current, kind.reload_signal, "its config or certificate changed"))
    creating = {spec.role: spec for spec in plan.create}
    # The rules live in the holder's namespace: installed with a new one, again when they change.
    capture = ([_capture_step(pod, "a new pod namespace" if HOLDER in creating else "its rules changed")]
               if pod.capture is not None and (HOLDER in creating or CAPTURE in refreshed) else [])
    if not plan.create:
        return steps + capture + [Announce(service.name, pod.holder.name, ports, serving=True, protocol=service.protocol)]
    hints = pod.port_hints()
    if HOLDER in creating:
        steps.append(StartContainers(service.name, (creating[HOLDER],), plan.why[pod.holder.name], hints))
    steps += capture
    sidecars = [spec for spec in plan.create if spec.role not in (HOLDER, APP)]
    kinds = {kind.role: kind for kind in kinds_for(service)}
    groups = sorted({kinds[s.role].start_group for s in sidecars})
    # The app starts only once its sidecars answer (Linkerd's proxy-await) where it may reach one at
    # its first line; otherwise with the last group (its readiness still goes HTTPS → proxy → app).
    together = APP in creating and bool(groups) and not _awaits_sidecars(pod, kinds.values())
    for group in groups:
        members = tuple(s for s in sidecars if kinds[s.role].start_group == group)
        with_app = (creating.pop(APP),) if together and group == groups[-1] else ()
        steps.append(StartContainers(service.name, members + with_app,
                                     "; ".join(sorted({plan.why[s.name] for s in members + with_app})), hints))
        steps += [wait for s in members if (wait := sidecar_wait(pod, kinds[s.role], s)) is not None]
    if APP in creating:
        if service.depends_on:
            steps.append(AwaitServices(service.name, service.depends_on))
        steps.append(StartContainers(service.name, (creating[APP],), plan.why[pod.app.name], hints))
    if wait_serving:
        steps.append(serving_wait(pod))
    steps.append(Announce(service.name, pod.holder.name, ports, serving=wait_serving,
                          protocol=service.protocol))
    return steps


def _awaits_sidecars(pod: Pod, kinds: Iterable[SidecarKind]) -> bool:
    """Whether the app may reach a sidecar at its first line: a mesh's calls go out through the
    proxy, a user's sidecar is the user's to rely on, and depends_on waits before the app starts."""
    return pod.service.mesh is not None or bool(pod.service.depends_on) or any(k.user for k in kinds)


def _capture_step(pod: Pod, why: str) -> RunOnce:
    assert pod.capture is not None
    return RunOnce(pod.service.name, pod.capture, f"traffic capture: {why}", does=capture_rules(pod.service),
                   hint="capture needs iptables (nft) with NET_ADMIN in the pod's namespace; to run the "
                        "mesh without it (calls between services then go direct, unencrypted), set "
                        "`mesh: {capture: false}` in mesh.yaml")


def sidecar_wait(pod: Pod, kind: SidecarKind, spec: ContainerSpec) -> WaitReady | None:
    """The wait for one sidecar to be ready (None: it has no readiness, a user's without `ready:`).
    An exec readiness runs in the holder (the pod's loopback) or in the sidecar itself."""
    service = pod.service
    readiness = kind.ready(service)
    if readiness is None:
        return None
    hint = (f"check services.{service.name}.sidecars.{kind.role}.ready in mesh.yaml and the sidecar's last "
            "log lines above, or raise --timeout") if kind.user else None
    return WaitReady(service.name, kind.role, pod.holder.name, published_ports(service), readiness, hint=hint,
                     container=pod.holder.name if readiness.exec_in == "pod" else spec.name)


def _reasons(plan: PodPlan) -> str:
    return "; ".join(sorted({plan.why.get(c.name, "no longer wanted") for c in plan.remove}))


def serving_wait(pod: Pod) -> WaitReady:
    service = pod.service
    readiness = serving_readiness(service)
    if pod.probe_key and readiness.path is not None:
        readiness = replace(readiness, headers=((PROBE_HEADER, pod.probe_key),))
    answer = (f"accept TCP connections on port {service.port}" if service.protocol == "tcp"
              else f"answer {service.health} on port {service.port}")
    # A TCP service's handshake through the proxy means the app is there only once the proxy has
    # checked it (a server is up until its first check fails): the proxy's own wait sees that first.
    return WaitReady(service.name, APP, pod.holder.name, published_ports(service), readiness,
                     hint=f"the app must {answer} inside the pod; "
                          f"check services.{service.name}.port and .health in mesh.yaml, or raise --timeout "
                          f"(waited for it through {chain_of(service)})",
                     container=pod.holder.name if readiness.exec_in == "pod" else pod.app.name,
                     after_those_before=readiness.path is None and readiness.exec is None)

