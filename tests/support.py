"""Helpers the test modules share, of both tiers: `from tests.support import ...`. A test module
imports helpers from here (or, in the unit tier, tests/unit/fake_engine.py), never from another
test module nor from a conftest; conftest.py holds the fixtures.

- waiting: `eventually` polls until something holds, instead of a deadline loop or a sleep;
- meshctl: the command, a run of it, `meshctl up` in the foreground, `ps --json`;
- projects: unique names (the session's prefix), copies of examples/hello;
- HAProxy's access lines as the shipped log formats write them (render_log_line, shipped_formats);
- the real engine: containers and events of a project, Compose v2, the CA, URLs, metrics."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello"
SHOP = ROOT / "examples" / "shop"
# Every project a test session starts is named mt-<session>-…: the safety net at the end of the
# session removes only its own, never those of another session running beside it. (Kept in the
# environment: the meshctl processes a test starts, and any second copy of this module, see it too.)
TEST_SESSION = os.environ.setdefault("MESHCTL_TEST_SESSION", uuid.uuid4().hex[:4])
# MESHCTL_TEST_PROJECT_PREFIX names them otherwise (engineers sharing one engine keep to their own).
TEST_PROJECT_PREFIX = os.environ.get("MESHCTL_TEST_PROJECT_PREFIX") or f"mt-{TEST_SESSION}-"

T = TypeVar("T")


# -- waiting ----------------------------------------------------------------------------------------


def eventually(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, *, what: str | None = None,
               ignore: tuple[type[BaseException], ...] = (OSError,), detail: Callable[[], object] | None = None) -> T:
    """Calls `predicate` every `interval` seconds until it returns something truthy, and returns
    that value. An exception in `ignore` (by default OSError: a port not listening yet, a connection
    reset by a restarting proxy) counts as "not yet"; any other goes up at once. After `timeout`
    seconds (and one last call), raises AssertionError naming `what` (default: the predicate), the
    last value or exception, and `detail()` (an output to read, say).

    A test waits with this, never with a sleep: poll for the state it then asserts, or for the
    event that makes it true."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = f"last value: {value!r}"
        except ignore as exc:
            last = f"last exception: {exc!r}"
        if time.monotonic() >= deadline:
            name = getattr(predicate, "__name__", "<lambda>")
            name = what or ("the condition" if name == "<lambda>" else name)
            raise AssertionError(f"{name}: still not so after {timeout:g}s; {last}"
                                 + (f"\n{detail()}" if detail is not None else ""))
        time.sleep(interval)


# -- meshctl ---------------------------------------------------------------------------------------------


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


class Foreground:
    """`meshctl up` in the foreground, as a user runs it; its output is collected as it comes."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
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

    def has_line(self, text: str, since: int = 0) -> bool:
        """Whether a line from the `since`-th on holds `text`."""
        return any(text in line for line in self.lines[since:])

    def wait_for_line(self, text: str, timeout: float = 180) -> None:
        def seen() -> bool:
            if self.has_line(text):
                return True
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise AssertionError(f"meshctl exited {self.proc.returncode} before {text!r}:\n{self.output}")
            return False
        eventually(seen, timeout, 0.05, what=f"{text!r} in meshctl's output", detail=lambda: self.output)

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# -- projects --------------------------------------------------------------------------------------------


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


# -- the sidecars' own code ----------------------------------------------------------------------------------


@functools.cache
def metrics_agent():
    """The metrics sidecar's agent (sidecars/metrics/agent.py) as a module, to test without a container."""
    from meshctl.sidecars import data_dir

    folder = data_dir("sidecars") / "metrics"
    if str(folder) not in sys.path:          # its sibling modules (spans, otlp_in), as in the image
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("meshctl_agent", folder / "agent.py")
    agent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agent)
    return agent


# -- HAProxy's access lines, as the shipped formats write them ------------------------------------------

# The access lines the agent is fed are written by the format meshctl ships, as HAProxy would write
# them: a test line typed by hand would keep passing after the format changed under the agent.
# HAProxy's log-format: %var, %{flags}var (+Q: quoted), %[sample fetch].
LOG_FIELD = re.compile(r"%(?:\{(?P<flags>[^}]*)\})?(?P<var>[A-Za-z]+)|%\[(?P<sample>[^\]]+)\]")


