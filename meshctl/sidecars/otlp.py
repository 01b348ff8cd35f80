"""Span export (OTLP/HTTP) from the metrics sidecar, and the loopback forwarder a collector on the
developer's own machine needs: a container cannot reach the host's 127.0.0.1, and under `up -d`
no meshctl process is left to relay. The forwarder runs per pod in the host's network namespace
(no capability, the pod's PID namespace: it goes with the pod) and listens only on a Unix socket
in its config folder, which the metrics sidecar mounts read-only (docs/observability.md)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from ..config import ServiceSpec
from ..config.tracing import is_loopback

OTLP_FORWARD = "otlp-forward"
# Where the metrics sidecar sees the forwarder's folder, and the socket in it (sidecars/metrics/otlp_forward.py).
FORWARD_MOUNT = "/run/meshctl-otlp"
FORWARD_SOCKET = "otlp.sock"


def forwards_otlp(service: ServiceSpec) -> bool:
    """Does this pod need the loopback forwarder?"""
    return service.metrics is not None and service.tracing is not None and is_loopback(service.tracing.otlp)


def otlp_export_env(service: ServiceSpec) -> dict[str, str]:
    """The metrics agent's export settings (none: it exports nothing)."""
    if service.tracing is None:
        return {}
    env = {"MESHCTL_OTLP_ENDPOINT": service.tracing.otlp, "MESHCTL_OTLP_SAMPLE": repr(service.tracing.sample)}
    if forwards_otlp(service):
        env["MESHCTL_OTLP_SOCKET"] = f"{FORWARD_MOUNT}/{FORWARD_SOCKET}"
    return env


def render_forward(project: str, service: ServiceSpec, cluster: object = None) -> dict[str, str]:
    """The forwarder's one setting: the collector's loopback address and port."""
    assert service.tracing is not None
    url = urlsplit(service.tracing.otlp)
    host = "[::1]" if url.hostname == "::1" else "127.0.0.1"
    return {"forward.json": json.dumps({"to": f"{host}:{url.port or 80}"}) + "\n"}
