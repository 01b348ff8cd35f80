"""The sidecars. One SidecarKind per kind of sidecar says everything about it: the image folder
under sidecars/, the ports it uses inside the pod, when it runs and in which start group, how to
know it is ready, which signal reloads its config in place, its compose healthcheck for inject,
and its config renderer (templates/). Pod building, planning, applying, readiness, stopping,
reload and inject all read KINDS; a new kind of sidecar is added here (plus its templates).
Pure: nothing here talks to Docker or writes files."""

from __future__ import annotations

import json
import math
import string
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import MeshctlError
from ..model import APP, HOLDER, spiffe_id

from ..config import MeshSettings, ReadySpec, ServiceSpec, UserSidecar

# Ports inside the pod (the shared network namespace). The holder publishes the first three.
TLS_PORT = 15443
PROXY_PORT = 15080
METRICS_PORT = 15090
PROXY_STATS_PORT = 15021     # HAProxy's own Prometheus exporter, loopback only
EVENTS_PORT = 15514          # TCP: the proxy's access events to the metrics sidecar
READY_PATH = "/.meshctl/ready"   # answered by the proxy itself, never forwarded
MESH_PORT = 15008            # the inbound mesh listener: mutual TLS from other pods' proxies
OUTBOUND_PORT = 15001        # loopback: the app's captured calls to other services arrive here
OUTBOUND_TCP_PORT = 15002    # loopback: the same for calls to TCP services (routed by port, not Host)
MESH_GID = 15999             # the proxy's group: capture leaves its own connections alone

# The folder each sidecar's config is mounted from, read-only.
CONFIG_MOUNT = "/etc/meshctl"
SIDECAR_STOP_TIMEOUT = 2     # seconds: sidecars exit on SIGTERM at once


def data_dir(kind: str) -> Path:
    """sidecars/ or templates/: inside an installed wheel (meshctl/_data), else the source tree."""
    packaged = resources.files("meshctl") / "_data" / kind
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parents[2] / kind   # the repo: meshctl/sidecars/kinds.py → ../../
    if source.is_dir():
        return source
    raise MeshctlError(f"meshctl's {kind}/ folder is missing from this installation",
                       hint="reinstall meshctl (pip install --force-reinstall meshctl)")


def template(name: str) -> string.Template:
    return string.Template((data_dir("templates") / name).read_text(encoding="utf-8"))


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


def render_capture(project: str, service: ServiceSpec) -> str:
    """The capture step's script, run once in the pod's network namespace with NET_ADMIN (and
    again when it changes; it replaces its own chains). Outbound: the app's TCP connections to the
    other services' ports on the project's network go to the proxy's outbound listener; the proxy's
    own (its group, MESH_GID) are left alone. Inbound, in strict mode: new connections from other
    pods are refused except to the mesh listener; the host's published ports (they arrive from the
    network's gateway) and loopback keep working."""
    mesh = service.mesh
    assert mesh is not None
    redirects = "".join(
        f'iptables -t nat -A MESHCTL_OUT -d "$subnet" -p tcp -m multiport --dports {ports} -j REDIRECT --to-ports {listener}\n'
        f'echo "capture: calls from ${{SERVICE}} to $subnet ports {ports} go through its proxy (:{listener})"\n'
        for ports, listener in _captured(mesh))
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


MESH_FILE = "mesh.json"       # beside the proxy's config: what `meshctl ps` shows of the mesh


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
    """The config folder of each running sidecar that mounts one."""
    rendered = [RenderedConfig(kind.role, kind.render(project, service))
                for kind in kinds_for(service) if kind.render is not None]
    if captures(service):
        rendered.append(RenderedConfig(CAPTURE, {"capture.sh": render_capture(project, service)}))
    return rendered


def config_roles() -> tuple[str, ...]:
    """Every role that may have a config folder (what is removed when it no longer runs)."""
    return (*KINDS, CAPTURE)


# ---------------------------------------------------------------------------------------------
# Readiness and health, as data: a plan prints it, apply runs it, inject writes it for compose


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


# ---------------------------------------------------------------------------------------------
# The kinds


@dataclass(frozen=True)
class SidecarKind:
    role: str                                        # meshctl.role label, container name suffix
    image: str                                       # the folder under sidecars/ that builds its image
    pod_ports: tuple[int, ...]                       # ports it listens on inside the pod
    runs: Callable[[ServiceSpec], bool]              # does a service get this container?
    ready: Callable[[ServiceSpec], Readiness | None]   # gates the app's start (Linkerd's proxy-await)
    start_group: int = 1                             # after the holder (0), before the app; a group starts together
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    render: Callable[[str, ServiceSpec], dict[str, str]] | None = None   # its mounted config folder's files
    env: Callable[[ServiceSpec], dict[str, str]] | None = None
    serves_tls: Callable[[ServiceSpec], bool] = lambda service: False    # holds the certificate
    reload_signal: str | None = None                 # reloads its mounted config in place
    compose_health: str | None = None                # the healthcheck script `meshctl inject` writes
    # A sidecar of the user's own (mesh.yaml `sidecars: {NAME: {image|build, …}}`): its image is
    # theirs, and it may ask for more than meshctl's least privilege (run_as, read_only, cap_add).
    user: bool = False
    user_image: str | None = None                    # an image reference
    user_build: Path | None = None                   # or a folder with a Dockerfile (tag: a hash of it)
    run_as: str | None = None                        # None: the invoking uid:gid, as meshctl's sidecars
    read_only: bool = True                           # a read-only root filesystem, a tmpfs /tmp
    cap_add: tuple[str, ...] = ()                    # after cap_drop ALL
    stop_timeout: int = SIDECAR_STOP_TIMEOUT


