"""The sidecars. One SidecarKind per kind of sidecar says everything about it: the image folder
under sidecars/, the ports it uses inside the pod, when it runs and in which start group, how to
know it is ready, which signal reloads its config in place, its compose healthcheck for inject,
and its config renderer (haproxy.py, from templates/). Pod building, planning, applying,
readiness, stopping, reload and inject all read KINDS; a new kind of sidecar is added here (plus
its templates). Pure: nothing here talks to Docker or writes files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BuildOptions, ServiceSpec, UserSidecar
from ..model import APP, HOLDER, spiffe_id
from .addresses import (CONFIG_MOUNT, Cluster, EVENTS_PORT, MESH_PORT, METRICS_PORT, OBSERVE_PORT, OTLP_PORT, OUTBOUND_PORT,
                        OUTBOUND_TCP_PORT, PROXY_PORT, PROXY_STATS_PORT, TLS_PORT)
from .capture import CAPTURE, captures, render_capture
from .haproxy import proxy_files, render_tls
from .otlp import OTLP_FORWARD, forwards_otlp, otlp_export_env, render_forward
from .readiness import Readiness, proxy_readiness, shell_http_check, shell_tls_chain_check, user_readiness

SIDECAR_STOP_TIMEOUT = 2     # seconds: sidecars exit on SIGTERM at once


@dataclass(frozen=True)
class SidecarKind:
    role: str                                        # meshctl.role label, container name suffix
    image: str                                       # the folder under sidecars/ that builds its image
    pod_ports: tuple[int, ...]                       # ports it listens on inside the pod
    runs: Callable[[ServiceSpec], bool]              # does a service get this container?
    ready: Callable[[ServiceSpec], Readiness | None]   # gates the app's start (Linkerd's proxy-await)
    start_group: int = 1                             # after the holder (0), before the app; a group starts together
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    # Its mounted config folder's files, for a project's service (in a Kubernetes cluster, or Docker's network: None).
    render: Callable[[str, ServiceSpec, Cluster | None], dict[str, str]] | None = None
    env: Callable[[ServiceSpec], dict[str, str]] | None = None
    serves_tls: Callable[[ServiceSpec], bool] = lambda service: False    # holds the certificate
    reload_signal: str | None = None                 # reloads its mounted config in place
    compose_health: str | None = None                # the healthcheck script `meshctl inject` writes
    # A sidecar of the user's own (mesh.yaml `sidecars: {NAME: {image|build, …}}`): its image is
    # theirs, and it may ask for more than meshctl's least privilege (run_as, read_only, cap_add).
    user: bool = False
    user_image: str | None = None                    # an image reference
    user_build: Path | None = None                   # or a folder with a Dockerfile (tag: a hash of it)
    user_build_options: BuildOptions = field(default_factory=BuildOptions)   # its dockerfile, args, target
    run_as: str | None = None                        # None: the invoking uid:gid, as meshctl's sidecars
    read_only: bool = True                           # a read-only root filesystem, a tmpfs /tmp
    cap_add: tuple[str, ...] = ()                    # after cap_drop ALL
    stop_timeout: int = SIDECAR_STOP_TIMEOUT
    host_network: bool = False                       # the host's network namespace (the pod's PID namespace)


def metrics_env(service: ServiceSpec) -> dict[str, str]:
    return {
        "MESHCTL_SERVICE": service.name,
        "MESHCTL_METRICS_PORT": str(METRICS_PORT),
        "MESHCTL_EVENTS_PORT": str(EVENTS_PORT),
        "MESHCTL_OBSERVE_PORT": str(OBSERVE_PORT),
        "MESHCTL_APP_METRICS": f"http://127.0.0.1:{service.port}{service.metrics_path}" if service.metrics_path else "",
        "MESHCTL_SPANS_PORT": str(OTLP_PORT),
        # Spans name their mesh peers by SPIFFE id: this prefix and the peer's service name.
        "MESHCTL_IDENTITY_PREFIX": spiffe_id(service.mesh.project, "") if service.mesh else "",
        **otlp_export_env(service),
    }


HAPROXY_COMMAND = ("-f", f"{CONFIG_MOUNT}/haproxy.cfg")

# In start order. tls and proxy share one HAProxy image. With the proxy on (the default) the proxy
# terminates TLS itself, as Envoy does in Istio: one stage fewer on every request
# (docs/performance.md); the tls container runs only with `proxy: false`.
KINDS: dict[str, SidecarKind] = {kind.role: kind for kind in (
    SidecarKind(
        role="metrics", image="metrics", pod_ports=(METRICS_PORT, EVENTS_PORT, OTLP_PORT, OBSERVE_PORT),
        runs=lambda service: service.metrics is not None,
        ready=lambda service: Readiness("metrics", "/ready"),
        env=metrics_env,
        compose_health=shell_http_check(METRICS_PORT, "/ready", '[ "$$code" = 200 ]')),
    SidecarKind(
        role="proxy", image="haproxy", pod_ports=(TLS_PORT, PROXY_PORT, PROXY_STATS_PORT, MESH_PORT, OUTBOUND_PORT,
                                                  OUTBOUND_TCP_PORT),
        runs=lambda service: service.proxy is not None,
        ready=proxy_readiness, command=HAPROXY_COMMAND,
        render=proxy_files,
        serves_tls=lambda service: service.tls_terminator == "proxy",
        reload_signal="SIGUSR2",     # HAProxy's master reloads without dropping connections
        compose_health=shell_tls_chain_check("/", strict=False)),
    SidecarKind(
        role="tls", image="haproxy", pod_ports=(TLS_PORT,),
        runs=lambda service: service.tls_terminator == "tls",
        ready=lambda service: Readiness("https", None, tls=True), command=HAPROXY_COMMAND,
        render=lambda project, service, cluster: {"haproxy.cfg": render_tls(project, service)},
        serves_tls=lambda service: True, reload_signal="SIGUSR2"),
    SidecarKind(
        role=OTLP_FORWARD, image="metrics", pod_ports=(), runs=forwards_otlp, ready=lambda service: None,
        entrypoint=("python3", "-u", "/usr/local/lib/meshctl/otlp_forward.py"), render=render_forward,
        host_network=True),
)}


# A user's sidecars start after meshctl's (their traffic may already go through the proxy, their
# metrics be scraped) and, each waited for, before the app: the app may rely on them at once.
USER_START_GROUP = 2


def user_kind(sidecar: UserSidecar) -> SidecarKind:
    readiness = user_readiness(sidecar.ready)
    env = dict(sidecar.env)
    return SidecarKind(
        role=sidecar.name, image="", pod_ports=sidecar.ready.ports() if sidecar.ready else (),
        runs=lambda service: True, ready=lambda service: readiness, start_group=USER_START_GROUP,
        command=sidecar.command, entrypoint=sidecar.entrypoint, env=lambda service: env, user=True, user_image=sidecar.image,
        user_build=sidecar.build, user_build_options=sidecar.build_options, run_as=sidecar.user,
        read_only=sidecar.read_only, cap_add=sidecar.cap_add,
        stop_timeout=round(sidecar.stop_grace_period))


def kinds_for(service: ServiceSpec) -> list[SidecarKind]:
    """The sidecar containers a service runs, in start order: meshctl's, then the user's own."""
    return [kind for kind in KINDS.values() if kind.runs(service)] + [user_kind(s) for s in service.user_sidecars]


def roles_of(service: ServiceSpec) -> tuple[str, ...]:
    """The sidecar containers that run, in start order; tls only as the one serving HTTPS."""
    return tuple(kind.role for kind in kinds_for(service))


def kind_of(service: ServiceSpec, role: str) -> SidecarKind | None:
    return next((kind for kind in kinds_for(service) if kind.role == role), None)


def tls_kind(service: ServiceSpec) -> SidecarKind | None:
    """The sidecar that serves HTTPS and holds the certificate, if any."""
    return next((kind for kind in kinds_for(service) if kind.serves_tls(service)), None)


def stop_group(role: str) -> int:
    """Stop order: apps first (their grace period), then sidecars, then holders last."""
    return 0 if role == APP else 2 if role == HOLDER else 1


def start_rank(role: str) -> int:
    """For listings: the holder, meshctl's sidecars in start order, the user's sidecars, the app."""
    order = [HOLDER, *KINDS]
    return order.index(role) if role in order else len(order) + (1 if role == APP else 0)


def chain_of(service: ServiceSpec) -> str:
    """What a request crosses, for messages."""
    if service.tls_terminator == "proxy":
        return "proxy (HTTPS) → app"
    if service.tls_terminator == "tls":
        return "tls → app"
    return "proxy → app" if service.proxy else "the app"


@dataclass(frozen=True)
class RenderedConfig:
    role: str
    files: dict[str, str]    # file name in the role's config folder → content


def render_configs(project: str, service: ServiceSpec, cluster: Cluster | None = None) -> list[RenderedConfig]:
    """The config folder of each running sidecar that mounts one (`cluster`: rendered for a
    Kubernetes cluster's names and addresses, meshctl export k8s)."""
    rendered = [RenderedConfig(kind.role, kind.render(project, service, cluster))
                for kind in kinds_for(service) if kind.render is not None]
    if captures(service):
        rendered.append(RenderedConfig(CAPTURE, {"capture.sh": render_capture(project, service, cluster)}))
    return rendered


def config_roles() -> tuple[str, ...]:
    """Every role that may have a config folder (what is removed when it no longer runs)."""
    return (*KINDS, CAPTURE)
