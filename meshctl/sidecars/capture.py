"""Traffic capture (mesh.capture): the nat rules a one-shot step installs in a pod's network
namespace so the app's calls to other services go through its proxy, in words for plans and as the
script the step runs."""

from __future__ import annotations

from ..config import MeshSettings, ServiceSpec
from .addresses import MESH_GID, MESH_PORT, METRICS_PORT, OUTBOUND_PORT, OUTBOUND_TCP_PORT, TLS_PORT, Cluster

CAPTURE = "capture"          # the one-shot step's role, image folder and config folder


def captures(service: ServiceSpec) -> bool:
    return service.mesh is not None and service.mesh.capture


def _captured(mesh: MeshSettings) -> list[tuple[str, int]]:
    """(the peers' app ports as iptables' multiport list, the outbound listener they go to)."""
    out = []
    for peers, listener in ((mesh.peers, OUTBOUND_PORT), (mesh.tcp_peers, OUTBOUND_TCP_PORT)):
        if peers:
            out.append((",".join(str(p) for p in sorted({port for _, port in peers})), listener))
    return out


def capture_rules(service: ServiceSpec) -> tuple[str, ...]:
    """What the capture step installs, in words (`meshctl up --dry-run` shows them)."""
    mesh = service.mesh
    assert mesh is not None
    rules = [f"the app's TCP connections to the project's network on ports {ports} → its proxy's "
             f"outbound listener 127.0.0.1:{listener} (the proxy's own, group {MESH_GID}, pass)"
             for ports, listener in _captured(mesh)]
    if mesh.mtls == "strict":
        rules.append(f"new connections from other pods refused except to the mesh listener :{MESH_PORT} "
                     "(the host's published ports and loopback stay open)")
    return tuple(rules)


def render_capture(project: str, service: ServiceSpec, cluster: Cluster | None = None) -> str:
    """The capture step's script, run once in the pod's network namespace with NET_ADMIN (and
    again when it changes; it replaces its own chains). Outbound: the app's TCP connections to the
    other services' ports on the project's network go to the proxy's outbound listener; the proxy's
    own (its group, MESH_GID) are left alone. Inbound, in strict mode: new connections from other
    pods are refused except to the mesh listener; the host's published ports (they arrive from the
    network's gateway) and loopback keep working. In a Kubernetes cluster (`cluster`) there is no
    project network to find: calls to the peers' ports go to the proxy whatever their address (a
    Service's cluster IP), and in strict mode the Service's HTTPS and metrics ports stay open
    (kubelet's probes, Prometheus) besides the mesh listener."""
    mesh = service.mesh
    assert mesh is not None
    destination = "" if cluster else '-d "$subnet" '
    where = "any address" if cluster else "$subnet"
    redirects = "".join(
        f'iptables -t nat -A MESHCTL_OUT {destination}-p tcp -m multiport --dports {ports} -j REDIRECT --to-ports {listener}\n'
        f'echo "capture: calls from ${{SERVICE}} to {where} ports {ports} go through its proxy (:{listener})"\n'
        for ports, listener in _captured(mesh))
    if cluster:
        return _render_cluster(project, service, mesh, redirects)
    inbound = f"""
iptables -N MESHCTL_IN 2>/dev/null || iptables -F MESHCTL_IN
iptables -C INPUT -p tcp -j MESHCTL_IN 2>/dev/null || iptables -A INPUT -p tcp -j MESHCTL_IN
iptables -A MESHCTL_IN -i lo -j RETURN
iptables -A MESHCTL_IN -s "$gateway" -j RETURN
iptables -A MESHCTL_IN -p tcp --dport {MESH_PORT} -j RETURN
iptables -A MESHCTL_IN -p tcp --syn -j REJECT --reject-with tcp-reset
echo "capture: strict: other pods reach ${{SERVICE}} only through the mesh listener ({MESH_PORT}, mutual TLS)"
""" if mesh.mtls == "strict" else """
iptables -F MESHCTL_IN 2>/dev/null || true
echo "capture: permissive: other pods may also call ${SERVICE} in plain text"
"""
    return f"""#!/bin/sh
# Rendered by meshctl for {project}/{service.name}: traffic capture (mesh.capture), installed once in
# the pod's network namespace by a one-shot container holding NET_ADMIN only.
set -eu
SERVICE={service.name}
subnet=$(ip -o -4 route show dev eth0 scope link | awk '{{print $1; exit}}')
gateway=$(ip -4 route show default | awk '{{print $3; exit}}')
[ -n "$subnet" ] && [ -n "$gateway" ] || {{ echo "capture: no project network on eth0"; ip -4 route; exit 3; }}

iptables -t nat -N MESHCTL_OUT 2>/dev/null || iptables -t nat -F MESHCTL_OUT
iptables -t nat -C OUTPUT -p tcp -j MESHCTL_OUT 2>/dev/null || iptables -t nat -A OUTPUT -p tcp -j MESHCTL_OUT
iptables -t nat -A MESHCTL_OUT -m owner --gid-owner {MESH_GID} -j RETURN
iptables -t nat -A MESHCTL_OUT -d 127.0.0.0/8 -j RETURN
{redirects}{inbound}"""


def _render_cluster(project: str, service: ServiceSpec, mesh: MeshSettings, redirects: str) -> str:
    open_ports = ",".join(str(p) for p in (MESH_PORT, TLS_PORT, METRICS_PORT))
    inbound = f"""
iptables -N MESHCTL_IN 2>/dev/null || iptables -F MESHCTL_IN
iptables -C INPUT -p tcp -j MESHCTL_IN 2>/dev/null || iptables -A INPUT -p tcp -j MESHCTL_IN
iptables -A MESHCTL_IN -i lo -j RETURN
iptables -A MESHCTL_IN -p tcp -m multiport --dports {open_ports} -j RETURN
iptables -A MESHCTL_IN -p tcp --syn -j REJECT --reject-with tcp-reset
echo "capture: strict: other pods reach ${{SERVICE}} only through the mesh listener ({MESH_PORT}, mutual TLS)"
""" if mesh.mtls == "strict" else ""
    return f"""#!/bin/sh
# Rendered by meshctl for {project}/{service.name} in a Kubernetes cluster: traffic capture
# (mesh.capture), installed once in the pod's network namespace by an init container holding NET_ADMIN only.
set -eu
SERVICE={service.name}
iptables -t nat -N MESHCTL_OUT 2>/dev/null || iptables -t nat -F MESHCTL_OUT
iptables -t nat -C OUTPUT -p tcp -j MESHCTL_OUT 2>/dev/null || iptables -t nat -A OUTPUT -p tcp -j MESHCTL_OUT
iptables -t nat -A MESHCTL_OUT -m owner --gid-owner {MESH_GID} -j RETURN
iptables -t nat -A MESHCTL_OUT -d 127.0.0.0/8 -j RETURN
{redirects}{inbound}"""
