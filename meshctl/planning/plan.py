"""Plans: what a command changes, as a list of typed steps for the whole project, computed purely
from the spec and what was observed (Docker's containers, networks and images by label; the
certificates and rendered files on disk). apply.py's Executor runs a plan and decides nothing;
`--dry-run` prints one. As in Compose v2's convergence: compute first, then execute.

    plan_up        `up`, `up -d` over a running stack, a mesh.yaml reload (converge)
    plan_restart_app / plan_rebuild_app    a hot reload of one app
    plan_renewal   certificates near expiry: re-issue, reload in place
    plan_down      `down`
    plan_images    sidecar images only (`meshctl inject`, the tests' fixtures)

A plan is `steps` (run in order) then `pods` (each service's steps in order, pods in parallel)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..certs import default_sans
from ..config import ProjectSpec, ServiceSpec
from .images import (BASE_IMAGE, app_image_ref, kind_image,
                     user_sidecar_image_ref)
from ..model import APP, CONFIG_HASH, DEPS, HOLDER, ContainerInfo, ContainerSpec, labels, network_name
from .pod import Pod, build_pod, install_container
from ..config.runtimes import dependency_cache
from ..sidecars import (CAPTURE, Readiness, SidecarKind, capture_rules, captures, chain_of, config_roles,
                       data_dir, kind_of, kinds_for, published_ports, render_configs, serving_readiness, stop_group,
                       tls_kind)

# ---------------------------------------------------------------------------------------------
# Steps: each maps to one job of the executor; `why` is what a dry run prints beside it


@dataclass(frozen=True)
class EnsureNetwork:
    name: str
    labels: dict[str, str]
    why: str = "missing"


@dataclass(frozen=True)
class PullImage:
    ref: str
    why: str
    hint: str                     # said when the pull fails (no registry, a wrong name)
    service: str | None = None


@dataclass(frozen=True)
class BuildImage:
    ref: str
    context: Path
    labels: dict[str, str]
    why: str
    service: str | None = None    # None: a sidecar image


@dataclass(frozen=True)
class EnsureCA:
    why: str = "meshctl's local CA does not exist yet"


@dataclass(frozen=True)
class WriteFiles:
    folder: Path
    files: dict[str, str]         # file name → content
    why: str


@dataclass(frozen=True)
class RemoveFolder:
    folder: Path
    why: str


@dataclass(frozen=True)
class IssueCertificate:
    folder: Path
    sans: tuple[str, ...]
    common_name: str
    why: str
    unit: str | None = None          # the subject's OU: the project, for a mesh identity


@dataclass(frozen=True)
class RemoveContainers:
    """Stopped and removed together (in parallel); successive steps give the stop order."""
    containers: tuple[ContainerInfo, ...]
    why: str
    force: bool = False           # kill at once instead of SIGTERM and the grace period


@dataclass(frozen=True)
class StartContainers:
    """Created, watched and started together (in parallel)."""
    service: str
    specs: tuple[ContainerSpec, ...]
    why: str
    port_hints: dict[int, str] = field(default_factory=dict)
    reloading: bool = False       # part of a hot reload: its exit until it serves is the reload's failure


@dataclass(frozen=True)
class RunOnce:
    """A one-shot container (traffic capture): created, started, waited for; exit 0 or the plan fails."""
    service: str
    spec: ContainerSpec
    why: str
    hint: str = ""
    does: tuple[str, ...] = ()       # what it installs, in words


@dataclass(frozen=True)
class RestartContainer:
    service: str
    container: ContainerInfo
    timeout: float
    why: str


@dataclass(frozen=True)
class SignalReload:
    container: ContainerInfo
    signal: str
    why: str


@dataclass(frozen=True)
class WaitReady:
    service: str
    role: str
    holder: str                   # whose published ports the readiness port names refer to
    ports: dict[str, int]         # port name → pod port
    readiness: Readiness
    hint: str | None = None
    container: str = ""           # the container an exec readiness runs in


@dataclass(frozen=True)
class Announce:
    """The pod's URLs, once its other steps are done (PodReady)."""
    service: str
    holder: str
    ports: dict[str, int]
    serving: bool
    protocol: str = "http"


@dataclass(frozen=True)
class Keep:
    """Nothing to do; listed so a dry run says what stays and why."""
    container: ContainerInfo
    why: str


@dataclass(frozen=True)
class RemoveNetwork:
    name: str
    why: str


