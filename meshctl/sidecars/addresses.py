"""Where things are inside a pod (the shared network namespace): the sidecars' ports, the folder
their config is mounted from, the proxy's own readiness path, and the URLs built from them.
Constants only, so templates, readiness, capture and the kinds all read one set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..home import derived_key

if TYPE_CHECKING:       # annotations only: `stat` and `ps` read these ports without the config model
    from ..config import ServiceSpec

# Ports inside the pod. The holder publishes the first three.
TLS_PORT = 15443
PROXY_PORT = 15080
METRICS_PORT = 15090
PROXY_STATS_PORT = 15021     # HAProxy's own Prometheus exporter, loopback only
EVENTS_PORT = 15514          # TCP: the proxy's access events to the metrics sidecar
OTLP_PORT = 15018            # loopback: the metrics sidecar's OTLP/HTTP receiver and span store
OBSERVE_PORT = 15092         # loopback, never published: routes and the live tap (meshctl top, tap)
OBSERVE_READER = "/usr/local/lib/meshctl/recent.py"   # in the metrics image: reads OBSERVE_PORT
# The metrics sidecar serves its spans on its published port only to a request carrying this key
# (home.derived_key: meshctl's secret, "observe", the project), as `Authorization: Bearer KEY`.
OBSERVE_KEY_ENV = "MESHCTL_OBSERVE_KEY"
READY_PATH = "/.meshctl/ready"   # answered by the proxy itself, never forwarded
MESH_PORT = 15008            # the inbound mesh listener: mutual TLS from other pods' proxies
OUTBOUND_PORT = 15001        # loopback: the app's captured calls to other services arrive here
OUTBOUND_TCP_PORT = 15002    # loopback: the same for calls to TCP services (routed by port, not Host)
MESH_GID = 15999             # the proxy's group: capture leaves its own connections alone

# The folder each sidecar's config is mounted from, read-only.
CONFIG_MOUNT = "/etc/meshctl"
CERT_BUNDLE = f"{CONFIG_MOUNT}/bundle.pem"
MESH_FILE = "mesh.json"       # beside the proxy's config: what `meshctl ps` shows of the mesh


def published_ports(service: ServiceSpec) -> dict[str, int]:
    """Host port name → the port inside the pod it reaches."""
    targets = {"https": TLS_PORT, "metrics": METRICS_PORT,
               "http": PROXY_PORT if service.proxy else service.port}
    return {name: targets[name] for name, _ in service.ports}


def app_otel_env(service: ServiceSpec) -> dict[str, str]:
    """The OpenTelemetry SDK's standard variables: an instrumented app sends its spans to the pod's
    metrics sidecar (OTLP/HTTP, protobuf, W3C traceparent) with no configuration of its own."""
    if service.metrics is None:
        return {}
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{OTLP_PORT}", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_SERVICE_NAME": service.name, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_PROPAGATORS": "tracecontext",
            # Spans only: the pod's receiver takes /v1/traces (metrics and logs go the meshctl ways).
            "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


def proxy_stats_url() -> str:
    """HAProxy's own Prometheus exporter inside the pod (connection counts in TCP mode)."""
    return f"http://127.0.0.1:{PROXY_STATS_PORT}/metrics?scope=frontend&scope=backend"


@dataclass(frozen=True)
class Cluster:
    """A Kubernetes cluster the sidecars' configs are rendered for (`meshctl export k8s`): a peer is
    reached by its Service's cluster DNS name, resolved through the pod's resolv.conf, and capture
    does not know the network's address ranges. None wherever a config is rendered: Docker's network."""
    namespace: str
    domain: str = "cluster.local"

    def address(self, service: str) -> str:
        return f"{service}.{self.namespace}.svc.{self.domain}"


def peer_address(service: str, cluster: Cluster | None) -> str:
    """Where a caller's proxy connects to a peer: its network alias locally, its Service in a cluster."""
    return cluster.address(service) if cluster else service


def observe_key(secret: str, project: str) -> str:
    """What the project's metrics sidecars serve their spans to (OBSERVE_KEY_ENV)."""
    return derived_key(secret, "observe", project)