def render_log_line(log_format: str, values: dict[str, object]) -> str:
    """The line HAProxy writes for `log_format` with these values of its variables (a KeyError
    names a variable the test gave no value)."""
    def field(match: re.Match[str]) -> str:
        if match["sample"]:
            return str(values[match["sample"]])
        value = str(values[match["var"]])
        return f'"{value}"' if "+Q" in (match["flags"] or "") else value
    return LOG_FIELD.sub(field, log_format)


def log_formats(config: str) -> dict[str, str]:
    """Each frontend's log-format in a rendered HAProxy config: frontend name → format."""
    formats, frontend = {}, ""
    for text in config.splitlines():
        if not text.startswith(" "):
            frontend = text.split()[1] if text.startswith("frontend ") else ""
        elif frontend and text.strip().startswith("log-format "):
            formats[frontend] = text.split('"', 1)[1].rsplit('"', 1)[0]
    return formats


# Every variable of meshctl's formats, each with a value no other has, so two fields swapped in a
# format read as another value.
HTTP_VALUES = {"ci": "172.18.0.9", "cp": "40123", "tr": "27/Nov/2026:16:11:21.486", "ft": "proxy~", "b": "app",
               "s": "app", "TR": 11, "Tw": 12, "Tc": 13, "Tr": 14, "Ta": 37, "ST": 201, "B": 5120,
               "tsc": "----", "r": "POST /orders HTTP/1.1",
               # The hop's span (templates/haproxy-tracing.cfg): trace, span, parent, start and end µs.
               "var(txn.trace_id)": "4bf92f3577b34da6a3ce929d0e0e4736", "var(txn.span_id)": "a3ce929d0e0e4736",
               "var(txn.trace_parent)": "00f067aa0ba902b7", "var(txn.trace_start)": 1796400000000100,
               "var(txn.trace_end)": 1796400000003600}
TCP_VALUES = {"ci": "172.18.0.9", "cp": "40124", "t": "27/Nov/2026:16:11:21.486", "ft": "proxy~", "b": "app",
              "s": "app", "Tw": 21, "Tc": 22, "Tt": 23000, "U": 120, "B": 4096, "ts": "--"}


def shipped_formats() -> dict[tuple[str, str], str]:
    """(service, frontend) → log-format, from the proxy configs rendered for examples/shop: web
    (HTTP, calls api over HTTP and kv over TCP), api (HTTP, allow: [web]), kv (TCP, allow: [api])."""
    from meshctl.config import load_project
    from meshctl.sidecars import render_configs

    project = load_project(SHOP)
    return {(service.name, frontend): log_format
            for service in project.services for rendered in render_configs(project.name, service)
            if rendered.role == "proxy"
            for frontend, log_format in log_formats(rendered.files["haproxy.cfg"]).items()}



# -- the real engine ---------------------------------------------------------------------------------------


def running_containers(engine, project: str) -> list:
    return list(engine.containers({"meshctl.project": project}, all=True))


def container_events(project: str, since: float, event: str) -> list[dict]:
    """The engine's `event` events (die, kill, …) of the project's containers since `since` (time.time())."""
    import docker

    api = docker.from_env().api
    return list(api.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                           filters={"label": f"meshctl.project={project}", "event": event}))


def die_order(project: str, since: float) -> list[str]:
    """The roles of the project's containers in the order they died since `since`."""
    return [e["Actor"]["Attributes"]["meshctl.role"] for e in container_events(project, since, "die")]


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


def ca_path() -> Path:
    """meshctl's CA certificate (created on first use), for verifying HTTPS."""
    return Path(run_meshctl("certs", "ca", check=True).stdout.strip())


def port_of(url: str) -> int:
    """The port of a URL meshctl prints (https://127.0.0.1:PORT/, http://127.0.0.1:PORT/metrics)."""
    return int(url.rsplit(":", 1)[1].split("/")[0])


