"""A stack: one project's session on the engine. Every change walks the same line: observe
(Docker by label, meshctl's files) → plan (plan.py, pure) → execute (apply.Executor). `up`,
`up -d` over a running stack, a mesh.yaml reload, a hot reload of one app, certificate renewal
and `down` are all plans; `--dry-run` stops after planning. Changes of one service run one at a
time, as do whole-project ones; two services' changes may overlap (lock.Scopes), each on an
executor of its own.
Any failure of `up` tears down what the project runs, then raises. Nothing here prints."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .apply import Executor, NullWatch, Watch
from ..certs import CertificateAuthority
from ..home import meshctl_home, probe_secret
from ..config import ProjectSpec
from ..engine.base import Engine
from ..errors import Cancelled, ConfigError, MeshctlError
from ..model import PROJECT_LABEL, selector
from ..events import OnEvent, Phase
from ..planning.images import BASE_IMAGE, build_network, sidecar_images
from ..planning.plan import (Observed, Settings, image_refs, plan_down, plan_images, plan_rebuild_app, plan_renewal,
                             plan_restart_app, plan_restart_sidecar, plan_up, pull_base_image, service_sans,
                             wanted_folders)
from ..planning.steps import IssueCertificate, Plan, RemoveContainers, RemoveNetwork, RemoveVolume
from ..sidecars import KINDS, config_roles, data_dir, tls_kind
from .lock import Scopes, project_lock
from .status import managed_containers, project_names, project_networks, project_volumes


DOWN_MARKER = ".down"     # in the project's folder while `meshctl down` removes it


@dataclass(frozen=True)
class RunningPod:
    service: str
    urls: dict[str, str]


def observe(engine: Engine, ca: CertificateAuthority, project: ProjectSpec, settings: Settings) -> Observed:
    """What the planners need to know about a project: its containers and network, which images
    are present, and the state of its rendered files and certificates."""
    refs = image_refs(project, settings)
    folders = set()
    files: dict[str, dict[str, str]] = {}
    certificates: dict[str, str | None] = {}
    project_dir = settings.project_dir(project.name)
    if project_dir.is_dir():    # every service folder, so those of removed services can go
        folders |= {str(p) for p in project_dir.iterdir() if p.is_dir()}
    mounted = wanted_folders(project, settings)
    for service in project.services:
        state_dir = settings.state_dir(project.name, service.name)
        folders |= {str(state_dir / role) for role in config_roles() if (state_dir / role).is_dir()}
        for folder in mounted[service.name]:
            files[str(folder)] = _read_texts(folder)
        serving = tls_kind(service)
        if serving is not None:
            folder = state_dir / serving.role
            certificates[str(folder)] = ca.reissue_reason(folder, service_sans(service))
    return Observed(containers=tuple(managed_containers(engine, project.name)),
                    networks=frozenset(project_networks(engine, project.name)),
                    images=present_images(engine, refs),
                    ca_exists=ca.ready(), certificates=certificates, files=files,
                    folders=frozenset(folders), volumes=frozenset(project_volumes(engine, project.name)))


def present_images(engine: Engine, refs: Iterable[str]) -> dict[str, str]:
    """ref → image ID of those that are here."""
    refs = sorted(set(refs))
    with ThreadPoolExecutor(max_workers=len(refs) or 1) as pool:     # one round trip's time, not five
        ids = dict(zip(refs, pool.map(engine.image_id, refs), strict=True))
    return {ref: image_id for ref, image_id in ids.items() if image_id is not None}


def _read_texts(folder: Path) -> dict[str, str]:
    out = {}
    try:
        for path in folder.iterdir():
            if path.is_file() and path.suffix in (".cfg", ".sh", ".json", ".map", ".lua"):   # rendered, not keys
                out[path.name] = path.read_text(encoding="utf-8")
    except OSError:
        pass
    return out


def default_settings(home: Path, *, tied: bool, wait_serving: bool = True) -> Settings:
    install_ca = os.environ.get("MESHCTL_INSTALL_CA")
    return Settings(home=home, user=f"{os.getuid()}:{os.getgid()}", tied=tied,
                    sidecar_images=sidecar_images(), wait_serving=wait_serving, build_network=build_network(),
                    install_ca=Path(install_ca).resolve() if install_ca else None, probe_secret=probe_secret(home))


def plan_offline(project: ProjectSpec, home: Path | None = None) -> Plan:
    """The plan against an engine that has nothing: every check that needs no engine (each
    sidecar's config rendered, every image named), for `meshctl validate` and before a dry run
    asks the engine. Reads no engine and writes nothing."""
    return plan_up(project, Observed(), default_settings(home or meshctl_home(), tied=False), data_dir("sidecars"))


class Stack:
    def __init__(self, engine: Engine, project: ProjectSpec, *, on_event: OnEvent, tied: bool,
                 watch: Watch | None = None, home: Path | None = None, ready_timeout: float = 60.0,
                 wait_serving: bool = True, cancel: threading.Event | None = None,
                 force: threading.Event | None = None, prober: Callable[..., Any] | None = None):
        self.engine = engine
        self.project = project
        self.on_event = on_event
        self.home = home or meshctl_home()
        self.ca = CertificateAuthority(self.home)
        self.settings = default_settings(self.home, tied=tied, wait_serving=wait_serving)
        self.watch = watch or NullWatch()
        self.cancel = cancel or threading.Event()      # set by a signal: waits and builds stop
        self.force = force or threading.Event()        # set by a second signal: kill at once
        self.ready_timeout = ready_timeout
        self.prober = prober
        self.ties: list[Any] = []      # every tied holder's stdin, whichever change started it
        self._scopes = Scopes()        # which changes may overlap in this process…
        self._lock = project_lock(self.home, project.name)     # …and one command at a time (lock.py)

    def executor(self) -> Executor:
        """A fresh one per change: its per-run state (gates, a failed pod, restarts in progress)
        is then never shared by two changes running at once."""
        return Executor(self.engine, self.ca, on_event=self.on_event, watch=self.watch, cancel=self.cancel,
                        ready_timeout=self.ready_timeout, prober=self.prober, ties=self.ties)

    @contextmanager
    def _changing(self, service: str | None = None) -> Iterator[Executor]:
        """A change of one service (`service`) or of the whole project (None), with its executor."""
        scope = self._scopes.whole() if service is None else self._scopes.service(service)
        with scope, self._lock.held():
            yield self.executor()

    def observe(self, project: ProjectSpec | None = None) -> Observed:
        return observe(self.engine, self.ca, project or self.project, self.settings)

    # -- up -------------------------------------------------------------------------------------

    def plan_up(self, project: ProjectSpec | None = None) -> Plan:
        project = project or self.project
        return plan_up(project, self.observe(project), self.settings, data_dir("sidecars"))

    def _apply_up(self, executor: Executor, project: ProjectSpec, plan: Plan) -> dict[str, dict[str, str]]:
        """Images first, then the containers planned again against what was built (Compose's order
        too): a rebuilt app keeps its tag, and only its new image ID shows the running one is stale.
        The project's network is made while the images build; the second plan (which would take a
        network with no container yet for one a killed meshctl left) keeps it."""
        images, rest = plan.split_images()
        if images.steps:
            network, _ = rest.split_network()
            executor.run(images, beside=network.steps)
            _, rest = self.plan_up(project).split_images()
            if network.steps:
                _, rest = rest.split_network()
        return executor.run(rest)

    def up(self) -> list[RunningPod]:
        """Start (or converge) the project; another command changing it is waited for briefly,
        then ProjectBusy (nothing of its is touched)."""
        with self._changing() as executor:
            if not self.settings.probe_secret:
                self.settings = replace(self.settings, probe_secret=probe_secret(self.home, create=True))
            plan = self.plan_up()     # observing and planning start nothing: no teardown if they fail
            try:
                urls = self._apply_up(executor, self.project, plan)
                return [RunningPod(s.name, urls.get(s.name, {})) for s in self.project.services]
            except BaseException as exc:
                self.on_event(Phase(("interrupted" if _is_cancel(exc) else "start failed")
                                    + ": removing what was started"))
                self.teardown()
                raise

    # -- changes to a running stack ---------------------------------------------------------------

    def converge(self, project: ProjectSpec) -> None:
        """Apply a changed mesh.yaml to the running stack: sidecar configs re-rendered and reloaded
        in place, containers recreated only where their settings changed, pods of removed
        services removed, new ones started."""
        if project.name != self.project.name:
            where = f"{project.source}: " if project.source else ""
            raise ConfigError(f"{where}name: changed from {self.project.name!r} to {project.name!r} while the stack runs",
                              hint=f"set name back to {self.project.name!r}, or stop meshctl (Ctrl-C) and run "
                                   "`meshctl up` again to start the project under its new name")
        with self._changing() as executor:
            plan = self.plan_up(project)     # a plan that cannot be made changes nothing
            self.project = project
            self._apply_up(executor, project, plan)

    def restart_app(self, service: str) -> None:
        with self._changing(service) as executor:
            executor.run(plan_restart_app(self.project, service, self.observe(), self.settings))

    def restart_sidecar(self, service: str, role: str) -> None:
        with self._changing(service) as executor:
            executor.run(plan_restart_sidecar(self.project, service, role, self.observe(), self.settings))

    def rebuild_pod(self, service: str) -> None:
        """Its holder is gone and with it the namespace: every container of the pod anew. Only
        that pod: another pod's sidecar that exited meanwhile is restarted in place by its own
        supervision, not converged here (which would restart its app too)."""
        with self._changing(service) as executor:
            _, rest = self.plan_up().split_images()
            executor.run(rest.only(service))

    def removed_elsewhere(self) -> bool:
        """`meshctl down` from another shell is taking (or took) this stack away."""
        project_dir = self.settings.project_dir(self.project.name)
        return (project_dir / DOWN_MARKER).exists() or not project_dir.is_dir()

    def rebuild_app(self, service: str) -> None:
        with self._changing(service) as executor:
            executor.run(plan_rebuild_app(self.project, service, self.observe(), self.settings))

    def renew_certificates(self) -> list[str]:
        """Re-issue leaf certificates that near expiry; reload the sidecars that serve them."""
        with self._changing() as executor:
            plan = plan_renewal(self.project, self.observe(), self.settings)
            executor.run(plan)
            return [step.common_name for step in plan.steps if isinstance(step, IssueCertificate)]

    # -- down -----------------------------------------------------------------------------------

    def teardown(self, tick: Callable[[], None] = lambda: None) -> None:
        """A graceful `down` in the background; the force Event (a second Ctrl-C) switches to
        killing everything. `tick` runs meanwhile (the supervisor shows the apps' last words)."""
        def down() -> None:
            try:
                self.down()
            except MeshctlError as exc:    # reported; the error that led here stays the news
                self.on_event(Phase(f"could not remove everything: {exc.message}"))

        worker = threading.Thread(target=down, name="teardown")
        worker.start()
        while worker.is_alive():
            worker.join(0.05)
            tick()
            if self.force.is_set():
                self.on_event(Phase("forced: killing every container now"))
                self.down(force=True)
                break
        worker.join(15)
        tick()

    def down(self, *, force: bool = False) -> Removed:
        # The ties close last: closing one kills its whole pod at once, skipping the app's grace.
        try:
            return down_project(self.engine, self.project.name, force=force, home=self.home, watch=self.watch)
        finally:
            for tie in self.ties:
                _close_quietly(tie)
            self.ties.clear()


def _is_cancel(exc: BaseException) -> bool:
    return isinstance(exc, (Cancelled, KeyboardInterrupt))


def _close_quietly(sock) -> None:
    with suppress(OSError):
        sock.close()
    raw = getattr(sock, "_sock", None)
    if raw is not None:
        with suppress(OSError):
            raw.close()


# ---------------------------------------------------------------------------------------------
# Taking stacks down, by label


def state_dir_of(home: Path, project: str) -> Path | None:
    """The project's rendered configs and leaf keys; None for a name that is not a plain one."""
    projects = home / "projects"
    state = projects / project
    return state if state.parent.resolve() == projects.resolve() else None


def plan_down_project(engine: Engine, project: str, *, force: bool = False, home: Path | None = None,
                      volumes: bool = False) -> Plan:
    state = state_dir_of(home or meshctl_home(), project)
    observed = Observed(containers=tuple(managed_containers(engine, project)),
                        networks=frozenset(project_networks(engine, project)),
                        folders=frozenset({str(state)} if state is not None and state.is_dir() else set()),
                        volumes=frozenset(project_volumes(engine, project) if volumes else ()))
    return plan_down(project, observed, state, force=force, volumes=volumes)


@dataclass(frozen=True)
class Removed:
    containers: int
    networks: tuple[str, ...]
    volumes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.containers or self.networks or self.volumes)

    def summary(self) -> str:
        parts = [f"{self.containers} containers"] if self.containers else []
        if self.networks:
            left = "" if self.containers else " (left by a meshctl that was killed)"
            parts.append(f"network {', '.join(self.networks)}{left}")
        if self.volumes:
            parts.append(f"{len(self.volumes)} dependency cache volume" + ("s" if len(self.volumes) > 1 else ""))
        return "removed " + " and ".join(parts) if parts else "nothing was running"