@dataclass(frozen=True)
class InstallDependencies:
    """A run-mode app's dependencies, installed into a new cache volume by a one-shot container;
    a failed install removes the volume again."""
    service: str
    volume: str
    labels: dict[str, str]
    spec: ContainerSpec
    files: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class RemoveVolume:
    name: str
    why: str


Step = (EnsureNetwork | PullImage | BuildImage | EnsureCA | WriteFiles | RemoveFolder | IssueCertificate
        | RemoveContainers | StartContainers | RunOnce | RestartContainer | SignalReload | WaitReady | Announce
        | Keep | RemoveNetwork | InstallDependencies | RemoveVolume)


@dataclass(frozen=True)
class Plan:
    project: str
    steps: tuple[Step, ...] = ()
    pods: tuple[tuple[str, tuple[Step, ...]], ...] = ()    # (service, its steps)

    def split_images(self) -> tuple[Plan, Plan]:
        """(the image pulls and builds, the rest): run the first, observe, plan again and run the
        rest, so containers are compared with the IDs the builds produced."""
        images = tuple(s for s in self.steps if isinstance(s, (PullImage, BuildImage)))
        rest = tuple(s for s in self.steps if not isinstance(s, (PullImage, BuildImage)))
        return Plan(self.project, images), Plan(self.project, rest, self.pods)

    def all_steps(self) -> list[tuple[str | None, Step]]:
        return [(None, s) for s in self.steps] + [(service, s) for service, steps in self.pods for s in steps]

    @property
    def changes(self) -> bool:
        return any(not isinstance(s, (Keep, Announce, WaitReady)) for _, s in self.all_steps())

    def as_json(self) -> dict[str, Any]:
        return {"project": self.project, "changes": self.changes,
                "steps": [{"service": service, **describe(step)} for service, step in self.all_steps()]}


def describe(step: Step) -> dict[str, Any]:
    """One step for people and scripts: its kind, what it acts on, why."""
    kind = type(step).__name__
    if isinstance(step, (EnsureNetwork, RemoveNetwork, RemoveVolume)):
        target: Any = step.name
    elif isinstance(step, InstallDependencies):
        target = f"{step.volume} from {', '.join(step.files)}"
    elif isinstance(step, (PullImage, BuildImage)):
        target = step.ref
    elif isinstance(step, EnsureCA):
        target = "CA"
    elif isinstance(step, (WriteFiles, RemoveFolder)):
        target = str(step.folder) + (f" ({', '.join(sorted(step.files))})" if isinstance(step, WriteFiles) else "")
    elif isinstance(step, IssueCertificate):
        target = f"{step.folder} for {', '.join(step.sans)}"
    elif isinstance(step, RemoveContainers):
        target = [c.name for c in step.containers]
    elif isinstance(step, StartContainers):
        target = [s.name for s in step.specs]
    elif isinstance(step, RunOnce):
        return {"step": kind, "target": step.spec.name, "why": "; ".join((step.why, *step.does))}
    elif isinstance(step, (RestartContainer, Keep)):
        target = step.container.name
    elif isinstance(step, SignalReload):
        target = f"{step.container.name} ({step.signal})"
    elif isinstance(step, WaitReady):
        target = f"{step.service}/{step.role}"
        return {"step": kind, "target": target, "why": step.readiness.describe()}
    elif isinstance(step, Announce):
        return {"step": kind, "target": step.service, "why": "show its URLs"}
    else:  # pragma: no cover - every step type is listed above
        target = ""
    return {"step": kind, "target": target, "why": step.why}


# ---------------------------------------------------------------------------------------------
# What was observed


@dataclass(frozen=True)
class Observed:
    """What the planners read: Docker's state by label, and the files meshctl keeps."""
    containers: tuple[ContainerInfo, ...] = ()
    networks: frozenset[str] = frozenset()          # the project's networks that exist
    images: Mapping[str, str] = field(default_factory=dict)   # image reference present → its ID
    ca_exists: bool = True
    certificates: Mapping[str, str | None] = field(default_factory=dict)   # folder → why to (re)issue; None: current
    files: Mapping[str, Mapping[str, str]] = field(default_factory=dict)   # folder → file name → content
    folders: frozenset[str] = frozenset()           # config folders of the project that exist
    volumes: frozenset[str] = frozenset()           # the project's volumes (dependency caches)


