"""The sidecars: which image each role runs, the ports they use inside the pod, and their
configs rendered from templates/. Pure: nothing here talks to Docker or writes files."""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .config import ServiceSpec
from .errors import MeshctlError

# Ports inside the pod (the shared network namespace). The holder publishes the first three.
TLS_PORT = 15443
PROXY_PORT = 15080
METRICS_PORT = 15090
PROXY_STATS_PORT = 15021     # HAProxy's own Prometheus exporter, loopback only
EVENTS_PORT = 15514          # TCP: the proxy's access events to the metrics sidecar
READY_PATH = "/.meshctl/ready"   # answered by the proxy itself, never forwarded

# role → the folder under sidecars/ that builds its image. tls and proxy share one HAProxy image.
# With the proxy on (the default) the proxy terminates TLS itself, as Envoy does in Istio: one stage
# fewer on every request (docs/performance.md). The tls container runs only with `proxy: false`.
ROLE_IMAGES = {"tls": "haproxy", "proxy": "haproxy", "metrics": "metrics"}
# The folder each sidecar's config is mounted from, read-only.
CONFIG_MOUNT = "/etc/meshctl"


def data_dir(kind: str) -> Path:
    """sidecars/ or templates/: inside an installed wheel (meshctl/_data), else the source tree."""
    packaged = resources.files("meshctl") / "_data" / kind
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parent.parent / kind
    if source.is_dir():
        return source
    raise MeshctlError(f"meshctl's {kind}/ folder is missing from this installation",
                       hint="reinstall meshctl (pip install --force-reinstall meshctl)")


def template(name: str) -> string.Template:
    return string.Template((data_dir("templates") / name).read_text(encoding="utf-8"))


def pod_port(role: str) -> int:
    return {"tls": TLS_PORT, "proxy": PROXY_PORT, "metrics": METRICS_PORT}[role]


def published_ports(service: ServiceSpec) -> dict[str, int]:
    """Host port name → the port inside the pod it reaches."""
    targets = {"https": TLS_PORT, "metrics": METRICS_PORT,
               "http": PROXY_PORT if service.proxy else service.port}
    return {name: targets[name] for name, _ in service.ports}


def _seconds(value: float) -> str:
    return f"{int(value * 1000)}ms"


def access_log_targets(service: ServiceSpec) -> tuple[str, str]:
    """The proxy's access log: with a metrics sidecar, HAProxy writes each line into a ring buffer
    whose forwarder streams them over one TCP connection to the agent (many lines per write under
    load, none lost while the agent reads); the agent counts them all and prints them, sampled under
    load. Without one, every line goes to stdout. (A datagram per request cost the proxy a syscall
    each and dropped events under load; docs/performance.md has the figures.)"""
    if not service.metrics:
        return "    log stdout format raw local0 info", ""
    ring = (
        "\nring meshctl-events\n"
        "    description \"access events for the metrics sidecar\"\n"
        "    format raw\n"
        "    maxlen 4096\n"
        "    size 4194304\n"
        "    timeout connect 1s\n"
        "    timeout server 1h\n"
        f"    server metrics 127.0.0.1:{EVENTS_PORT}\n"
    )
    return "    log ring@meshctl-events format raw local0 info", ring


# TLS as every HAProxy of meshctl's serves it: TLS 1.2 and up, AES-GCM first (AES-NI), ECDSA P-256
# certificates from meshctl's CA, HTTP/1.1 offered by ALPN.
TLS_GLOBALS = """\
    ssl-default-bind-options ssl-min-ver TLSv1.2
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"""
CERT_BUNDLE = f"{CONFIG_MOUNT}/bundle.pem"
TLS_BIND = f"ssl crt {CERT_BUNDLE} alpn http/1.1"


def chain_of(service: ServiceSpec) -> str:
    """What a request crosses, for messages."""
    if service.tls_terminator == "proxy":
        return "proxy (HTTPS) → app"
    if service.tls_terminator == "tls":
        return "tls → app"
    return "proxy → app" if service.proxy else "the app"