def _proxy_ready(service: ServiceSpec) -> Readiness:
    # The proxy answers its readiness path itself, over verified HTTPS when it terminates TLS. A TCP
    # proxy has no HTTP port, and closes connections until the app is up: it is ready once it listens.
    if service.protocol == "tcp":
        return Readiness(exec=("bash", "-c", shell_tcp_check(PROXY_PORT)), exec_in="pod",
                         label=f"the TCP proxy listens on {PROXY_PORT} inside the pod")
    if service.tls_terminator == "proxy":
        return Readiness("https", READY_PATH, tls=True)
    return Readiness("http", READY_PATH)


HAPROXY_COMMAND = ("-f", f"{CONFIG_MOUNT}/haproxy.cfg")

# In start order. tls and proxy share one HAProxy image. With the proxy on (the default) the proxy
# terminates TLS itself, as Envoy does in Istio: one stage fewer on every request
# (docs/performance.md); the tls container runs only with `proxy: false`.
KINDS: dict[str, SidecarKind] = {kind.role: kind for kind in (
    SidecarKind(
        role="metrics", image="metrics", pod_ports=(METRICS_PORT, EVENTS_PORT),
        runs=lambda service: service.metrics is not None,
        ready=lambda service: Readiness("metrics", "/ready"),
        env=lambda service: metrics_env(service),
        compose_health=shell_http_check(METRICS_PORT, "/ready", '[ "$$code" = 200 ]')),
    SidecarKind(
        role="proxy", image="haproxy", pod_ports=(TLS_PORT, PROXY_PORT, PROXY_STATS_PORT, MESH_PORT, OUTBOUND_PORT,
                                                  OUTBOUND_TCP_PORT),
        runs=lambda service: service.proxy is not None,
        ready=_proxy_ready, command=HAPROXY_COMMAND,
        render=lambda project, service: {"haproxy.cfg": render_proxy(project, service),
                                         **({MESH_FILE: mesh_summary(service)} if service.mesh else {})},
        serves_tls=lambda service: service.tls_terminator == "proxy",
        reload_signal="SIGUSR2",     # HAProxy's master reloads without dropping connections
        compose_health=shell_tls_chain_check("/", strict=False)),
    SidecarKind(
        role="tls", image="haproxy", pod_ports=(TLS_PORT,),
        runs=lambda service: service.tls_terminator == "tls",
        ready=lambda service: Readiness("https", None, tls=True), command=HAPROXY_COMMAND,
        render=lambda project, service: {"haproxy.cfg": render_tls(project, service)},
        serves_tls=lambda service: True, reload_signal="SIGUSR2"),
)}


# A user's sidecars start after meshctl's (their traffic may already go through the proxy, their
# metrics be scraped) and, each waited for, before the app: the app may rely on them at once.
USER_START_GROUP = 2


def user_readiness(ready: ReadySpec | None) -> Readiness | None:
    """mesh.yaml's `ready:` of a user sidecar as Readiness. Its ports are the pod's own (not
    published), so tcp and http are checked from the holder, on the pod's loopback."""
    if ready is None:
        return None
    if ready.tcp is not None:
        return Readiness(exec=("bash", "-c", shell_tcp_check(ready.tcp)), exec_in="pod",
                         label=f"port {ready.tcp} accepts a TCP connection inside the pod")
    if ready.http is not None:
        accept = '[ "$code" -ge 200 ] && [ "$code" -lt 300 ]'
        return Readiness(exec=("bash", "-c", shell_http_check(ready.port, ready.http, accept)), exec_in="pod",
                         label=f"{ready.http} on port {ready.port} answers 2xx inside the pod")
    assert ready.exec is not None
    return Readiness(exec=ready.exec, label=f"`{' '.join(ready.exec)}` exits 0 in the sidecar")


def user_kind(sidecar: UserSidecar) -> SidecarKind:
    readiness = user_readiness(sidecar.ready)
    env = dict(sidecar.env)
    return SidecarKind(
        role=sidecar.name, image="", pod_ports=sidecar.ready.ports() if sidecar.ready else (),
        runs=lambda service: True, ready=lambda service: readiness, start_group=USER_START_GROUP,
        command=sidecar.command, entrypoint=sidecar.entrypoint, env=lambda service: env, user=True, user_image=sidecar.image,
        user_build=sidecar.build, run_as=sidecar.user, read_only=sidecar.read_only, cap_add=sidecar.cap_add,
        stop_timeout=int(round(sidecar.stop_grace_period)))


def kinds_for(service: ServiceSpec) -> list[SidecarKind]:
    """The sidecar containers a service runs, in start order: meshctl's, then the user's own."""
    return [kind for kind in KINDS.values() if kind.runs(service)] + [user_kind(s) for s in service.user_sidecars]


def roles_of(service: ServiceSpec) -> tuple[str, ...]:
    """The sidecar containers that run, in start order; tls only as the one serving HTTPS."""
    return tuple(kind.role for kind in kinds_for(service))


def kind_of(service: ServiceSpec, role: str) -> SidecarKind | None:
    return next((kind for kind in kinds_for(service) if kind.role == role), None)


def tls_kind(service: ServiceSpec) -> SidecarKind | None:
    """The sidecar that serves HTTPS and holds the certificate, if any."""
    return next((kind for kind in kinds_for(service) if kind.serves_tls(service)), None)


def stop_group(role: str) -> int:
    """Stop order: apps first (their grace period), then sidecars, then holders last."""
    return 0 if role == APP else 2 if role == HOLDER else 1


def start_rank(role: str) -> int:
    """For listings: the holder, meshctl's sidecars in start order, the user's sidecars, the app."""
    order = [HOLDER, *KINDS]
    return order.index(role) if role in order else len(order) + (1 if role == APP else 0)