@dataclass(frozen=True)
class Settings:
    """How this meshctl runs a project: where its files live, as whom, tied or not."""
    home: Path
    user: str                                       # uid:gid of the sidecars
    tied: bool                                      # foreground: the pods die with this process
    sidecar_images: dict[str, str]                  # image folder under sidecars/ → reference
    wait_serving: bool = True                       # wait until each pod serves through its chain
    build_network: str | None = None                # builds' and installs' network mode (MESHCTL_BUILD_NETWORK)
    install_ca: Path | None = None                  # a CA bundle for installs behind a TLS proxy (MESHCTL_INSTALL_CA)

    def project_dir(self, project: str) -> Path:
        """Where a project's rendered configs and leaf keys live, a folder per service."""
        return self.home / "projects" / project

    def state_dir(self, project: str, service: str) -> Path:
        return self.project_dir(project) / service


def wanted_folders(project: ProjectSpec, settings: Settings) -> dict[str, list[Path]]:
    """service → the config folders its sidecars mount (what the observer must read)."""
    return {s.name: [settings.state_dir(project.name, s.name) / r.role for r in render_configs(project.name, s)]
            for s in project.services}


def pods_for(project: ProjectSpec, settings: Settings) -> list[Pod]:
    return [_pod(project, service, settings) for service in project.services]


def _pod(project: ProjectSpec, service: ServiceSpec, settings: Settings) -> Pod:
    app_image = app_image_ref(project.name, service)
    return build_pod(project, service, app_image=app_image,
                     sidecar_images={**{k.role: kind_image(project.name, service.name, k, settings.sidecar_images)
                                        for k in kinds_for(service)},
                                     **({CAPTURE: settings.sidecar_images[CAPTURE]} if captures(service) else {})},
                     state_dir=settings.state_dir(project.name, service.name), tied=settings.tied,
                     user=settings.user, ca_bundle=settings.home / "ca" / "ca-bundle.pem",
                     deps=dependency_cache(project.name, service, app_image))


def _installs(project: ProjectSpec, observed: Observed, settings: Settings) -> list[Step]:
    """Run-mode apps whose dependency cache (a volume named by the dependency files' hash) is not
    there yet: install it once; the next `up` finds it and installs nothing."""
    steps: list[Step] = []
    for service in project.services:
        image = app_image_ref(project.name, service)
        deps = dependency_cache(project.name, service, image)
        if deps is None or deps.volume in observed.volumes:
            continue
        spec = install_container(project.name, service, deps, image, user=settings.user,
                                 network=settings.build_network, ca_bundle=settings.install_ca)
        steps.append(InstallDependencies(
            service.name, deps.volume, labels(project.name, service.name, DEPS, runtime=deps.runtime.name,
                                              deps_hash=deps.digest),
            spec, deps.files, f"no cache of this {' and '.join(deps.files)} yet"))
    return steps


def service_sans(service: ServiceSpec) -> tuple[str, ...]:
    """Host names, and in a mesh the workload's SPIFFE identity (its proxy is a client too)."""
    identity = (service.identity,) if service.identity else ()
    return default_sans(service.name, (*(service.tls.hosts if service.tls else ()), *identity))


def _issue(folder: Path, service: ServiceSpec, why: str) -> IssueCertificate:
    return IssueCertificate(folder, service_sans(service), service.name, why,
                            unit=service.mesh.project if service.mesh else None)


# ---------------------------------------------------------------------------------------------
# up (and converge)


def plan_images(image_folders: Iterable[str], observed: Observed, sidecar_images: dict[str, str],
                sidecar_dirs: Path, apps: Iterable[BuildImage | PullImage] = ()) -> list[Step]:
    """Once, the base image when a build needs it and it is missing; the apps' pulls; then every
    build together (sidecar images whose content-hash tag is missing, the apps'): the executor runs
    consecutive builds in parallel."""
    missing = sorted({f for f in image_folders if sidecar_images[f] not in observed.images})
    apps = list(apps)
    app_builds = [step for step in apps if isinstance(step, BuildImage)]
    needs_base = missing or any(_builds_from_base(b.context / "Dockerfile") for b in app_builds)
    steps: list[Step] = []
    if needs_base and BASE_IMAGE not in observed.images:
        steps.append(pull_base_image())
    steps += [step for step in apps if isinstance(step, PullImage)]
    for folder in missing:
        steps.append(BuildImage(sidecar_images[folder], sidecar_dirs / folder, labels(None, sidecar=folder),
                                f"not built yet (its tag is a hash of sidecars/{folder})"))
    return steps + list(app_builds)


