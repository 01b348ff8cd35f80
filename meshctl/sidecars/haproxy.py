"""Every HAProxy config meshctl renders, from templates/: the proxy sidecar (HTTP or TCP, with the
mesh listeners in a mesh), the lone tls sidecar, and inject's TCP proxy. The text is all in the
templates (haproxy-shared.cfg holds what they share, haproxy-mesh.cfg the mesh listeners); this
module picks the templates and fills them. Also: the access-log formats the metrics agent parses,
and the mesh summary written beside the proxy's config."""

from __future__ import annotations

import json
import math
from dataclasses import replace

from ..config import MeshSettings, ServiceSpec, TrafficPolicy
from ..model import spiffe_id
from .addresses import (CERT_BUNDLE, CONFIG_MOUNT, EVENTS_PORT, MESH_FILE, MESH_PORT, OUTBOUND_PORT,
                        OUTBOUND_TCP_PORT, PROXY_PORT, PROXY_STATS_PORT, READY_PATH, TLS_PORT, Cluster, peer_address)
from . import traffic
from .data import template, template_parts
from .faults import fault_files, fault_rules, lua_global

# One access line per request, what the metrics agent parses (the mesh listener adds the caller).
# Before the request: the hop's span, trace/span/parent/start µs/end µs (templates/haproxy-tracing.cfg).
SPAN_LOG_FIELD = "%[var(txn.trace_id)]/%[var(txn.span_id)]/%[var(txn.trace_parent)]/%[var(txn.trace_start)]/%[var(txn.trace_end)]"
ACCESS_LOG_FORMAT = f"%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc {SPAN_LOG_FIELD} %{{+Q}}r"
# One per TCP connection, at its close: `tcp` where a request line has its status, then the bytes
# from the client (%U) and to it (%B), and how it ended (%ts: -- closed normally, PR denied by a rule).
TCP_LOG_FORMAT = "%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt tcp %U %B %ts"

# A TCP proxy's idle connections (a database pool's) may sit unused for long stretches.
TCP_IDLE_TIMEOUT = 3600.0
EVENTS_RING = "meshctl-events"
SHARED = "haproxy-shared.cfg"
MESH = "haproxy-mesh.cfg"
TRACING = "haproxy-tracing.cfg"


def _seconds(value: float) -> str:
    return f"{int(value * 1000)}ms"


def _inline(text: str) -> str:
    """A part written on a line of its own in another template: without its own line end."""
    return text.removesuffix("\n")


def _common() -> dict[str, str]:
    """What every template may name: the pod's ports and paths, the log formats, the idle timeout."""
    return {
        "ready_path": READY_PATH, "tls_port": str(TLS_PORT), "proxy_port": str(PROXY_PORT),
        "stats_port": str(PROXY_STATS_PORT), "events_port": str(EVENTS_PORT), "mesh_port": str(MESH_PORT),
        "outbound_port": str(OUTBOUND_PORT), "outbound_tcp_port": str(OUTBOUND_TCP_PORT),
        "cert_bundle": CERT_BUNDLE, "ca_file": f"{CONFIG_MOUNT}/ca.pem", "ring": EVENTS_RING,
        "access_log_format": ACCESS_LOG_FORMAT, "tcp_log_format": TCP_LOG_FORMAT,
        "idle_timeout": _seconds(TCP_IDLE_TIMEOUT), "tracing": _inline(template_parts(TRACING)["http"].template)}


def _part(file: str, part: str, /, **fields: str) -> str:
    """A part of a file of parts (haproxy-shared.cfg, haproxy-mesh.cfg), filled."""
    return template_parts(file)[part].substitute(_common(), **fields)


def _fill(name: str, fields: dict[str, str]) -> str:
    """A config template filled: the common fields, the global settings (haproxy-shared.cfg), its own."""
    filled = {**_common(), **fields}
    return template(name).substitute(filled, global_settings=_inline(_part(SHARED, "global", **filled)))


def _tls_fields(serves_tls: bool, protocol: str, no_tls_why: str = "the tls sidecar is off in mesh.yaml"
                ) -> dict[str, str]:
    """The TLS globals and the HTTPS listener of a config, or the comments saying there are none."""
    if not serves_tls:
        return {"tls_globals": _inline(_part(SHARED, "no-tls-globals", no_tls_why=no_tls_why)),
                "tls_bind": _inline(_part(SHARED, "no-tls-bind", no_tls_why=no_tls_why))}
    return {"tls_globals": _inline(_part(SHARED, "tls-globals")),
            "tls_bind": _inline(_part(SHARED, "tls-bind", alpn=_alpn(protocol)))}


