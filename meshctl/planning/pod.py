"""The pod model: for one service, the holder that owns the namespaces and the published ports,
the sidecars (sidecars.KINDS, in start order), and the app, as ContainerSpecs. Pure: no Docker,
no files."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..config import ProjectSpec, ServiceSpec
from .images import BASE_IMAGE
from ..model import APP, CONFIG_HASH, HOLDER, INSTALL, OUTSIDE_MESH, ContainerSpec, container_name, labels, network_name
from ..config.runtimes import APP_DIR, INSTALL_CA, RUNTIMES, DependencyCache
from ..sidecars import (CAPTURE, CONFIG_MOUNT, MESH_GID, SidecarKind, app_otel_env, captures, kinds_for,
                        published_ports)
from ..sidecars.addresses import OBSERVE_KEY_ENV
from ..sidecars.faults import PROBE_KEY_ENV
from ..sidecars.otlp import FORWARD_MOUNT, OTLP_FORWARD


@dataclass(frozen=True)
class Pod:
    project: str
    service: ServiceSpec
    holder: ContainerSpec
    sidecars: tuple[ContainerSpec, ...]
    app: ContainerSpec
    config_dirs: dict[str, Path]          # role → host folder mounted at /etc/meshctl
    capture: ContainerSpec | None = None  # the one-shot step that installs traffic capture
    probe_key: str = ""                   # meshctl's own probes carry it past the proxy's faults

    @property
    def containers(self) -> tuple[ContainerSpec, ...]:
        return (self.holder, *self.sidecars, self.app)

    def port_hints(self) -> dict[int, str]:
        """Host port → the mesh.yaml field that sets it, for error messages."""
        return {host: f"services.{self.service.name}.ports.{name}"
                for name, host in self.service.ports if host}


def _holder_labels(project: str, service: ServiceSpec, tied: bool, ports: dict[str, int]) -> dict[str, str]:
    return labels(project, service.name, HOLDER, mode="attached" if tied else "detached", ports=json.dumps(dict(ports)),
                  mesh=OUTSIDE_MESH if service.outside_mesh else None,
                  protocol="tcp" if service.protocol == "tcp" else None)


def build_pod(project: ProjectSpec, service: ServiceSpec, *, app_image: str, sidecar_images: dict[str, str],
              state_dir: Path, tied: bool, user: str, ca_bundle: Path | None = None,
              deps: DependencyCache | None = None, probe_key: str = "", observe_key: str = "") -> Pod:
    """`tied`: the holder's stdin is held by the CLI, so the pod dies with it (foreground `up`).
    `sidecar_images`: role → image reference. `user`: uid:gid the sidecars run as, the owner of
    their mounted keys (0600). `deps`: a run-mode app's dependency cache, mounted in the app.
    `probe_key`: in the proxy's environment, what meshctl's probes carry to skip faults.
    `observe_key`: in the metrics sidecar's, what `meshctl trace` shows it for the spans."""
    name = project.name
    kinds = kinds_for(service)
    # Any image of meshctl's sidecars has sh, cat and bash (the in-pod readiness probes of the
    # user's sidecars run there); the base image has them too, when none of meshctl's runs.
    own = [kind for kind in kinds if not kind.user]
    holder = _holder(name, service, sidecar_images[own[0].role] if own else BASE_IMAGE, tied=tied, user=user)
    config_dirs = {kind.role: state_dir / kind.role for kind in kinds if kind.render is not None}
    capture = None
    if captures(service):
        config_dirs[CAPTURE] = state_dir / CAPTURE
        capture = _hashed(_capture(name, service, sidecar_images[CAPTURE], holder.name, config_dirs[CAPTURE]))
    # Capture leaves the proxy's own connections alone by its group: the proxy of a mesh runs
    # in MESH_GID (its files are readable by the user, whatever the group).
    sidecars = [_sidecar(name, service, kind, sidecar_images[kind.role], holder.name, config_dirs.get(kind.role),
                         user=f"{user.split(':')[0]}:{MESH_GID}" if kind.role == "proxy" and capture
                         else (kind.run_as or user), tied=tied,
                         env=_keys_env(kind.role, probe_key, observe_key),
                         forward_dir=config_dirs.get(OTLP_FORWARD))
                for kind in kinds]
    env = {"PORT": str(service.port), **(trust_env() if ca_bundle else {}), **app_otel_env(service), **dict(service.env)}
    trust = ((str(ca_bundle), APP_CA_BUNDLE, True),) if ca_bundle else ()
    app = ContainerSpec(
        name=container_name(name, service.name, APP), image=app_image, labels=labels(name, service.name, APP),
        command=service.command, env=env, namespace_of=holder.name, mounts=(*sync_mounts(project, service), *trust),
        stop_timeout=round(service.stop_grace_period),
    )
    if service.source is not None:
        app = _run_mode_app(app, service, deps, user)
    return Pod(project=name, service=service, holder=_hashed(holder), sidecars=tuple(_hashed(s) for s in sidecars),
               app=_hashed(app), config_dirs=config_dirs, capture=capture, probe_key=probe_key)


