"""What the executor tells about the containers it starts, restarts or stops (Watch), and the
watch of a run nobody follows (NullWatch, `down`). supervise.Tracker is the real one."""

from __future__ import annotations

from typing import Protocol

from ..errors import MeshctlError
from ..model import ContainerInfo, ContainerSpec


class Watch(Protocol):
    """Told about every container the executor starts, restarts or stops."""
    def created(self, spec: ContainerSpec, container_id: str, *, expected: bool) -> None: ...   # before start
    def started(self, spec: ContainerSpec, container_id: str) -> None: ...
    def stopping(self, names: list[str]) -> None: ...            # their exit is no news
    def restarted(self, container: ContainerInfo) -> None: ...
    def serving(self, service: str) -> None: ...                 # its app's exit is news again
    def failure(self, service: str) -> MeshctlError | None: ...  # a container of it exited before it was ready
    def exit_code(self, name: str) -> int | None: ...            # the latest container of that name, once gone


class NullWatch:
    def created(self, spec: ContainerSpec, container_id: str, *, expected: bool) -> None:
        pass

    def started(self, spec: ContainerSpec, container_id: str) -> None:
        pass

    def stopping(self, names: list[str]) -> None:
        pass

    def restarted(self, container: ContainerInfo) -> None:
        pass

    def serving(self, service: str) -> None:
        pass

    def failure(self, service: str) -> MeshctlError | None:
        return None

    def exit_code(self, name: str) -> int | None:
        return None
