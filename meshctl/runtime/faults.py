"""Live faults (`meshctl fault`, a resilience check's `faults:`): written into the proxy's live map
file (what a reload of the proxy reads) and applied at once through HAProxy's runtime socket,
with socat run in the proxy container by the engine: nothing restarts, no connection drops. The
socket lives in the proxy's own /tmp, which no other process of the pod can reach (the proxy is
not dumpable: sidecars/haproxy/Dockerfile)."""

from __future__ import annotations

import fcntl
import json
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..home import atomic_write
from ..config import Fault
from ..config.faults import parse_fault
from ..engine.base import Engine
from ..errors import ConfigError, MeshctlError, UsageError
from ..model import selector
from ..sidecars.faults import (LIVE_MAP, LIVE_SUMMARY, SUMMARY, as_dict, fault_entries, map_path, map_text)

RUNTIME_SOCKET = "/tmp/haproxy.sock"    # templates/haproxy-shared.cfg's `stats socket`
APPLY_TIMEOUT = 10.0


@dataclass(frozen=True)
class ServiceFaults:
    """A service's faults: mesh.yaml's, and the live ones that replace them while set."""
    project: str
    service: str
    protocol: str
    declared: tuple[Fault, ...]
    live: tuple[Fault, ...] | None      # None: no live fault, mesh.yaml's apply

    @property
    def active(self) -> tuple[Fault, ...]:
        return self.declared if self.live is None else self.live

    def as_json(self) -> dict[str, Any]:
        return {"project": self.project, "service": self.service, "protocol": self.protocol,
                "declared": [as_dict(f) for f in self.declared],
                "live": None if self.live is None else [as_dict(f) for f in self.live]}


def proxy_folder(home: Path, project: str, service: str) -> Path:
    return home / "projects" / project / service / "proxy"


