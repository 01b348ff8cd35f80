"""The entry points: mesh.yaml (or a bare Dockerfile, or --image/--port, or `-- CMD` in a folder)
→ a frozen, validated ProjectSpec.

Every error names the file, the line and the field, and says what to do. Nothing here touches
Docker or the network; reading the files is the only I/O. The parts of mesh.yaml are parsed in
services.py, mesh.py, check_specs.py, sidecar_settings.py and run_mode.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from .fields import keys
from ..errors import ConfigError
from ..model import split_image_ref
from . import yamlpos
from .depends import check_dependencies
from .interpolate import environment_for, interpolate
from .schema import typed_by_schema
from .mesh import with_mesh
from .tracing import parse_tracing
from .run_mode import command_service
from .services import (
    default_ports, dockerfile_exposed_port, inferred_protocol, parse_service, reject_duplicate_host_ports, with_ports,
)
from .spec import CONFIG_NAMES, ProjectSpec, ServiceSpec
from .values import NAME_HINT, NAME_RE, kind_of, port_field, reject_unknown, sanitize_name
from .yamlpos import Where, line_map


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
        return _from_image(path, image, port, name)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder",
                          hint="pass a folder with a mesh.yaml or a Dockerfile, or use --image IMAGE --port N")
    config = find_config(path)
    if config is not None:
        project = parse_project(config.read_text(encoding="utf-8"), source=config, root=config.parent)
        if command is not None:
            project = _with_command(project, command, config)
    elif command is not None and (image is not None or runtime is not None or not (path / "Dockerfile").is_file()):
        project = _one_service(command_service(path, command, image=image, runtime=runtime), path)
    else:
        project = _from_dockerfile(path)
        if command is not None:
            project = _with_command(project, command, path / "Dockerfile")
    if port is not None and len(project.services) == 1:
        project = replace(project, services=(replace(project.services[0],
                                                     port=port_field(port, "--port", None)),))
    if name:
        project = replace(project, name=_project_name(name, None, ("name",)))
    return project


def _from_image(path: Path, image: str, port: int | None, name: str | None) -> ProjectSpec:
    """`meshctl up --image IMG --port N`: one service, that image as it is."""
    if port is None:
        raise ConfigError("--image needs --port: the port the app listens on inside the pod",
                          hint=f"meshctl up --image {image} --port 8080   (or run a command in your folder: "
                               f"meshctl up --image {image} -- CMD)")
    service_name = sanitize_name(split_image_ref(image)[0].rpartition("/")[2]) or "app"
    spec = ServiceSpec(name=service_name, image=image, port=port_field(port, "--port", None),
                       protocol=inferred_protocol(port, image))
    return _one_service(spec, path if path.is_dir() else Path.cwd(), name)


def _one_service(service: ServiceSpec, root: Path, name: str | None = None) -> ProjectSpec:
    """A project of one service, named after it, given the default host ports."""
    service = with_ports(service, default_ports(0, service))
    return ProjectSpec(name=name or service.name, root=root, services=(service,))


def _with_command(project: ProjectSpec, command: tuple[str, ...], source: Path) -> ProjectSpec:
    """`-- CMD` replaces the one service's command."""
    if len(project.services) != 1:
        raise ConfigError(f"{source}: `-- CMD` gives one command, but there are {len(project.services)} services",
                          hint="set each service's `command:` in mesh.yaml instead")
    return replace(project, services=(replace(project.services[0], command=command),))


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
    return _one_service(ServiceSpec(name=sanitize_name(folder.name) or "app", build=folder, port=port), folder)


def parse_project(text: str, *, source: Path | None = None, root: Path | None = None,
                  variables: Mapping[str, str] | None = None) -> ProjectSpec:
    """Parse and validate mesh.yaml text, its `${VAR}`s read from `variables` (default: the
    shell's environment over the .env beside it). Pure apart from reading .env and checking
    that build folders exist."""
    label = str(source) if source else "mesh.yaml"
    hint = "fix the YAML syntax at that line (indentation, a missing colon or quote)"
    node = yamlpos.compose(text, label, loader=yaml.SafeLoader, hint=hint, what="mesh.yaml")
    root = root or (source.parent if source else Path.cwd())
    variables = environment_for(source.parent if source else root) if variables is None else variables
    where = Where(source, line_map(node), variables)
    data = interpolate(yamlpos.construct(node, label, loader=yaml.SafeLoader, hint=hint), variables, where)
    data = typed_by_schema(data)       # a ${VAR} where a number or boolean is wanted is read as one
    if data is None:
        raise where.error((), "the file is empty", hint="run `meshctl init` for a commented example")
    if not isinstance(data, dict):
        raise where.error((), f"expected a mapping with `services:`, found {kind_of(data)}")
    reject_unknown(data, keys("project"), (), where)
    name = _project_name(data.get("name"), root, ("name",), where)
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        raise where.error(("services",), "expected a mapping of service names to settings",
                          hint="services:\n  web:\n    build: .\n    port: 8080")
    specs = [parse_service(str(svc_name), raw, index, root, where)
             for index, (svc_name, raw) in enumerate(services.items())]
    reject_duplicate_host_ports(specs, where)
    check_dependencies(specs, where)
    specs = with_mesh(name, data.get("mesh"), specs, where)
    tracing = parse_tracing((data.get("mesh") or {}).get("tracing"), where)
    if tracing is not None:
        specs = [replace(spec, tracing=tracing) for spec in specs]
    return ProjectSpec(name=name, root=root, services=tuple(specs), source=source)


def _project_name(value: Any, root: Path | None, path: tuple, where: Where | None = None) -> str:
    if value is None:
        return sanitize_name(root.name if root else "") or "meshctl"
    if not isinstance(value, str) or not NAME_RE.match(value):
        problem = f"project name {value!r} is not valid"
        if where is None:
            raise ConfigError(problem, hint=NAME_HINT)
        raise where.error(path, problem, hint=NAME_HINT)
    return value
