"""Apply: turn a ProjectSpec into running pods, wait until they serve, and take them down.

The flow for `up`: images → CA and rendered configs → network → per pod: plan, remove what is
stale, create holder, sidecars (wait until each answers), app (wait until a request through
HTTPS → proxy → app succeeds). Any failure tears down what this project runs, then raises.
Progress goes out as events; nothing here prints."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._docker import ContainerInfo, ContainerSpec, Engine
from .certs import CertificateAuthority, atomic_write, default_sans, meshctl_home
from .checks import http_probe, tls_context, tls_probe, wait_for
from .config import ROLES, ProjectSpec, ServiceSpec
from .errors import MeshctlError, StartError
from .images import BuildEvent, build_app_image, ensure_app_images, ensure_sidecar_images
from .pod import APP, HOLDER, Pod, build_pod, labels, network_name
from .plan import plan_pod, stop_phases
from .sidecars import READY_PATH, chain_of, published_ports, render_configs

LOG_TAIL = 50


# ---------------------------------------------------------------------------------------------
# Events (rendered by ui.py)


@dataclass(frozen=True)
class Phase:
    text: str


@dataclass(frozen=True)
class LogLine:
    service: str
    role: str
    line: str


@dataclass(frozen=True)
class Exited:
    service: str
    role: str
    code: int | None
    tail: tuple[str, ...] = ()     # its last log lines, when the supervisor reports it


@dataclass(frozen=True)
class PodReady:
    service: str
    urls: dict[str, str]
    seconds: float
    serving: bool = True          # False: started, but `--no-wait` did not wait for it to serve


Event = Any
OnEvent = Callable[[Event], None]


# ---------------------------------------------------------------------------------------------
# Tracking running containers: their logs and their exit


@dataclass
class Tracked:
    service: str
    role: str
    id: str
    name: str
    tail: deque = field(default_factory=lambda: deque(maxlen=LOG_TAIL))
    exited: threading.Event = field(default_factory=threading.Event)
    code: int | None = None
    expected: bool = False      # meshctl is stopping or replacing it: its exit is no news

    def last_lines(self, n: int = 20) -> str:
        return "\n".join(f"{self.role} | {line}" for line in list(self.tail)[-n:])


class Tracker:
    """Streams every started container's logs into a tail (and the event queue) and watches for
    its exit. The queue is what the foreground supervisor reads."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.queue: queue.Queue = queue.Queue()
        self.containers: dict[str, Tracked] = {}
        self._lock = threading.Lock()

    def watch(self, service: str, role: str, container_id: str, name: str, *, expected: bool = False) -> Tracked:
        """Call before the container starts, so an immediate exit is still seen."""
        tracked = Tracked(service, role, container_id, name, expected=expected)
        result = self.engine.watch_exit(container_id)
        with self._lock:
            self.containers[name] = tracked

        def wait() -> None:
            tracked.code = result()
            tracked.exited.set()
            if not tracked.expected:
                self.queue.put(Exited(service, role, tracked.code))

        threading.Thread(target=wait, name=f"exit-{name}", daemon=True).start()
        return tracked

    def expect_exit(self, names: list[str]) -> None:
        with self._lock:
            for name in names:
                if name in self.containers:
                    self.containers[name].expected = True

    def follow_logs(self, tracked: Tracked, since: float | None = None) -> None:
        def pump() -> None:
            for line in self.engine.logs(tracked.id, follow=True, since=since):
                tracked.tail.append(line)
                self.queue.put(LogLine(tracked.service, tracked.role, line))

        threading.Thread(target=pump, name=f"logs-{tracked.name}", daemon=True).start()

    def find(self, service: str, role: str) -> Tracked | None:
        with self._lock:
            return next((t for t in self.containers.values() if t.service == service and t.role == role), None)

    def of_service(self, service: str) -> list[Tracked]:
        with self._lock:
            return [t for t in self.containers.values() if t.service == service]


# ---------------------------------------------------------------------------------------------
# The stack


@dataclass(frozen=True)
class RunningPod:
    pod: Pod
    urls: dict[str, str]


