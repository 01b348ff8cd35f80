"""TCP services in the mesh on the real engine (examples/shop: web → api → kv, kv a TCP line
protocol; plus an intruder the mesh knows but kv does not allow, and `db`, kv's image with no
sidecars at all): kv's traffic crosses pods in TLS, seen on the wire inside kv's pod; a denied TCP
caller gets a closed connection, counted as denied; TCP metrics pass promtool and count both sides
of the edge; a service without sidecars is reached by name in plain TCP; nothing is left after."""

from __future__ import annotations

import json
import shutil
import subprocess

import docker
import pytest

from meshctl.runtime.probes import http_request
from tests.support import (SHOP, copy_shop, eventually, get_json, metric_sum, outside_call, port_of, ps_json, run_meshctl,
                           running_containers, unique_project, urls)

pytestmark = pytest.mark.integration

PORTS = "    ports: {https: 0, http: 0, metrics: 0}\n"


@pytest.fixture(scope="module")
def tcp_shop(tmp_path_factory, engine, sidecar_images):
    folder = tmp_path_factory.mktemp("tcp") / "shop"
    copy_shop(folder)
    project = unique_project("tcpshop")
    (folder / "mesh.yaml").write_text(
        f"name: {project}\nservices:\n"
        f"  web:\n    build: web\n    port: 8080\n    health: /healthz\n{PORTS}"
        f"  api:\n    build: api\n    port: 8080\n    health: /healthz\n    allow: [web]\n{PORTS}"
        f"  kv:\n    build: kv\n    port: 7000\n    protocol: tcp\n    allow: [api]\n{PORTS}"
        # The same image as web under another name: a mesh workload kv does not allow.
        f"  intruder:\n    build: web\n    port: 8080\n    health: /healthz\n{PORTS}"
        # kv's image as a stock server would run: no sidecars, outside the mesh.
        "  db:\n    build: kv\n    port: 7100\n    protocol: tcp\n    env: {PORT: 7100}\n    sidecars: false\n")
    run_meshctl("up", "-d", str(folder), check=True, timeout=900)
    try:
        yield folder, project
    finally:
        run_meshctl("down", str(folder))
        left = running_containers(engine, project)
        client = docker.from_env()
        assert left == [] and not client.networks.list(filters={"label": f"meshctl.project={project}"}), left


def metrics_text(project: str, service: str) -> str:
    return http_request(port_of(urls(project)[service]["metrics"]), "/metrics").body.decode()


def counted_soon(project: str, service: str, name: str, **labels) -> float:
    """The access events reach the metrics sidecar through the proxy's ring a moment after the
    connection closes: poll until the series is non-zero, for at most 30 s."""
    return eventually(lambda: metric_sum(metrics_text(project, service), name, **labels), 30, 0.2,
                      what=f"{service}'s {name}{labels} above 0")


def test_web_api_kv_end_to_end_with_tcp_metrics_on_both_sides(tcp_shop):
    _folder, project = tcp_shop
    web = port_of(urls(project)["web"]["https"])
    first = json.loads(get_json(web, "/visits")["api_said"])
    second = json.loads(get_json(web, "/visits")["api_said"])
    assert second["visits"] == first["visits"] + 1, (first, second)
    assert second["caller"] == f"spiffe://meshctl.local/ns/{project}/sa/web"

    # api counts the edge outbound to kv, kv inbound from api; bytes both ways.
    assert counted_soon(project, "api", "meshctl_tcp_connections_total", direction="outbound",
                        destination="kv", outcome="ok") >= 2
    assert counted_soon(project, "kv", "meshctl_tcp_connections_total", direction="inbound",
                        source="api", outcome="ok") >= 2
    kv_text = metrics_text(project, "kv")
    # "INCR visits\n" from api, and the count back.
    assert metric_sum(kv_text, "meshctl_tcp_received_bytes_total", direction="inbound", source="api") >= 24
    assert metric_sum(kv_text, "meshctl_tcp_sent_bytes_total", direction="inbound", source="api") >= 4
    for service in ("api", "kv"):
        lint = subprocess.run(["promtool", "check", "metrics"], input=metrics_text(project, service),
                              capture_output=True, text=True)
        assert lint.returncode == 0, (service, lint.stdout + lint.stderr)

    kv_urls = urls(project)["kv"]
    assert kv_urls["https"].startswith("tls://") and kv_urls["http"].startswith("tcp://")
    [kv_entry] = [e for e in ps_json(project) if e["service"] == "kv"]
    assert kv_entry["mesh"]["protocol"] == "tcp" and kv_entry["mesh"]["allow"] == ["api"]


