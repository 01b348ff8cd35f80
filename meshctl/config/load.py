"""mesh.yaml (or a bare Dockerfile, or --image/--port) → a frozen, validated ProjectSpec.

Every error names the file, the line and the field, and says what to do. Nothing here touches
Docker or the network; reading the files is the only I/O.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, located, yaml_syntax_error
from ..model import split_image_ref
from . import runtimes
from .port_protocol import TCP, Facts, port_protocol
from .spec import (
    CONFIG_NAMES, DEFAULT_HOST_PORTS, MTLS_MODES, PORT_NAMES, RESERVED_POD_PORTS, SIDECAR_SETTINGS, CheckSpec,
    ExecCheck, HttpCheck, MeshSettings, MetricsSettings, ProjectSpec, ProxySettings, ReadySpec, ServiceSpec,
    TlsSettings, UserSidecar, WatchSettings,
)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


# ---------------------------------------------------------------------------------------------
# Where things are in the file


class _Where:
    """Maps a field path like ("services", "hello", "port") to its line in the file."""

    def __init__(self, source: Path | None, lines: dict[tuple, int]):
        self.source = source
        self.lines = lines

    def at(self, path: tuple) -> str:
        dotted = ".".join(str(p) for p in path)
        if self.source is None:
            return dotted
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        return f"{located(self.source, self.lines.get(probe))}: {dotted}"

    def error(self, path: tuple, problem: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{self.at(path)}: {problem}", hint=hint)


def _line_map(node: yaml.Node | None, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    out = {} if out is None else out
    if node is None:
        return out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                child = path + (key.value,)
                out[child] = key.start_mark.line + 1
                _line_map(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, path + (i,), out)
    return out


# ---------------------------------------------------------------------------------------------
# Loading


def find_config(path: Path) -> Path | None:
    if path.is_file():
        return path
    for name in CONFIG_NAMES:
        candidate = path / name
        if candidate.is_file():
            return candidate
    return None


def load_project(path: Path | str = ".", *, image: str | None = None, port: int | None = None,
                 name: str | None = None, command: tuple[str, ...] | None = None,
                 runtime: str | None = None) -> ProjectSpec:
    """The spec for `meshctl up PATH` (a folder or a mesh.yaml), for `--image/--port`, or for
    `meshctl up [PATH] [--image IMG|--runtime R] -- CMD` (run mode: no Dockerfile needed)."""
    path = Path(path).resolve()
    if image is not None and command is None and runtime is None:
        if port is None:
            raise ConfigError("--image needs --port: the port the app listens on inside the pod",
                              hint=f"meshctl up --image {image} --port 8080   (or run a command in your folder: "
                                   f"meshctl up --image {image} -- CMD)")
        service_name = _sanitize(split_image_ref(image)[0].rpartition("/")[2]) or "app"
        spec = ServiceSpec(name=service_name, image=image, port=_parse_port(port, "--port", None),
                           protocol=inferred_protocol(port, image))
        spec = _with_ports(spec, _default_ports(0, spec))
        return ProjectSpec(name=name or service_name, root=path if path.is_dir() else Path.cwd(),
                           services=(spec,))
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder",
                          hint="pass a folder with a mesh.yaml or a Dockerfile, or use --image IMAGE --port N")
    config = find_config(path)
    if config is not None:
        project = parse_project(config.read_text(encoding="utf-8"), source=config, root=config.parent)
        if command is not None:
            project = _with_command(project, command, config)
    elif command is not None and (image is not None or runtime is not None or not (path / "Dockerfile").is_file()):
        project = _run_mode(path, command, image=image, runtime=runtime)
    else:
        project = _from_dockerfile(path)
        if command is not None:
            project = _with_command(project, command, path / "Dockerfile")
    if port is not None and len(project.services) == 1:
        project = replace(project, services=(replace(project.services[0],
                                                     port=_parse_port(port, "--port", None)),))
    if name:
        project = replace(project, name=_project_name(name, None, ("name",)))
    return project


def _with_command(project: ProjectSpec, command: tuple[str, ...], source: Path) -> ProjectSpec:
    """`-- CMD` replaces the one service's command."""
    if len(project.services) != 1:
        raise ConfigError(f"{source}: `-- CMD` gives one command, but there are {len(project.services)} services",
                          hint="set each service's `command:` in mesh.yaml instead")
    return replace(project, services=(replace(project.services[0], command=command),))


