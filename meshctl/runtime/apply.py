"""The executor: runs a Plan's steps against an Engine and decides nothing (Compose v2's
convergence executor: the plan says what and in which order; this does it). Each step is one
job; a project's own steps run in order, then its pods in parallel (another pod's failure makes
the others stop at their next wait). Progress goes out as events; nothing here prints.

What happens to the containers it starts (their logs, their exit) is the business of a Watch:
supervise.Tracker in a real run, NullWatch where nobody listens (`down`)."""

from __future__ import annotations

import functools
import shutil
from dataclasses import replace
import threading
import time
from collections.abc import Callable
from pathlib import Path
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, as_completed, wait
from typing import Any, cast

from ..certs import CertificateAuthority
from ..home import atomic_write
from .gates import Gates
from .oneshot import cancellable, one_shot
from .probes import Probe, exec_probe, probe_for, wait_for
from ..engine.base import Engine
from ..errors import BuildError, Cancelled, EngineError, MeshctlError, StartError
from ..events import BuildEvent, LogLine, OnEvent, Phase, PodReady
from ..planning.images import build_network
from ..model import APP, HOLDER, ContainerInfo, ContainerSpec, selector
from ..planning.steps import (Announce, AwaitServices, BuildImage, EnsureCA, EnsureNetwork, InstallDependencies, IssueCertificate,
                              Keep, Plan, PullImage, RemoveContainers, RemoveFolder, RemoveNetwork, RemoveVolume,
                              RestartContainer, RunOnce, SignalReload, StartContainers, Step, WaitReady, WriteFiles,
                              joining_next)
from ..sidecars import Readiness
from .urls import host_ports_by_name, urls_for
from .watch import NullWatch, Watch


REPLACE_BACKOFF = (0.2, 0.5, 1.0)   # pauses between attempts at replacing a container lost in a restart
KILLED = 137      # 128 + SIGKILL: what a container removed by force while it ran exits with


