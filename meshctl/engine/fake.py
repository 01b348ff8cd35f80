"""A recording fake of the Engine protocol (base.py): apply, reload, supervision and teardown
run against it with no daemon, and tests assert the calls and their order. It ships in the
package as httpx ships MockTransport. It keeps just enough state to behave like the engine:
images, networks, containers with labels and states, bound host ports, exits that wait for removal."""

from __future__ import annotations

import errno
import itertools
import threading
from pathlib import Path
from typing import Any

from ..errors import BuildError, EngineError, ExecTimeout
from ..model import ContainerInfo, ContainerSpec
from .unreachable import DEFAULT_SOCKET, Endpoint, unreachable


class FakeEngine:
    def __init__(self, images: set[str] | None = None, *, fail_build: set[str] | None = None,
                 fail_start: set[str] | None = None, fail_pull: bool = True,
                 log_lines: dict[str, list[str]] | None = None, exit_on_start: dict[str, int] | None = None,
                 slow_stop: set[str] | None = None, build_gate: threading.Event | None = None,
                 fail_stop: set[str] | None = None, fail_remove: set[str] | None = None,
                 unreachable: bool = False, exec_codes: dict[str, int] | None = None,
                 hanging_exec: set[str] | None = None, restart_races: dict[str, list[str]] | None = None):
        self.unreachable = unreachable                      # version() fails as with no daemon
        self.capture_exit = 0                                # the capture step's exit code
        self.exec_codes = exec_codes or {}                  # container name → what an exec in it exits with
        self.exec_outputs: dict[str, str] = {}              # container name → what a successful exec prints
        self.hanging_exec = hanging_exec or set()           # container names where an exec never ends
        self.images = set(images or ())
        self.pushed: list[str] = []                         # refs pushed, in order
        self.image_ids: dict[str, str] = {}                  # ref → ID where not "sha256:<ref>" (a rebuild)
        self.networks_: dict[str, dict[str, Any]] = {}        # id → Id, Name, Labels
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
        self.build_options: dict[str, tuple] = {}           # tag → (dockerfile, build args, target) it was built with
        self.fail_stop = fail_stop or set()                 # container names the engine cannot stop
        self.fail_remove = fail_remove or set()             # … nor remove
        # Container name → how its next restarts go wrong, as Docker 20.10's do under load with an
        # auto-remove container: "marked" (refused, the container removed) or "killed" (it restarts,
        # then the engine removes it by force: exit 137).
        self.restart_races = restart_races or {}
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
            raise unreachable(Endpoint(DEFAULT_SOCKET, "default"),
                              FileNotFoundError(errno.ENOENT, "No such file or directory"))
        return {"Version": "20.10-fake", "ApiVersion": "1.41"}

    def image_id(self, ref: str) -> str | None:
        return self.image_ids.get(ref, f"sha256:{ref}") if ref in self.images else None

    def pull(self, ref: str) -> None:
        self._record("pull", ref)
        if self.fail_pull:
            raise EngineError(f"could not pull {ref}: no registry")
        self.images.add(ref)

    def push(self, ref: str) -> None:
        self._record("push", ref)
        if ref not in self.images:
            raise EngineError(f"pushing {ref} failed: An image does not exist locally with the tag")
        self.pushed.append(ref)

    def build(self, context: Path, tag: str, *, labels: dict[str, str], network_mode: str | None,
              dockerfile: str | None = None, buildargs: dict[str, str] | None = None, target: str | None = None,
              on_line=None) -> str:
        self._record("build", tag)
        self.build_options[tag] = (dockerfile, dict(buildargs or {}), target)
        if on_line:
            on_line("Step 1/1 : FROM debian:bookworm-slim")
        if self.build_gate is not None:
            self.build_gate.wait(30)
        if tag in self.fail_build:
            raise BuildError(f"building {tag} from {context} failed: boom", details="Step 1/1\nboom")
        self.images.add(tag)
        return self.image_ids.get(tag, f"sha256:{tag}")

    # -- networks ---------------------------------------------------------------------------------

    def ensure_network(self, name: str, labels: dict[str, str]) -> str:
        """As the real one: the oldest of the networks with this name and labels (the others
        removed), or a new one."""
        self._record("ensure_network", name)
        same = [n for n in self.networks(labels) if n["Name"] == name]
        for extra in same[1:]:
            self.remove_network(extra["Id"])
        return same[0]["Id"] if same else self.add_network(name, labels)

    def add_network(self, name: str, labels: dict[str, str]) -> str:
        """A network as `docker network create` makes one: a new ID, even for a name in use."""
        number = next(self._ids)
        network_id = f"net{number}"
        self.networks_[network_id] = {"Id": network_id, "Name": name, "Labels": labels, "Created": f"{number:09d}"}
        return network_id

    def networks(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [dict(n) for n in self.networks_.values() if all_match(n["Labels"], labels)]

    def remove_network(self, network_id: str) -> bool:
        network = self.networks_.get(network_id)
        self._record("remove_network", network["Name"] if network else network_id)
        if network is not None and any(c["spec"].network == network_id for c in self.containers_.values()):
            return False
        self.networks_.pop(network_id, None)
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
            if (all or c["state"] == "running") and all_match(spec.labels, labels):
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
        name = self.containers_[container_id]["spec"].name
        self._record("restart", name)
        race = self.restart_races[name].pop(0) if self.restart_races.get(name) else None
        if race is not None:
            self._gone(container_id, 0 if race == "marked" else 137)
        if race == "marked":
            raise EngineError(f"could not restart container {container_id}: Cannot restart container "
                              f"{container_id}: container is marked for removal and cannot be started")

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
        """By id or by name, as Docker's; `exec_codes` (container name → exit code) says what it
        ends with, `hanging_exec` where it hangs until its timeout."""
        c = self.containers_.get(container_id) or self.by_name(container_id)
        if c is None or c["state"] != "running":
            raise EngineError(f"could not run a command in {container_id}: not running")
        name = c["spec"].name
        self._record("exec", name, tuple(command))
        if name in self.hanging_exec:     # as the real engine: bounded by `timeout`, then killed
            threading.Event().wait(30 if timeout is None else timeout)
            raise ExecTimeout(f"`{' '.join(command)}` did not finish within {timeout:g}s; it was killed")
        code = self.exec_codes.get(name, 0)
        return code, self.exec_outputs.get(name, "") if code == 0 else "connection refused"

    def exec_lines(self, container_id: str, command: list[str]):
        """`exec_outputs` (container name → text) as lines, recorded as an exec."""
        self.exec(container_id, command)
        c = self.containers_.get(container_id) or self.by_name(container_id) or {}
        return iter(self.exec_outputs.get(c["spec"].name, "").splitlines())


def all_match(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all((k in labels) if v == "" else labels.get(k) == v for k, v in wanted.items())


class _FakeSocket:
    """A tied holder's stdin; closing it is recorded as ("close_stdin", holder name)."""

    def __init__(self, engine: FakeEngine, name: str):
        self.engine = engine
        self.name = name

    def close(self) -> None:
        self.engine.record("close_stdin", self.name)