def _run_mode(folder: Path, command: tuple[str, ...], *, image: str | None, runtime: str | None) -> ProjectSpec:
    """`meshctl up [PATH] -- CMD` in a folder with no mesh.yaml and no Dockerfile: the command
    runs in the folder's runtime (or in --image) with the folder mounted at /app."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: `-- CMD` runs a command in a folder; this is a file",
                          hint="pass the folder that holds your code")
    if image is None:
        if runtime is None:
            picked = runtimes.detect(folder, command)
            if picked is None:
                raise ConfigError(f"{folder}: cannot tell which runtime runs {command[0]!r} here (no package.json, "
                                  "pyproject.toml, requirements.txt or go.mod)",
                                  hint="pass --runtime node|python|go, or --image IMAGE to run it in any image")
            runtime = picked.name
        elif runtime not in runtimes.RUNTIMES:
            raise ConfigError(f"--runtime {runtime}: not a runtime meshctl builds",
                              hint="--runtime " + " | ".join(runtimes.RUNTIMES) + ", or --image IMAGE")
    name = _sanitize(folder.name) or "app"
    service = ServiceSpec(name=name, image=image, runtime=None if image else runtime, source=folder, command=command,
                          port=RUN_MODE_PORT, watch=WatchSettings(sync=run_mode_sync(folder, folder)))
    service = _with_ports(service, _default_ports(0, service))
    return ProjectSpec(name=name, root=folder, services=(service,))


def _from_dockerfile(folder: Path) -> ProjectSpec:
    dockerfile = folder / "Dockerfile"
    if not dockerfile.is_file():
        raise ConfigError(f"{folder}: no mesh.yaml and no Dockerfile here",
                          hint="give the command that runs your code (meshctl up -- node server.js), run "
                               "`meshctl init` to write a mesh.yaml, or use --image IMAGE --port N")
    port = dockerfile_exposed_port(dockerfile.read_text(encoding="utf-8"))
    if port is None:
        raise ConfigError(f"{dockerfile}: no EXPOSE line, so meshctl cannot tell the app's port",
                          hint="add `EXPOSE 8080` to the Dockerfile, pass --port N, or write a mesh.yaml (meshctl init)")
    name = _sanitize(folder.name) or "app"
    service = ServiceSpec(name=name, build=folder, port=port)
    service = _with_ports(service, _default_ports(0, service))
    return ProjectSpec(name=name, root=folder, services=(service,))


def dockerfile_exposed_port(text: str) -> int | None:
    for line in text.splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and parts[0].upper() == "EXPOSE":
            token = parts[1].split("/")[0]
            if token.isdigit():
                return int(token)
    return None


def parse_project(text: str, *, source: Path | None = None, root: Path | None = None) -> ProjectSpec:
    """Parse and validate mesh.yaml text. Pure apart from checking that build folders exist."""
    label = str(source) if source else "mesh.yaml"
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_syntax_error(exc, label, hint="fix the YAML syntax at that line "
                                                 "(indentation, a missing colon or quote)") from exc
    where = _Where(source, _line_map(node))
    root = root or (source.parent if source else Path.cwd())
    if data is None:
        raise where.error((), "the file is empty", hint="run `meshctl init` for a commented example")
    if not isinstance(data, dict):
        raise where.error((), f"expected a mapping with `services:`, found {_kind(data)}")
    _no_unknown(data, ("name", "mesh", "services"), (), where)
    name = _project_name(data.get("name"), root, ("name",), where)
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        raise where.error(("services",), "expected a mapping of service names to settings",
                          hint="services:\n  web:\n    build: .\n    port: 8080")
    specs = []
    for index, (svc_name, raw) in enumerate(services.items()):
        specs.append(_parse_service(str(svc_name), raw, index, root, where))
    _reject_duplicate_host_ports(specs, where)
    specs = _with_mesh(name, data.get("mesh"), specs, where)
    return ProjectSpec(name=name, root=root, services=tuple(specs), source=source)


def _with_mesh(project: str, raw: Any, specs: list[ServiceSpec], where: _Where) -> list[ServiceSpec]:
    """`mesh: {mtls, capture}` and each service's `allow`, resolved into every proxy's MeshSettings."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise where.error(("mesh",), f"expected a mapping like {{mtls: strict}}, found {_kind(raw)}")
    _no_unknown(raw, ("mtls", "capture"), ("mesh",), where)
    mtls = raw.get("mtls", "strict")
    if mtls is False:          # YAML 1.1 reads a bare `off` as false
        mtls = "off"
    if not isinstance(mtls, str) or mtls not in MTLS_MODES:
        raise where.error(("mesh", "mtls"), f"unknown mode {mtls!r}",
                          hint="strict (mTLS between pods, plaintext from other pods refused), permissive "
                               "(both accepted) or off (no mesh)")
    capture = raw.get("capture", True)
    if not isinstance(capture, bool):
        raise where.error(("mesh", "capture"), f"expected true or false, found {_kind(capture)}")
    names = [s.name for s in specs]
    for spec in specs:
        for caller in spec.allow or ():
            if caller not in names:
                close = difflib.get_close_matches(caller, names, n=1)
                raise where.error(("services", spec.name, "allow"), f"no service named {caller!r} in this project",
                                  hint=f"did you mean {close[0]!r}?" if close else "services: " + ", ".join(names))
        if spec.allow is not None and (mtls == "off" or spec.tls_terminator != "proxy"):
            why = "mesh.mtls is off" if mtls == "off" else "it runs no proxy sidecar with TLS"
            raise where.error(("services", spec.name, "allow"), f"cannot be enforced: {why}, so callers carry "
                              "no identity", hint="remove allow, or turn mTLS and the proxy on")
    # The mesh listener needs the proxy and its certificate.
    meshed = [s for s in specs if s.tls_terminator == "proxy"]
    if mtls == "off" or len(meshed) < 2:
        return specs
    if capture:
        _reject_shared_ports(specs, meshed, where)
    out = []
    for spec in specs:
        if spec not in meshed:
            # No sidecars: reached by name, in plain TCP, by everyone (`meshctl ps` says so).
            out.append(replace(spec, outside_mesh=spec.proxy is None and spec.tls is None and spec.metrics is None))
            continue
        others = [s for s in meshed if s.name != spec.name]
        peers = tuple((s.name, s.port) for s in others if s.protocol == "http")
        tcp_peers = tuple((s.name, s.port) for s in others if s.protocol == "tcp")
        out.append(replace(spec, mesh=MeshSettings(project, mtls, capture, peers, spec.allow, tcp_peers)))
    return out