def counter(metrics_text: str, name: str, **labels) -> float:
    """The first sample called `name` with these labels in a Prometheus exposition; 0 if none."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def metric_sum(metrics_text: str, name: str, **labels) -> float:
    """The sum of the samples called `name` with these labels (and any others) in an exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for f in text_string_to_metric_families(metrics_text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


# -- examples/shop: a mesh of services (test_mesh, test_mesh_tcp_real) -------------------------------------


def build_ca_bundle() -> Path:
    """The CA bundle this machine's pip trusts (a TLS-inspecting proxy's root too), for an image
    build that installs from PyPI: examples/shop's web, the tracing tests' app."""
    return Path(os.environ.get("PIP_CERT") or ssl.get_default_verify_paths().openssl_cafile)


def copy_shop(folder: Path) -> Path:
    """examples/shop copied to `folder`, with the machine's CA bundle as web's optional build-ca.pem
    (web's image installs the OpenTelemetry SDK from PyPI)."""
    shutil.copytree(SHOP, folder, ignore=shutil.ignore_patterns("build-ca.pem"))
    shutil.copy(build_ca_bundle(), folder / "web" / "build-ca.pem")
    return folder



def urls(project: str) -> dict[str, dict[str, str]]:
    """service → its URLs, from `meshctl ps --json`."""
    return {entry["service"]: entry["urls"] for entry in ps_json(project)}


def get_json(port: int, path: str, **headers) -> dict:
    """A verified HTTPS GET that must answer 200 with JSON."""
    from meshctl.runtime.probes import http_request, tls_context

    answer = http_request(port, path, tls=tls_context(ca_path()), server_hostname="localhost", headers=headers,
                          timeout=20)
    assert answer.status == 200, answer.body
    return json.loads(answer.body)


def outside_call(project: str, host: str, port: int) -> int:
    """Connect from a container on the project's network that is not in the mesh; bash's exit code."""
    import docker

    client = docker.from_env()
    image = next(t for i in client.images.list() for t in i.tags if t.startswith("meshctl-capture:"))
    try:
        output = client.containers.run(image, entrypoint=["bash", "-c", f"exec 3<>/dev/tcp/{host}/{port} && echo open"],
                                       network=f"meshctl-{project}", remove=True, stderr=True,
                                       labels={"meshctl.project": project, "meshctl.role": "test-client"})
    except docker.errors.ContainerError as refused:
        assert b"Connection refused" in (refused.stderr or b""), refused.stderr
        return refused.exit_status
    return 0 if b"open" in output else 1


# -- a sidecar of the user's own (test_user_sidecars_real, test_faults) -------------------------------------

# The app needs its sidecar at its first line: it asks it for the greeting, or exits 5.
APP_NEEDING_ITS_SIDECAR = '''
import os, signal, socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    with socket.create_connection(("127.0.0.1", 7000), timeout=2) as s:
        GREETING = s.recv(100).decode().strip()
except OSError as exc:
    print(f"app: no sidecar on :7000 ({exc}); exiting", flush=True)
    sys.exit(5)

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        body = f"{GREETING}\\n".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass

server = ThreadingHTTPServer(("0.0.0.0", 8080), H)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print(f"app: the sidecar says {GREETING!r}", flush=True)
server.serve_forever(poll_interval=0.1)
print("app: stopped", flush=True)
'''

# A slow starter: it listens only after two seconds, so an app started before it was ready exits.
GREETER = ("import socket, time; time.sleep(2); s = socket.socket(); "
           "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 7000)); s.listen(8); "
           "print('greeter: listening on :7000', flush=True)\\n"      # YAML's escape: one line in mesh.yaml
           "while True:\\n    c, _ = s.accept(); c.sendall(b'hi from the greeter'); c.close()")


def greeter_mesh_yaml(name: str, image: str, ready: str) -> str:
    """examples/hello's service with the greeter as its sidecar (`image` must have python3)."""
    return f"""\
name: {name}
services:
  hello:
    build: .
    port: 8080
    stop_grace_period: 5s
    ports: {{https: 0, http: 0, metrics: 0}}
    sidecars:
      greeter:
        image: {image}
        entrypoint: [python3, -c, "{GREETER}"]
        env: {{GREETER_MODE: slow}}
        ready: {ready}
"""
