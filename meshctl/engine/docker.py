"""The only module that imports `docker`, on first use: listing containers on a local socket is
unix_http's, so `ps`, `stat` and `trace` never load the SDK. Everything meshctl asks of the engine
goes through DockerEngine, and every SDK or transport error comes out as a MeshctlError (httpx's
habit: one thin boundary, errors translated where they cross it)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BuildError, EngineError, ExecTimeout
from ..model import ContainerInfo, ContainerSpec, split_image_ref
from .unix_http import LocalEngine
from .unreachable import DEFAULT_SOCKET, Endpoint, is_unreachable, unreachable
from .wire import (build_hint, close_hijacked, container_info, demultiplexed, explain, frames, host_config_options,
                   label_filter, lines_of, namespace_pid, owned_by, port_map, read_build, read_until, refusal, start_error)

if TYPE_CHECKING:
    import docker
    import requests


def _load_sdk() -> None:     # on first use: see the module's docstring
    global docker, requests
    import docker.errors
    import requests.exceptions


class DockerEngine:
    """The real Engine (base.py's protocol): a connection to the Docker engine. Creating one
    does no I/O."""

    def __init__(self, base_url: str | None = None):
        self._base_url = base_url
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()
        self._local = LocalEngine(base_url)

    @property
    def api(self) -> docker.APIClient:
        _load_sdk()
        with self._lock:
            if self._client is None:
                try:
                    self._client = (docker.DockerClient(base_url=self._base_url, max_pool_size=64) if self._base_url
                                    else docker.from_env(max_pool_size=64))
                except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
                    raise _engine_error("connect to the Docker engine", exc, self._base_url) from exc
            return self._client.api

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def version(self) -> dict[str, Any]:
        return self._read("/version", {}, "reach the Docker engine", lambda api: api.version())

    def _read(self, path: str, query: dict[str, str], doing: str, by_sdk: Callable[[Any], Any]) -> Any:
        """The engine's answer over its local socket (unix_http), or the SDK's where it must ask."""
        found = self._local.get(path, query)
        if found is None:
            with _translated(doing):
                found = by_sdk(self.api)
        return found

    # -- images ---------------------------------------------------------------------------------

    def image_id(self, ref: str) -> str | None:
        try:
            with _translated(f"inspect image {ref}"):
                return self.api.inspect_image(ref)["Id"]
        except _NotFound:
            return None

    def pull(self, ref: str) -> None:
        repo, tag, digest = split_image_ref(ref)
        with _translated(f"pull {ref}"):     # the API's `tag` takes a digest too
            refusal(self.api.pull(repo, tag=digest or tag or "latest", stream=True, decode=True), f"pulling {ref}")

    def push(self, ref: str) -> None:
        repo, tag, _ = split_image_ref(ref)
        with _translated(f"push {ref}"):
            refusal(self.api.push(repo, tag=tag or "latest", stream=True, decode=True), f"pushing {ref}", login=repo)

    def build(self, context: Path, tag: str, *, labels: dict[str, str], network_mode: str | None,
              dockerfile: str | None = None, buildargs: dict[str, str] | None = None, target: str | None = None,
              on_line: Callable[[str], None] | None = None) -> str:
        """Build an image; return its id. A failed build raises BuildError with the log's tail."""
        tail: list[str] = []
        try:
            stream = self.api.build(path=str(context), tag=tag, labels=labels, rm=True, forcerm=True, decode=True,
                                    network_mode=network_mode, dockerfile=dockerfile, buildargs=buildargs, target=target)
            image_id = read_build(stream, f"building {tag} from {context}", tail, on_line)
        except (docker.errors.APIError, docker.errors.BuildError) as exc:
            raise BuildError(f"building {tag} from {context} failed: {explain(exc)}",
                             hint=build_hint(str(exc)), details="\n".join(tail[-25:])) from exc
        except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
            raise _engine_error("build an image", exc) from exc
        return image_id or tag

    # -- networks -------------------------------------------------------------------------------

    def ensure_network(self, name: str, labels: dict[str, str]) -> str:
        """The ID of the network with this name and these labels, created if there is none. Where
        two exist (two commands created them at one moment: Docker allows it), the oldest is used
        and the others are removed if nothing is attached to them."""
        same = [n for n in self.networks(labels) if n.get("Name") == name]
        if same:
            keep, *extra = sorted(same, key=lambda n: (n.get("Created", ""), n["Id"]))
            for network in extra:
                self.remove_network(network["Id"])
            return keep["Id"]
        with _translated(f"create network {name}"):
            return self.api.create_network(name, driver="bridge", labels=labels, check_duplicate=True)["Id"]

    def networks(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        with _translated("list networks"):
            return self.api.networks(filters=label_filter(labels))

    def remove_network(self, network_id: str) -> bool:
        """Remove a network by ID; False when containers still use it."""
        try:
            with _translated(f"remove network {network_id[:12]}"):
                self.api.remove_network(network_id)
            return True
        except _NotFound:
            return True
        except EngineError as exc:
            if "active endpoints" in exc.message:
                return False
            raise

    # -- volumes --------------------------------------------------------------------------------

    def volumes(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        with _translated("list volumes"):
            found = self.api.volumes(filters=label_filter(labels))
        return list((found or {}).get("Volumes") or [])

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        with _translated(f"create volume {name}"):
            self.api.create_volume(name, driver="local", labels=labels)

    def remove_volume(self, name: str) -> bool:
        try:
            with _translated(f"remove volume {name}"):
                self.api.remove_volume(name)
            return True
        except (_NotFound, _Conflict) as exc:
            return isinstance(exc, _NotFound)

    # -- containers -----------------------------------------------------------------------------

    def containers(self, labels: dict[str, str], *, all: bool = True) -> list[ContainerInfo]:
        filters = label_filter(labels)
        found = self._read("/containers/json", {"all": str(int(all)), "filters": json.dumps(filters)}, "list containers",
                           lambda api: api.containers(all=all, filters=filters))
        return [container_info(c) for c in found]

    def inspect(self, name_or_id: str) -> dict[str, Any] | None:
        try:
            with _translated(f"inspect container {name_or_id}"):
                return self.api.inspect_container(name_or_id)
        except _NotFound:
            return None

    def published_ports(self, name_or_id: str) -> dict[int, int]:
        attrs = self.inspect(name_or_id) or {}
        return port_map((attrs.get("NetworkSettings") or {}).get("Ports") or {})

    def create(self, spec: ContainerSpec) -> str:
        api = self.api
        host_config = api.create_host_config(**host_config_options(spec))
        networking = None
        if spec.network and not spec.namespace_of and spec.aliases:
            networking = api.create_networking_config(
                {spec.network: api.create_endpoint_config(aliases=list(spec.aliases) or None)})
        with _translated(f"create container {spec.name}"):
            created = api.create_container(
                spec.image, command=list(spec.command) if spec.command else None, name=spec.name,
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                labels=spec.labels, environment=spec.env or None, user=spec.user, working_dir=spec.workdir,
                ports=list(spec.ports) or None, host_config=host_config, networking_config=networking,
                # detach=False with stdin_open sets StdinOnce: when our attach closes, stdin ends.
                detach=not spec.tied_to_caller, stdin_open=spec.tied_to_caller,
                stop_timeout=spec.stop_timeout)
        return created["Id"]

    def attach_stdin(self, container_id: str) -> Any:
        """Hold the container's stdin open from this process. When the process dies, even by
        SIGKILL, the kernel closes the socket and the container's stdin reaches EOF."""
        with _translated("attach to the pod holder"):
            return self.api.attach_socket(container_id, params={"stdin": 1, "stream": 1})

    def start(self, container_id: str, *, name: str = "", port_hints: dict[int, str] | None = None) -> None:
        try:
            with _translated(f"start container {name or container_id}"):
                self.api.start(container_id)
        except EngineError as exc:
            raise start_error(exc, name or container_id, port_hints or {}) from exc

    def watch_exit(self, container_id: str, *, restarts: bool = False) -> Callable[[], int | None]:
        """Register a wait for the container's removal now; the returned function blocks until it
        is gone and gives its exit code (None if unknown). Call before start() so that even an app
        that exits at once is seen (the CLI's `docker run` does the same). `restarts`: a container
        that restarts on failure is not removed: the wait ends at its next exit."""
        api = self.api
        with _translated("watch a container"):
            response = api._post(api._url("/containers/{0}/wait", container_id),
                                 params={"condition": "next-exit" if restarts else "removed"}, stream=True, timeout=None)
        if response.status_code >= 400:
            response.close()
            return lambda: None

        def result() -> int | None:
            try:
                body = json.loads(response.content or b"{}")
                return body.get("StatusCode")
            except (ValueError, requests.exceptions.RequestException, OSError):
                return None
            finally:
                response.close()

        return result

    def stop(self, container_id: str, timeout: float | None = None) -> None:
        """SIGTERM (or the image's stop signal), then SIGKILL after `timeout` seconds; None uses
        the grace period the container was created with. Then it is gone: auto-removed, or (a
        container that restarts on failure, stopped by hand so Docker leaves it) removed here."""
        try:
            with _translated(f"stop container {container_id[:12]}"):
                self.api.stop(container_id, timeout=None if timeout is None else max(0, round(timeout)))
        except (_NotFound, _Conflict):
            pass
        self.remove(container_id)      # an auto-remove one is already going: NotFound or Conflict

    def restart(self, container_id: str, timeout: float) -> None:
        """In place; EngineError unless it runs after (Docker 20.10 may remove an auto-remove one)."""
        with _translated(f"restart container {container_id[:12]}"):
            self.api.restart(container_id, timeout=max(0, round(timeout)))
        state = ((self.inspect(container_id) or {}).get("State") or {}).get("Status", "removed")
        if state != "running":
            raise EngineError(f"could not restart container {container_id[:12]}: it is {state} after its restart")

    def remove(self, container_id: str) -> None:
        try:
            with _translated(f"remove container {container_id[:12]}"):
                self.api.remove_container(container_id, force=True)
        except (_NotFound, _Conflict):
            pass

    def wait_removed(self, container_id: str, timeout: float = 10) -> None:
        try:
            with _translated(f"wait for container {container_id[:12]}"):
                self.api.wait(container_id, timeout=timeout, condition="removed")
        except (_NotFound, _Conflict):
            pass
        except EngineError:
            self.remove(container_id)

    def logs(self, container_id: str, *, follow: bool, tail: int | str = "all",
             since: float | None = None) -> Iterator[str]:
        """Lines of stdout and stderr; a follow stream ends when the container stops."""
        try:
            with _translated(f"read logs of {container_id[:12]}"):
                stream = self.api.logs(container_id, stream=True, follow=follow, tail=tail,
                                       stdout=True, stderr=True, since=since)
            yield from lines_of(stream)
        except (_NotFound, _Conflict):
            return
        except (requests.exceptions.RequestException, docker.errors.DockerException, OSError):
            return  # the container went away mid-stream

    def exec(self, container_id: str, command: list[str], *, timeout: float | None = None) -> tuple[int, str]:
        """Run a command in a running container: (exit code, stdout and stderr). With `timeout`,
        ExecTimeout when it has not ended by then; the command is killed where this host can."""
        return self._exec(container_id, command, timeout, kill_inside=True)

    def exec_lines(self, container_id: str, command: list[str]) -> Iterator[str]:
        """stdout of a command as it comes. Closing the iterator closes the connection: the
        command's next write fails and it ends (a stream reader in a sidecar, `meshctl tap`)."""
        with _translated(f"run a command in {container_id[:12]}"):
            exec_id = self.api.exec_create(container_id, command, stdout=True, stderr=False)["Id"]
            sock = self.api.exec_start(exec_id, socket=True)
        try:
            yield from lines_of(frames(sock))
        finally:
            close_hijacked(sock)

    def _exec(self, container_id: str, command: list[str], timeout: float | None, *,
              kill_inside: bool) -> tuple[int, str]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with _translated(f"run a command in {container_id[:12]}"):
            exec_id = self.api.exec_create(container_id, command, stdout=True, stderr=True)["Id"]
            if deadline is None:
                output = self.api.exec_start(exec_id)
            else:
                sock = self.api.exec_start(exec_id, socket=True)
                try:
                    raw = read_until(sock, deadline)
                finally:
                    close_hijacked(sock)
                if raw is None:
                    raise ExecTimeout(f"`{' '.join(command)}` did not finish within {timeout:g}s; "
                                      + self._kill_exec(exec_id, inside=kill_inside))
                output = demultiplexed(raw)
            code = self.api.exec_inspect(exec_id).get("ExitCode")
        return (code if code is not None else -1), output.decode("utf-8", "replace")

    def _kill_exec(self, exec_id: str, *, inside: bool) -> str:
        """Docker's API cannot stop an exec (it ends with its process or its container). When the
        engine runs on this host, kill its process: by pid, or, without the right to, once from
        inside the container. Says what became of it."""
        try:
            with _translated("inspect a command"):
                info = self.api.exec_inspect(exec_id)
            pid, container = int(info.get("Pid") or 0), str(info.get("ContainerID") or "")
            if not info.get("Running") or pid <= 0:
                return "it has ended since"
            if owned_by(pid, container):
                try:
                    os.kill(pid, signal.SIGKILL)
                    return "it was killed"
                except ProcessLookupError:
                    return "it has ended since"
                except PermissionError:
                    inner = namespace_pid(pid)
                    if inside and inner is not None and self._exec(
                            container, ["sh", "-c", f"kill -KILL {inner}"], 5, kill_inside=False)[0] == 0:
                        return "it was killed"
        except EngineError:
            pass
        return "it may still be running in the container (Docker cannot stop a command it runs)"

    def signal(self, container_id: str, signal: str) -> None:
        with _translated(f"signal container {container_id[:12]}"):
            self.api.kill(container_id, signal=signal)

    def cpu_usage_ns(self, container_id: str) -> int:
        with _translated(f"read CPU usage of {container_id[:12]}"):
            stats = self.api.stats(container_id, stream=False, one_shot=True)
        return int(stats["cpu_stats"]["cpu_usage"]["total_usage"])


# -- error translation ------------------------------------------------------------------------

class _NotFound(EngineError):
    """Engine errors (exit 3) caught here by kind: a missing object is often fine (already removed)."""


class _Conflict(EngineError):
    """…and a conflict sometimes (already stopping). Those that escape are the engine's refusal."""


@contextmanager
def _translated(doing: str):
    _load_sdk()
    try:
        yield
    except docker.errors.NotFound as exc:
        raise _NotFound(f"could not {doing}: {explain(exc)}") from exc
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise _Conflict(f"could not {doing}: {explain(exc)}") from exc
        raise EngineError(f"could not {doing}: {explain(exc)}") from exc
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
        raise _engine_error(doing, exc) from exc


def _engine_error(doing: str, exc: Exception, base_url: str | None = None) -> EngineError:
    if isinstance(exc, requests.exceptions.ConnectionError) or is_unreachable(exc):
        return unreachable(endpoint(base_url), exc)
    return EngineError(f"could not {doing}: {exc}")


def endpoint(base_url: str | None = None) -> Endpoint:
    """The engine the SDK connects to, and why that one: DOCKER_HOST, else the current docker
    context (DOCKER_CONTEXT, or ~/.docker/config.json's), else the default socket."""
    _load_sdk()
    from docker.context import ContextAPI

    if base_url:
        return Endpoint(base_url, "given")
    if os.environ.get("DOCKER_HOST"):
        return Endpoint(os.environ["DOCKER_HOST"], "DOCKER_HOST")
    try:
        context = ContextAPI.get_context(os.environ.get("DOCKER_CONTEXT") or None)
    except (docker.errors.DockerException, OSError, ValueError):
        context = None
    if context is not None and context.Name != "default" and context.Host:
        return Endpoint(context.Host.replace("http+unix://", "unix://", 1), "context", context.Name)   # as the CLI shows it
    return Endpoint(DEFAULT_SOCKET, "default")