def _reject_shared_ports(specs: list[ServiceSpec], meshed: list[ServiceSpec], where: _Where) -> None:
    """Capture redirects by destination port, and a TCP connection carries no Host: so a TCP
    service's port, and the port of a service outside the mesh, must be no other service's (HTTP
    services may share one: their proxies route by Host)."""
    by_port: dict[int, list[ServiceSpec]] = {}
    for spec in specs:
        by_port.setdefault(spec.port, []).append(spec)
    for port, sharing in by_port.items():
        routed_by_port = [s for s in sharing if s.protocol == "tcp" or s not in meshed]
        if len(sharing) > 1 and routed_by_port:
            spec = routed_by_port[0]
            other = next(s for s in sharing if s is not spec)
            what = "a TCP service" if spec in meshed else "outside the mesh"
            raise where.error(("services", spec.name, "port"), f"port {port} is also {other.name}'s, and {spec.name} "
                              f"is {what}: the mesh tells its connections apart by port alone",
                              hint=f"make {spec.name} (or {other.name}) listen on another port, or set "
                                   "`mesh: {capture: false}`")


_SERVICE_KEYS = ("build", "image", "runtime", "source", "port", "protocol", "health", "env", "command",
                 "metrics_path", "sidecars", "ports", "stop_grace_period", "watch", "checks", "allow")
PROTOCOLS = ("http", "tcp")
_HEALTH_HINT = "health: /healthz (HTTP), or for a TCP service health: {tcp: true} or health: {exec: [CMD, ...]}"


def _parse_protocol(raw: dict, port: int, image: str | None, path: tuple, where: _Where) -> str:
    """`protocol:` as written; else tcp where the port or image is plainly not HTTP, by the same
    evidence `meshctl inject` weighs (config/port_protocol.py), else http."""
    if "protocol" in raw:
        value = raw["protocol"]
        if not isinstance(value, str) or value.lower() not in PROTOCOLS:
            raise where.error(path + ("protocol",), f"unknown protocol {value!r}",
                              hint="protocol: http (the default: an HTTP proxy) or protocol: tcp (any other "
                                   "TCP protocol: a database, a line protocol)")
        return value.lower()
    return inferred_protocol(port, image)


def inferred_protocol(port: int, image: str | None) -> str:
    """tcp where the port or the image plainly is not HTTP (5432, redis:7…), else http."""
    verdict, _why = port_protocol(port, Facts(image))
    return "tcp" if verdict == TCP else "http"


def _parse_health(raw: dict, protocol: str, path: tuple, where: _Where) -> tuple[str, tuple[str, ...] | None]:
    """(HTTP path, exec command). A TCP service is ready on a TCP connect through its chain
    (`{tcp: true}`, the default) or a command in its app container; never an HTTP request."""
    health = raw.get("health", "/" if protocol == "http" else {"tcp": True})
    if protocol == "http":
        if not isinstance(health, str) or not health.startswith("/"):
            raise where.error(path + ("health",), "expected an HTTP path starting with /", hint=_HEALTH_HINT)
        return health, None
    if not isinstance(health, dict) or len(health) != 1 or next(iter(health)) not in ("tcp", "exec") \
            or health.get("tcp", True) is not True:
        raise where.error(path + ("health",), "a TCP service is checked by a TCP connect or a command, "
                          f"not {health!r}", hint=_HEALTH_HINT)
    if "exec" in health:
        command = _parse_command(health["exec"], path + ("health", "exec"), where)
        if not command:
            raise where.error(path + ("health", "exec"), "expected a command", hint=_HEALTH_HINT)
        return "/", command
    return "/", None


