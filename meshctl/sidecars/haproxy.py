"""Every HAProxy config meshctl renders: the proxy sidecar (HTTP or TCP, with the mesh listeners
in a mesh), the lone tls sidecar, and inject's TCP proxy, from templates/; with the access-log
formats the metrics agent parses, and the mesh summary written beside the proxy's config."""

from __future__ import annotations

import json
import math

from ..config import MeshSettings, ServiceSpec
from ..model import spiffe_id
from .addresses import (CERT_BUNDLE, CONFIG_MOUNT, EVENTS_PORT, MESH_FILE, MESH_PORT, OUTBOUND_PORT, OUTBOUND_TCP_PORT,
                        PROXY_PORT, PROXY_STATS_PORT, TLS_PORT)
from .data import template


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
        # 1 MiB: some 6 s of events at 1,000 requests/s while the agent restarts or falls behind.
        # The ring's pages count as the proxy's memory once first written, so a larger one reads
        # as growth for minutes (4 MiB took ~3 min to fill at 200 requests/s in the soak).
        "    size 1048576\n"
        "    timeout connect 1s\n"
        "    timeout server 1h\n"
        f"    server metrics 127.0.0.1:{EVENTS_PORT}\n"
    )
    return "    log ring@meshctl-events format raw local0 info", ring


# TLS as every HAProxy of meshctl's serves it: TLS 1.2 and up, AES-GCM first (AES-NI), ECDSA P-256
# certificates from meshctl's CA, HTTP/1.1 offered by ALPN.
# The TLS session cache is allocated and touched at start: HAProxy's default 20,000 entries are
# ~4.7 MiB of the proxy's memory; 1,000 serve a developer's clients (TLS 1.3 resumes by ticket).
TLS_GLOBALS = """\
    tune.ssl.cachesize 1000
    ssl-default-bind-options ssl-min-ver TLSv1.2
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"""
TLS_BIND = f"ssl crt {CERT_BUNDLE} alpn http/1.1"


def render_proxy(project: str, service: ServiceSpec) -> str:
    """The proxy's config: templates/haproxy-proxy.cfg, or haproxy-proxy-tcp.cfg for a `protocol:
    tcp` service (TCP mode throughout); both take the fields `_proxy_fields` gives."""
    if service.protocol == "tcp":
        return template("haproxy-proxy-tcp.cfg").substitute(
            _proxy_fields(project, service, tls_bind=f"ssl crt {CERT_BUNDLE}"),
            idle_timeout=_seconds(TCP_IDLE_TIMEOUT), tcp_log_format=TCP_LOG_FORMAT)
    assert service.proxy is not None
    return template("haproxy-proxy.cfg").substitute(
        _proxy_fields(project, service, tls_bind=TLS_BIND),
        timeout=_seconds(service.proxy.timeout), access_log_format=ACCESS_LOG_FORMAT,
        strip_client_cert="    http-request del-header x-forwarded-client-cert" if service.mesh else "")


def _proxy_fields(project: str, service: ServiceSpec, *, tls_bind: str) -> dict[str, str]:
    """What the HTTP and the TCP proxy templates share: the access log, timeouts, ports, TLS, mesh."""
    assert service.proxy is not None
    access_log, events_ring = access_log_targets(service)
    tls = service.tls_terminator == "proxy"
    return dict(
        project=project, service=service.name, access_log=access_log, events_ring=events_ring,
        connect_timeout=_seconds(service.proxy.connect_timeout), retries=str(connection_retries(service)),
        proxy_port=str(PROXY_PORT), app_port=str(service.port), stats_port=str(PROXY_STATS_PORT),
        tls_globals=TLS_GLOBALS if tls else "    # No TLS: the tls sidecar is off in mesh.yaml.",
        mesh=render_mesh(service) if service.mesh else "",
        tls_bind=f"    bind :{TLS_PORT} {tls_bind}" if tls else "    # No TLS listener: the tls sidecar is off in mesh.yaml.")


# One access line per request, what the metrics agent parses (the mesh listener adds the caller).
ACCESS_LOG_FORMAT = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %{+Q}r"
# One per TCP connection, at its close: `tcp` where a request line has its status, then the bytes
# from the client (%U) and to it (%B), and how it ended (%ts: -- closed normally, PR denied by a rule).
TCP_LOG_FORMAT = "%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt tcp %U %B %ts"


def render_mesh(service: ServiceSpec) -> str:
    """The mesh listeners: inbound, mutual TLS from this project's proxies in the service's own
    protocol (one port, :MESH_PORT: a service has one protocol, and its callers' proxies know it from
    mesh.yaml, so no ALPN or second port is needed); outbound, the app's captured calls."""
    mesh = service.mesh
    assert mesh is not None
    inbound = _mesh_in_tcp(service) if service.protocol == "tcp" else _mesh_in_http(service)
    return inbound + _mesh_out(mesh) + "\nresolvers docker\n    nameserver dns 127.0.0.11:53\n    hold valid 1s\n"


def _client_tls(alpn: bool) -> str:
    return f"ssl crt {CERT_BUNDLE} ca-file {CONFIG_MOUNT}/ca.pem verify required" + (" alpn http/1.1" if alpn else "")