def _keys_env(role: str, probe_key: str, observe_key: str) -> dict[str, str]:
    """The one key each sidecar checks: the proxy meshctl's probes', the metrics sidecar `trace`'s."""
    if role == "proxy" and probe_key:
        return {PROBE_KEY_ENV: probe_key}
    if role == "metrics" and observe_key:
        return {OBSERVE_KEY_ENV: observe_key}
    return {}


def _holder(project: str, service: ServiceSpec, image: str, *, tied: bool, user: str) -> ContainerSpec:
    """The container that owns the pod's namespaces and its published ports; it runs nothing."""
    ports = published_ports(service)
    return ContainerSpec(
        name=container_name(project, service.name, HOLDER), image=image,
        labels=_holder_labels(project, service, tied, ports),
        # Attached: exits when the CLI's end of stdin closes, and with it the whole PID namespace.
        entrypoint=("sh", "-c"), command=("exec cat >/dev/null",) if tied else ("exec sleep infinity",),
        user=user, network=network_name(project), aliases=(service.name,),
        ports={pod_port: dict(service.ports)[host_name] for host_name, pod_port in ports.items()},
        read_only=True, cap_drop=("ALL",), no_new_privileges=True, tied_to_caller=tied, stop_timeout=1,
    )


def _capture(project: str, service: ServiceSpec, image: str, holder: str, config_dir: Path) -> ContainerSpec:
    """The one-shot container that installs the pod's traffic capture rules."""
    return ContainerSpec(
        name=container_name(project, service.name, CAPTURE), image=image,
        labels=labels(project, service.name, CAPTURE), namespace_of=holder,
        # iptables needs uid 0 and NET_ADMIN in the pod's namespace; nothing else, and it exits.
        user="0:0", cap_drop=("ALL",), cap_add=("NET_ADMIN",), no_new_privileges=True, read_only=True,
        tmpfs=("/run", "/tmp"), mounts=((str(config_dir), CONFIG_MOUNT, True),), stop_timeout=1)


def _sidecar(project: str, service: ServiceSpec, kind: SidecarKind, image: str, holder: str,
             config_dir: Path | None, *, user: str, tied: bool, env: dict[str, str],
             forward_dir: Path | None = None) -> ContainerSpec:
    return ContainerSpec(
        name=container_name(project, service.name, kind.role), image=image,
        labels=labels(project, service.name, kind.role),
        user=user, namespace_of=holder, command=kind.command, entrypoint=kind.entrypoint,
        env={**(kind.env(service) if kind.env else {}), **env},
        mounts=_sidecar_mounts(kind, config_dir, forward_dir),
        host_network=kind.host_network,
        read_only=kind.read_only, cap_drop=("ALL",), cap_add=kind.cap_add, no_new_privileges=True,
        tmpfs=("/tmp",) if kind.read_only else (), stop_timeout=kind.stop_timeout,
        # Detached (no meshctl left to supervise): Docker's policy restarts a sidecar that dies.
        restarts_on_failure=not tied,
    )


