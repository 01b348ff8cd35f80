"""Hot reload: file changes → what to do for each service.

Shaped like uvicorn's reload supervisor: a file filter that is its own callable, a watcher that is
an iterator of change sets sharing one stop Event with the signal handlers, and a pure function
that decides the action. The supervisor (supervise.py) runs the actions one at a time."""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from watchfiles import Change, DefaultFilter, watch

from ..config import ProjectSpec, ServiceSpec
from ..config.interpolate import DOTENV
from ..config.runtimes import is_dependency_file

# What a service needs, from the cheapest to the most expensive; a change set takes the most.
RESTART = "restart"      # sync mode: the mounted source changed; restart the app container
REBUILD = "rebuild"      # build the image again and replace the app container
CONVERGE = "converge"    # a user sidecar's build folder or a run-mode app's dependency file changed:
                         # plan the project again (rebuild or install, replace)
CONFIG = "config"        # mesh.yaml (or its .env) changed: re-render, reload sidecars in place, recreate what must be
_WEIGHT = {RESTART: 1, REBUILD: 2, CONVERGE: 3}


class ChangeFilter(DefaultFilter):
    """watchfiles' defaults (.git, __pycache__, editor swap files, …) plus .dockerignore entries
    and mesh.yaml's watch.ignore globs, each relative to its own folder."""

    def __init__(self, rules: list[tuple[Path, tuple[str, ...]]], config: frozenset[Path] = frozenset()):
        super().__init__()
        self.rules = rules
        self.config = config        # mesh.yaml and its .env: seen even where .dockerignore lists .env

    def __call__(self, change: Change, path: str) -> bool:
        if Path(path) in self.config:
            return True
        if not super().__call__(change, path):
            return False
        return not any(_matches(Path(path), root, patterns) for root, patterns in self.rules)


def _matches(path: Path, root: Path, patterns: tuple[str, ...]) -> bool:
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        return False
    ignored = False
    for written in patterns:
        negate = written.startswith("!")
        pattern = (written[1:] if negate else written).strip("/")
        if not pattern:
            continue
        hit = (fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, pattern + "/*")
               or fnmatch.fnmatch(Path(relative).name, pattern)
               or any(fnmatch.fnmatch(part, pattern) for part in Path(relative).parts[:-1]))
        if hit:
            ignored = not negate
    return ignored


def dockerignore(folder: Path) -> tuple[str, ...]:
    try:
        lines = (folder / ".dockerignore").read_text(encoding="utf-8").splitlines()
    except OSError:
        return ()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def sidecar_builds(service: ServiceSpec) -> list[Path]:
    """The build folders of a service's own sidecars (mesh.yaml `sidecars: {NAME: {build: …}}`)."""
    return [s.build for s in service.user_sidecars if s.build is not None]


def watched_folders(project: ProjectSpec) -> list[Path]:
    folders = {s.build for s in project.services if s.build is not None}
    folders |= {folder for s in project.services for folder in sidecar_builds(s)}
    folders |= {(project.root / local).resolve() for s in project.services for local, _ in s.watch.sync}
    if project.source is not None:
        folders.add(project.source.parent)
    # A folder inside another is already watched through it.
    ordered = sorted(folders, key=lambda p: len(p.parts))
    return [f for i, f in enumerate(ordered) if not any(f.is_relative_to(o) for o in ordered[:i])]


def config_files(project: ProjectSpec) -> frozenset[Path]:
    """mesh.yaml and the .env beside it (its variables): a change to either re-reads the config."""
    if project.source is None:
        return frozenset()
    return frozenset({project.source, project.source.parent / DOTENV})


def change_filter(project: ProjectSpec) -> ChangeFilter:
    rules = []
    for service in project.services:
        if service.build is not None:
            rules.append((service.build, dockerignore(service.build)))
        rules.append((service.build or project.root, service.watch.ignore))
        rules += [(folder, dockerignore(folder)) for folder in sidecar_builds(service)]
    return ChangeFilter(rules, config_files(project))


@dataclass(frozen=True)
class SourceChange:
    """What one batch of saved files asks of the running stack (the reloader turns it into plans)."""
    config_changed: bool
    actions: dict[str, str]          # service name → RESTART, REBUILD or CONVERGE
    paths: tuple[Path, ...]          # what changed, for the console line

    @property
    def empty(self) -> bool:
        return not self.config_changed and not self.actions


def classify(project: ProjectSpec, paths: set[Path]) -> SourceChange:
    """Pure: which services need what for these changed paths."""
    config = config_files(project)
    config_changed = any(p in config for p in paths)
    actions: dict[str, str] = {}
    for path in paths:
        if path in config:
            continue
        for service in project.services:
            action = service_action(project, service, path)
            if action and _WEIGHT[action] > _WEIGHT.get(actions.get(service.name, ""), 0):
                actions[service.name] = action
    return SourceChange(config_changed, actions, tuple(sorted(paths)))


def service_action(project: ProjectSpec, service: ServiceSpec, path: Path) -> str | None:
    if any(path.is_relative_to(folder) for folder in sidecar_builds(service)) or is_dependency_file(service, path):
        return CONVERGE
    root = service.build or project.root
    synced = any(path.is_relative_to((root / local).resolve()) for local, _ in service.watch.sync)
    if service.build is None:
        return RESTART if synced else None
    dockerfile = service.build_options.dockerfile_path(service.build)
    if path == dockerfile:
        return REBUILD
    if not path.is_relative_to(service.build):
        return None
    relative = path.relative_to(service.build).as_posix()
    if path.name == "Dockerfile" or any(fnmatch.fnmatch(relative, g) or fnmatch.fnmatch(path.name, g)
                                        for g in service.watch.rebuild):
        return REBUILD
    return RESTART if synced else REBUILD


def change_sets(project: ProjectSpec, stop: threading.Event, *, step_ms: int = 50,
                debounce_ms: int = 1600) -> Generator[set[Path], None, None]:
    """Change sets (paths) in the project's folders; an empty set after a second with none, so the
    caller may look again at which folders to watch; ends when `stop` is set."""
    for changes in watch(*watched_folders(project), watch_filter=change_filter(project),
                         stop_event=stop, step=step_ms, debounce=debounce_ms,
                         yield_on_timeout=True, rust_timeout=1000, raise_interrupt=False):
        if stop.is_set():
            return
        yield net_changes(changes)


def net_changes(changes: set[tuple[Change, str]]) -> set[Path]:
    """The paths that changed, without files that came and went within the batch (an editor's
    or sed's temporary file)."""
    added = {p for c, p in changes if c == Change.added}
    deleted = {p for c, p in changes if c == Change.deleted}
    transient = {p for p in added & deleted if not Path(p).exists()}
    return {Path(p) for _, p in changes if p not in transient}