def pull_base_image() -> PullImage:
    return PullImage(BASE_IMAGE, "the images build FROM it", hint=(
        "with a registry: `docker pull debian:bookworm-slim`; without one, seed it with debootstrap: "
        "`.ci/seed-base-image` in meshctl's source tree"))


def plan_up(project: ProjectSpec, observed: Observed, settings: Settings, sidecar_dirs: Path) -> Plan:
    steps: list[Step] = []
    net = network_name(project.name)
    stale = net in observed.networks and not observed.containers
    if stale:
        # Left by a meshctl that was killed (its pods went with it): start from a fresh one.
        steps.append(RemoveNetwork(net, "left behind with no containers"))
    if net not in observed.networks or stale:
        steps.append(EnsureNetwork(net, labels(project.name)))
    image_folders = {k.image for s in project.services for k in kinds_for(s) if not k.user}
    image_folders |= {CAPTURE for s in project.services if captures(s)}
    apps = [step for step in (_app_image(project, s, observed) for s in project.services) if step is not None]
    apps += _user_sidecar_images(project, observed)
    apps = list({step.ref: step for step in apps}.values())     # two services on one runtime: one build
    steps += plan_images(image_folders, observed, settings.sidecar_images, sidecar_dirs, apps)
    steps += _installs(project, observed, settings)
    if not observed.ca_exists:
        steps.append(EnsureCA())
    pods = pods_for(project, settings)
    refreshed: dict[str, set[str]] = {}
    for pod in pods:
        file_steps, refreshed[pod.service.name] = _files(project, pod, observed,
                                                         settings.state_dir(project.name, pod.service.name))
        steps += file_steps
    wanted = {s.name for s in project.services}
    gone = [c for c in observed.containers if c.service not in wanted]
    steps += _removals(gone, "its service is no longer in mesh.yaml")
    project_dir = settings.project_dir(project.name)
    steps += [RemoveFolder(Path(folder), "its service is no longer in mesh.yaml: no config or key stays")
              for folder in sorted(observed.folders)
              if Path(folder).parent == project_dir and Path(folder).name not in wanted]
    pod_steps = tuple((pod.service.name, tuple(_pod_steps(pod, observed, settings, refreshed[pod.service.name])))
                      for pod in pods)
    return Plan(project.name, tuple(steps), pod_steps)


def _app_image(project: ProjectSpec, service: ServiceSpec, observed: Observed) -> BuildImage | PullImage | None:
    ref = app_image_ref(project.name, service)
    if service.runtime is not None:
        if ref in observed.images:
            return None
        return BuildImage(ref, data_dir("runtimes") / service.runtime, labels(None, runtime=service.runtime),
                          f"the {service.runtime} runtime is not built yet (its tag is a hash of runtimes/"
                          f"{service.runtime}; Debian's packages, once)")
    if service.build is not None:
        return BuildImage(ref, service.build, labels(project.name, service.name, version=False),
                          f"services.{service.name}.build (Docker reuses cached layers)", service.name)
    if ref in observed.images:
        return None
    return PullImage(ref, f"services.{service.name}.image is not here", service=service.name,
                     hint=f"build or pull it first (docker pull {ref}), or fix the name")


def _user_sidecar_images(project: ProjectSpec, observed: Observed) -> list[BuildImage | PullImage]:
    """The images of the user's own sidecars that are not here: built from their folder (the tag
    is a hash of it), or pulled."""
    steps: list[BuildImage | PullImage] = []
    for service in project.services:
        for kind in kinds_for(service):
            ref = user_sidecar_image_ref(project.name, service.name, kind) if kind.user else None
            if ref is None or ref in observed.images:
                continue
            field_path = f"services.{service.name}.sidecars.{kind.role}"
            if kind.user_build is not None:
                steps.append(BuildImage(ref, kind.user_build, labels(project.name, service.name, version=False, sidecar=kind.role),
                                        f"{field_path}.build: not built yet (its tag is a hash of the folder)",
                                        service.name))
            else:
                steps.append(PullImage(ref, f"{field_path}.image is not here", service=service.name,
                                       hint=f"build or pull it first (docker pull {ref}), or fix the name"))
    return steps