def _parse_service(name: str, raw: Any, index: int, root: Path, where: _Where) -> ServiceSpec:
    path = ("services", name)
    if not _NAME_RE.match(name):
        raise where.error(path, f"service name {name!r} is not valid",
                          hint="use lower-case letters, digits, '-', '_' or '.', starting with a letter or digit")
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a mapping of settings, found {_kind(raw)}")
    _no_unknown(raw, _SERVICE_KEYS, path, where)

    command = _parse_command(raw.get("command"), path + ("command",), where)
    build, image = _build_or_image(raw, path, where, root, "nginx:1.25")
    runtime, source = _parse_run_mode(raw, build, image, command, path, where, root)

    if "port" in raw:
        port = _parse_port(raw["port"], "port", where, path + ("port",), allow_zero=False)
    elif build is not None and (exposed := dockerfile_exposed_port((build / "Dockerfile").read_text())):
        port = exposed
    elif source is not None:
        port = RUN_MODE_PORT
    else:
        raise where.error(path + ("port",), "missing: the port the app listens on inside the pod",
                          hint="port: 8080")
    if port in RESERVED_POD_PORTS:
        raise where.error(path + ("port",), f"port {port} is one the sidecars use inside the pod (15000-15099)",
                          hint="make the app listen on another port")

    protocol = _parse_protocol(raw, port, image, path, where)
    health, health_exec = _parse_health(raw, protocol, path, where)
    metrics_path = raw.get("metrics_path")
    if metrics_path is not None and (not isinstance(metrics_path, str) or not metrics_path.startswith("/")):
        raise where.error(path + ("metrics_path",), "expected an HTTP path starting with /",
                          hint="metrics_path: /metrics")

    env_pairs = _parse_env(raw.get("env"), path + ("env",), where)

    sidecars = _parse_sidecars(raw.get("sidecars"), path + ("sidecars",), where, root)
    stop_grace = _duration(raw.get("stop_grace_period", 10), path + ("stop_grace_period",), where)
    watch = _parse_watch(raw.get("watch"), path + ("watch",), where)
    if source is not None and not watch.sync:
        watch = replace(watch, sync=run_mode_sync(root, source))
    checks = _parse_checks(raw.get("checks"), path + ("checks",), where, has_tls=sidecars["tls"] is not None)

    allow = raw.get("allow")
    if allow is not None:
        if not isinstance(allow, list) or not all(isinstance(n, str) for n in allow):
            raise where.error(path + ("allow",), "expected a list of service names", hint="allow: [web]")
        allow = tuple(allow)

    spec = ServiceSpec(name=name, port=port, build=build, image=image, health=health,
                       env=env_pairs, command=command, metrics_path=metrics_path,
                       stop_grace_period=stop_grace, watch=watch, checks=checks, allow=allow, runtime=runtime,
                       source=source, protocol=protocol, health_exec=health_exec, **sidecars)
    if protocol == "tcp" and any(isinstance(c, HttpCheck) for c in checks):
        raise where.error(path + ("checks",), "HTTP checks need an HTTP service; this one is protocol: tcp",
                          hint="use `exec:` checks for a TCP service")
    if protocol == "tcp" and metrics_path is not None:
        raise where.error(path + ("metrics_path",), "the metrics sidecar reads an app's own metrics over HTTP; "
                          "this one is protocol: tcp", hint="remove metrics_path (its connections are counted anyway)")
    ports = _default_ports(index, spec)
    raw_ports = raw.get("ports")
    if raw_ports is not None:
        if not isinstance(raw_ports, dict):
            raise where.error(path + ("ports",), f"expected a mapping, found {_kind(raw_ports)}",
                              hint="ports: {https: 8443, http: 8080, metrics: 9090}")
        _no_unknown(raw_ports, PORT_NAMES, path + ("ports",), where)
        for key, value in raw_ports.items():
            ports[key] = _parse_port(value, key, where, path + ("ports", key), allow_zero=True)
    return _with_ports(spec, ports)


RUN_MODE_PORT = 8080       # the port a command of `meshctl up -- CMD` listens on, unless told
RUN_MODE_EXAMPLE = ("command: [node, server.js]   (the runtime is picked from package.json, pyproject.toml or "
                    "requirements.txt, go.mod; or say runtime: node|python|go, or image: ruby:3.3 with source: .)")


def _parse_run_mode(raw: dict, build: Path | None, image: str | None, command: tuple[str, ...] | None,
                    path: tuple, where: _Where, root: Path) -> tuple[str | None, Path | None]:
    """Which of the three a service is: built (`build`), an image (`image`, maybe with `source`
    to run a command in your folder), or run mode with no Dockerfile (`runtime`, or a `command`
    alone). Returns (runtime, source)."""
    runtime = raw.get("runtime")
    if sum(x is not None for x in (build, image, runtime)) > 1:
        raise where.error(path, "set exactly one of `build` (a folder with a Dockerfile), `image`, or `runtime`",
                          hint="build: .   or   image: nginx:1.25   or   runtime: node with command: [node, server.js]")
    if build is not None:
        if "source" in raw:
            raise where.error(path + ("source",), "`source` is for a service without a Dockerfile; "
                              "a built one has its files in its image", hint="use watch.sync to mount a folder")
        return None, None
    source = None
    if "source" in raw or image is None:
        value = raw.get("source", ".")
        if not isinstance(value, str) or not (root / value).is_dir():
            raise where.error(path + ("source",), f"{value!r} is not a folder", hint="source: .")
        source = (root / value).resolve()
    if image is not None:
        return None, source
    if command is None:
        raise where.error(path, "set `build`, `image`, or a `command` to run in your folder (no Dockerfile needed)",
                          hint=RUN_MODE_EXAMPLE)
    assert source is not None
    if runtime is None:
        picked = runtimes.detect(source, command)
        if picked is None:
            raise where.error(path + ("command",), f"cannot tell which runtime runs {command[0]!r} in {source}",
                              hint="say runtime: node, python or go, or image: IMAGE with source: .")
        return picked.name, source
    if runtime not in runtimes.RUNTIMES:
        raise where.error(path + ("runtime",), f"{runtime!r} is not a runtime meshctl builds",
                          hint="runtime: " + " | ".join(runtimes.RUNTIMES) + "; or image: IMAGE with source: .")
    return runtime, source


