"""The typed steps of a plan, each mapping to one job of the executor (runtime/apply.py), and Plan:
`steps` run in order, then `pods` (each service's steps in order, pods in parallel). Every step
carries `why`: what `--dry-run` prints beside it (`describe`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import BuildOptions
from ..model import HOLDER, ContainerInfo, ContainerSpec
from ..sidecars import Readiness


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
    options: BuildOptions = field(default_factory=BuildOptions)   # a Dockerfile of another name, build args, a target stage

    @property
    def dockerfile(self) -> Path:
        return self.options.dockerfile_path(self.context)


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
    """In place; when the engine loses the container on the way (Docker 20.10 under load removes an
    auto-remove container it restarts), `spec` is created and started again in its place."""
    service: str
    container: ContainerInfo
    timeout: float
    why: str
    spec: ContainerSpec | None = None
    port_hints: dict[int, str] = field(default_factory=dict)


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
    # Waited for after the waits before it, not with them (consecutive waits run at once).
    after_those_before: bool = False


@dataclass(frozen=True)
class AwaitServices:
    """depends_on: the app starts once these services are (service, ready | started); pods start
    in parallel, and only this pod's app waits."""
    service: str
    needs: tuple[tuple[str, str], ...]


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
        | Keep | RemoveNetwork | InstallDependencies | RemoveVolume | AwaitServices)


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

    def split_network(self) -> tuple[Plan, Plan]:
        """(the project network's steps, the rest): `up` makes the network while images build."""
        network = tuple(s for s in self.steps if isinstance(s, (RemoveNetwork, EnsureNetwork)))
        rest = tuple(s for s in self.steps if not isinstance(s, (RemoveNetwork, EnsureNetwork)))
        return Plan(self.project, network), Plan(self.project, rest, self.pods)

    def only(self, service: str) -> Plan:
        """The project's own steps and one pod's: the others are left as they are."""
        return Plan(self.project, self.steps, tuple(pod for pod in self.pods if pod[0] == service))

    def all_steps(self) -> list[tuple[str | None, Step]]:
        return [(None, s) for s in self.steps] + [(service, s) for service, steps in self.pods for s in steps]

    @property
    def changes(self) -> bool:
        return any(not isinstance(s, (Keep, Announce, WaitReady, AwaitServices)) for _, s in self.all_steps())

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
    elif isinstance(step, AwaitServices):
        return {"step": kind, "target": [name for name, _ in step.needs],
                "why": "depends_on: its app starts once " + ", ".join(f"{n} is {c}" for n, c in step.needs)}
    else:  # pragma: no cover - every step type is listed above
        target = ""
    return {"step": kind, "target": target, "why": step.why}


def joining_next(step: StartContainers, after: list[Step]) -> StartContainers | None:
    """The pod's next start step when `step` starts its holder and only one-shot steps (traffic
    capture) come between: its containers join the holder's namespaces, so they can be created
    while it starts (they need it to exist, not to run)."""
    holder = next((spec.name for spec in step.specs if spec.role == HOLDER), None)
    if holder is None:
        return None
    for later in after:
        if isinstance(later, StartContainers):
            return later if all(spec.namespace_of == holder for spec in later.specs) else None
        if not isinstance(later, RunOnce):
            return None
    return None