class Stack:
    def __init__(self, engine: Engine, project: ProjectSpec, *, on_event: OnEvent, tied: bool,
                 home: Path | None = None, ready_timeout: float = 60.0, wait_serving: bool = True):
        self.engine = engine
        self.project = project
        self.on_event = on_event
        self.tied = tied
        self.home = home or meshctl_home()
        self.ready_timeout = ready_timeout
        self.wait_until_serving = wait_serving
        self.ca = CertificateAuthority(self.home)
        self.tracker = Tracker(engine)
        self.stop_requested = threading.Event()   # one pod failed or Ctrl-C: the others stop waiting
        # Attached: the sockets that hold each holder's stdin. Closing them (or dying) ends the pod.
        self._ties: list[Any] = []
        self.pods: dict[str, Pod] = {}     # service → the pod as last applied

    # -- up -------------------------------------------------------------------------------------

    def up(self) -> list[RunningPod]:
        try:
            pods = self.prepare()
            self.engine.ensure_network(network_name(self.project.name), labels(self.project.name))
            observed = managed_containers(self.engine, self.project.name)
            if len(pods) == 1:
                return [self._up_pod(pods[0], observed)]
            with ThreadPoolExecutor(max_workers=len(pods)) as pool:
                futures = [pool.submit(self._up_pod, pod, observed) for pod in pods]
                try:
                    return [future.result() for future in futures]
                except BaseException:
                    self.stop_requested.set()   # the other pods' waits give up at their next poll
                    raise
        except BaseException:
            self.on_event(Phase("start failed: removing what was started"))
            self.down(force=False)
            raise

    def prepare(self) -> list[Pod]:
        """Images, the CA, certificates and rendered configs: everything before containers."""
        services = list(self.project.services)
        on_build: Callable[[BuildEvent], None] = self.on_event
        roles = tuple(sorted({r for s in services for r in s.roles}))
        sidecar_images = ensure_sidecar_images(self.engine, roles, on_build) if roles else {}
        app_images = ensure_app_images(self.engine, self.project, on_build, services)
        self.ca.ensure()
        user = f"{os.getuid()}:{os.getgid()}"
        pods = []
        for service in services:
            state_dir = self.home / "projects" / self.project.name / service.name
            digests = self.write_configs(service, state_dir)
            pod = build_pod(self.project, service, app_image=app_images[service.name],
                            sidecar_images={r: sidecar_images[r] for r in service.roles},
                            state_dir=state_dir, tied=self.tied, user=user, files_digest=digests)
            pods.append(pod)
        return pods

    def write_configs(self, service: ServiceSpec, state_dir: Path) -> dict[str, str]:
        """Render each sidecar's config (and the TLS certificate) into its folder; return
        role → digest of the folder's files, so a change can be reloaded in place."""
        digests = {}
        rendered_configs = render_configs(self.project.name, service)
        # A role that no longer has a container (the tls sidecar, once the proxy served HTTPS) leaves
        # no config behind, and no private key.
        for stale in set(ROLES) - {r.role for r in rendered_configs}:
            shutil.rmtree(state_dir / stale, ignore_errors=True)
        for rendered in rendered_configs:
            folder = state_dir / rendered.role
            for filename, text in rendered.files.items():
                atomic_write(folder / filename, text.encode(), mode=0o644)
            if rendered.role == service.tls_terminator:
                self.ca.issue(folder, default_sans(service.name, service.tls.hosts), common_name=service.name)
            digests[rendered.role] = _digest_files(folder)
        return digests

    def _up_pod(self, pod: Pod, observed: list[ContainerInfo]) -> RunningPod:
        started = time.monotonic()
        self.pods[pod.service.name] = pod
        plan = plan_pod(pod, observed)
        self._remove(list(plan.remove))
        for current in plan.reload:
            self.on_event(Phase(f"{pod.service.name}: reloading the {current.label('role')} sidecar's config"))
            self.engine.signal(current.id, "SIGUSR2")   # HAProxy's master reloads without dropping connections
        if not plan.create:
            urls = urls_for(self.host_ports(pod))
            self.on_event(PodReady(pod.service.name, urls, time.monotonic() - started))
            return RunningPod(pod, urls)
        self.on_event(Phase(f"{pod.service.name}: starting {', '.join(_role(s) for s in plan.create)}"))
        creating = {_role(s): s for s in plan.create}
        if HOLDER in creating:
            self._start(pod, creating[HOLDER])
        sidecars = [s for s in plan.create if _role(s) not in (HOLDER, APP)]
        if sidecars:
            with ThreadPoolExecutor(max_workers=len(sidecars)) as pool:
                list(pool.map(lambda s: self._start(pod, s), sidecars))
        ports = self.host_ports(pod)
        urls = urls_for(ports)
        context = tls_context(self.ca.cert_path)
        # The app gets traffic only once its sidecars answer (Linkerd's proxy-await).
        for spec in sidecars:
            role = _role(spec)
            # The proxy answers its readiness path itself, over HTTPS when it terminates TLS.
            probe = {"proxy": lambda: (http_probe(ports["https"], READY_PATH, tls=context)
                                       if pod.service.tls_terminator == "proxy" else http_probe(ports["http"], READY_PATH)),
                     "tls": lambda: tls_probe(ports["https"], context),
                     "metrics": lambda: http_probe(ports["metrics"], "/ready")}[role]()
            wait_for(f"the {role} sidecar of {pod.service.name}", probe, timeout=self.ready_timeout,
                     abort=self._abort_check(pod))
        if APP in creating:
            self._start(pod, creating[APP])
        if self.wait_until_serving:
            self.wait_serving(pod, ports, context)
        self.on_event(PodReady(pod.service.name, urls, time.monotonic() - started, self.wait_until_serving))
        return RunningPod(pod, urls)

    def wait_serving(self, pod: Pod, ports: dict[str, int], context) -> None:
        """Ready = the health path answers through the whole chain: proxy (HTTPS) → app."""
        service = pod.service
        explicit = service.health != "/"
        # An explicit health path must answer 2xx; the default "/" only has to answer below 500.
        accept = (lambda s: 200 <= s < 300) if explicit else (lambda s: s < 500)
        if "https" in ports:
            probe = http_probe(ports["https"], service.health, tls=context, accept=accept)
        else:
            probe = http_probe(ports["http"], service.health, accept=accept)
        wait_for(f"{service.name} ({service.health} through {chain_of(service)})",
                 probe, timeout=self.ready_timeout, abort=self._abort_check(pod),
                 hint=f"the app must answer {service.health} on port {service.port} inside the pod; "
                      "check services.{0}.port and .health in mesh.yaml, or raise --timeout".format(service.name))

    def _start(self, pod: Pod, spec: ContainerSpec, *, expected: bool = False) -> None:
        """Create, watch, start. `expected`: its exit is not news (a reload is waiting for it)."""
        role = _role(spec)
        container_id = self.engine.create(spec)
        tracked = self.tracker.watch(pod.service.name, role, container_id, spec.name, expected=expected)
        if spec.tied_to_caller:
            self._ties.append(self.engine.attach_stdin(container_id))
        self.engine.start(container_id, name=spec.name, port_hints=pod.port_hints())
        if role != HOLDER:
            self.tracker.follow_logs(tracked)

    def _abort_check(self, pod: Pod) -> Callable[[], None]:
        def check() -> None:
            if self.stop_requested.is_set():
                raise KeyboardInterrupt
            for tracked in self.tracker.of_service(pod.service.name):
                if tracked.exited.is_set() and (not tracked.expected or tracked.role == APP):
                    time.sleep(0.1)  # let the log pump catch the last lines
                    what = "the app" if tracked.role == APP else f"the {tracked.role} sidecar"
                    raise StartError(f"{pod.service.name}: {what} exited with code {tracked.code} before it was ready",
                                     hint="its last log lines are above" if tracked.tail else
                                     "it printed nothing; check the image's command and the port",
                                     details=tracked.last_lines())
        return check

    def host_ports(self, pod: Pod) -> dict[str, int]:
        """Port name (https, http, metrics) → the host port Docker bound for it."""
        return host_ports_by_name(published_ports(pod.service), self.engine.published_ports(pod.holder.name))

    def _remove(self, containers: list[ContainerInfo]) -> None:
        self.tracker.expect_exit([c.name for c in containers])
        stop_containers(self.engine, containers)

    # -- hot reload -----------------------------------------------------------------------------

    def converge(self, project: ProjectSpec) -> None:
        """Apply a changed mesh.yaml to the running stack: sidecar configs re-rendered and reloaded
        in place, containers recreated only where their settings changed, pods of removed
        services removed, new ones started."""
        self.project = project
        pods = self.prepare()
        observed = managed_containers(self.engine, project.name)
        wanted = {p.service.name for p in pods}
        self._remove([c for c in observed if c.label("service") not in wanted])
        for name in [n for n in self.pods if n not in wanted]:
            del self.pods[name]
        for pod in pods:
            self._up_pod(pod, observed)

    def restart_app(self, service: str) -> None:
        """Sync mode: the new source is already mounted; restart the app container in place
        (holder and sidecars stay) and wait until it serves through the chain again."""
        pod = self.pods[service]
        tracked = self.tracker.find(service, APP)
        if tracked is not None and not tracked.exited.is_set():
            tracked.expected = True
            self.engine.restart(tracked.id, timeout=pod.service.stop_grace_period)
            # The old stream ended with the stop and delivered its last lines; from here on, new ones.
            self.tracker.follow_logs(tracked, since=time.time())
        else:
            self._start(pod, pod.app, expected=True)    # the last version crashed: start afresh
        self._wait_app(pod)

    def rebuild_app(self, service: str) -> None:
        """Rebuild mode: build first (a failed build leaves the running app alone), then replace
        the app container; holder and sidecars stay."""
        pod = self.pods[service]
        build_app_image(self.engine, self.project.name, pod.service, self.on_event)
        self._remove(managed_containers(self.engine, self.project.name, service=service, role=APP))
        self._start(pod, pod.app, expected=True)
        self._wait_app(pod)

    def _wait_app(self, pod: Pod) -> None:
        """Until the reloaded app serves, its exit is the reload's failure (reported by the
        reloader), not news for the supervisor; once it serves, an exit is news again."""
        self.wait_serving(pod, self.host_ports(pod), tls_context(self.ca.cert_path))
        tracked = self.tracker.find(pod.service.name, APP)
        if tracked is not None:
            tracked.expected = False

    def renew_certificates(self) -> list[str]:
        """Re-issue leaf certificates that near expiry; reload the sidecars that serve them."""
        renewed = []
        for name, pod in self.pods.items():
            role = pod.service.tls_terminator
            if role is None:
                continue
            issued = self.ca.issue(pod.config_dirs[role], default_sans(name, pod.service.tls.hosts),
                                   common_name=name)
            if issued.reissued:
                for c in managed_containers(self.engine, self.project.name, service=name, role=role):
                    self.engine.signal(c.id, "SIGUSR2")
                renewed.append(name)
        return renewed

    # -- down -----------------------------------------------------------------------------------

    def down(self, *, force: bool = False) -> int:
        # The ties close last: closing one kills its whole pod at once, skipping the app's grace.
        try:
            return down_project(self.engine, self.project.name, force=force, home=self.home)
        finally:
            for tie in self._ties:
                _close_quietly(tie)
            self._ties.clear()