def render_proxy(project: str, service: ServiceSpec) -> str:
    assert service.proxy is not None
    access_log, events_ring = access_log_targets(service)
    tls = service.tls_terminator == "proxy"
    return template("haproxy-proxy.cfg").substitute(
        project=project, service=service.name, access_log=access_log, events_ring=events_ring,
        connect_timeout=_seconds(service.proxy.connect_timeout), timeout=_seconds(service.proxy.timeout),
        retries=connection_retries(service), proxy_port=PROXY_PORT, app_port=service.port,
        stats_port=PROXY_STATS_PORT,
        tls_globals=TLS_GLOBALS if tls else "    # No TLS: the tls sidecar is off in mesh.yaml.",
        tls_bind=f"    bind :{TLS_PORT} {TLS_BIND}" if tls else "    # No HTTPS listener: the tls sidecar is off in mesh.yaml.")


def connection_retries(service: ServiceSpec) -> int:
    """HAProxy pauses about connect_timeout between connection retries. While the app restarts
    (a hot reload), requests must wait for it up to the proxy timeout instead of failing, so
    the retries cover that whole window; `retries` in mesh.yaml is the floor."""
    assert service.proxy is not None
    window = math.ceil(service.proxy.timeout / max(service.proxy.connect_timeout, 0.001))
    return max(service.proxy.retries, window)


# A TCP proxy's idle connections (a database pool's) may sit unused for long stretches.
TCP_IDLE_TIMEOUT = 3600.0


def render_tcp_proxy(project: str, service: ServiceSpec, why: str) -> str:
    """The proxy sidecar for an app that does not speak HTTP (`meshctl inject`'s TCP mode)."""
    assert service.proxy is not None
    return template("haproxy-tcp.cfg").substitute(
        project=project, service=service.name, why=why, proxy_port=PROXY_PORT, app_port=service.port,
        stats_port=PROXY_STATS_PORT, connect_timeout=_seconds(service.proxy.connect_timeout),
        idle_timeout=_seconds(TCP_IDLE_TIMEOUT), retries=service.proxy.retries)


def proxy_stats_url() -> str:
    """HAProxy's own Prometheus exporter inside the pod (connection counts in TCP mode)."""
    return f"http://127.0.0.1:{PROXY_STATS_PORT}/metrics?scope=frontend&scope=backend"


def render_tls(project: str, service: ServiceSpec) -> str:
    """The tls sidecar, which runs only without a proxy: HTTPS in front of the app, in TCP mode."""
    assert service.tls_terminator == "tls"
    return template("haproxy-tls.cfg").substitute(
        project=project, service=service.name, tls_port=TLS_PORT, tls_globals=TLS_GLOBALS, tls_bind=TLS_BIND,
        upstream_server=f"127.0.0.1:{service.port}", idle_timeout=_seconds(60.0))


def metrics_env(service: ServiceSpec) -> dict[str, str]:
    return {
        "MESHCTL_SERVICE": service.name,
        "MESHCTL_METRICS_PORT": str(METRICS_PORT),
        "MESHCTL_EVENTS_PORT": str(EVENTS_PORT),
        "MESHCTL_APP_METRICS": f"http://127.0.0.1:{service.port}{service.metrics_path}" if service.metrics_path else "",
    }


@dataclass(frozen=True)
class RenderedConfig:
    role: str
    files: dict[str, str]    # file name in the role's config folder → content


def render_configs(project: str, service: ServiceSpec) -> list[RenderedConfig]:
    out = []
    if service.proxy:
        out.append(RenderedConfig("proxy", {"haproxy.cfg": render_proxy(project, service)}))
    if service.tls_terminator == "tls":
        out.append(RenderedConfig("tls", {"haproxy.cfg": render_tls(project, service)}))
    return out