def _sidecar_mounts(kind: SidecarKind, config_dir: Path | None,
                    forward_dir: Path | None) -> tuple[tuple[str, str, bool], ...]:
    """Its config folder, read-only; the OTLP forwarder writes its socket into its own, which the
    metrics sidecar mounts (read-only: connecting to a socket needs no write access to the folder)."""
    forwarder = ((str(forward_dir), FORWARD_MOUNT, True),) if kind.role == "metrics" and forward_dir else ()
    if config_dir is None:
        return forwarder
    return ((str(config_dir), CONFIG_MOUNT, kind.role != OTLP_FORWARD), *forwarder)


APP_CA_BUNDLE = "/etc/meshctl/ca-bundle.pem"


def trust_env() -> dict[str, str]:
    """The variables OpenSSL, Python's requests, Node.js and curl read for their trusted roots: an app
    calling another service's HTTPS (or meshctl's) verifies it, and the internet's still."""
    return dict.fromkeys(("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE"), APP_CA_BUNDLE)


def _run_mode_app(app: ContainerSpec, service: ServiceSpec, deps: DependencyCache | None, user: str) -> ContainerSpec:
    """Run mode: the command runs in /app (the source, mounted read-only) as your uid:gid with no
    capabilities, in its runtime's environment, with the dependency cache mounted where the
    runtime looks for it."""
    runtime = RUNTIMES[service.runtime] if service.runtime else None
    env = {"HOME": "/tmp", **(runtime.env if runtime else {}), **(deps.runtime.cache_env if deps else {}),
           **app.env, "PORT": str(service.port), **dict(service.env)}
    mounts = app.mounts + (((deps.volume, deps.runtime.app_mount, False),) if deps else ())
    return replace(app, env=env, mounts=mounts, workdir=APP_DIR, user=user, cap_drop=("ALL",), no_new_privileges=True)


def install_container(project: str, service: ServiceSpec, deps: DependencyCache, image: str, *, user: str,
                      network: str | None, ca_bundle: Path | None) -> ContainerSpec:
    """The one-shot container that installs a run-mode app's dependencies into their cache volume:
    the source read-only at /app, the volume where the runtime's installer writes, the network of
    builds (MESHCTL_BUILD_NETWORK), and a CA bundle the machine's TLS goes through if one is set
    (MESHCTL_INSTALL_CA: a TLS-inspecting proxy)."""
    assert service.source is not None
    runtime = deps.runtime
    env = {**runtime.env, **runtime.cache_env}
    mounts = [(str(service.source), APP_DIR, True), (deps.volume, runtime.install_mount, False)]
    if ca_bundle is not None:
        mounts.append((str(ca_bundle), INSTALL_CA, True))
        env.update(dict.fromkeys(("PIP_CERT", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "GIT_SSL_CAINFO"), INSTALL_CA))
    return ContainerSpec(
        name=container_name(project, service.name, INSTALL), image=image,
        labels=labels(project, service.name, INSTALL, deps_hash=deps.digest), entrypoint=("sh", "-c"),
        command=(runtime.install,), env=env, user=user, workdir=APP_DIR, network=network, mounts=tuple(mounts),
        cap_drop=("ALL",), no_new_privileges=True, stop_timeout=2)


def sync_mounts(project: ProjectSpec, service: ServiceSpec) -> tuple[tuple[str, str, bool], ...]:
    """watch.sync as read-only bind mounts: the app sees each save at once, and cannot write
    back into the folder being watched."""
    root = service.build or project.root
    return tuple((str((root / local).resolve()), target, True) for local, target in service.watch.sync)


def _hashed(spec: ContainerSpec) -> ContainerSpec:
    """Stamp the spec's own hash into its labels: what plan.py compares with what runs."""
    body = asdict(spec)
    body["labels"] = {k: v for k, v in spec.labels.items() if k != CONFIG_HASH}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return replace(spec, labels={**spec.labels, CONFIG_HASH: digest})