def run_mode_sync(root: Path, source: Path) -> tuple[tuple[str, str], ...]:
    """Run mode mounts the source at /app in sync mode: a save restarts the command in place."""
    return ((os.path.relpath(source, root), runtimes.APP_DIR),)


def _build_or_image(raw: dict, path: tuple, where: _Where, root: Path, example: str) -> tuple[Path | None, str | None]:
    """`build` (a folder with a Dockerfile, relative to mesh.yaml's) and `image`, where given."""
    build = image = None
    if "build" in raw:
        if not isinstance(raw["build"], str):
            raise where.error(path + ("build",), "expected a folder path")
        build = (root / raw["build"]).resolve()
        if not (build / "Dockerfile").is_file():
            raise where.error(path + ("build",), f"no Dockerfile in {build}",
                              hint="point `build` at the folder that holds the Dockerfile")
    if "image" in raw:
        image = raw["image"]
        if not isinstance(image, str) or not image.strip():
            raise where.error(path + ("image",), f"expected an image reference like {example}")
    return build, image


def _parse_env(raw: Any, path: tuple, where: _Where) -> tuple[tuple[str, str], ...]:
    env = raw or {}
    if not isinstance(env, dict):
        raise where.error(path, f"expected a mapping of names to values, found {_kind(env)}",
                          hint="env: {GREETING: hi}")
    pairs = []
    for key, value in env.items():
        if isinstance(value, (dict, list)):
            raise where.error(path + (key,), "expected a plain value (string, number or boolean)")
        pairs.append((str(key), "" if value is None else _scalar_text(value)))
    return tuple(pairs)


def _parse_command(command: Any, path: tuple, where: _Where) -> tuple[str, ...] | None:
    if command is None:
        return None
    if isinstance(command, str):
        return ("sh", "-c", command)
    if isinstance(command, list) and all(isinstance(c, (str, int, float)) for c in command):
        return tuple(str(c) for c in command)
    raise where.error(path, "expected a string or a list of strings")


def _with_ports(spec: ServiceSpec, ports: dict[str, int]) -> ServiceSpec:
    # A port exists only for what runs: https needs tls, metrics needs metrics; http is the
    # proxy's (or, with no proxy, the app's own port).
    wanted = [p for p in PORT_NAMES if (p != "https" or spec.tls) and (p != "metrics" or spec.metrics)]
    return replace(spec, ports=tuple((p, ports[p]) for p in wanted if p in ports))


def _default_ports(index: int, spec: ServiceSpec) -> dict[str, int]:
    return {p: (DEFAULT_HOST_PORTS[p] if index == 0 else 0) for p in PORT_NAMES}


def _parse_sidecars(raw: Any, path: tuple, where: _Where, root: Path) -> dict[str, Any]:
    settings: dict[str, Any] = {"tls": TlsSettings(), "proxy": ProxySettings(), "metrics": MetricsSettings(),
                                "user_sidecars": ()}
    if raw is None:
        return settings
    if raw is False:           # a stock image (a database) as it is: no sidecars at all
        return {**settings, "tls": None, "proxy": None, "metrics": None}
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a mapping of sidecar names, found {_kind(raw)}",
                          hint="sidecars: {proxy: {timeout: 15s}, tls: {}, metrics: {}, cache: {image: redis:7}}")
    settings["user_sidecars"] = tuple(_parse_user_sidecar(str(name), value, path + (name,), where, root)
                                      for name, value in raw.items() if name not in SIDECAR_SETTINGS)
    for role in SIDECAR_SETTINGS:
        if role not in raw:
            continue
        value = raw[role]
        if value is False:
            settings[role] = None
            continue
        if value is None or value is True:
            value = {}
        if not isinstance(value, dict):
            raise where.error(path + (role,), f"expected a mapping of settings, or false to drop it, found {_kind(value)}")
        rpath = path + (role,)
        if role == "proxy":
            _no_unknown(value, ("timeout", "retries", "connect_timeout"), rpath, where)
            retries = value.get("retries", 2)
            if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 100:
                raise where.error(rpath + ("retries",), "expected a whole number from 0 to 100")
            settings[role] = ProxySettings(
                timeout=_duration(value.get("timeout", 15), rpath + ("timeout",), where),
                retries=retries,
                connect_timeout=_duration(value.get("connect_timeout", 0.2), rpath + ("connect_timeout",), where))
        elif role == "tls":
            _no_unknown(value, ("hosts",), rpath, where)
            hosts = value.get("hosts", [])
            if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
                raise where.error(rpath + ("hosts",), "expected a list of host names")
            settings[role] = TlsSettings(hosts=tuple(hosts))
        else:
            _no_unknown(value, (), rpath, where)
            settings[role] = MetricsSettings()
    return settings


# Names a user sidecar may not take: the pod's own roles, and what the holder and installs use.
RESERVED_SIDECAR_NAMES = ("pod", "app", "install", "deps")
_USER_SIDECAR_KEYS = ("image", "build", "command", "entrypoint", "env", "ready", "user", "read_only", "cap_add",
                      "stop_grace_period")
