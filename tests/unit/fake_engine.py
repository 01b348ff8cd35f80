"""The unit tier's fixtures around the recording fake engine (meshctl.engine.fake): `Prober`, a
readiness prober that records each wait among the engine's calls (and can be told what to answer),
`shop`/`web`/`stack_on`, a small project to run on it, and `settings`/`plan_for`, its plan with no
engine at all."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from meshctl.config import ProjectSpec, ServiceSpec
from meshctl.engine.fake import FakeEngine
from meshctl.model import APP
from meshctl.planning.images import BASE_IMAGE, sidecar_images
from meshctl.planning.plan import Observed, Settings, plan_up
from meshctl.sidecars import READY_PATH, data_dir


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
    from meshctl.cli import reads
    from meshctl.runtime import apply

    engine = engine or engine_with_images()
    write_mesh_yaml(folder)
    monkeypatch.setattr(reads, "DockerEngine", lambda: engine)
    monkeypatch.setattr(apply, "probe_for", Prober(engine))
    monkeypatch.setenv("MESHCTL_HOME", str(folder / "home"))
    return engine


def meshctl(*args: str, input: str | None = None, env: dict[str, str] | None = None, check: bool = False):
    """Run a meshctl command in-process (typer's CliRunner): `input` is its stdin; with `check`, a
    non-zero exit fails the test with the command's output."""
    from typer.testing import CliRunner

    from meshctl.cli.app import app

    result = CliRunner().invoke(app, list(args), input=input, env=env, prog_name="meshctl")
    if check and result.exit_code != 0:
        raise AssertionError(f"meshctl {' '.join(args)} exited {result.exit_code}\nstdout:\n{result.stdout}\n"
                             f"stderr:\n{result.stderr}\nexception: {result.exception!r}")
    return result


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


SIDECAR_IMAGES = {"haproxy": "meshctl-haproxy:h", "metrics": "meshctl-metrics:m", "capture": "meshctl-capture:c"}


def settings(tmp_path: Path, **changes) -> Settings:
    """Plan settings for a project under tmp_path, with SIDECAR_IMAGES."""
    return replace(Settings(home=tmp_path / "home", user="1000:1000", tied=False, sidecar_images=SIDECAR_IMAGES),
                   **changes)


def plan_for(project: ProjectSpec, observed: Observed, tmp_path: Path, **changes):
    """`up`'s plan of the project for what was observed (settings(tmp_path, **changes))."""
    return plan_up(project, observed, settings(tmp_path, **changes), data_dir("sidecars"))


def engine_with_images(*extra: str, **options: Any) -> FakeEngine:
    """An engine that has the base image, every sidecar image and web:1 already."""
    return FakeEngine(images={BASE_IMAGE, "web:1", *sidecar_images().values(), *extra}, **options)


def stack_on(engine: FakeEngine, project: ProjectSpec, home: Path, *, events: list | None = None,
             on_event=None, prober=None, tied: bool = False, **options: Any):
    """A Stack on the fake engine whose readiness waits are recorded (or answered by `prober`);
    its events go to `on_event`, or into the list `events`."""
    from meshctl.runtime.stack import Stack

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
