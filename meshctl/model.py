"""The model types shared by the pure modules and the engine adapter: what a container should be
(ContainerSpec), what the engine reports one is (ContainerInfo), and the names and labels that
are meshctl's only record of what exists. Pure: importing this touches neither Docker nor files."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import __version__

# Labels are meshctl's only record of what exists (compose's habit): every container, network,
# volume and image it creates carries them, and every query reads them back. The keys, once:
LABEL_PREFIX = "meshctl."
PROJECT_LABEL = "meshctl.project"
SERVICE_LABEL = "meshctl.service"
ROLE_LABEL = "meshctl.role"
VERSION_LABEL = "meshctl.version"

HOLDER = "pod"      # the role of the container that owns a pod's namespaces and published ports
APP = "app"
INSTALL = "install"  # the one-shot container that installs a run-mode app's dependencies
DEPS = "deps"        # the role of a dependency cache volume
CONFIG_HASH = "meshctl.config-hash"   # the container's own settings: a change means replace it
OUTSIDE_MESH = "outside"   # a holder's meshctl.mesh label: a service with no sidecars in a project with a mesh


TRUST_DOMAIN = "meshctl.local"


def spiffe_id(project: str, service: str) -> str:
    """A workload's identity, as Istio and Linkerd write it: spiffe://<trust domain>/ns/<ns>/sa/<sa>."""
    return f"spiffe://{TRUST_DOMAIN}/ns/{project}/sa/{service}"


def split_image_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`[registry[:port]/]name[:tag][@digest]` → (repository, tag, digest); a registry's port is
    not a tag, so the tag is looked for after the last slash only."""
    ref, _, digest = ref.partition("@")
    head, slash, last = ref.rpartition("/")
    name, colon, tag = last.partition(":")
    return head + slash + name, (tag if colon else None), (digest or None)


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one container; built by pod.py, turned into API calls only by
    the engine adapter."""
    name: str
    image: str
    labels: dict[str, str]
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    workdir: str | None = None
    network: str | None = None            # a user-defined network to join (holders), or a network mode
    aliases: tuple[str, ...] = ()
    namespace_of: str | None = None       # join this container's network and PID namespaces
    # The host's network namespace instead of namespace_of's (its PID namespace still): the OTLP
    # loopback forwarder, which relays to a collector on the host's 127.0.0.1.
    host_network: bool = False
    ports: dict[int, int] = field(default_factory=dict)   # pod port → host port on 127.0.0.1 (0 = free)
    mounts: tuple[tuple[str, str, bool], ...] = ()         # (host path, container path, read-only)
    read_only: bool = False
    cap_drop: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    no_new_privileges: bool = False
    tmpfs: tuple[str, ...] = ()
    tied_to_caller: bool = False          # stdin held open by this process (the lifecycle tie)
    # Docker starts it again when it dies (not auto-removed then): a detached pod's sidecars, which
    # no meshctl process is left to restart. Attached pods' sidecars are restarted by the supervisor.
    restarts_on_failure: bool = False
    stop_timeout: int = 10

    @property
    def role(self) -> str:
        return self.labels[ROLE_LABEL]

    @property
    def service(self) -> str:
        return self.labels.get(SERVICE_LABEL, "")


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    labels: dict[str, str]
    state: str                            # created, running, exited, removing, …
    ports: dict[int, int]                 # pod port → host port actually bound
    image_id: str = ""                    # the image it was created from, as Docker resolved the tag then

    def label(self, key: str) -> str:
        return self.labels.get(label_key(key), "")

    @property
    def role(self) -> str:
        return self.label("role")

    @property
    def service(self) -> str:
        return self.label("service")


def network_name(project: str) -> str:
    return f"meshctl-{project}"


def container_name(project: str, service: str, role: str) -> str:
    return f"{project}-{service}-{role}"


def label_key(name: str) -> str:
    """`config_hash` → `meshctl.config-hash`."""
    return LABEL_PREFIX + name.replace("_", "-")


def labels(project: str | None, service: str | None = None, role: str | None = None, *,
           version: bool = True, **extra: str | None) -> dict[str, str]:
    """The one label builder: what a container, network, volume or image of meshctl's carries
    (`version=False` for an app image's build labels, which name the project but no release)."""
    out = {PROJECT_LABEL: project} if project is not None else {}
    if version:
        out[VERSION_LABEL] = __version__
    if service:
        out[SERVICE_LABEL] = service
    if role:
        out[ROLE_LABEL] = role
    out.update({label_key(k): v for k, v in extra.items() if v is not None})   # None: not set
    return out


def selector(project: str | None = None, **wanted: str) -> dict[str, str]:
    """Labels to query by: the project's (any meshctl project's when it is None or ""), and each
    other label given (`role="pod"`). An empty value asks only that the label exists."""
    return {PROJECT_LABEL: project or "", **{label_key(k): v for k, v in wanted.items()}}