def read_faults(home: Path, project: str, service: str) -> ServiceFaults | None:
    """None when the service runs no proxy (nothing to inject faults with)."""
    folder = proxy_folder(home, project, service)
    try:
        summary = json.loads((folder / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    protocol = summary["protocol"]
    declared = tuple(_fault(raw, protocol) for raw in summary["declared"])
    try:
        live = tuple(_fault(raw, protocol) for raw in json.loads((folder / LIVE_SUMMARY).read_text()))
    except FileNotFoundError:
        live = None
    return ServiceFaults(project, service, protocol, declared, live)


def project_faults(home: Path, project: str) -> list[ServiceFaults]:
    folder = home / "projects" / project
    found = [read_faults(home, project, p.name) for p in sorted(folder.iterdir())] if folder.is_dir() else []
    return [f for f in found if f is not None]


def _fault(raw: dict, protocol: str) -> Fault:
    return parse_fault(raw, protocol, (), lambda path, problem, hint: ConfigError(problem, hint=hint))


def faults_from_flags(protocol: str, *, abort: int | None = None, delay: str | None = None, reset: bool = False,
                      percent: float = 100.0, callers: Sequence[str] = ()) -> tuple[Fault, ...]:
    """`--abort 503 --percent 20 --from web` (or --delay, --reset) as faults, checked as mesh.yaml's are."""
    kinds = {"abort": abort, "delay": delay, "reset": True if reset else None}
    wanted = {kind: value for kind, value in kinds.items() if value is not None}
    if not wanted:
        raise UsageError("no fault given", hint="--abort STATUS, --delay DURATION or --reset (TCP); "
                         "--clear goes back to mesh.yaml's")
    common: dict[str, Any] = {"percent": percent, **({"from": list(callers)} if callers else {})}
    return tuple(parse_fault({kind: value, **common}, protocol, (f"--{kind}",), _flag_error)
                 for kind, value in wanted.items())


def _flag_error(path: tuple, problem: str, hint: str) -> UsageError:
    flag = next((str(p) for p in path if str(p).startswith("--")), "")
    names = {"percent": "--percent", "from": "--from"}
    field = names.get(str(path[-1]), flag) if path else flag
    flags_hint = "meshctl fault SERVICE --abort 503 --percent 20 [--from web] (HTTP), --delay 200ms, --reset (TCP)"
    return UsageError(f"{field}: {problem}", hint=flags_hint if "faults:" in hint else hint)


def set_live(engine: Engine, home: Path, project: str, service: str, faults: tuple[Fault, ...] | None) -> ServiceFaults:
    """Make `faults` the service's live faults (None: back to mesh.yaml's): the files a reload
    reads first, then the running proxy through its runtime socket."""
    current = read_faults(home, project, service)
    if current is None:
        raise UsageError(f"{project}/{service} runs no proxy, so no fault can be injected there",
                         hint="`meshctl ps` lists the services; faults need the proxy sidecar")
    callers = _callers(home, project, service)
    for fault in faults or ():
        unknown = [c for c in fault.callers if c not in callers]
        if unknown:
            raise UsageError(f"--from {unknown[0]}: no caller of {service} with that identity in {project}",
                             hint="callers with an identity: " + (", ".join(callers) or "none (no mesh)"))
    folder = proxy_folder(home, project, service)
    entries = fault_entries(faults or (), callers)
    with _one_change_at_a_time(folder):
        atomic_write(folder / LIVE_MAP, map_text(entries, "meshctl fault (live)").encode(), mode=0o644)
        if faults is None:
            (folder / LIVE_SUMMARY).unlink(missing_ok=True)
        else:
            atomic_write(folder / LIVE_SUMMARY, (json.dumps([as_dict(f) for f in faults]) + "\n").encode(), mode=0o644)
        apply_live(engine, project, service, entries)
    return ServiceFaults(project, service, current.protocol, current.declared, faults)


def change_live(engine: Engine, home: Path, project: str, service: str, *, clear: bool = False,
                abort: int | None = None, delay: str | None = None, reset: bool = False, percent: float = 100.0,
                callers: Sequence[str] = ()) -> ServiceFaults:
    """`meshctl fault SERVICE --abort 503 …` or `--clear`, and the dashboard's fault form: the flags
    checked as mesh.yaml's are, then set live."""
    current = read_faults(home, project, service)
    if current is None:
        raise UsageError(f"{project}/{service}: no such service with a proxy", hint="`meshctl fault --list` lists them")
    faults = None if clear else faults_from_flags(current.protocol, abort=abort, delay=delay, reset=reset,
                                                  percent=percent, callers=callers)
    return set_live(engine, home, project, service, faults)


@contextmanager
def _one_change_at_a_time(folder: Path) -> Iterator[None]:
    """Two `meshctl fault` at once would race between the file and the runtime's map versions:
    the second waits for the first."""
    with open(folder / "faults.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _callers(home: Path, project: str, service: str) -> tuple[str, ...]:
    summary = json.loads((proxy_folder(home, project, service) / SUMMARY).read_text())
    return tuple(summary["callers"])


def apply_live(engine: Engine, project: str, service: str, entries: dict[str, str]) -> None:
    """The live map replaced in one step in the running proxy (prepare, add, commit: a request sees
    the old faults or the new, never none between)."""
    proxies = engine.containers(selector(project, service=service, role="proxy"), all=False)
    if not proxies:
        raise MeshctlError(f"{project}/{service} has no running proxy; the fault is written and applies when it "
                           "starts", hint="`meshctl ps` shows the stack's state")
    code, output = engine.exec(proxies[0].id, ["sh", "-c", runtime_script(entries)], timeout=APPLY_TIMEOUT)
    if code != 0 or output.strip():
        raise MeshctlError(f"the proxy of {project}/{service} did not take the fault: {output.strip()[:200]}",
                           hint="the fault is written to its live map and applies at the proxy's next reload")


def runtime_script(entries: dict[str, str]) -> str:
    """A shell script for the proxy container: a new version of the live map, filled, committed."""
    target = map_path(LIVE_MAP)
    adds = "".join(f"add map @$v {target} {caller} {spec}; " for caller, spec in entries.items())
    client = f"socat stdio UNIX-CONNECT:{RUNTIME_SOCKET}"
    return (f"v=$(echo {shlex.quote('prepare map ' + target)} | {client}) && v=${{v##*: }} && "
            f"echo \"{adds}commit map @$v {target}\" | {client}")