def _alpn(protocol: str) -> str:
    return _inline(_part(SHARED, f"alpn-{protocol}"))


def access_log_fields(service: ServiceSpec) -> dict[str, str]:
    """The proxy's access log: into the events ring (haproxy-shared.cfg says why) that streams it to
    the metrics sidecar when one runs, else to stdout."""
    if not service.metrics:
        return {"log_target": "stdout", "events_ring": ""}
    return {"log_target": f"ring@{EVENTS_RING}", "events_ring": _part(SHARED, "events-ring")}


def render_proxy(project: str, service: ServiceSpec, cluster: Cluster | None = None) -> str:
    """The proxy's config: templates/haproxy-proxy.cfg, or haproxy-proxy-tcp.cfg for a `protocol:
    tcp` service (TCP mode throughout); both take the fields `_proxy_fields` gives. `cluster`: the
    peers as a Kubernetes cluster names them (meshctl export k8s), else as Docker's network does."""
    faults = {"fault_global": lua_global(), "faults": fault_rules(service.protocol, mesh=False)}
    if service.protocol == "tcp":
        return _fill("haproxy-proxy-tcp.cfg", {**_proxy_fields(project, service, cluster), **faults,
                                               "why": "protocol: tcp: a database, a line protocol"})
    assert service.proxy is not None
    strip = _part(MESH, "strip-client-cert") if service.mesh else ""
    return _fill("haproxy-proxy.cfg", {**_proxy_fields(project, service, cluster), **faults,
                                       "timeout": _seconds(service.proxy.timeout),
                                       "strip_client_cert": _inline(strip)})


def _proxy_fields(project: str, service: ServiceSpec, cluster: Cluster | None = None) -> dict[str, str]:
    """What the HTTP and the TCP proxy templates share: the access log, timeouts, ports, TLS, mesh."""
    assert service.proxy is not None
    return {"project": project, "service": service.name, "app_port": str(service.port),
            "connect_timeout": _seconds(service.proxy.connect_timeout), "retries": str(connection_retries(service)),
            "mesh": render_mesh(service, cluster) if service.mesh else "",
            **access_log_fields(service), **_tls_fields(service.tls_terminator == "proxy", service.protocol)}


def render_mesh(service: ServiceSpec, cluster: Cluster | None = None) -> str:
    """The mesh listeners (templates/haproxy-mesh.cfg): inbound in the service's protocol, outbound
    for the app's captured calls to HTTP and to TCP services."""
    mesh = service.mesh
    assert mesh is not None
    inbound = _part(MESH, f"in-{service.protocol}", client_tls=_client_tls(service.protocol),
                    caller_gate=_caller_gate(mesh, service.protocol), identity=spiffe_id(mesh.project, service.name),
                    caller_identity=spiffe_id(mesh.project, "%[ssl_c_s_dn(CN)]"),
                    faults=fault_rules(service.protocol, mesh=True))
    assert service.proxy is not None
    outbound = "".join(_mesh_out(protocol, mesh, cluster, service.proxy.connect_timeout)
                       for protocol, peers in (("http", mesh.peers), ("tcp", mesh.tcp_peers)) if peers)
    resolvers = _inline(_part(MESH, "resolvers-cluster" if cluster else "resolvers-docker"))
    return _part(MESH, "mesh", inbound=inbound, outbound=outbound, resolvers=resolvers)


def _client_tls(protocol: str) -> str:
    return _inline(_part(MESH, "client-tls", alpn=_alpn(protocol)))


def _caller_gate(mesh: MeshSettings, protocol: str) -> str:
    """Who may call: this project's workloads, and of them only `allow` when it is set."""
    refuse = _inline(_part(MESH, f"refuse-{protocol}"))
    gate = _part(MESH, "gate", refuse=refuse, project=mesh.project)
    if mesh.allow is not None and all(rule.by_caller_only for rule in mesh.allow):
        callers = " ".join(c for rule in mesh.allow for c in rule.callers or ())
        gate += _part(MESH, "allow" if mesh.allow else "allow-none", refuse=refuse, callers=callers)
    elif mesh.allow is not None:
        gate += traffic.route_gate(mesh.allow, refuse)
    return _inline(gate)