def host_ports_by_name(named_ports: dict[str, int], bound: dict[int, int]) -> dict[str, int]:
    """Port name → pod port, and pod port → host port: port name → host port."""
    return {name: bound[int(pod_port)] for name, pod_port in named_ports.items() if bound.get(int(pod_port))}


def urls_for(ports: dict[str, int]) -> dict[str, str]:
    return {name: ("https" if name == "https" else "http") + f"://localhost:{port}"
            + ("/metrics" if name == "metrics" else "/") for name, port in ports.items()}


def _digest_files(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _role(spec: ContainerSpec) -> str:
    return spec.labels["meshctl.role"]


def _close_quietly(sock: Any) -> None:
    try:
        sock.close()
    except OSError:
        pass
    raw = getattr(sock, "_sock", None)
    if raw is not None:
        try:
            raw.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# Taking stacks down, by label


def managed_containers(engine: Engine, project: str | None = None, **labels: str) -> list[ContainerInfo]:
    """Containers of meshctl's own stacks. Sidecars that `meshctl inject` wrote into a compose
    file carry meshctl.* labels too (meshctl.source=compose), but compose owns them: `down`, `ps`
    and plans leave them alone."""
    wanted = {"meshctl.project": project or "", **{f"meshctl.{k}": v for k, v in labels.items()}}
    return [c for c in engine.containers(wanted) if c.label("source") != "compose"]


def stop_containers(engine: Engine, containers: list[ContainerInfo], *, force: bool = False) -> None:
    """Apps first (SIGTERM, their grace period, then SIGKILL), then sidecars, then holders; each
    group in parallel. `force` kills everything at once."""
    if not containers:
        return

    def stop(c: ContainerInfo) -> None:
        try:
            if force or c.label("role") == HOLDER:
                engine.remove(c.id)
            else:
                engine.stop(c.id, timeout=None)   # None: the grace period set when it was created
                engine.wait_removed(c.id)
        except MeshctlError:
            engine.remove(c.id)

    for phase in [containers] if force else stop_phases(containers):
        with ThreadPoolExecutor(max_workers=len(phase)) as pool:
            list(pool.map(stop, phase))


def down_project(engine: Engine, project: str, *, force: bool = False, home: Path | None = None) -> int:
    """Remove every container and the network of a project, then its rendered configs and leaf
    keys (the CA stays: it is what users trust); return how many containers."""
    containers = managed_containers(engine, project)
    stop_containers(engine, containers, force=force)
    for net in engine.networks({"meshctl.project": project}):
        for _ in range(20):
            if engine.remove_network(net["Name"]):
                break
            time.sleep(0.1)
    projects = (home or meshctl_home()) / "projects"
    state = projects / project
    if state.parent.resolve() == projects.resolve():    # a plain name, never a path out of it
        shutil.rmtree(state, ignore_errors=True)
    return len(containers)


def project_names(engine: Engine) -> list[str]:
    names = {c.label("project") for c in managed_containers(engine)}
    names |= {n.get("Labels", {}).get("meshctl.project", "") for n in engine.networks({"meshctl.project": ""})}
    return sorted(n for n in names if n)


def down_all(engine: Engine, *, force: bool = False) -> dict[str, int]:
    return {name: down_project(engine, name, force=force) for name in project_names(engine)}


# ---------------------------------------------------------------------------------------------
# What runs: `meshctl ps`


@dataclass(frozen=True)
class ServiceStatus:
    project: str
    service: str
    state: str
    urls: dict[str, str]
    containers: list[dict[str, str]]

    def as_json(self) -> dict[str, Any]:
        return {"project": self.project, "service": self.service, "state": self.state,
                "urls": {k: self.urls.get(k) for k in ("https", "http", "metrics")},
                "containers": self.containers}


def status(engine: Engine, project: str | None = None) -> list[ServiceStatus]:
    found = managed_containers(engine, project)
    groups: dict[tuple[str, str], list[ContainerInfo]] = {}
    for c in found:
        groups.setdefault((c.label("project"), c.label("service")), []).append(c)
    out = []
    for (proj, service), members in sorted(groups.items()):
        holder = next((c for c in members if c.label("role") == HOLDER), None)
        urls: dict[str, str] = {}
        if holder is not None:
            try:
                urls = urls_for(host_ports_by_name(json.loads(holder.label("ports") or "{}"), holder.ports))
            except ValueError:
                pass
        states = {c.state for c in members}
        state = "running" if states == {"running"} and holder is not None else \
            ("stopped" if "running" not in states else "degraded")
        rank = {HOLDER: 0, "metrics": 1, "proxy": 2, "tls": 3, APP: 4}
        containers = [{"name": c.name, "role": c.label("role"), "state": c.state}
                      for c in sorted(members, key=lambda c: rank.get(c.label("role"), 9))]
        out.append(ServiceStatus(proj, service, state, urls, containers))
    return out
