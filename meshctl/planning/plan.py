"""Plans: what a command changes, as a list of typed steps (steps.py) for the whole project,
computed purely from the spec and what was observed (Docker's containers, networks and images by
label; the certificates and rendered files on disk). apply.py's Executor runs a plan and decides
nothing; `--dry-run` prints one. As in Compose v2's convergence: compute first, then execute.

    plan_up        `up`, `up -d` over a running stack, a mesh.yaml reload (converge; each pod: converge.py)
    plan_restart_app / plan_rebuild_app    a hot reload of one app
    plan_restart_sidecar                   a sidecar that exited, started again in its pod
    plan_renewal   certificates near expiry: re-issue, reload in place
    plan_down      `down`
    plan_images    sidecar images only (`meshctl inject`, the tests' fixtures)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..certs import default_sans
from ..config import ProjectSpec, ServiceSpec
from ..config.runtimes import dependency_cache
from ..model import APP, DEPS, ContainerInfo, labels, network_name
from ..sidecars import CAPTURE, captures, config_roles, data_dir, kind_of, kinds_for, render_configs, tls_kind
from .converge import pod_steps, removals, serving_wait, sidecar_wait
from .images import BASE_IMAGE, app_image_ref, kind_image, user_sidecar_image_ref
from ..sidecars.addresses import observe_key
from ..sidecars.faults import probe_key, seeded_files
from .pod import Pod, build_pod, install_container
from .steps import (BuildImage, EnsureCA, EnsureNetwork, InstallDependencies, IssueCertificate, Plan, PullImage,
                    RemoveFolder, RemoveNetwork, RemoveVolume, RestartContainer, SignalReload, StartContainers, Step,
                    WriteFiles)


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
    probe_secret: str = ""                          # meshctl's own (home.probe_secret): each project's keys

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
                     deps=dependency_cache(project.name, service, app_image),
                     probe_key=probe_key(settings.probe_secret, project.name) if settings.probe_secret else "",
                     observe_key=observe_key(settings.probe_secret, project.name) if settings.probe_secret else "")


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
    needs_base = missing or any(_builds_from_base(b.dockerfile) for b in app_builds)
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
    steps += removals(gone, "its service is no longer in mesh.yaml")
    project_dir = settings.project_dir(project.name)
    steps += [RemoveFolder(Path(folder), "its service is no longer in mesh.yaml: no config or key stays")
              for folder in sorted(observed.folders)
              if Path(folder).parent == project_dir and Path(folder).name not in wanted]
    # A pod another waits for until it is ready waits for its own serving, whatever the settings.
    awaited = {name for s in project.services for name, condition in s.depends_on if condition == "ready"}
    per_pod = tuple((pod.service.name, tuple(pod_steps(pod, observed.containers, observed.images,
                                                       refreshed[pod.service.name],
                                                       wait_serving=settings.wait_serving
                                                       or pod.service.name in awaited)))
                    for pod in pods)
    return Plan(project.name, tuple(steps), per_pod)


def _app_image(project: ProjectSpec, service: ServiceSpec, observed: Observed) -> BuildImage | PullImage | None:
    ref = app_image_ref(project.name, service)
    if service.runtime is not None:
        if ref in observed.images:
            return None
        return BuildImage(ref, data_dir("runtimes") / service.runtime, labels(None, runtime=service.runtime),
                          f"the {service.runtime} runtime is not built yet (its tag is a hash of runtimes/"
                          f"{service.runtime}; Debian's packages, once)")
    if service.build is not None:
        return app_build(project, service, "Docker reuses cached layers")
    if ref in observed.images:
        return None
    return PullImage(ref, f"services.{service.name}.image is not here", service=service.name,
                     hint=f"build or pull it first (docker pull {ref}), or fix the name")


def app_build(project: ProjectSpec, service: ServiceSpec, why: str) -> BuildImage:
    """A service's `build:`: its folder, and the Dockerfile, args and target it names."""
    assert service.build is not None
    return BuildImage(app_image_ref(project.name, service), service.build,
                      labels(project.name, service.name, version=False),
                      f"services.{service.name}.build ({why})", service.name, service.build_options)


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
                build_labels = labels(project.name, service.name, version=False, sidecar=kind.role)
                steps.append(BuildImage(ref, kind.user_build, build_labels,
                                        f"{field_path}.build: not built yet (its tag is a hash of the folder)",
                                        service.name, kind.user_build_options))
            else:
                steps.append(PullImage(ref, f"{field_path}.image is not here", service=service.name,
                                       hint=f"build or pull it first (docker pull {ref}), or fix the name"))
    return steps


def image_refs(project: ProjectSpec, settings: Settings) -> set[str]:
    """Every image reference a project's plan may need: what the observer looks up."""
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
        # A seeded file (the live fault map) is the runtime's once written: never re-rendered.
        seeds = {name: text for name, text in seeded_files().items() if role == "proxy" and name not in present}
        if changed or seeds:
            refreshed.add(role)
            steps.append(WriteFiles(folder, {**files, **seeds}, f"the {role} sidecar's config "
                                    + ("changed" if present else "is not written yet")))
        if serving is not None and serving.role == role:
            why = observed.certificates.get(str(folder), "missing")
            if why is not None:
                steps.append(_issue(folder, service, why))
                refreshed.add(role)
    return steps, refreshed


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
        first: Step = RestartContainer(service, current, pod.service.stop_grace_period, "a synced file changed",
                                       spec=pod.app, port_hints=pod.port_hints())
    else:
        first = StartContainers(service, (pod.app,), "a synced file changed; the last version had exited",
                                pod.port_hints(), reloading=True)
    return Plan(project.name, pods=((service, (first, serving_wait(pod))),))


def plan_restart_sidecar(project: ProjectSpec, service: str, role: str, observed: Observed,
                         settings: Settings) -> Plan:
    """A sidecar that exited, started again in its pod's namespace (Kubernetes restarts a native
    sidecar the same way): the holder, the app and the other sidecars are left alone."""
    pod = _pod(project, project.service(service), settings)
    spec = next(s for s in pod.sidecars if s.role == role)
    left = [c for c in observed.containers if c.name == spec.name]    # still being removed
    steps: list[Step] = removals(left, "it exited", force=True)
    kind = kind_of(pod.service, role)
    assert kind is not None
    wait = sidecar_wait(pod, kind, spec)
    steps += [StartContainers(service, (spec,), "it exited", pod.port_hints()), *([wait] if wait else [])]
    return Plan(project.name, pods=((service, tuple(steps)),))


def plan_rebuild_app(project: ProjectSpec, service: str, observed: Observed, settings: Settings) -> Plan:
    """Rebuild mode: build first (a failed build leaves the running app alone), then replace the
    app container; holder and sidecars stay."""
    spec = project.service(service)
    pod = _pod(project, spec, settings)
    current = [c for c in observed.containers if c.service == service and c.role == APP]
    steps: list[Step] = [app_build(project, spec, "its build folder changed")]
    steps += removals(current, "replaced by the new build")
    steps += [StartContainers(service, (pod.app,), "the new build", pod.port_hints(), reloading=True),
              serving_wait(pod)]
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
    steps: list[Step] = removals(observed.containers, "meshctl down", force=force)
    steps += [RemoveNetwork(name, "meshctl down") for name in sorted(observed.networks)]
    if volumes:
        steps += [RemoveVolume(name, "meshctl down --volumes") for name in sorted(observed.volumes)]
    if state_dir is not None and str(state_dir) in observed.folders:
        steps.append(RemoveFolder(state_dir, "its rendered configs and leaf keys"))
    return Plan(project, tuple(steps))
