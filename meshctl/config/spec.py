"""The project as meshctl understands it: frozen dataclasses only, no parsing and no I/O.
load.py builds them from mesh.yaml (or a Dockerfile, or flags); everything above config reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..model import spiffe_id

CONFIG_NAMES = ("mesh.yaml", "mesh.yml")
# The keys of a service's `sidecars:` settings (which containers run is sidecars.KINDS' business).
SIDECAR_SETTINGS = ("tls", "proxy", "metrics")
PORT_NAMES = ("https", "http", "metrics")
# Host ports of the first service when mesh.yaml says nothing; later services get free ports.
DEFAULT_HOST_PORTS = {"https": 8443, "http": 8080, "metrics": 9090}
# depends_on: wait until a service is ready (serves through its chain), or only until its app started.
DEPENDENCY_CONDITIONS = ("ready", "started")
# Ports the sidecars use inside the pod; an app may not listen on them.
RESERVED_POD_PORTS = range(15000, 15100)



@dataclass(frozen=True)
class BuildOptions:
    """`build: {context, dockerfile, args, target}` beyond the folder (compose's build keys)."""
    dockerfile: str = "Dockerfile"                 # relative to the build folder (the context)
    args: tuple[tuple[str, str], ...] = ()         # --build-arg NAME=VALUE
    target: str | None = None                      # the stage of a multi-stage Dockerfile

    def dockerfile_path(self, context: Path) -> Path:
        return (context / self.dockerfile).resolve()


@dataclass(frozen=True)
class ProxySettings:
    timeout: float = 15.0          # seconds the proxy waits for the app's answer
    retries: int = 2               # retries when the app refuses the connection
    # Per attempt, and HAProxy's pause between retries: loopback connects answer at once.
    connect_timeout: float = 0.2


@dataclass(frozen=True)
class TlsSettings:
    hosts: tuple[str, ...] = ()    # extra SANs beyond localhost, 127.0.0.1, ::1 and the service name


@dataclass(frozen=True)
class MetricsSettings:
    pass


@dataclass(frozen=True)
class WatchSettings:
    sync: tuple[tuple[str, str], ...] = ()   # (local folder relative to the build context, path in the container)
    rebuild: tuple[str, ...] = ()            # globs that need a rebuild even in sync mode
    ignore: tuple[str, ...] = ()             # globs never watched


@dataclass(frozen=True)
class Fault:
    """One of a service's `faults:`, injected by its own proxy on calls into it (docs/traffic.md)."""
    kind: str                       # abort (HTTP: answer `status`), delay (HTTP or TCP), reset (TCP)
    percent: float = 100.0          # of the calls it applies to; fractional allowed
    status: int = 0                 # abort's answer
    delay: float = 0.0              # seconds
    callers: tuple[str, ...] = ()   # `from`: only calls carrying these services' identities; (): every call


@dataclass(frozen=True)
class HttpCheck:
    """A declared request and what its answer must show (`meshctl test`)."""
    name: str
    path: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    via: str = "https"                         # the endpoint: https (HTTPS → proxy → app) or http
    status: tuple[int, ...] = ()               # empty: any status below 400
    body_contains: str | None = None
    body_matches: str | None = None            # a regular expression, searched anywhere
    json: tuple[tuple[str, Any], ...] = ()     # dotted field path ("items.0.id") → expected value
    max_latency: float | None = None           # seconds
    timeout: float = 10.0
    faults: tuple[tuple[str, tuple[Fault, ...]], ...] = ()   # service → faults that hold only while it runs


@dataclass(frozen=True)
class ExecCheck:
    """A command run in the app's container and the exit code it must end with."""
    name: str
    command: tuple[str, ...]
    exit_code: int = 0
    output_contains: str | None = None
    timeout: float = 30.0
    faults: tuple[tuple[str, tuple[Fault, ...]], ...] = ()


CheckSpec = HttpCheck | ExecCheck


@dataclass(frozen=True)
class RetryPolicy:
    """`traffic.retries`: how a caller's proxy retries a failed call (config/traffic.py checks it)."""
    attempts: int                              # retries after the first try
    on: tuple[str, ...]                        # as written: 5xx, reset, connect-failure, gateway-error, 503...
    per_try_timeout: float                     # seconds; (attempts + 1) × it fits in the whole timeout
    methods: tuple[str, ...]                   # the methods that may be replayed


@dataclass(frozen=True)
class CircuitBreaker:
    """`traffic.circuit_breaker`: consecutive failed calls (after retries) open it for `open_for`."""
    consecutive_errors: int | None = None
    open_for: float = 30.0
    max_connections: int | None = None         # per callee, from each caller's proxy
    max_pending: int | None = None             # calls waiting for a connection; more are answered 503


@dataclass(frozen=True)
class TrafficPolicy:
    """A service's `traffic:`: how every caller's proxy calls it."""
    timeout: float | None = None               # the caller's whole wait, retries included (504 after it)
    retries: RetryPolicy | None = None
    circuit_breaker: CircuitBreaker | None = None
    split: tuple[tuple[str, int], ...] = ()    # (service, weight), weights summing to 100


@dataclass(frozen=True)
class AllowRule:
    """One rule of `allow:`: these callers (None: any of the project's), with these methods (empty:
    any) on these paths (empty: any; `/x` exact, `/x/*` a prefix, `*.json` a suffix)."""
    callers: tuple[str, ...] | None
    methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    @property
    def by_caller_only(self) -> bool:
        return self.callers is not None and not self.methods and not self.paths


MTLS_MODES = ("strict", "permissive", "off")
@dataclass(frozen=True)
class MeshSettings:
    """The project's mesh as one service's proxy sees it (set only when its project has other
    services to call or be called by, and mTLS is not off)."""
    project: str
    mtls: str = "strict"                       # strict | permissive (mTLS between pods; off: no mesh)
    capture: bool = True                       # redirect the app's calls to other services through its proxy
    peers: tuple[tuple[str, int], ...] = ()    # the other services with a proxy: (name, app port)
    allow: tuple[AllowRule, ...] | None = None   # who may call this service, how; None: every service of the project
    tcp_peers: tuple[tuple[str, int], ...] = ()   # the other services with a TCP proxy: (name, app port)
    traffic: tuple[tuple[str, TrafficPolicy], ...] = ()   # the HTTP peers' `traffic:`, where set


@dataclass(frozen=True)
class TracingSettings:
    """`mesh.tracing` (or OTEL_EXPORTER_OTLP_ENDPOINT): where every metrics sidecar exports its spans."""
    otlp: str                                  # the collector's OTLP/HTTP base URL as written (spans: URL/v1/traces)
    sample: float = 1.0                        # the share of traces exported, decided by trace id


@dataclass(frozen=True)
class ReadySpec:
    """A user sidecar's `ready:`: exactly one of a TCP port, an HTTP path on a port, a command."""
    tcp: int | None = None
    http: str | None = None
    port: int | None = None
    exec: tuple[str, ...] | None = None

    def ports(self) -> tuple[int, ...]:
        return tuple(p for p in (self.tcp, self.port) if p is not None)


@dataclass(frozen=True)
class UserSidecar:
    """A sidecar of the user's own: joins the pod's namespaces, starts after meshctl's sidecars,
    is ready before the app starts, stops after it. Least privilege unless a field asks for more:
    `user` (default: your uid:gid), `read_only: false`, `cap_add`."""
    name: str
    image: str | None = None
    build: Path | None = None
    build_options: BuildOptions = field(default_factory=BuildOptions)
    command: tuple[str, ...] | None = None       # the image's CMD, replaced (as in compose)
    entrypoint: tuple[str, ...] | None = None    # the image's ENTRYPOINT, replaced
    env: tuple[tuple[str, str], ...] = ()
    ready: ReadySpec | None = None
    user: str | None = None
    read_only: bool = True
    cap_add: tuple[str, ...] = ()
    stop_grace_period: float = 5.0


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int
    build: Path | None = None
    build_options: BuildOptions = field(default_factory=BuildOptions)
    image: str | None = None
    health: str = "/"
    env: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] | None = None
    metrics_path: str | None = None
    proxy: ProxySettings | None = field(default_factory=ProxySettings)
    tls: TlsSettings | None = field(default_factory=TlsSettings)
    metrics: MetricsSettings | None = field(default_factory=MetricsSettings)
    # Host ports on 127.0.0.1 by name; 0 asks for a free one. Only enabled sidecars have one.
    ports: tuple[tuple[str, int], ...] = ()
    stop_grace_period: float = 10.0
    watch: WatchSettings = field(default_factory=WatchSettings)
    checks: tuple[CheckSpec, ...] = ()
    mesh: MeshSettings | None = None
    allow: tuple[AllowRule, ...] | None = None   # as written in mesh.yaml (mesh.allow is what applies)
    traffic: TrafficPolicy | None = None          # how callers' proxies call this service
    user_sidecars: tuple[UserSidecar, ...] = ()
    # Run mode (`meshctl up -- CMD`, or `runtime:`/`source:` in mesh.yaml): no Dockerfile; the
    # command runs in a runtime image (node, python, go: runtimes.RUNTIMES) or in `image`, with
    # `source` mounted read-only at /app, its working directory.
    runtime: str | None = None
    source: Path | None = None
    # http, or tcp: a TCP proxy (connection metrics, mTLS between pods, readiness by a TCP connect).
    protocol: str = "http"
    health_exec: tuple[str, ...] | None = None   # a TCP service's `health: {exec: [...]}`, run in the app
    outside_mesh: bool = False                   # `sidecars: false` in a project with a mesh
    faults: tuple[Fault, ...] = ()               # injected at this service's proxy, in the order they apply
    depends_on: tuple[tuple[str, str], ...] = ()  # (service, ready | started): the app starts after them
    tracing: TracingSettings | None = None       # the project's span export, when one is set

    @property
    def identity(self) -> str | None:
        return spiffe_id(self.mesh.project, self.name) if self.mesh else None

    @property
    def tls_terminator(self) -> str | None:
        """The role whose container serves HTTPS (and holds the certificate), if any: the proxy
        when there is one (one stage fewer per request), else a tls sidecar in front of the app."""
        if self.tls is None:
            return None
        return "proxy" if self.proxy else "tls"


    @property
    def host_ports(self) -> dict[str, int]:
        return dict(self.ports)


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    root: Path                     # the folder relative paths are resolved from
    services: tuple[ServiceSpec, ...]
    source: Path | None = None     # the mesh.yaml it came from, if any

    def service(self, name: str) -> ServiceSpec:
        for s in self.services:
            if s.name == name:
                return s
        raise ConfigError(f"no service named {name!r} in project {self.name!r}",
                          hint="services: " + ", ".join(s.name for s in self.services))

