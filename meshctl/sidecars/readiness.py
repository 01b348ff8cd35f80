"""Readiness and health, as data: how to know a sidecar, an app or a user's sidecar is ready. A plan
prints it, runtime/probes runs it, inject writes the shell form into compose healthchecks."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ReadySpec, ServiceSpec
from .addresses import PROXY_PORT, READY_PATH, TLS_PORT


@dataclass(frozen=True)
class Readiness:
    """How to know a container is ready: an HTTP answer on a path, or (path None) a verified TLS
    handshake (a TCP service's connect through its chain), on one of the pod's published ports
    (https, http, metrics); or (`exec`) a command
    that exits 0, run in the container itself or in the holder (the pod's loopback, for a port
    that is not published: a user sidecar's)."""
    port: str = ""
    path: str | None = None
    tls: bool = False            # over HTTPS, verified against meshctl's CA
    accept: str = "2xx"          # "2xx", or "below 500" for the default health path "/"
    exec: tuple[str, ...] | None = None
    exec_in: str = "self"        # "self": the container checked; "pod": the holder (bash, in every meshctl image)
    label: str = ""              # what an exec check (or a TCP service's handshake) means, for plans and messages
    headers: tuple[tuple[str, str], ...] = ()   # sent with an HTTP probe (meshctl's probe key: faults skip it)

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.exec is not None:
            return " ".join(self.exec)
        if self.path is None:
            return f"a verified TLS handshake on {self.port}"
        scheme = "HTTPS" if self.tls else "HTTP"
        return f"{self.path} answers {self.accept} over {scheme}"


def serving_readiness(service: ServiceSpec) -> Readiness:
    """Ready = the health path answers through the whole chain (proxy or tls → app): an explicit
    health path with a 2xx, the default "/" with anything below 500."""
    if service.protocol == "tcp":
        return tcp_readiness(service)
    accept = "2xx" if service.health != "/" else "below 500"
    if service.tls_terminator is not None:
        return Readiness("https", service.health, tls=True, accept=accept)
    return Readiness("http", service.health, accept=accept)


def tcp_readiness(service: ServiceSpec) -> Readiness:
    """A TCP service is never sent HTTP. Ready = its `health: {exec}` exits 0 in the app; or, with
    the proxy serving TLS, a verified handshake on the published port, which the proxy completes
    only once its own TCP connect to the app has succeeded (templates/haproxy-proxy-tcp.cfg): a TCP
    connect through the whole chain; else a TCP connect to the app inside the pod."""
    if service.health_exec is not None:
        return Readiness(exec=service.health_exec, label=f"`{' '.join(service.health_exec)}` exits 0 in the app")
    if service.tls_terminator == "proxy":
        return Readiness("https", None, tls=True,
                         label="a TCP connection through TLS → proxy → app (a verified handshake)")
    return Readiness(exec=("bash", "-c", shell_tcp_check(service.port)), exec_in="pod",
                     label=f"port {service.port} accepts a TCP connection inside the pod")


def proxy_readiness(service: ServiceSpec) -> Readiness:
    # The proxy answers its readiness path itself, over verified HTTPS when it terminates TLS. A TCP
    # proxy has no HTTP port, and closes connections until the app is up: it is ready once it listens.
    if service.protocol == "tcp":
        return Readiness(exec=("bash", "-c", shell_tcp_check(PROXY_PORT)), exec_in="pod",
                         label=f"the TCP proxy listens on {PROXY_PORT} inside the pod")
    if service.tls_terminator == "proxy":
        return Readiness("https", READY_PATH, tls=True)
    return Readiness("http", READY_PATH)


def user_readiness(ready: ReadySpec | None) -> Readiness | None:
    """mesh.yaml's `ready:` of a user sidecar as Readiness. Its ports are the pod's own (not
    published), so tcp and http are checked from the holder, on the pod's loopback."""
    if ready is None:
        return None
    if ready.tcp is not None:
        return Readiness(exec=("bash", "-c", shell_tcp_check(ready.tcp)), exec_in="pod",
                         label=f"port {ready.tcp} accepts a TCP connection inside the pod")
    if ready.http is not None:
        assert ready.port is not None          # config requires `port` with `http`
        accept = '[ "$code" -ge 200 ] && [ "$code" -lt 300 ]'
        return Readiness(exec=("bash", "-c", shell_http_check(ready.port, ready.http, accept)), exec_in="pod",
                         label=f"{ready.http} on port {ready.port} answers 2xx inside the pod")
    assert ready.exec is not None
    return Readiness(exec=ready.exec, label=f"`{' '.join(ready.exec)}` exits 0 in the sidecar")


# The shell probes: bash's /dev/tcp, as the images have no curl and no TLS client.


def shell_tcp_check(port: int) -> str:
    return f"exec 3<>/dev/tcp/127.0.0.1/{port}"


def shell_http_check(port: int, path: str, accept: str) -> str:
    """A compose healthcheck's script: bash's /dev/tcp (the images have no curl); `$$` because
    compose would interpolate a single `$`."""
    return (f"{shell_tcp_check(port)} && "
            f"printf 'GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\nUser-Agent: meshctl-health\\r\\n\\r\\n' >&3 && "
            f"read -t 3 -r _ code _ <&3 && {accept}")


def shell_tls_chain_check(path: str, strict: bool) -> str:
    """The proxy serves: its HTTPS port listens (HAProxy binds it only with the certificate
    loaded), and a request through it gets the app's answer. (The images have no TLS client, so the
    request goes to the proxy's plain port; the HTTP frontend behind both is the same.)"""
    accept = '[ "$$code" -ge 200 ] && [ "$$code" -lt 400 ]' if strict else '[ "$$code" -lt 500 ]'
    return f"(exec 3<>/dev/tcp/127.0.0.1/{TLS_PORT}) && " + shell_http_check(PROXY_PORT, path, accept)
