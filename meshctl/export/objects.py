"""What every flavour of the export shares: the options, the result, names and labels of the objects,
a service's ServiceAccount, Service and certificate, and the image references. Pure: dicts out."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import ProjectSpec, ServiceSpec
from ..planning.images import folder_hash
from ..planning.steps import BuildImage
from ..planning.plan import service_sans
from ..sidecars import METRICS_PORT, MESH_PORT, TLS_PORT, Cluster, tls_kind

Obj = dict[str, Any]
# --certs local: (SANs, common name, organizational unit) → (certificate chain, private key, CA) in PEM.
Issue = Callable[[tuple[str, ...], str, "str | None"], tuple[bytes, bytes, bytes]]

MESHES = ("meshctl", "istio", "linkerd")
CERTS = ("cert-manager", "local")
# Where the local CA's Secrets go (--certs local): beside the manifests, never in them.
SECRETS_FILE = "secrets.yaml"


@dataclass(frozen=True)
class ExportOptions:
    namespace: str
    registry: str = ""                  # "" : images named without a registry (push them yourself)
    mesh: str = "meshctl"
    certs: str = "cert-manager"
    issuer: str = "meshctl-ca"          # NAME (an Issuer in the namespace) or ClusterIssuer/NAME
    source: str = "mesh.yaml"           # what the header says it came from


@dataclass
class Export:
    """The objects in apply order, the local CA's Secrets apart (--certs local), and one line per
    item of mesh.yaml that does not map to the chosen flavour (never silently dropped)."""
    header: str
    objects: list[Obj] = field(default_factory=list)
    secrets: list[Obj] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    builds: list[BuildImage] = field(default_factory=list)    # the images built from folders (--push)


def cluster_of(options: ExportOptions) -> Cluster:
    return Cluster(options.namespace)


def app_labels(project: ProjectSpec, service: ServiceSpec) -> dict[str, str]:
    """The pod's selector labels (and every object's of this service)."""
    return {"app.kubernetes.io/name": service.name, "app.kubernetes.io/part-of": project.name}


def object_labels(project: ProjectSpec, service: ServiceSpec | None = None) -> dict[str, str]:
    base = {"app.kubernetes.io/managed-by": "meshctl", "app.kubernetes.io/part-of": project.name}
    return {**base, **({"app.kubernetes.io/name": service.name} if service else {})}


def metadata(name: str, options: ExportOptions, labels: dict[str, str], **extra: Any) -> Obj:
    return {"name": name, "namespace": options.namespace, "labels": labels, **extra}


def registry_ref(options: ExportOptions, name: str) -> str:
    return f"{options.registry.rstrip('/')}/{name}" if options.registry else name


def app_image(project: ProjectSpec, service: ServiceSpec, options: ExportOptions) -> str:
    """The image as in mesh.yaml; built from a folder: REG/<project>-<service>:<content hash>."""
    if service.image:
        return service.image
    folder = service.build or service.source
    tag = folder_hash(folder) if folder is not None else "latest"
    return registry_ref(options, f"{project.name}-{service.name}:{tag}")


def service_account(project: ProjectSpec, service: ServiceSpec, options: ExportOptions) -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": metadata(service.name, options, object_labels(project, service)),
            "automountServiceAccountToken": False}


def service_ports(service: ServiceSpec, *, sidecars: bool) -> list[Obj]:
    """The Service's ports: the app's own (what callers write: http://api:8080), and with meshctl's
    sidecars the HTTPS listener, the mesh listener (mutual TLS from other pods' proxies), metrics."""
    ports = [{"name": "app", "port": service.port, "targetPort": service.port, "protocol": "TCP",
              "appProtocol": "tcp" if service.protocol == "tcp" else "http"}]
    if not sidecars:
        return ports
    if tls_kind(service) is not None:
        ports.append({"name": "https", "port": 443, "targetPort": TLS_PORT, "protocol": "TCP"})
    if service.mesh is not None:
        ports.append({"name": "mesh", "port": MESH_PORT, "targetPort": MESH_PORT, "protocol": "TCP"})
    if service.metrics is not None:
        ports.append({"name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT, "protocol": "TCP"})
    return ports


def service_object(project: ProjectSpec, service: ServiceSpec, options: ExportOptions, *, sidecars: bool) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": metadata(service.name, options, object_labels(project, service)),
            "spec": {"selector": app_labels(project, service), "ports": service_ports(service, sidecars=sidecars)}}


def secret_name(service: ServiceSpec) -> str:
    return f"{service.name}-tls"


def cluster_sans(service: ServiceSpec, options: ExportOptions) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(DNS names, IP addresses, URIs) of a service's certificate in the cluster: the names `up`
    issues (service_sans: the service, its tls.hosts, its SPIFFE identity) and its Service's
    cluster names; localhost and loopback addresses stay (kubelet-style probes inside the pod)."""
    cluster = cluster_of(options)
    full = cluster.address(service.name)
    names = (*service_sans(service), f"{service.name}.{options.namespace}", f"{service.name}.{options.namespace}.svc", full)
    dns, ips, uris = [], [], []
    for name in dict.fromkeys(names):
        if name.startswith("spiffe://"):
            uris.append(name)
            continue
        try:
            ipaddress.ip_address(name)
            ips.append(name)
        except ValueError:
            dns.append(name)
    return tuple(dns), tuple(ips), tuple(uris)


def issuer_ref(options: ExportOptions) -> Obj:
    kind, _, name = options.issuer.rpartition("/")
    return {"name": name, "kind": kind or "Issuer", "group": "cert-manager.io"}


def certificate(project: ProjectSpec, service: ServiceSpec, options: ExportOptions) -> Obj:
    """cert-manager's Certificate for a service's TLS and mesh identity: the subject the mesh
    listener's caller gate reads (CN = the service, OU = the project) and the SPIFFE URI SAN."""
    dns, ips, uris = cluster_sans(service, options)
    spec: Obj = {
        "secretName": secret_name(service), "commonName": service.name, "dnsNames": list(dns),
        "duration": "168h", "renewBefore": "48h",      # as `up` issues them (7 days, renewed 2 days before)
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "usages": ["digital signature", "key encipherment", "server auth", "client auth"],
        "issuerRef": issuer_ref(options)}
    if ips:
        spec["ipAddresses"] = list(ips)
    if uris:
        spec["uris"] = list(uris)
    if service.mesh is not None:
        spec["subject"] = {"organizationalUnits": [service.mesh.project]}
    return {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": metadata(service.name, options, object_labels(project, service)), "spec": spec}


def tls_secret(project: ProjectSpec, service: ServiceSpec, options: ExportOptions, *, cert: bytes, key: bytes,
               ca: bytes) -> Obj:
    """--certs local: the Secret cert-manager would write, from meshctl's local CA."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": metadata(secret_name(service), options, object_labels(project, service)),
            "data": {"ca.crt": b64(ca), "tls.crt": b64(cert), "tls.key": b64(key)}}


def local_secrets(project: ProjectSpec, options: ExportOptions, issue: Issue) -> list[Obj]:
    """--certs local: each serving service's Secret, issued now by meshctl's local CA with the names
    and subject a Certificate would ask for."""
    out = []
    for service in project.services:
        if tls_kind(service) is None:
            continue
        dns, ips, uris = cluster_sans(service, options)
        cert, key, ca = issue((*dns, *ips, *uris), service.name, service.mesh.project if service.mesh else None)
        out.append(tls_secret(project, service, options, cert=cert, key=key, ca=ca))
    return out


def principal(options: ExportOptions, caller: str) -> str:
    """A caller's workload identity as Istio's AuthorizationPolicy names it (its ServiceAccount)."""
    return f"cluster.local/ns/{options.namespace}/sa/{caller}"


def seconds(value: float) -> str:
    """A duration as Istio's and Linkerd's APIs write it."""
    ms = round(value * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