def _mesh_out(protocol: str, mesh: MeshSettings, cluster: Cluster | None, connect_timeout: float) -> str:
    """An outbound listener routing to its peers' mesh listeners, and a backend per peer."""
    peers = mesh.peers if protocol == "http" else mesh.tcp_peers
    client_tls = _client_tls(protocol)
    routes = "".join(_part(MESH, f"route-{protocol}", name=name, port=str(port)) for name, port in peers)
    if protocol == "tcp":
        backends = "".join(_part(MESH, "peer-tcp", name=name, address=peer_address(name, cluster), client_tls=client_tls)
                           for name, _ in peers)
    else:
        policies = dict(mesh.traffic)
        backends = "".join(_http_peer(name, f"b{index}", policies.get(name), client_tls, cluster, connect_timeout)
                           for index, (name, _) in enumerate(peers))
    return _part(MESH, f"out-{protocol}", routes=_inline(routes)) + backends


def _http_peer(name: str, key: str, policy: TrafficPolicy | None, client_tls: str, cluster: Cluster | None,
               connect_timeout: float) -> str:
    """A callee's backend in a caller's proxy, with the callee's `traffic:` (sidecars/traffic.py)."""
    servers = "".join(_part(MESH, "server-http", server=server, address=peer_address(server, cluster), options=options,
                            client_tls=client_tls)
                      for server, options in traffic.servers(name, policy))
    rules = traffic.backend_rules(name, key, policy, connect_timeout) if policy else ""
    return _part(MESH, "peer-http", name=name, init=traffic.breaker_init(key, policy), rules=_inline(rules + servers))


def proxy_files(project: str, service: ServiceSpec, cluster: Cluster | None = None) -> dict[str, str]:
    """The proxy's config folder: its HAProxy config, and in a mesh the summary `meshctl ps` shows."""
    return {"haproxy.cfg": render_proxy(project, service, cluster), **fault_files(service),
            **({MESH_FILE: mesh_summary(service)} if service.mesh else {})}


def mesh_summary(service: ServiceSpec) -> str:
    mesh = service.mesh
    assert mesh is not None
    return json.dumps({"identity": service.identity, "mtls": mesh.mtls, "capture": mesh.capture,
                       "allow": [traffic.rule_text(r) for r in mesh.allow] if mesh.allow is not None else None,
                       "protocol": service.protocol,
                       "calls": [name for name, _ in (*mesh.peers, *mesh.tcp_peers)]}, indent=2) + "\n"


def connection_retries(service: ServiceSpec) -> int:
    """HAProxy pauses about connect_timeout between connection retries. While the app restarts
    (a hot reload), requests must wait for it up to the proxy timeout instead of failing, so
    the retries cover that whole window; `retries` in mesh.yaml is the floor."""
    assert service.proxy is not None
    window = math.ceil(service.proxy.timeout / max(service.proxy.connect_timeout, 0.001))
    return max(service.proxy.retries, window)


def render_tcp_proxy(project: str, service: ServiceSpec, why: str) -> str:
    """`meshctl inject`'s proxy for an app that does not speak HTTP (`why` says how inject knows):
    up's TCP proxy, in the clear (inject issues a TCP service no certificate) and outside a mesh."""
    tcp = replace(service, protocol="tcp", tls=None, mesh=None)
    # inject's proxy has no fault injection: it ships no Lua action and no maps.
    return _fill("haproxy-proxy-tcp.cfg", {**_proxy_fields(project, tcp), "why": why, "fault_global": "", "faults": "",
                                           **_tls_fields(False, "tcp", "meshctl inject passes TCP through in the clear")})


def render_tls(project: str, service: ServiceSpec) -> str:
    """The tls sidecar, which runs only without a proxy: HTTPS in front of the app, in TCP mode."""
    assert service.tls_terminator == "tls"
    return _fill("haproxy-tls.cfg", {
        "project": project, "service": service.name, "log_target": "stdout",
        "upstream_server": f"127.0.0.1:{service.port}", "idle_timeout": _seconds(60.0), **_tls_fields(True, "http")})