def image_refs(project: ProjectSpec, settings: Settings) -> set[str]:
    """Every image reference a project's plan may need: what the observer checks is present."""
    refs = {*settings.sidecar_images.values(), BASE_IMAGE, *(app_image_ref(project.name, s) for s in project.services)}
    refs |= {user_sidecar_image_ref(project.name, s.name, k) for s in project.services for k in kinds_for(s) if k.user}
    return refs


def _builds_from_base(dockerfile: Path) -> bool:
    try:
        return BASE_IMAGE in dockerfile.read_text(encoding="utf-8")
    except OSError:
        return False


def _files(project: ProjectSpec, pod: Pod, observed: Observed, state_dir: Path) -> tuple[list[Step], set[str]]:
    """Rendered configs written where they differ, certificates issued where needed, folders of
    roles without a container removed (no stale config, no unused private key). Returns the steps
    and the roles whose mounted files change: a kept container of theirs must reload."""
    service = pod.service
    steps: list[Step] = []
    rendered = {r.role: r.files for r in render_configs(project.name, service)}
    for role in config_roles():
        if role not in rendered and str(state_dir / role) in observed.folders:
            steps.append(RemoveFolder(state_dir / role, f"{service.name} runs no {role} sidecar now"))
    refreshed = set()
    serving = tls_kind(service)
    for role, files in rendered.items():
        folder = pod.config_dirs[role]
        present = observed.files.get(str(folder), {})
        changed = {name: text for name, text in files.items() if present.get(name) != text}
        if changed:
            refreshed.add(role)
            steps.append(WriteFiles(folder, files, f"the {role} sidecar's config "
                                    + ("changed" if present else "is not written yet")))
        if serving is not None and serving.role == role:
            why = observed.certificates.get(str(folder), "missing")
            if why is not None:
                steps.append(_issue(folder, service, why))
                refreshed.add(role)
    return steps, refreshed


def _removals(containers: Iterable[ContainerInfo], why: str, *, force: bool = False) -> list[Step]:
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
            why[pod.holder.name] = _difference(holder, pod.holder, image_ids)
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
        why[spec.name] = "new" if current is None else _difference(current, spec, image_ids)
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


def _pod_steps(pod: Pod, observed: Observed, settings: Settings, refreshed: set[str]) -> list[Step]:
    service = pod.service
    plan = plan_pod(pod, observed.containers, refreshed, observed.images)
    ports = published_ports(service)
    steps: list[Step] = []
    steps += [Keep(c, "unchanged") for c in plan.keep if c not in plan.reload]
    steps += _removals(plan.remove, f"replaced: {_reasons(plan)}")
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
    for group in sorted({kinds[s.role].start_group for s in sidecars}):
        members = tuple(s for s in sidecars if kinds[s.role].start_group == group)
        steps.append(StartContainers(service.name, members, "; ".join(sorted({plan.why[s.name] for s in members})),
                                     hints))
        # The app starts only once its sidecars answer (Linkerd's proxy-await); the app may rely
        # on a user's sidecar at its first line.
        steps += [wait for s in members if (wait := _sidecar_wait(pod, kinds[s.role], s)) is not None]
    if APP in creating:
        steps.append(StartContainers(service.name, (creating[APP],), plan.why[pod.app.name], hints))
    if settings.wait_serving:
        steps.append(_wait_serving(pod))
    steps.append(Announce(service.name, pod.holder.name, ports, serving=settings.wait_serving,
                          protocol=service.protocol))
    return steps


def _capture_step(pod: Pod, why: str) -> RunOnce:
    assert pod.capture is not None
    return RunOnce(pod.service.name, pod.capture, f"traffic capture: {why}", does=capture_rules(pod.service),
                   hint="capture needs iptables (nft) with NET_ADMIN in the pod's namespace; to run the "
                        "mesh without it (calls between services then go direct, unencrypted), set "
                        "`mesh: {capture: false}` in mesh.yaml")


def _sidecar_wait(pod: Pod, kind: SidecarKind, spec: ContainerSpec) -> WaitReady | None:
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


def _wait_serving(pod: Pod) -> WaitReady:
    service = pod.service
    readiness = serving_readiness(service)
    answer = (f"accept TCP connections on port {service.port}" if service.protocol == "tcp"
              else f"answer {service.health} on port {service.port}")
    return WaitReady(service.name, APP, pod.holder.name, published_ports(service), readiness,
                     hint=f"the app must {answer} inside the pod; "
                          f"check services.{service.name}.port and .health in mesh.yaml, or raise --timeout "
                          f"(waited for it through {chain_of(service)})",
                     container=pod.holder.name if readiness.exec_in == "pod" else pod.app.name)