SNIFFER = r"""
import json, socket, struct, sys
marker = sys.argv[1].encode()
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
raw.bind(("eth0", 0))
print("sniffing", flush=True)
seen = {"tls_data_to_mesh": 0, "marker_in_clear": 0, "to_app_port": 0}
while True:
    frame = raw.recv(65535)
    if frame[12:14] != b"\x08\x00" or frame[23] != 6:
        continue
    header = (frame[14] & 15) * 4
    tcp = frame[14 + header:]
    sport, dport = struct.unpack("!HH", tcp[:4])
    payload = tcp[(tcp[12] >> 4) * 4:]
    seen["marker_in_clear"] += marker in frame
    seen["to_app_port"] += dport == 7000
    seen["tls_data_to_mesh"] += dport == 15008 and payload[:3] == b"\x17\x03\x03"
    if 15008 in (sport, dport) and tcp[13] & 1:      # the first FIN of a mesh connection: done
        print(json.dumps(seen), flush=True)
        break
"""


def test_kv_traffic_crosses_pods_in_tls_on_the_wire(tcp_shop, engine):
    """A packet socket on eth0 inside kv's pod sees the call api makes for web's /visits: TLS
    application data to the mesh listener, never kv's command in the clear, nothing to port 7000."""
    _folder, project = tcp_shop
    client = docker.from_env()
    holder = client.containers.get(f"{project}-kv-pod")
    image = next(t for i in client.images.list() for t in i.tags if t.startswith("meshctl-metrics:"))
    sniffer = client.containers.run(image, entrypoint=["python3", "-c", SNIFFER, "INCR visits"], detach=True,
                                    network_mode=f"container:{holder.id}", user="0", cap_drop=["ALL"],
                                    cap_add=["NET_RAW"], labels={"meshctl.project": project,
                                                                 "meshctl.role": "test-sniffer"})
    try:
        eventually(lambda: b"sniffing" in sniffer.logs(), 60, what="the sniffer started", detail=sniffer.logs)
        web = port_of(urls(project)["web"]["https"])
        assert json.loads(get_json(web, "/visits")["api_said"])["visits"] >= 1
        assert sniffer.wait(timeout=60)["StatusCode"] == 0, sniffer.logs()
        seen = json.loads(sniffer.logs().decode().strip().splitlines()[-1])
    finally:
        sniffer.remove(force=True)
    assert seen["tls_data_to_mesh"] >= 1, seen
    assert seen["marker_in_clear"] == 0, seen
    assert seen["to_app_port"] == 0, seen


def test_a_tcp_caller_that_is_not_allowed_gets_a_closed_connection(tcp_shop):
    _folder, project = tcp_shop
    intruder = port_of(urls(project)["intruder"]["https"])
    denied = get_json(intruder, "/tcp?host=kv&port=7000&line=PING")
    assert denied["closed"] is True and denied["reply"] == "", denied
    assert counted_soon(project, "kv", "meshctl_tcp_connections_total", direction="inbound",
                        source="intruder", outcome="denied") >= 1
    assert counted_soon(project, "intruder", "meshctl_tcp_connections_total", direction="outbound",
                        destination="kv") >= 1
    # Strict: plaintext from a container outside the mesh to kv's port is refused.
    assert outside_call(project, "kv", 7000) != 0, "a container outside the mesh reached kv's app port"


def test_a_service_without_sidecars_is_reached_by_name_in_plain_tcp(tcp_shop, engine):
    _folder, project = tcp_shop
    web = port_of(urls(project)["web"]["https"])
    answer = get_json(web, "/tcp?host=db&port=7100&line=PING")
    assert answer["reply"] == "PONG", answer
    roles = sorted(c.role for c in running_containers(engine, project) if c.service == "db")
    assert roles == ["app", "pod"], roles
    shown = run_meshctl("ps", "-p", project, check=True).stdout
    assert f"{project}/db: outside the mesh" in shown, shown


def test_a_tcp_app_that_never_listens_is_never_ready(tmp_path, engine, sidecar_images):
    """The proxy accepts TCP on its own; readiness must still wait for the app behind it."""
    folder = tmp_path / "deaf"
    shutil.copytree(SHOP / "kv", folder)
    project = unique_project("deaf")
    (folder / "mesh.yaml").write_text(f"name: {project}\nservices:\n  kv:\n    build: .\n    port: 7000\n"
                                      f"    protocol: tcp\n    command: [sleep, infinity]\n{PORTS}")
    result = run_meshctl("up", "-d", "--timeout", "15", str(folder), timeout=600)
    try:
        assert result.returncode == 3, result.stdout + result.stderr
        assert "was not ready after 15s" in result.stderr and "TCP connection through TLS" in result.stderr
    finally:
        run_meshctl("down", str(folder))
    assert running_containers(engine, project) == []