_USER_SIDECAR_EXAMPLE = ("sidecars:\n  cache: {image: redis:7, ready: {tcp: 6379}}\n"
                         "  notes: {build: ./notes, command: [python3, notes.py], ready: {http: /ready, port: 9000}}")


def _parse_user_sidecar(name: str, raw: Any, path: tuple, where: _Where, root: Path) -> UserSidecar:
    """Any name under `sidecars:` other than meshctl's own declares a sidecar of the user's."""
    if name in RESERVED_SIDECAR_NAMES or not _NAME_RE.match(name):
        problem = (f"{name!r} is a name meshctl uses in every pod" if name in RESERVED_SIDECAR_NAMES
                   else f"sidecar name {name!r} is not valid")
        raise where.error(path, problem, hint="name your sidecar for what it does (lower-case letters, digits, "
                          "'-', '_' or '.'); meshctl's own are " + ", ".join(SIDECAR_SETTINGS))
    close = difflib.get_close_matches(name, SIDECAR_SETTINGS, n=1)
    if not isinstance(raw, dict) or ("image" in raw) == ("build" in raw):
        what = "needs exactly one of `image` or `build`" if isinstance(raw, dict) else \
            f"expected a mapping with `image` or `build`, found {_kind(raw)}"
        raise where.error(path, f"sidecar {name!r} {what}",
                          hint=(f"did you mean {close[0]!r}? " if close else "")
                          + "meshctl's own sidecars are: " + ", ".join(SIDECAR_SETTINGS)
                          + "; a sidecar of yours needs an image or a build folder:\n" + _USER_SIDECAR_EXAMPLE)
    _no_unknown(raw, _USER_SIDECAR_KEYS, path, where)
    build, image = _build_or_image(raw, path, where, root, "redis:7")
    user = raw.get("user")
    if user is not None and (isinstance(user, bool) or not isinstance(user, (str, int)) or not str(user).strip()):
        raise where.error(path + ("user",), "expected a user name or uid[:gid]", hint="user: \"0\" runs it as root")
    read_only = raw.get("read_only", True)
    if not isinstance(read_only, bool):
        raise where.error(path + ("read_only",), "expected true or false")
    cap_add = raw.get("cap_add") or []
    if not isinstance(cap_add, list) or not all(isinstance(c, str) and re.fullmatch(r"[A-Za-z_]+", c) for c in cap_add):
        raise where.error(path + ("cap_add",), "expected a list of Linux capabilities", hint="cap_add: [NET_BIND_SERVICE]")
    return UserSidecar(
        name=name, image=image, build=build, command=_parse_command(raw.get("command"), path + ("command",), where),
        entrypoint=_parse_command(raw.get("entrypoint"), path + ("entrypoint",), where),
        env=_parse_env(raw.get("env"), path + ("env",), where),
        ready=_parse_ready(raw.get("ready"), path + ("ready",), where), user=None if user is None else str(user),
        read_only=read_only, cap_add=tuple(c.upper().removeprefix("CAP_") for c in cap_add),
        stop_grace_period=_duration(raw.get("stop_grace_period", 5), path + ("stop_grace_period",), where))


_READY_KINDS = ("tcp", "http", "exec")


def _parse_ready(raw: Any, path: tuple, where: _Where) -> ReadySpec | None:
    if raw is None:
        return None
    hint = "ready: {tcp: 6379}   or   ready: {http: /ready, port: 9000}   or   ready: {exec: [redis-cli, ping]}"
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a mapping, found {_kind(raw)}", hint=hint)
    kinds = [k for k in raw if k in _READY_KINDS]
    unknown = [k for k in raw if k not in (*_READY_KINDS, "port")]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), _READY_KINDS, n=1)
        raise where.error(path + (unknown[0],), f"unknown ready kind {unknown[0]!r}",
                          hint=(f"did you mean {close[0]!r}? " if close else "") + hint)
    if len(kinds) != 1:
        raise where.error(path, "set exactly one of tcp, http or exec", hint=hint)
    if "port" in raw and kinds[0] != "http":
        raise where.error(path + ("port",), "`port` goes with `http` only", hint=hint)
    if kinds[0] == "tcp":
        return ReadySpec(tcp=_parse_port(raw["tcp"], "tcp", where, path + ("tcp",)))
    if kinds[0] == "http":
        http = raw["http"]
        if not isinstance(http, str) or not http.startswith("/"):
            raise where.error(path + ("http",), "expected an HTTP path starting with /", hint=hint)
        if "port" not in raw:
            raise where.error(path + ("port",), "missing: the port the sidecar answers on inside the pod", hint=hint)
        return ReadySpec(http=http, port=_parse_port(raw["port"], "port", where, path + ("port",)))
    command = _parse_command(raw["exec"], path + ("exec",), where)
    if not command:
        raise where.error(path + ("exec",), "expected a command", hint=hint)
    return ReadySpec(exec=command)


