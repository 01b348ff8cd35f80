"""The runtimes of `meshctl up -- CMD` with no Dockerfile: one definition per runtime (Node.js,
Python, Go), as sidecars.KINDS is for sidecars. Each says which files pick it, the image folder
under runtimes/ (built locally from the base image with Debian's packages, tagged by a hash of the
folder), which files key its dependency cache, how the cache is installed and where it is mounted.

The user's folder is mounted read-only at /app (the working directory). Dependencies are installed
once, by a one-shot container, into a volume named by a hash of the dependency files and reused
until they change. Pure but for reading the user's dependency files."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .spec import ServiceSpec

APP_DIR = "/app"
# Where the install container sees a CA bundle the machine's TLS goes through (MESHCTL_INSTALL_CA).
INSTALL_CA = "/etc/meshctl-install-ca.pem"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Runtime:
    name: str
    markers: tuple[str, ...]                 # files in the folder that pick this runtime
    programs: tuple[str, ...]                # commands that pick it when no marker does
    dependency_files: tuple[str, ...]        # their content keys the cache volume
    has_dependencies: Callable[[Path], bool]  # is there anything to install?
    install: str                             # sh script of the install container (cwd /app)
    install_mount: str                       # the cache volume in the install container
    app_mount: str                           # … and in the app's
    env: dict[str, str] = field(default_factory=dict)        # the app's and the install's, always
    cache_env: dict[str, str] = field(default_factory=dict)  # with a cache volume mounted
    # Of `programs`, those a package installs (the runtime image has the others): they run only
    # when the folder's dependencies name their package.
    from_packages: tuple[str, ...] = ()
    names_package: Callable[[Path, str], bool] = lambda folder, package: False

    def dependency_paths(self, folder: Path) -> list[Path]:
        return [folder / name for name in self.dependency_files if (folder / name).is_file()]


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _node_dependencies(folder: Path) -> bool:
    package = _json(folder / "package.json")
    return any(package.get(key) for key in ("dependencies", "devDependencies", "optionalDependencies"))


def _requirement_lines(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [line for line in (raw.split("#", 1)[0].strip() for raw in lines) if line]


_REQUIREMENT_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _python_requirements(folder: Path) -> set[str]:
    """The package names requirements.txt (or pyproject.toml's dependencies) lists, lower case;
    a package's command is spelt as its name (gunicorn, waitress → waitress-serve aside)."""
    lines = _requirement_lines(folder / "requirements.txt")
    if not lines and (folder / "pyproject.toml").is_file():
        lines = re.findall(r"[\"']([A-Za-z0-9][^\"']*)[\"']", (folder / "pyproject.toml").read_text(encoding="utf-8"))
    names = {m.group(1).lower() for line in lines if (m := _REQUIREMENT_NAME_RE.match(line))}
    return names | {"waitress-serve" for name in names if name == "waitress"}


def _python_dependencies(folder: Path) -> bool:
    if (folder / "requirements.txt").is_file():
        return bool(_requirement_lines(folder / "requirements.txt"))
    try:
        text = (folder / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return False
    try:
        import tomllib
    except ImportError:             # Python 3.10: a list that is not empty, by its text
        return bool(re.search(r"^dependencies\s*=\s*\[\s*[\"']", text, re.M))
    try:
        return bool(tomllib.loads(text).get("project", {}).get("dependencies"))
    except tomllib.TOMLDecodeError:
        return False


def _go_dependencies(folder: Path) -> bool:
    try:
        return bool(re.search(r"^\s*require\b", (folder / "go.mod").read_text(encoding="utf-8"), re.M))
    except OSError:
        return False


# pyproject.toml's [project].dependencies, read by the runtime's own Python (3.11: tomllib).
_PYPROJECT_REQUIREMENTS = ("python3 -c 'import tomllib; print(chr(10).join(tomllib.load(open(\"pyproject.toml\", "
                           "\"rb\")).get(\"project\", {}).get(\"dependencies\", [])))' > /tmp/requirements.txt")

RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    Runtime(
        name="node", markers=("package.json",), programs=("node", "npm", "npx", "nodejs"),
        dependency_files=("package.json", "package-lock.json", "npm-shrinkwrap.json"),
        has_dependencies=_node_dependencies,
        # npm installs next to a copy of the manifest; the volume is that node_modules, which the
        # app sees at /node_modules (Node.js looks there after /app/node_modules).
        install=("cp package.json /deps/ && for f in package-lock.json npm-shrinkwrap.json; do "
                 "if [ -f \"$f\" ]; then cp \"$f\" /deps/; fi; done && cd /deps && "
                 "npm install --no-audit --no-fund --loglevel=http --fetch-retries=1"),
        install_mount="/deps/node_modules", app_mount="/node_modules",
        env={"HOME": "/tmp", "npm_config_cache": "/tmp/.npm", "npm_config_update_notifier": "false"}),
    Runtime(
        name="python", markers=("pyproject.toml", "requirements.txt"),
        programs=("python", "python3", "pip", "pip3", "uvicorn", "gunicorn", "flask", "hypercorn", "celery",
                  "streamlit", "waitress-serve"),
        from_packages=("uvicorn", "gunicorn", "flask", "hypercorn", "celery", "streamlit", "waitress-serve"),
        names_package=lambda folder, package: package in _python_requirements(folder),
        dependency_files=("requirements.txt", "pyproject.toml"), has_dependencies=_python_dependencies,
        install=("if [ -f requirements.txt ]; then cp requirements.txt /tmp/requirements.txt; else "
                 + _PYPROJECT_REQUIREMENTS + "; fi && pip install --target /deps --no-cache-dir "
                 "--disable-pip-version-check --progress-bar off -r /tmp/requirements.txt"),
        install_mount="/deps", app_mount="/deps",
        env={"HOME": "/tmp", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
        cache_env={"PYTHONPATH": "/deps", "PATH": f"/deps/bin:{_PATH}"}),
    Runtime(
        name="go", markers=("go.mod",), programs=("go",), dependency_files=("go.mod", "go.sum"),
        has_dependencies=_go_dependencies, install="go mod download -x",
        install_mount="/deps", app_mount="/deps",
        env={"HOME": "/tmp", "GOPATH": "/tmp/go", "GOCACHE": "/tmp/go-build", "GOFLAGS": "-modcacherw"},
        cache_env={"GOMODCACHE": "/deps/mod", "GOCACHE": "/deps/build"}),
)}


def program_of(command: tuple[str, ...]) -> str:
    """The program a command runs: its first word, or for a string command (sh -c TEXT) TEXT's."""
    if command[:2] == ("sh", "-c") and len(command) > 2 and command[2].split():
        return command[2].split()[0]
    return command[0]


def detect(folder: Path, command: tuple[str, ...] | None) -> Runtime | None:
    """The runtime a folder asks for: by its files (package.json, pyproject.toml or
    requirements.txt, go.mod); when several or none match, by the command's program."""
    program = Path(program_of(command)).name if command else ""
    marked = [r for r in RUNTIMES.values() if any((folder / m).is_file() for m in r.markers)]
    if len(marked) == 1:
        return marked[0]
    candidates = marked or list(RUNTIMES.values())
    by_program = [r for r in candidates if program in r.programs or program.startswith(r.programs)]
    return by_program[0] if len(by_program) == 1 else None


def dependency_hash(runtime: Runtime, folder: Path, image: str) -> str:
    """What keys the cache: the dependency files' contents, the runtime image and its install."""
    digest = hashlib.sha256(f"{runtime.name}\0{image}\0{runtime.install}\0".encode())
    for path in runtime.dependency_paths(folder):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def deps_volume_name(project: str, service: str, digest: str) -> str:
    return f"meshctl-{project}-{service}-deps-{digest}"


@dataclass(frozen=True)
class DependencyCache:
    """A run-mode service's installed dependencies: a volume named by their hash."""
    runtime: Runtime
    volume: str
    digest: str
    files: tuple[str, ...]          # the dependency files it was installed from, for messages


def dependency_cache(project: str, service: ServiceSpec, image: str) -> DependencyCache | None:
    """None when there is nothing to install (not run mode, another image, no dependencies)."""
    if service.runtime is None or service.source is None:
        return None
    runtime = RUNTIMES[service.runtime]
    if not runtime.has_dependencies(service.source):
        return None
    digest = dependency_hash(runtime, service.source, image)
    return DependencyCache(runtime, deps_volume_name(project, service.name, digest), digest,
                           tuple(p.name for p in runtime.dependency_paths(service.source)))


def is_dependency_file(service: ServiceSpec, path: Path) -> bool:
    """A change to it means a new cache: install again, then restart the app on it."""
    return (service.runtime is not None and service.source is not None and path.parent == service.source
            and path.name in RUNTIMES[service.runtime].dependency_files)