# ---------------------------------------------------------------------------------------------
# Hot reload of one app, certificate renewal


def _app_container(observed: Observed, service: str) -> ContainerInfo | None:
    return next((c for c in observed.containers if c.service == service and c.role == APP), None)


def plan_restart_app(project: ProjectSpec, service: str, observed: Observed, settings: Settings) -> Plan:
    """Sync mode: the new source is already mounted; restart the app container in place (holder
    and sidecars stay), or start it afresh when the last version crashed."""
    pod = _pod(project, project.service(service), settings)
    current = _app_container(observed, service)
    if current is not None and current.state == "running":
        first: Step = RestartContainer(service, current, pod.service.stop_grace_period, "a synced file changed")
    else:
        first = StartContainers(service, (pod.app,), "a synced file changed; the last version had exited",
                                pod.port_hints(), reloading=True)
    return Plan(project.name, pods=((service, (first, _wait_serving(pod))),))


def plan_restart_sidecar(project: ProjectSpec, service: str, role: str, observed: Observed,
                         settings: Settings) -> Plan:
    """A sidecar that exited, started again in its pod's namespace (Kubernetes restarts a native
    sidecar the same way): the holder, the app and the other sidecars are left alone."""
    pod = _pod(project, project.service(service), settings)
    spec = next(s for s in pod.sidecars if s.role == role)
    left = [c for c in observed.containers if c.name == spec.name]    # still being removed
    steps: list[Step] = _removals(left, "it exited", force=True)
    kind = kind_of(pod.service, role)
    assert kind is not None
    wait = _sidecar_wait(pod, kind, spec)
    steps += [StartContainers(service, (spec,), "it exited", pod.port_hints()), *([wait] if wait else [])]
    return Plan(project.name, pods=((service, tuple(steps)),))


def plan_rebuild_app(project: ProjectSpec, service: str, observed: Observed, settings: Settings) -> Plan:
    """Rebuild mode: build first (a failed build leaves the running app alone), then replace the
    app container; holder and sidecars stay."""
    spec = project.service(service)
    pod = _pod(project, spec, settings)
    assert spec.build is not None
    current = [c for c in observed.containers if c.service == service and c.role == APP]
    steps: list[Step] = [BuildImage(app_image_ref(project.name, spec), spec.build,
                                    labels(project.name, service, version=False), "its build folder changed", service)]
    steps += _removals(current, "replaced by the new build")
    steps += [StartContainers(service, (pod.app,), "the new build", pod.port_hints(), reloading=True),
              _wait_serving(pod)]
    return Plan(project.name, pods=((service, tuple(steps)),))


def plan_renewal(project: ProjectSpec, observed: Observed, settings: Settings) -> Plan:
    """Leaf certificates near expiry (or with other names, or from another CA) are re-issued and
    the sidecar serving them reloads in place."""
    steps: list[Step] = []
    for service in project.services:
        kind = tls_kind(service)
        if kind is None:
            continue
        folder = settings.state_dir(project.name, service.name) / kind.role
        why = observed.certificates.get(str(folder))
        if why is None:
            continue
        steps.append(_issue(folder, service, why))
        for c in observed.containers:
            if c.service == service.name and c.role == kind.role and kind.reload_signal:
                steps.append(SignalReload(c, kind.reload_signal, "its certificate was re-issued"))
    return Plan(project.name, tuple(steps))


# ---------------------------------------------------------------------------------------------
# down


def plan_down(project: str, observed: Observed, state_dir: Path | None, *, force: bool = False,
              volumes: bool = False) -> Plan:
    """Every container (apps first), the project's networks, then its rendered configs and leaf
    keys (the CA stays: it is what users trust). Dependency caches stay (they are caches) unless
    `volumes` (`down --volumes`)."""
    steps: list[Step] = _removals(observed.containers, "meshctl down", force=force)
    steps += [RemoveNetwork(name, "meshctl down") for name in sorted(observed.networks)]
    if volumes:
        steps += [RemoveVolume(name, "meshctl down --volumes") for name in sorted(observed.volumes)]
    if state_dir is not None and str(state_dir) in observed.folders:
        steps.append(RemoveFolder(state_dir, "its rendered configs and leaf keys"))
    return Plan(project, tuple(steps))