def _parse_watch(raw: Any, path: tuple, where: _Where) -> WatchSettings:
    if raw is None:
        return WatchSettings()
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a mapping, found {_kind(raw)}",
                          hint='watch: {sync: {".": /app}, rebuild: [requirements.txt], ignore: ["*.log"]}')
    _no_unknown(raw, ("sync", "rebuild", "ignore"), path, where)
    sync = raw.get("sync") or {}
    if not isinstance(sync, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.startswith("/")
                                             for k, v in sync.items()):
        raise where.error(path + ("sync",), "expected a mapping of local folder to absolute container path",
                          hint='sync: {".": /app}')
    lists = {}
    for key in ("rebuild", "ignore"):
        value = raw.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise where.error(path + (key,), "expected a list of file globs", hint=f'{key}: ["*.txt"]')
        lists[key] = tuple(value)
    return WatchSettings(sync=tuple(sync.items()), **lists)


# The checks `meshctl test` runs for every service; a declared check may not take these names.
BUILTIN_CHECK_NAMES = ("ready", "https", "certificate", "http", "metrics")
_CHECK_KEYS = ("name", "request", "exec", "via", "expect", "timeout")
_HTTP_EXPECT_KEYS = ("status", "body_contains", "body_matches", "json", "max_latency")
_EXEC_EXPECT_KEYS = ("exit_code", "output_contains")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_CHECK_EXAMPLE = ("checks:\n  - name: greets\n    request: {method: GET, path: /}\n"
                  "    expect: {status: 200, body_contains: hi}\n"
                  "  - name: migrations applied\n    exec: [python3, manage.py, check]\n    expect: {exit_code: 0}")


def _parse_checks(raw: Any, path: tuple, where: _Where, *, has_tls: bool) -> tuple[CheckSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise where.error(path, f"expected a list of checks, found {_kind(raw)}", hint=_CHECK_EXAMPLE)
    checks: list[CheckSpec] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        check = _parse_check(item, path + (index,), where, has_tls)
        if check.name in BUILTIN_CHECK_NAMES:
            raise where.error(path + (index, "name"), f"{check.name!r} is the name of a built-in check",
                              hint="name it for what it checks, e.g. `name: greets`")
        if check.name in seen:
            raise where.error(path + (index, "name"), f"check name {check.name!r} is also used by check {seen[check.name] + 1}",
                              hint="give each check a different `name`: it names the test case in the report")
        seen[check.name] = index
        checks.append(check)
    return tuple(checks)


def _parse_check(raw: Any, path: tuple, where: _Where, has_tls: bool) -> CheckSpec:
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a mapping with `request:` or `exec:`, found {_kind(raw)}", hint=_CHECK_EXAMPLE)
    _no_unknown(raw, _CHECK_KEYS, path, where)
    if ("request" in raw) == ("exec" in raw):
        raise where.error(path, "set exactly one of `request` (an HTTP check) or `exec` (a command in the app)",
                          hint=_CHECK_EXAMPLE)
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise where.error(path + ("name",), "expected a short text")
    expect = raw.get("expect") or {}
    if not isinstance(expect, dict):
        raise where.error(path + ("expect",), f"expected a mapping, found {_kind(expect)}")
    if "exec" in raw:
        return _parse_exec_check(raw, name, expect, path, where)
    return _parse_http_check(raw, name, expect, path, where, has_tls)


def _parse_http_check(raw: dict, name: str | None, expect: dict, path: tuple, where: _Where,
                      has_tls: bool) -> HttpCheck:
    request = raw["request"]
    rpath = path + ("request",)
    if isinstance(request, str):
        # Shorthand: "GET /version" or "/version".
        words = request.split()
        request = {"method": words[0], "path": words[1]} if len(words) == 2 else {"path": request.strip()}
    if not isinstance(request, dict):
        raise where.error(rpath, f"expected a mapping or \"METHOD /path\", found {_kind(request)}",
                          hint="request: {method: POST, path: /items, headers: {X-Token: t}, body: {name: a}}")
    _no_unknown(request, ("method", "path", "headers", "body"), rpath, where)
    method = request.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise where.error(rpath + ("method",), f"{method!r} is not an HTTP method", hint=", ".join(_METHODS))
    method = method.upper()
    url_path = request.get("path", "/")
    if not isinstance(url_path, str) or not url_path.startswith("/"):
        raise where.error(rpath + ("path",), "expected an HTTP path starting with /", hint="path: /healthz")
    headers = request.get("headers") or {}
    if not isinstance(headers, dict) or any(isinstance(v, (dict, list)) for v in headers.values()):
        raise where.error(rpath + ("headers",), "expected a mapping of header names to values",
                          hint="headers: {Accept: application/json}")
    header_pairs = [(str(k), _scalar_text(v)) for k, v in headers.items()]
    body = request.get("body")
    body_bytes = None
    if isinstance(body, (dict, list)):
        # Structured bodies are sent as JSON, with its content type unless one is given.
        body_bytes = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k, _ in header_pairs):
            header_pairs.append(("Content-Type", "application/json"))
    elif body is not None:
        body_bytes = _scalar_text(body).encode()
    # Through the whole chain when there is one; the plain port otherwise.
    via = raw.get("via", "https" if has_tls else "http")
    if via not in ("https", "http"):
        raise where.error(path + ("via",), f"{via!r} is not an endpoint",
                          hint="via: https (HTTPS → proxy → app, the default) or via: http (the plain port)")
    if via == "https" and not has_tls:
        raise where.error(path + ("via",), "this check goes through https, but tls is off for this service (sidecars.tls: false)",
                          hint="use `via: http`, or turn tls back on")

    epath = path + ("expect",)
    _no_unknown(expect, _HTTP_EXPECT_KEYS, epath, where)
    status = expect.get("status", [])
    status = [status] if isinstance(status, int) else status
    if not isinstance(status, list) or not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599
                                               for s in status):
        raise where.error(epath + ("status",), "expected a status code (100-599) or a list of them",
                          hint="status: 200   or   status: [200, 204]")
    texts = {}
    for key in ("body_contains", "body_matches"):
        value = expect.get(key)
        if value is not None and not isinstance(value, str):
            raise where.error(epath + (key,), f"expected a text, found {_kind(value)}")
        texts[key] = value
    if texts["body_matches"] is not None:
        try:
            re.compile(texts["body_matches"])
        except re.error as exc:
            raise where.error(epath + ("body_matches",), f"not a valid regular expression: {exc}") from exc
    fields = expect.get("json") or {}
    if not isinstance(fields, dict):
        raise where.error(epath + ("json",), "expected a mapping of dotted field paths to values",
                          hint='json: {status: ok, "items.0.id": 3}')
    latency = expect.get("max_latency")
    return HttpCheck(
        name=(name or f"{method} {url_path}").strip(), path=url_path, method=method,
        headers=tuple(header_pairs), body=body_bytes, via=via, status=tuple(status),
        body_contains=texts["body_contains"], body_matches=texts["body_matches"],
        json=tuple((str(k), v) for k, v in fields.items()),
        max_latency=None if latency is None else _duration(latency, epath + ("max_latency",), where),
        timeout=_duration(raw.get("timeout", 10), path + ("timeout",), where))


