"""A recording fake of meshctl's Engine protocol (engine.py), for the unit tier: apply, reload,
supervise and teardown run against it with no daemon, and tests assert the calls and their order
(httpx's MockTransport, for Docker). It keeps just enough state to behave like the engine: images,
networks, containers with labels and states, bound host ports, exits that wait for removal.

Besides the engine: `Prober`, a readiness prober that records each wait among the engine's calls
(and can be told what to answer), and `shop`/`web`/`stack_on`, a small project to run on it."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from meshctl.config import ProjectSpec, ServiceSpec
from meshctl.errors import BuildError, EngineError
from meshctl.images import BASE_IMAGE, sidecar_images
from meshctl.model import APP, ContainerInfo, ContainerSpec
from meshctl.sidecars import READY_PATH


class FakeEngine:
    def __init__(self, images: set[str] | None = None, *, fail_build: set[str] | None = None,
                 fail_start: set[str] | None = None, fail_pull: bool = True,
                 log_lines: dict[str, list[str]] | None = None, exit_on_start: dict[str, int] | None = None,
                 slow_stop: set[str] | None = None, build_gate: threading.Event | None = None,
                 fail_stop: set[str] | None = None, fail_remove: set[str] | None = None,
                 unreachable: bool = False, exec_codes: dict[str, int] | None = None):
        self.unreachable = unreachable                      # version() fails as with no daemon
        self.capture_exit = 0                                # the capture step's exit code
        self.exec_codes = exec_codes or {}                  # container name → what an exec in it exits with
        self.images = set(images or ())
        self.image_ids: dict[str, str] = {}                  # ref → ID where not "sha256:<ref>" (a rebuild)
        self.networks_: dict[str, dict[str, str]] = {}
        self.volumes_: dict[str, dict[str, str]] = {}
        self.gone_: dict[str, dict[str, Any]] = {}
        self.containers_: dict[str, dict[str, Any]] = {}     # id → {spec, state, ports}
        self.calls: list[tuple] = []
        self.fail_build = fail_build or set()
        self.fail_start = fail_start or set()               # container names whose start fails
        self.fail_pull = fail_pull                          # no registry, as on these machines
        self.log_lines = log_lines or {}                    # container name → what it prints
        self.exit_on_start = exit_on_start or {}            # container name → the code it exits with at once
        # Container names whose graceful stop lasts until something kills (removes) them.
        self.slow_stop = slow_stop or set()
        self.build_gate = build_gate                        # builds last until it is set
        self.fail_stop = fail_stop or set()                 # container names the engine cannot stop
        self.fail_remove = fail_remove or set()             # … nor remove
        self._ids = itertools.count(1)
        self._ports = itertools.count(40000)
        self._lock = threading.Lock()

    def record(self, *call: Any) -> None:
        """Add a call of one's own to the log (a prober's readiness wait, a tie closed)."""
        self._record(*call)

    def _record(self, *call: Any) -> None:
        with self._lock:
            self.calls.append(call)

    def is_empty(self) -> bool:
        """No container and no network left: what every teardown must reach."""
        return not self.containers_ and not self.networks_

    def names(self, verb: str) -> list[str]:
        """The targets of every call of one kind, in order (`names("start")` → container names)."""
        return [c[1] for c in self.calls if c[0] == verb]

    # -- images -----------------------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        if self.unreachable:
            raise EngineError("cannot reach the Docker engine (while trying to reach the Docker engine)",
                              hint="start Docker")
        return {"Version": "20.10-fake", "ApiVersion": "1.41"}

    def image_id(self, ref: str) -> str | None:
        return self.image_ids.get(ref, f"sha256:{ref}") if ref in self.images else None

    def pull(self, ref: str) -> None:
        self._record("pull", ref)
        if self.fail_pull:
            raise EngineError(f"could not pull {ref}: no registry")
        self.images.add(ref)

    def build(self, context: Path, tag: str, *, labels: dict[str, str], network_mode: str | None,
              dockerfile: str | None = None, on_line=None) -> str:
        self._record("build", tag)
        if on_line:
            on_line("Step 1/1 : FROM debian:bookworm-slim")
        if self.build_gate is not None:
            self.build_gate.wait(30)
        if tag in self.fail_build:
            raise BuildError(f"building {tag} from {context} failed: boom", details="Step 1/1\nboom")
        self.images.add(tag)
        return self.image_id(tag)

    # -- networks ---------------------------------------------------------------------------------

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        self._record("ensure_network", name)
        self.networks_.setdefault(name, labels)

    def networks(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [{"Name": n, "Labels": lab} for n, lab in self.networks_.items()
                if all(lab.get(k) == v or (v == "" and k in lab) for k, v in labels.items())]

    def remove_network(self, name: str) -> bool:
        self._record("remove_network", name)
        self.networks_.pop(name, None)
        return True

    # -- volumes ----------------------------------------------------------------------------------

    def volumes(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [{"Name": n, "Labels": lab} for n, lab in self.volumes_.items() if all_match(lab, labels)]

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        self._record("create_volume", name)
        self.volumes_.setdefault(name, labels)

    def remove_volume(self, name: str) -> bool:
        self._record("remove_volume", name)
        self.volumes_.pop(name, None)
        return True

    # -- containers -------------------------------------------------------------------------------

    def containers(self, labels: dict[str, str], *, all: bool = True) -> list[ContainerInfo]:
        out = []
        for cid, c in list(self.containers_.items()):
            spec: ContainerSpec = c["spec"]
            if all or c["state"] == "running":
                if all_match(spec.labels, labels):
                    out.append(self.info(cid))
        return out

    def info(self, cid: str) -> ContainerInfo:
        c = self.containers_[cid]
        return ContainerInfo(cid, c["spec"].name, c["spec"].labels, c["state"], dict(c["ports"]), c["image_id"])

    def by_name(self, name: str) -> dict[str, Any] | None:
        return next((c for c in self.containers_.values() if c["spec"].name == name), None)

    def published_ports(self, name_or_id: str) -> dict[int, int]:
        c = self.containers_.get(name_or_id) or self.by_name(name_or_id)
        return dict(c["ports"]) if c else {}

    def create(self, spec: ContainerSpec) -> str:
        self._record("create", spec.name)
        if spec.image not in self.images:
            raise EngineError(f"could not create container {spec.name}: no such image {spec.image}")
        if self.by_name(spec.name) is not None:
            raise EngineError(f"could not create container {spec.name}: the name is in use")
        cid = f"id{next(self._ids)}"
        self.containers_[cid] = {"spec": spec, "state": "created", "ports": {}, "gone": threading.Event(),
                                 "code": None, "image_id": self.image_id(spec.image)}
        return cid

    def attach_stdin(self, container_id: str) -> Any:
        name = self.containers_[container_id]["spec"].name
        self._record("attach_stdin", name)
        return _FakeSocket(self, name)

    def start(self, container_id: str, *, name: str = "", port_hints=None) -> None:
        c = self.containers_[container_id]
        self._record("start", c["spec"].name)
        if c["spec"].name in self.fail_start:
            raise EngineError(f"could not start container {c['spec'].name}: it failed")
        c["state"] = "running"
        c["ports"] = {port: host or next(self._ports) for port, host in c["spec"].ports.items()}
        if c["spec"].name in self.exit_on_start:
            self._gone(container_id, self.exit_on_start[c["spec"].name])
        elif c["spec"].role == "capture":           # a one-shot step: it does its work and exits
            self._gone(container_id, self.capture_exit)

    def watch_exit(self, container_id: str, *, restarts: bool = False):
        c = self.containers_[container_id]

        def result() -> int | None:
            c["gone"].wait()
            return c["code"]
        return result

    def exit(self, name: str, code: int) -> None:
        """The container exits by itself (auto-remove: it is gone)."""
        cid = next(i for i, c in self.containers_.items() if c["spec"].name == name)
        self._gone(cid, code)

    def _gone(self, cid: str, code: int | None) -> None:
        c = self.containers_.pop(cid, None)
        if c is not None:
            self.gone_[cid] = c          # its logs stay readable, as a stream that had begun
            c["code"] = code
            c["state"] = "exited"
            c["gone"].set()

    def stop(self, container_id: str, timeout: float | None = None) -> None:
        c = self.containers_.get(container_id)
        self._record("stop", c["spec"].name if c else container_id)
        if c is not None and c["spec"].name in self.fail_stop:
            raise EngineError(f"could not stop container {c['spec'].name}: it did not answer")
        if c is not None and c["spec"].name in self.slow_stop:
            c["gone"].wait(30)       # its grace period: it ends when it is killed
        self._gone(container_id, 0)

    def restart(self, container_id: str, timeout: float) -> None:
        self._record("restart", self.containers_[container_id]["spec"].name)

    def remove(self, container_id: str) -> None:
        c = self.containers_.get(container_id)
        self._record("remove", c["spec"].name if c else container_id)
        if c is not None and c["spec"].name in self.fail_remove:
            raise EngineError(f"could not remove container {c['spec'].name}: the engine refused")
        self._gone(container_id, 137)

    def wait_removed(self, container_id: str, timeout: float = 10) -> None:
        pass

    def signal(self, container_id: str, signal: str) -> None:
        self._record("signal", self.containers_[container_id]["spec"].name, signal)

    def logs(self, container_id: str, *, follow: bool, tail="all", since=None):
        c = self.containers_.get(container_id) or self.gone_.get(container_id)
        if c is None:
            return iter(())
        return iter(self.log_lines.get(c["spec"].name, ()))

    def exec(self, container_id: str, command: list[str], *, timeout=None) -> tuple[int, str]:
        """By id or by name, as Docker's; `exec_codes` (container name → exit code) says what it ends with."""
        c = self.containers_.get(container_id) or self.by_name(container_id)
        if c is None or c["state"] != "running":
            raise EngineError(f"could not run a command in {container_id}: not running")
        name = c["spec"].name
        self._record("exec", name, tuple(command))
        code = self.exec_codes.get(name, 0)
        return code, "" if code == 0 else "connection refused"