class Executor:
    """One change's worth of state (a failed pod, the depends_on gates, apps restarted but not yet
    serving, the URLs announced): runs are one after the other on one executor, never at once.
    Changes that may overlap (two services' reloads) each get their own (Stack.executor)."""

    def __init__(self, engine: Engine, ca: CertificateAuthority, *, on_event: OnEvent,
                 watch: Watch | None = None, cancel: threading.Event | None = None, ready_timeout: float = 60.0,
                 prober: Callable[[Readiness, int, Path], Probe] | None = None, ties: list[Any] | None = None):
        self.engine = engine
        self.ca = ca
        self.on_event = on_event
        self.watch = watch or NullWatch()
        self.cancel = cancel or threading.Event()
        self.ready_timeout = ready_timeout
        # Readiness goes over the network to the published ports; the unit tier passes its own.
        self.prober = prober or probe_for
        # The sockets that hold each tied holder's stdin. Closing them (or dying) ends the pod. They
        # outlive the change that opened them: the stack passes its own list to each executor.
        self.ties: list[Any] = [] if ties is None else ties
        self._pod_failed = threading.Event()    # one pod failed: the others stop waiting
        self._handlers: dict[type, Callable[[Any, str | None], object]] = {
            EnsureNetwork: self._ensure_network, PullImage: self._pull, BuildImage: self._build,
            EnsureCA: lambda step, service: self.ca.ensure(), WriteFiles: self._write,
            RemoveFolder: lambda step, service: shutil.rmtree(step.folder, ignore_errors=True),
            IssueCertificate: self._issue, RemoveContainers: self._remove, StartContainers: self._start,
            RunOnce: self._run_once, RestartContainer: self._restart, SignalReload: self._signal,
            WaitReady: self._wait_ready,
            AwaitServices: lambda step, service: self.gates.wait(step.needs, self._raise_if_cancelled),
            Announce: self._announce, Keep: lambda step, service: None, RemoveNetwork: self._remove_network,
            InstallDependencies: self._install, RemoveVolume: self._remove_volume,
        }
        self._pod_started: dict[str, float] = {}
        self._created: dict[str, str] = {}           # container name → ID: created ahead of its start step
        self.gates = Gates()                          # depends_on: which pods' apps have started, serve
        self._restarted: dict[str, RestartContainer] = {}    # service → its app restarted in place, not serving yet
        self.network_ids: dict[str, str] = {}          # project network name → the ID this run uses
        self.urls: dict[str, dict[str, str]] = {}     # service → its URLs, as announced

    def run(self, plan: Plan, beside: tuple[Step, ...] = ()) -> dict[str, dict[str, str]]:
        """Run every step; return service → URLs of the pods announced. `beside`: project steps run
        in their order on a thread of their own meanwhile (the network, while images build)."""
        self._pod_failed.clear()
        self.gates.open_for(service for service, _steps in plan.pods)
        self._restarted.clear()
        self._created.clear()
        if beside:
            with ThreadPoolExecutor(max_workers=1) as pool:
                side = pool.submit(self._run_steps, list(beside), None)
                try:
                    self._run_steps(list(plan.steps), None)
                finally:
                    wait([side])
                side.result()
        else:
            self._run_steps(list(plan.steps), None)
        if len(plan.pods) == 1:
            service, steps = plan.pods[0]
            self._run_pod(service, steps)
        elif plan.pods:
            with ThreadPoolExecutor(max_workers=len(plan.pods)) as pool:
                futures = [pool.submit(self._run_pod, service, steps) for service, steps in plan.pods]
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
                    if any(f.exception() for f in done) or self.cancel.is_set():
                        self._pod_failed.set()
                _raise_first(futures)
        return self.urls

    def _run_pod(self, service: str, steps: tuple[Step, ...]) -> None:
        self._pod_started[service] = time.monotonic()
        self._run_steps(list(steps), service)
        self.gates.reached(service)

    def _run_steps(self, steps: list[Step], service: str | None) -> None:
        index = 0
        while index < len(steps):
            self._raise_if_cancelled()
            # Consecutive builds run together (sidecar images on a cold machine), and consecutive waits.
            if isinstance(steps[index], (BuildImage, WaitReady)):
                kind = type(steps[index])
                batch = steps[index:next((i for i in range(index + 1, len(steps)) if type(steps[i]) is not kind
                                          or getattr(steps[i], "after_those_before", False)), len(steps))]
                if kind is BuildImage:
                    self._parallel(lambda step: self._build(step, service), batch)
                else:
                    self._all_ready(cast(list[WaitReady], batch), service)
                index += len(batch)
                continue
            step = steps[index]
            if isinstance(step, StartContainers) and (then := joining_next(step, steps[index + 1:])) is not None:
                self._start(step, service, then=then)
            else:
                self._handlers[type(step)](step, service)
            index += 1

    def _raise_if_cancelled(self) -> None:
        if self.cancel.is_set() or self._pod_failed.is_set():
            raise Cancelled("interrupted")

    def _parallel(self, job: Callable[[Any], None], items: list[Any]) -> None:
        if len(items) == 1:
            job(items[0])
            return
        with ThreadPoolExecutor(max_workers=len(items)) as pool:
            for future in [pool.submit(job, item) for item in items]:
                future.result()

    def _all_ready(self, waits: list[WaitReady], service: str | None) -> None:
        """The waits at once; the first to fail stops the others at their next poll (as a pod does)."""
        with ThreadPoolExecutor(max_workers=len(waits)) as pool:
            futures = [pool.submit(self._wait_ready, wait, service) for wait in waits]
            for future in as_completed(futures):
                if future.exception() is not None:
                    self._pod_failed.set()
        _raise_first(futures)

    def _cancellable(self, job: Callable[[], Any]) -> Any:
        return cancellable(job, self._raise_if_cancelled)

    # -- the jobs --------------------------------------------------------------------------------

    def _ensure_network(self, step: EnsureNetwork, service: str | None) -> None:
        self.network_ids[step.name] = self.engine.ensure_network(step.name, step.labels)

    def _on_network(self, spec: ContainerSpec) -> ContainerSpec:
        """The spec with its project network given by ID: two networks may share the name (two
        commands created them at one moment), and Docker refuses an ambiguous name."""
        if not spec.network or spec.namespace_of:
            return spec
        network_id = self.network_ids.get(spec.network) or next(
            (n["Id"] for n in _oldest_first(self.engine.networks(selector())) if n["Name"] == spec.network), None)
        return replace(spec, network=network_id) if network_id else spec

    def _pull(self, step: PullImage, service: str | None) -> None:
        self.on_event(BuildEvent(step.ref, "start", "pulling"))
        try:
            self._cancellable(lambda: self.engine.pull(step.ref))
        except Cancelled:
            raise
        except Exception as exc:   # any failure to pull means the same thing to the user
            what = f"image {step.ref}" + (f" (services.{step.service}.image)" if step.service else "")
            detail = exc.message if isinstance(exc, MeshctlError) else str(exc)
            raise BuildError(f"{what} is not here and could not be pulled: {detail}", hint=step.hint) from exc
        self.on_event(BuildEvent(step.ref, "done"))

    def _build(self, step: BuildImage, service: str | None) -> None:
        self.on_event(BuildEvent(step.ref, "start"))
        self._cancellable(lambda: self.engine.build(
            step.context, step.ref, labels=step.labels, network_mode=build_network(),
            dockerfile=step.options.dockerfile, buildargs=dict(step.options.args), target=step.options.target,
            on_line=lambda line: self.on_event(BuildEvent(step.ref, "step", line))))
        self.on_event(BuildEvent(step.ref, "done"))

    def _write(self, step: WriteFiles, service: str | None) -> None:
        for filename, text in step.files.items():
            atomic_write(step.folder / filename, text.encode(), mode=0o644)

    def _issue(self, step: IssueCertificate, service: str | None) -> None:
        self.ca.ensure()
        self.ca.issue(step.folder, step.sans, common_name=step.common_name, unit=step.unit)

    def _remove(self, step: RemoveContainers, service: str | None) -> None:
        self.watch.stopping([c.name for c in step.containers])

        def stop(c: ContainerInfo) -> None:
            try:
                if step.force or c.role == HOLDER:
                    self.engine.remove(c.id)
                else:
                    self.engine.stop(c.id, timeout=None)   # None: the grace period set when it was created
                    self.engine.wait_removed(c.id)
            except MeshctlError:
                self.engine.remove(c.id)

        self._parallel(stop, list(step.containers))

    def _create(self, spec: ContainerSpec, step: StartContainers) -> str:
        container_id = self.engine.create(self._on_network(spec))
        self.watch.created(spec, container_id, expected=step.reloading)
        return container_id

    def _start(self, step: StartContainers, service: str | None, then: StartContainers | None = None) -> None:
        """Create and start the step's containers together. `then`: the step that starts next in
        the pod, whose containers join the holder this one starts: created while the holder starts
        (they need it to exist, not to run: Compose's create-then-start), started by their own step."""
        if service is not None and not step.reloading:
            roles = ", ".join(spec.role for spec in step.specs)
            self.on_event(Phase(f"{service}: starting {roles}"))

        def start(spec: ContainerSpec) -> None:
            container_id = self._created.pop(spec.name, None) or self._create(spec, step)
            if spec.tied_to_caller:
                self.ties.append(self.engine.attach_stdin(container_id))
            if then is not None and spec.role == HOLDER:
                with ThreadPoolExecutor(max_workers=len(then.specs)) as pool:   # (a failure: removed with the pod)
                    creating = [(s.name, pool.submit(self._create, s, then)) for s in then.specs]
                    self.engine.start(container_id, name=spec.name, port_hints=step.port_hints)
                self._created.update((name, future.result()) for name, future in creating)
            else:
                self.engine.start(container_id, name=spec.name, port_hints=step.port_hints)
            if spec.role != HOLDER:
                self.watch.started(spec, container_id)
            if spec.role == APP:
                self.gates.reached(spec.service, "started")

        self._parallel(start, list(step.specs))

    def _run_once(self, step: RunOnce, service: str | None) -> None:
        spec = step.spec
        self.on_event(Phase(f"{step.service}: {step.why}"))
        code, lines = self._one_shot(spec, lambda line: self.on_event(LogLine(step.service, spec.role, line)))
        if code != 0:
            raise StartError(f"{step.service}: {step.why.split(':')[0]} failed (exit code {code})",
                             hint=step.hint or None, details="\n".join(f"{spec.role} | {line}" for line in lines[-15:]))

    def _restart(self, step: RestartContainer, service: str | None) -> None:
        """In place; a container the engine lost on the way (refused: "marked for removal", or
        gone) is replaced from its spec. One killed right after (exit 137) is seen by the readiness
        wait that follows, which replaces it too (_abort_wait)."""
        self.watch.stopping([step.container.name])
        try:
            self.engine.restart(step.container.id, timeout=step.timeout)
        except EngineError as exc:
            if step.spec is None:
                raise
            self._replace(step, exc.message)
            return
        self.watch.restarted(step.container)
        if step.spec is not None:
            self._restarted[step.service] = step

    def _replace(self, step: RestartContainer, why: str) -> None:
        """The restarted container's spec created and started again in its pod (same name, labels
        and namespace), after a short back-off while the engine still holds the old one."""
        assert step.spec is not None
        self._restarted.pop(step.service, None)
        self.on_event(Phase(f"{step.service}: restarting the {step.spec.role} in place failed ({why}); "
                            "replacing its container"))
        stale = step.container.id
        for pause in (*REPLACE_BACKOFF, None):
            self.engine.remove(stale)
            self.engine.wait_removed(stale)
            try:
                stale = self.engine.create(self._on_network(step.spec))
                self.watch.created(step.spec, stale, expected=True)
                self.engine.start(stale, name=step.spec.name, port_hints=step.port_hints)
                self.watch.started(step.spec, stale)
                return
            except EngineError:
                if pause is None:
                    self.engine.remove(stale)      # no half-started app is left behind
                    raise
            self.cancel.wait(pause)
            self._raise_if_cancelled()

    def _signal(self, step: SignalReload, service: str | None) -> None:
        c = step.container
        self.on_event(Phase(f"{c.service}: reloading the {c.role} sidecar's config"))
        self.engine.signal(c.id, step.signal)

    def host_ports(self, holder: str, ports: dict[str, int]) -> dict[str, int]:
        """Port name (https, http, metrics) → the host port Docker bound for it."""
        return host_ports_by_name(ports, self.engine.published_ports(holder))

    def _wait_ready(self, step: WaitReady, service: str | None) -> None:
        through = step.readiness.path or step.readiness.describe()
        what = (f"{step.service} ({through} through the pod)" if step.role == APP
                else f"the {step.role} sidecar of {step.service}")
        if step.readiness.exec is not None:
            probe = exec_probe(self.engine, step.container, step.readiness.exec, bound=min(5.0, self.ready_timeout))
        else:
            ports = self.host_ports(step.holder, step.ports)
            if step.readiness.port not in ports:
                raise StartError(f"{step.service}: no host port for {step.readiness.port}, so its readiness "
                                 "cannot be checked", hint="`meshctl ps` shows the pod's ports")
            probe = self.prober(step.readiness, ports[step.readiness.port], self.ca.cert_path)
        wait_for(what, probe, timeout=self.ready_timeout, abort=lambda: self._abort_wait(step.service),
                 hint=step.hint)
        if step.role == APP:
            self._restarted.pop(step.service, None)
            self.watch.serving(step.service)
            self.gates.reached(step.service, "ready")

    def _abort_wait(self, service: str) -> None:
        """Ends a readiness wait early: a signal, or a container of the pod exited (the watch saw it).
        An app restarted in place that the engine killed (137) before it served is replaced instead."""
        self._raise_if_cancelled()
        failure = self.watch.failure(service)
        if failure is None:
            return
        restart = self._restarted.pop(service, None)
        if restart is not None and self.watch.exit_code(restart.container.name) == KILLED:
            self._replace(restart, f"the engine killed it right after (exit code {KILLED})")
            return
        raise failure

    def _announce(self, step: Announce, service: str | None) -> None:
        urls = urls_for(self.host_ports(step.holder, step.ports), step.protocol)
        self.urls[step.service] = urls
        started = self._pod_started.get(step.service, time.monotonic())
        self.on_event(PodReady(step.service, urls, time.monotonic() - started, step.serving))

    def _remove_network(self, step: RemoveNetwork, service: str | None) -> None:
        """Every meshctl network of that name, by ID (there may be two)."""
        for network in self.engine.networks(selector()):
            if network["Name"] == step.name:
                # Containers just removed may still hold an endpoint for a moment.
                _retry(functools.partial(self.engine.remove_network, network["Id"]))

    def _remove_volume(self, step: RemoveVolume, service: str | None) -> None:
        _retry(lambda: self.engine.remove_volume(step.name))

    def _one_shot(self, spec: ContainerSpec, on_line: Callable[[str], None]) -> tuple[int | None, list[str]]:
        return one_shot(self.engine, spec, on_line, self._raise_if_cancelled)

    def _install(self, step: InstallDependencies, service: str | None) -> None:
        """Run the one-shot install into a fresh cache volume, its output streamed as progress.
        Anything but success (a failure, a Ctrl-C) removes the container and the volume: a cache
        exists only once complete."""
        what = f"dependencies of {step.service}"
        self.on_event(BuildEvent(what, "start", "installing", action="install"))
        self.engine.create_volume(step.volume, step.labels)
        try:
            code, tail = self._one_shot(step.spec, lambda line: self.on_event(BuildEvent(what, "step", line,
                                                                                        action="install")))
            if code != 0:
                last = next((line for line in reversed(tail) if line.strip()), "it printed nothing")
                raise BuildError(f"{step.service}: installing its dependencies ({', '.join(step.files)}) failed "
                                 f"with exit code {code}: {last.strip()[:200]}",
                                 hint=f"fix {' or '.join(step.files)} (the install's last lines are above), or check "
                                      "that the package registry is reachable from a container "
                                      "(MESHCTL_BUILD_NETWORK=host where the default bridge has no DNS)",
                                 details="\n".join(tail[-25:]))
        except BaseException:
            _retry(lambda: self.engine.remove_volume(step.volume))
            raise
        self.on_event(BuildEvent(what, "done", action="install"))


def _raise_first(futures: list[Future[Any]]) -> None:
    """The first real failure is the news; the others stopped because of it (Cancelled)."""
    errors = [e for f in futures if (e := f.exception()) is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])


def _oldest_first(networks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The order ensure_network picks in: the oldest network of a name is the one kept."""
    return sorted(networks, key=lambda n: (n.get("Created", ""), n["Id"]))


def _retry(attempt: Callable[[], bool], times: int = 20, pause: float = 0.1) -> None:
    for _ in range(times):
        if attempt():
            return
        time.sleep(pause)
