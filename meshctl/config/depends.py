"""`depends_on:` between services: a service's app starts once the services it names are ready
(or, with `condition: started`, started). Compose's spellings are read too: a list of names, or a
mapping of names to `{condition: …}` with compose's service_healthy / service_started. The names
must be services of the project, and the graph may have no cycle."""

from __future__ import annotations

import difflib
from typing import Any

from .fields import keys
from .spec import DEPENDENCY_CONDITIONS, ServiceSpec
from .values import kind_of, reject_unknown
from .yamlpos import Where

# compose's conditions, as meshctl reads them: healthy is ready (meshctl's readiness is the
# service's health through its chain), started is started.
COMPOSE_CONDITIONS = {"service_healthy": "ready", "service_started": "started"}
_HINT = "depends_on: [db]   or   depends_on: {db: {condition: ready}}   (ready, the default, or started)"


def parse_depends_on(raw: Any, path: tuple, where: Where) -> tuple[tuple[str, str], ...]:
    """(service, condition) pairs, in the order written."""
    if raw is None:
        return ()
    if isinstance(raw, list):
        if not all(isinstance(name, str) for name in raw):
            raise where.error(path, "expected a list of service names", hint=_HINT)
        return tuple((name, "ready") for name in raw)
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a list of service names or a mapping, found {kind_of(raw)}", hint=_HINT)
    return tuple((str(name), _condition(settings, path + (name,), where)) for name, settings in raw.items())


def _condition(settings: Any, path: tuple, where: Where) -> str:
    if settings is None:
        return "ready"
    if not isinstance(settings, dict):
        raise where.error(path, f"expected a mapping like {{condition: ready}}, found {kind_of(settings)}", hint=_HINT)
    reject_unknown(settings, keys("dependency"), path, where)
    condition = settings.get("condition", "ready")
    condition = COMPOSE_CONDITIONS.get(condition, condition)
    if condition not in DEPENDENCY_CONDITIONS:
        hint = ("meshctl's services run until stopped, so none completes; use ready"
                if condition == "service_completed_successfully" else _HINT)
        raise where.error(path + ("condition",), f"unknown condition {condition!r}", hint=hint)
    return str(condition)


def check_dependencies(specs: list[ServiceSpec], where: Where) -> None:
    """Every name is a service of the project, and no service waits, through others, for itself."""
    names = [s.name for s in specs]
    for spec in specs:
        for needed, _condition in spec.depends_on:
            if needed not in names:
                close = difflib.get_close_matches(needed, names, n=1)
                raise where.error(_entry(spec.name, needed, where), f"no service named {needed!r} in this project",
                                  hint=f"did you mean {close[0]!r}?" if close else "services: " + ", ".join(names))
    graph = {s.name: [name for name, _ in s.depends_on] for s in specs}
    for spec in specs:
        cycle = _cycle_from(spec.name, graph, [spec.name])
        if cycle:
            raise where.error(_entry(spec.name, cycle[1], where), "a cycle: " + " → ".join(cycle),
                              hint="each would wait for the other before its app starts: remove one of the "
                                   "depends_on entries")


def _entry(service: str, needed: str, where: Where) -> tuple:
    """The path of one depends_on entry: its own line in the mapping form, else the list's."""
    path = ("services", service, "depends_on")
    return path + (needed,) if path + (needed,) in where.lines else path


def _cycle_from(start: str, graph: dict[str, list[str]], trail: list[str]) -> list[str] | None:
    """A path from the trail's last service back to `start`, if there is one."""
    for needed in graph[trail[-1]]:
        if needed == start:
            return [*trail, start]
        if needed not in trail:
            found = _cycle_from(start, graph, [*trail, needed])
            if found:
                return found
    return None