def all_match(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all((k in labels) if v == "" else labels.get(k) == v for k, v in wanted.items())


class _FakeSocket:
    """A tied holder's stdin; closing it is recorded as ("close_stdin", holder name)."""

    def __init__(self, engine: FakeEngine, name: str):
        self.engine = engine
        self.name = name

    def close(self) -> None:
        self.engine.record("close_stdin", self.name)


def always_ready(readiness, port, ca_path):
    """A prober for the unit tier: every readiness check answers at once."""
    return lambda: None


class Prober:
    """A prober for the Executor that records each readiness wait among the engine's calls, as
    ("ready", port name, path): the order of starts and waits is then one list. `answer(readiness,
    host port)` says what each poll gets (None: ready; a string: why not). By default a sidecar
    answers at once, and the whole chain answers while its pod's app runs (the proxy says 503 when
    the app is gone, as HAProxy does)."""

    def __init__(self, engine: FakeEngine, answer=None):
        self.engine = engine
        self.answer = answer or self.serving_while_the_app_runs
        self.polls = 0

    def serving_while_the_app_runs(self, readiness, port) -> str | None:
        if readiness.port == "metrics" or readiness.path in (None, READY_PATH):
            return None                          # a sidecar's own readiness
        specs = [c["spec"] for c in list(self.engine.containers_.values()) if c["state"] == "running"]
        holder = next((c for c in list(self.engine.containers_.values()) if port in c["ports"].values()), None)
        service = holder["spec"].service if holder else None
        return None if any(s.service == service and s.role == APP for s in specs) else "HTTP 503"

    def __call__(self, readiness, port, ca_path):
        self.engine.record("ready", readiness.port, readiness.path)

        def probe():
            self.polls += 1
            return self.answer(readiness, port)
        return probe


# ---------------------------------------------------------------------------------------------
# A small project to run on it

FREE_PORTS = (("https", 0), ("http", 0), ("metrics", 0))
# What Prober records for the readiness waits of a default service: metrics, proxy, the whole chain.
METRICS_READY = ("ready", "metrics", "/ready")
PROXY_READY = ("ready", "https", "/.meshctl/ready")
SERVING = ("ready", "https", "/")


def pod_names(service: str = "web", project: str = "shop") -> tuple[str, str, str, str]:
    """The holder, metrics, proxy and app containers of a default service."""
    return tuple(f"{project}-{service}-{role}" for role in ("pod", "metrics", "proxy", "app"))  # type: ignore


def write_mesh_yaml(folder: Path, *, name: str = "shop", timeout: str = "15s", sync: str = ".") -> Path:
    """mesh.yaml for the default service (web:1, free ports, synced from `sync`)."""
    source = folder / "mesh.yaml"
    source.write_text(f"""\
name: {name}
services:
  web:
    image: web:1
    port: 8081
    ports: {{https: 0, http: 0, metrics: 0}}
    sidecars: {{proxy: {{timeout: {timeout}}}}}
    watch: {{sync: {{"{sync}": /app}}}}
""")
    return source


def use_on_the_cli(folder: Path, monkeypatch, engine: FakeEngine | None = None) -> FakeEngine:
    """`meshctl` commands run against `engine` (one with every image, by default), with readiness
    recorded instead of probed, MESHCTL_HOME in folder/home and the default mesh.yaml in `folder`."""
    from meshctl import apply, cli

    engine = engine or engine_with_images()
    write_mesh_yaml(folder)
    monkeypatch.setattr(cli, "DockerEngine", lambda: engine)
    monkeypatch.setattr(apply, "probe_for", Prober(engine))
    monkeypatch.setenv("MESHCTL_HOME", str(folder / "home"))
    return engine


def meshctl(*args: str):
    """Run a meshctl command in-process (typer's CliRunner)."""
    from typer.testing import CliRunner

    from meshctl.cli import app

    return CliRunner().invoke(app, list(args))


def web(name: str = "web", **changes: Any) -> ServiceSpec:
    """A service wrapping image web:1, on free host ports."""
    return ServiceSpec(**{"name": name, "port": 8081, "image": "web:1", "ports": FREE_PORTS, **changes})


def built(folder: Path, name: str = "web", **changes: Any) -> ServiceSpec:
    """A service built from `folder` (a Dockerfile FROM the base image is written there)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text("FROM debian:bookworm-slim\nCOPY app.py /app/app.py\n")
    return web(name, image=None, build=folder, **changes)


def shop(root: Path, *services: ServiceSpec, name: str = "shop") -> ProjectSpec:
    return ProjectSpec(name=name, root=root, services=services or (web(),))


def engine_with_images(*extra: str, **options: Any) -> FakeEngine:
    """An engine that has the base image, every sidecar image and web:1 already."""
    return FakeEngine(images={BASE_IMAGE, "web:1", *sidecar_images().values(), *extra}, **options)


def stack_on(engine: FakeEngine, project: ProjectSpec, home: Path, *, events: list | None = None,
             on_event=None, prober=None, tied: bool = False, **options: Any):
    """A Stack on the fake engine whose readiness waits are recorded (or answered by `prober`);
    its events go to `on_event`, or into the list `events`."""
    from meshctl.stack import Stack

    if on_event is None:
        on_event = events.append if events is not None else (lambda event: None)
    return Stack(engine, project, on_event=on_event, tied=tied, home=home, prober=prober or Prober(engine),
                 **options)


def calls(engine: FakeEngine, since: int = 0, *, verbs: tuple[str, ...] = ()) -> list[tuple]:
    """The calls after the first `since`, optionally only those of some kinds."""
    return [c for c in engine.calls[since:] if not verbs or c[0] in verbs]


def assert_in_phases(actual: list[tuple], *phases: list | set) -> None:
    """`actual` is the phases one after the other: a list must match in order, a set (calls made
    in parallel) in any order."""
    at = 0
    for phase in phases:
        chunk = actual[at:at + len(phase)]
        if isinstance(phase, set):
            assert Counter(chunk) == Counter(phase), (at, chunk, phase, actual)
        else:
            assert chunk == list(phase), (at, chunk, phase, actual)
        at += len(phase)
    assert at == len(actual), ("more calls than expected", actual[at:])