def down_project(engine: Engine, project: str, *, force: bool = False, home: Path | None = None,
                 watch: Watch | None = None, volumes: bool = False) -> Removed:
    """Remove every container and the network of a project (a network without containers too: a
    SIGKILLed meshctl leaves one, and Docker's address pools hold only about 30), then its
    rendered configs and leaf keys (the CA stays)."""
    home = home or meshctl_home()
    with project_lock(home, project).held():
        plan = plan_down_project(engine, project, force=force, home=home, volumes=volumes)
        state = state_dir_of(home, project)
        if state is not None and state.is_dir() and plan.changes:
            # A foreground `up` of this project sees its pods go: this tells it why (see removed_elsewhere).
            (state / DOWN_MARKER).touch()
        Executor(engine, CertificateAuthority(home), on_event=lambda event: None, watch=watch).run(plan)
    return Removed(sum(len(s.containers) for s in plan.steps if isinstance(s, RemoveContainers)),
                   tuple(s.name for s in plan.steps if isinstance(s, RemoveNetwork)),
                   tuple(s.name for s in plan.steps if isinstance(s, RemoveVolume)))


def down_all(engine: Engine, *, force: bool = False, volumes: bool = False) -> dict[str, Removed]:
    """Every project that has a container or a network of meshctl's (and, with `volumes`, a
    dependency cache)."""
    names = set(project_names(engine))
    if volumes:
        names |= {v.get("Labels", {}).get(PROJECT_LABEL, "") for v in engine.volumes(selector())}
    return {name: down_project(engine, name, force=force, volumes=volumes) for name in sorted(names) if name}


def ensure_sidecar_images(engine: Engine, roles: tuple[str, ...], on_event: OnEvent) -> dict[str, str]:
    """Build the sidecar images the roles need, only when their content-hash tag is missing;
    role → image reference."""
    folders = {KINDS[r].image for r in roles}
    refs = sidecar_images(folders)
    observed = Observed(images=present_images(engine, [*refs.values(), BASE_IMAGE]))
    plan = Plan("", tuple(plan_images(folders, observed, refs, data_dir("sidecars"))))
    Executor(engine, CertificateAuthority(meshctl_home()), on_event=on_event).run(plan)
    return {role: refs[KINDS[role].image] for role in roles}


def ensure_base_image(engine: Engine) -> None:
    """The base image the sidecar images build FROM: pulled when missing (or a clear error)."""
    steps = () if engine.image_id(BASE_IMAGE) is not None else (pull_base_image(),)
    Executor(engine, CertificateAuthority(meshctl_home()), on_event=lambda event: None).run(Plan("", steps))