def _caller_gate(mesh: MeshSettings, refuse: str) -> str:
    """Who may call, for either protocol: `refuse` is how the listener turns a caller away."""
    gate = ("    # Only this project's workloads: the CA is shared by every project on this machine.\n"
            f"    {refuse} unless {{ ssl_c_s_dn(OU) -m str {mesh.project} }}\n")
    if mesh.allow is None:
        return gate
    if not mesh.allow:
        return gate + f"    {refuse}\n"       # allow: [] lets no one in
    return gate + f"    {refuse} unless {{ ssl_c_s_dn(CN) -m str {' '.join(mesh.allow)} }}\n"


def _mesh_in_http(service: ServiceSpec) -> str:
    """Callers of this project only (and of `allow`, else 403), the caller's identity to the app as
    Envoy's X-Forwarded-Client-Cert (a client's own is removed)."""
    mesh = service.mesh
    assert mesh is not None
    return f"""
frontend mesh_in
    mode http
    bind :{MESH_PORT} {_client_tls(alpn=True)}
    log-format "{ACCESS_LOG_FORMAT} %[ssl_c_s_dn(CN)]"
    http-request del-header x-forwarded-client-cert
{_caller_gate(mesh, "http-request deny status 403")}\
    http-request set-header x-forwarded-client-cert "By={spiffe_id(mesh.project, service.name)};URI={spiffe_id(mesh.project, '%[ssl_c_s_dn(CN)]')}"
    default_backend app
"""


def _mesh_in_tcp(service: ServiceSpec) -> str:
    """The same gate for a TCP service, after the handshake: a caller of another project, or not in
    `allow`, gets its connection closed (logged with %ts PR, counted as denied)."""
    mesh = service.mesh
    assert mesh is not None
    return f"""
frontend mesh_in
    mode tcp
    bind :{MESH_PORT} {_client_tls(alpn=False)}
    log-format "{TCP_LOG_FORMAT} %[ssl_c_s_dn(CN)]"
{_caller_gate(mesh, "tcp-request content reject")}\
    default_backend app
"""


def _mesh_out(mesh: MeshSettings) -> str:
    """Calls captured from the app. HTTP ones arrive on OUTBOUND_PORT and are routed by Host to the
    callee's mesh listener; TCP has no Host, so capture sends TCP services' ports to a listener of
    their own (OUTBOUND_TCP_PORT) that routes by the original destination port (SO_ORIGINAL_DST;
    config.py keeps a TCP service's port unique in the project). Both open mutual TLS with this
    workload's certificate; any other destination goes where it was going."""
    out = ""
    if mesh.peers:
        routes = "".join(f"    use_backend to_{name} if {{ req.hdr(host),field(1,:) -m str {name} }}\n"
                         for name, _ in mesh.peers)
        out += f"""
frontend mesh_out
    mode http
    bind 127.0.0.1:{OUTBOUND_PORT}
    log-format "{ACCESS_LOG_FORMAT}"
    http-request del-header x-forwarded-client-cert
{routes}    default_backend passthrough

backend passthrough
    mode http
    # 0.0.0.0: the connection's original destination (SO_ORIGINAL_DST after the redirect).
    server original 0.0.0.0:0
""" + "".join(_to_peer(name, "http") for name, _ in mesh.peers)
    if mesh.tcp_peers:
        routes = "".join(f"    use_backend to_{name} if {{ dst_port {port} }}\n" for name, port in mesh.tcp_peers)
        out += f"""
frontend mesh_out_tcp
    mode tcp
    bind 127.0.0.1:{OUTBOUND_TCP_PORT}
    log-format "{TCP_LOG_FORMAT}"
    no option dontlognull
    timeout client {_seconds(TCP_IDLE_TIMEOUT)}
{routes}    default_backend passthrough_tcp

backend passthrough_tcp
    mode tcp
    timeout server {_seconds(TCP_IDLE_TIMEOUT)}
    server original 0.0.0.0:0
""" + "".join(_to_peer(name, "tcp") for name, _ in mesh.tcp_peers)
    return out


def _to_peer(name: str, mode: str) -> str:
    idle = f"    timeout server {_seconds(TCP_IDLE_TIMEOUT)}\n" if mode == "tcp" else ""
    return (f"\nbackend to_{name}\n    mode {mode}\n{idle}"
            f"    server {name} {name}:{MESH_PORT} {_client_tls(alpn=mode == 'http')} verifyhost {name} sni str({name}) "
            "resolvers docker init-addr none\n")


def proxy_files(project: str, service: ServiceSpec) -> dict[str, str]:
    """The proxy's config folder: its HAProxy config, and in a mesh the summary `meshctl ps` shows."""
    return {"haproxy.cfg": render_proxy(project, service),
            **({MESH_FILE: mesh_summary(service)} if service.mesh else {})}


def mesh_summary(service: ServiceSpec) -> str:
    mesh = service.mesh
    assert mesh is not None
    return json.dumps({"identity": service.identity, "mtls": mesh.mtls, "capture": mesh.capture,
                       "allow": list(mesh.allow) if mesh.allow is not None else None,
                       "protocol": service.protocol,
                       "calls": [name for name, _ in (*mesh.peers, *mesh.tcp_peers)]}, indent=2) + "\n"


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


def render_tls(project: str, service: ServiceSpec) -> str:
    """The tls sidecar, which runs only without a proxy: HTTPS in front of the app, in TCP mode."""
    assert service.tls_terminator == "tls"
    return template("haproxy-tls.cfg").substitute(
        project=project, service=service.name, tls_port=TLS_PORT, tls_globals=TLS_GLOBALS, tls_bind=TLS_BIND,
        upstream_server=f"127.0.0.1:{service.port}", idle_timeout=_seconds(60.0))
