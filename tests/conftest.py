"""Shared fixtures. Integration tests talk to the real Docker engine; when it is unreachable they
fail (never skip), because CI must not pass without them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello"
# Every project a test session starts is named mt-<session>-…: the safety net at the end of the
# session removes only its own, never those of another session running beside it.
# (Kept in the environment: pytest's conftest and `from tests.conftest import …` are two module
# objects, and both must use the same prefix.)
TEST_SESSION = os.environ.setdefault("MESHCTL_TEST_SESSION", uuid.uuid4().hex[:4])
# MESHCTL_TEST_PROJECT_PREFIX names them otherwise (engineers sharing one engine keep to their own).
TEST_PROJECT_PREFIX = os.environ.get("MESHCTL_TEST_PROJECT_PREFIX") or f"mt-{TEST_SESSION}-"


@pytest.fixture(scope="session", autouse=True)
def meshctl_home(tmp_path_factory) -> Path:
    """One MESHCTL_HOME (CA, certificates, rendered configs) for the session, inherited by the
    meshctl processes the tests start."""
    home = tmp_path_factory.mktemp("meshctl-home")
    os.environ["MESHCTL_HOME"] = str(home)
    os.environ.setdefault("MESHCTL_BUILD_NETWORK", "host")
    # Dependency installs (run mode) trust what this machine's own TLS goes through (a TLS-inspecting
    # proxy in front of PyPI): the CA bundle the host's pip and requests use, if one is set.
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
    if bundle and Path(bundle).is_file():
        os.environ.setdefault("MESHCTL_INSTALL_CA", bundle)
    return home


@pytest.fixture(scope="session")
def engine():
    from meshctl.engine.docker import DockerEngine as Engine
    from meshctl.errors import MeshctlError
    from meshctl.runtime.stack import down_project
    from meshctl.runtime.status import project_names

    eng = Engine()
    try:
        eng.version()
    except MeshctlError as exc:
        pytest.fail(f"integration tests need a Docker engine: {exc.message} ({exc.hint})")
    yield eng
    # Safety net: nothing a test started may outlive the session, nor the app images it built.
    volume_projects = {v.get("Labels", {}).get("meshctl.project", "") for v in eng.volumes({"meshctl.project": ""})}
    for name in set(project_names(eng)) | volume_projects:
        if name.startswith(TEST_PROJECT_PREFIX):
            down_project(eng, name, force=True, volumes=True)
    import docker

    api = docker.from_env().api
    for image in api.images(filters={"label": "meshctl.project"}):
        if (image.get("Labels") or {}).get("meshctl.project", "").startswith(TEST_PROJECT_PREFIX):
            for tag in image.get("RepoTags") or []:
                try:
                    api.remove_image(tag, force=True)
                except docker.errors.APIError:
                    pass
    eng.close()


@pytest.fixture(scope="session")
def sidecar_images(engine) -> dict[str, str]:
    """Build the sidecar images once per session (a no-op when their content hash is built)."""
    from meshctl.runtime.stack import ensure_sidecar_images

    return ensure_sidecar_images(engine, ("tls", "proxy", "metrics"), lambda event: None)


def unique_project(stem: str = "p") -> str:
    return f"{TEST_PROJECT_PREFIX}{stem}-{uuid.uuid4().hex[:4]}"


def hello_project(tmp_path: Path, *, name: str | None = None, mesh_yaml: str | None = None,
                  app_py: str | None = None, dockerfile: str | None = None) -> Path:
    """A copy of examples/hello with a unique project name and free host ports (0)."""
    folder = tmp_path / "hello"
    shutil.copytree(HELLO, folder, dirs_exist_ok=True)
    name = name or unique_project("hello")
    (folder / "mesh.yaml").write_text(mesh_yaml if mesh_yaml is not None else f"""\
name: {name}
services:
  hello:
    build: .
    port: 8080
    health: /healthz
    env: {{GREETING: hi}}
    metrics_path: /metrics
    stop_grace_period: 5s
    ports: {{https: 0, http: 0, metrics: 0}}
""")
    if app_py is not None:
        (folder / "app.py").write_text(app_py)
    if dockerfile is not None:
        (folder / "Dockerfile").write_text(dockerfile)
    return folder


def project_of(folder: Path) -> str:
    """The project name hello_project wrote on mesh.yaml's first line."""
    return (folder / "mesh.yaml").read_text().split("\n")[0].split(": ")[1]


def meshctl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshctl", *args]


def run_meshctl(*args: str, timeout: float = 240, check: bool = False, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(meshctl_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                            env={**os.environ, "COLUMNS": "200", **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"meshctl {' '.join(args)} exited {result.returncode}\n"
                             f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def ps_json(project: str) -> list[dict]:
    result = run_meshctl("ps", "--json", "--project", project, check=True)
    return json.loads(result.stdout)


@pytest.fixture
def detached_hello(tmp_path, engine, sidecar_images):
    """examples/hello brought up with `meshctl up -d`; yields (folder, project, ps entry); down after."""
    folder = hello_project(tmp_path)
    name = project_of(folder)
    run_meshctl("up", "-d", str(folder), check=True)
    try:
        [entry] = ps_json(name)
        yield folder, name, entry
    finally:
        run_meshctl("down", str(folder))


class Foreground:
    """`meshctl up` in the foreground, as a user runs it; its output is collected as it comes."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        import threading

        self.lines: list[str] = []
        self.proc = subprocess.Popen(meshctl_cmd("up", *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env={**os.environ, "COLUMNS": "200", **(env or {})})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 180) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise AssertionError(f"meshctl exited {self.proc.returncode} before {text!r}:\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} after {timeout}s:\n{self.output}")

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def running_containers(engine, project: str) -> list:
    return [c for c in engine.containers({"meshctl.project": project}, all=True)]


def compose_cmd(*args: str) -> list[str]:
    """`docker compose ARGS` for tests: the Compose meshctl itself would run (compose_cli's lookup),
    so never the venv's always-0 `docker-compose` wrapper, and never whatever PATH holds first.
    No Compose v2 fails the test (never skips)."""
    from meshctl.engine.compose import compose_command
    from meshctl.errors import MeshctlError

    try:
        return [*compose_command(), *args]
    except MeshctlError as exc:
        pytest.fail(f"this test needs Docker Compose v2: {exc.message} ({exc.hint})")
