"""A recording fake of meshctl's Engine protocol (engine.py), for the unit tier: apply, reload,
supervise and teardown run against it with no daemon, and tests assert the calls and their order
(httpx's MockTransport, for Docker). It keeps just enough state to behave like the engine: images,
networks, containers with labels and states, bound host ports, exits that wait for removal."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

from meshctl.errors import BuildError, EngineError
from meshctl.model import ContainerInfo, ContainerSpec


class FakeEngine:
    def __init__(self, images: set[str] | None = None, *, fail_build: set[str] | None = None,
                 fail_start: set[str] | None = None, fail_pull: bool = True):
        self.images = set(images or ())
        self.networks_: dict[str, dict[str, str]] = {}
        self.containers_: dict[str, dict[str, Any]] = {}     # id → {spec, state, ports}
        self.calls: list[tuple] = []
        self.fail_build = fail_build or set()
        self.fail_start = fail_start or set()               # container names whose start fails
        self.fail_pull = fail_pull                          # no registry, as on these machines
        self._ids = itertools.count(1)
        self._ports = itertools.count(40000)
        self._lock = threading.Lock()

    def _record(self, *call: Any) -> None:
        with self._lock:
            self.calls.append(call)

    def names(self, verb: str) -> list[str]:
        """The targets of every call of one kind, in order (`names("start")` → container names)."""
        return [c[1] for c in self.calls if c[0] == verb]

    # -- images -----------------------------------------------------------------------------------

    def image_exists(self, ref: str) -> bool:
        return ref in self.images

    def pull(self, ref: str) -> None:
        self._record("pull", ref)
        if self.fail_pull:
            raise EngineError(f"could not pull {ref}: no registry")
        self.images.add(ref)

    def build(self, context: Path, tag: str, *, labels: dict[str, str], network_mode: str | None,
              dockerfile: str | None = None, on_line=None) -> str:
        self._record("build", tag)
        if on_line:
            on_line("Step 1/1 : FROM debian:bookworm-slim")
        if tag in self.fail_build:
            raise BuildError(f"building {tag} from {context} failed: boom", details="Step 1/1\nboom")
        self.images.add(tag)
        return "sha256:" + tag

    # -- networks ---------------------------------------------------------------------------------

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        self._record("ensure_network", name)
        self.networks_.setdefault(name, labels)

    def networks(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [{"Name": n, "Labels": lab} for n, lab in self.networks_.items()
                if all(lab.get(k) == v or (v == "" and k in lab) for k, v in labels.items())]

    def remove_network(self, name: str) -> bool:
        self._record("remove_network", name)
        self.networks_.pop(name, None)
        return True

    # -- containers -------------------------------------------------------------------------------

    def containers(self, labels: dict[str, str], *, all: bool = True) -> list[ContainerInfo]:
        out = []
        for cid, c in list(self.containers_.items()):
            spec: ContainerSpec = c["spec"]
            if all or c["state"] == "running":
                if all_match(spec.labels, labels):
                    out.append(self.info(cid))
        return out

    def info(self, cid: str) -> ContainerInfo:
        c = self.containers_[cid]
        return ContainerInfo(cid, c["spec"].name, c["spec"].labels, c["state"], dict(c["ports"]))

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
                                 "code": None}
        return cid

    def attach_stdin(self, container_id: str) -> Any:
        self._record("attach_stdin", self.containers_[container_id]["spec"].name)
        return _FakeSocket()

    def start(self, container_id: str, *, name: str = "", port_hints=None) -> None:
        c = self.containers_[container_id]
        self._record("start", c["spec"].name)
        if c["spec"].name in self.fail_start:
            raise EngineError(f"could not start container {c['spec'].name}: it failed")
        c["state"] = "running"
        c["ports"] = {port: host or next(self._ports) for port, host in c["spec"].ports.items()}

    def watch_exit(self, container_id: str):
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
            c["code"] = code
            c["state"] = "exited"
            c["gone"].set()

    def stop(self, container_id: str, timeout: float | None = None) -> None:
        c = self.containers_.get(container_id)
        self._record("stop", c["spec"].name if c else container_id)
        self._gone(container_id, 0)

    def restart(self, container_id: str, timeout: float) -> None:
        self._record("restart", self.containers_[container_id]["spec"].name)

    def remove(self, container_id: str) -> None:
        c = self.containers_.get(container_id)
        self._record("remove", c["spec"].name if c else container_id)
        self._gone(container_id, 137)

    def wait_removed(self, container_id: str, timeout: float = 10) -> None:
        pass

    def signal(self, container_id: str, signal: str) -> None:
        self._record("signal", self.containers_[container_id]["spec"].name, signal)

    def logs(self, container_id: str, *, follow: bool, tail="all", since=None):
        c = self.containers_.get(container_id)
        if c is None:
            return iter(())
        return iter(c.get("log", ()))

    def exec(self, container_id: str, command: list[str], *, timeout=None) -> tuple[int, str]:
        self._record("exec", self.containers_[container_id]["spec"].name)
        return 0, ""


def all_match(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all((k in labels) if v == "" else labels.get(k) == v for k, v in wanted.items())


class _FakeSocket:
    def close(self) -> None:
        pass


def always_ready(readiness, port, ca_path):
    """A prober for the unit tier: every readiness check answers at once."""
    return lambda: None
