"""What the checks of one service reach: a Target (its URLs on the host, the names its certificate
must verify for, its declared checks, its app container) and the names of its checks in the order
they run."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..certs import default_sans
from ..config import CheckSpec, ProjectSpec
from ..sidecars.faults import PROBE_HEADER


@dataclass(frozen=True)
class Target:
    service: str
    urls: dict[str, str]                   # "https", "http", "metrics" → URL on the host
    health: str = "/"
    hostnames: tuple[str, ...] = ()        # the names the certificate must verify for (SNI)
    checks: tuple[CheckSpec, ...] = ()
    counts_requests: bool = True           # a proxy feeds the metrics sidecar its access events
    app_container: str | None = None       # where `exec` checks run
    # A container in the pod to reach the proxy from when it has no host port (an injected
    # compose service publishes only TLS and metrics).
    proxy_inside: str | None = None
    protocol: str = "http"                 # tcp: TCP connects through the chain, never an HTTP request
    probe_key: str = ""                    # the built-in checks carry it past the proxy's faults

    def port(self, name: str) -> int:
        return urlsplit(self.urls[name]).port or 0

    def check_names(self) -> tuple[str, ...]:
        """In the order they run: the metrics check last, as it counts the requests before it."""
        first = [n for n, endpoint in (("https", "https"), ("certificate", "https"), ("http", "http"))
                 if endpoint in self.urls or (n == "http" and self.proxy_inside)]
        # Checks with faults run after all others, one at a time (testing/resilience.py).
        return ("ready", *first, *(c.name for c in self.checks if not c.faults),
                *(["metrics"] if "metrics" in self.urls else []), *(c.name for c in self.checks if c.faults))

    def probe_headers(self) -> dict[str, str]:
        return {PROBE_HEADER: self.probe_key} if self.probe_key else {}


def targets_for(project: ProjectSpec, urls: dict[str, dict[str, str]] | None = None,
                app_containers: dict[str, str] | None = None, probe_key: str = "") -> list[Target]:
    """The targets of a stack meshctl started: service name → its URLs and app container.
    Without URLs, the targets it would have (to name the checks that could not run)."""
    out = []
    for service in project.services:
        service_urls = urls.get(service.name) if urls is not None else {name: "" for name, _ in service.ports}
        if service_urls is None:
            continue
        out.append(Target(
            service=service.name, urls=service_urls, health=service.health,
            hostnames=default_sans(service.name, service.tls.hosts) if service.tls else (),
            checks=service.checks, counts_requests=bool(service.proxy and service.metrics),
            app_container=(app_containers or {}).get(service.name), protocol=service.protocol, probe_key=probe_key))
    return out