def _parse_exec_check(raw: dict, name: str | None, expect: dict, path: tuple, where: _Where) -> ExecCheck:
    command = raw["exec"]
    if isinstance(command, str) and command.strip():
        command = ("sh", "-c", command)
    elif isinstance(command, list) and command and all(isinstance(c, (str, int, float)) for c in command):
        command = tuple(str(c) for c in command)
    else:
        raise where.error(path + ("exec",), "expected a command: a string (run by sh -c) or a list",
                          hint="exec: [python3, -c, 'import app']")
    epath = path + ("expect",)
    _no_unknown(expect, _EXEC_EXPECT_KEYS, epath, where)
    exit_code = expect.get("exit_code", 0)
    if isinstance(exit_code, bool) or not isinstance(exit_code, int) or not 0 <= exit_code <= 255:
        raise where.error(epath + ("exit_code",), "expected an exit code from 0 to 255")
    contains = expect.get("output_contains")
    if contains is not None and not isinstance(contains, str):
        raise where.error(epath + ("output_contains",), f"expected a text, found {_kind(contains)}")
    label = command[2] if command[:2] == ("sh", "-c") else " ".join(command)
    return ExecCheck(name=(name or f"exec {label}")[:80].strip(), command=command, exit_code=exit_code,
                     output_contains=contains,
                     timeout=_duration(raw.get("timeout", 30), path + ("timeout",), where))


def _reject_duplicate_host_ports(specs: list[ServiceSpec], where: _Where) -> None:
    seen: dict[int, tuple] = {}
    for spec in specs:
        for key, port in spec.ports:
            if port == 0:
                continue
            path = ("services", spec.name, "ports", key)
            if port in seen:
                raise where.error(path, f"host port {port} is also used by {'.'.join(seen[port])}",
                                  hint="give each a different port, or 0 for a free one")
            seen[port] = path


# ---------------------------------------------------------------------------------------------
# Small value parsers


def parse_duration(value: Any) -> float | None:
    """'15s' → 15.0, '500ms' → 0.5, 2 → 2.0; None when it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return None


def _duration(value: Any, path: tuple, where: _Where) -> float:
    seconds = parse_duration(value)
    if seconds is None:
        raise where.error(path, f"{value!r} is not a duration", hint="write it like 15s, 500ms or 2m")
    return seconds


def _parse_port(value: Any, label: str, where: _Where | None, path: tuple = (), *,
                allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        problem = f"{value!r} is not a port number ({low}-65535)"
        hint = "0 asks for a free port" if allow_zero else None
        if where is None:
            raise ConfigError(f"{label}: {problem}", hint=hint)
        raise where.error(path, problem, hint=hint)
    return value


def _project_name(value: Any, root: Path | None, path: tuple, where: _Where | None = None) -> str:
    if value is None:
        return _sanitize(root.name if root else "") or "meshctl"
    if not isinstance(value, str) or not _NAME_RE.match(value):
        problem = f"project name {value!r} is not valid"
        hint = "use lower-case letters, digits, '-', '_' or '.', starting with a letter or digit"
        if where is None:
            raise ConfigError(problem, hint=hint)
        raise where.error(path, problem, hint=hint)
    return value


def _sanitize(text: str) -> str:
    text = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-_.")
    return text


def _no_unknown(mapping: dict, allowed: tuple, path: tuple, where: _Where) -> None:
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else (
                "allowed here: " + ", ".join(allowed) if allowed else "this takes no settings")
            raise where.error(path + (key,), f"unknown field {key!r}", hint=hint)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "nothing"}.get(type(value), type(value).__name__)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
