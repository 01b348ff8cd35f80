"""The mesh on the real engine (examples/shop, plus an intruder service): an app's plain
http://api:8080 call is captured by its own proxy and arrives over mutual TLS with the caller's
SPIFFE identity; a spoofed X-Forwarded-Client-Cert is stripped; a caller not allowed gets 403; a
container outside the mesh cannot reach the app's port in strict mode; the capture step is gone
before the app starts and no running container holds a capability."""

from __future__ import annotations

import json
import time
from pathlib import Path

import docker
import pytest

from meshctl.runtime.probes import http_request, tls_context
from tests.support import (Foreground, copy_shop, ca_path, eventually, get_json, metric_sum, outside_call, port_of, ps_json,
                           run_meshctl, running_containers, unique_project, urls)

pytestmark = pytest.mark.integration


def shop(tmp_path: Path, mtls: str = "strict") -> tuple[Path, str]:
    folder = tmp_path / "shop"
    copy_shop(folder)
    name = unique_project("shop")
    ports = "    ports: {https: 0, http: 0, metrics: 0}\n"
    (folder / "mesh.yaml").write_text(
        f"name: {name}\nmesh: {{mtls: {mtls}}}\nservices:\n"
        f"  web:\n    build: web\n    port: 8080\n    health: /healthz\n{ports}"
        f"  api:\n    build: api\n    port: 8080\n    health: /healthz\n    allow: [web]\n{ports}"
        # The same image as web under another name: a mesh workload api does not allow.
        f"  intruder:\n    build: web\n    port: 8080\n    health: /healthz\n{ports}")
    return folder, name


def counted(project: str, service: str, family: str = "meshctl_requests_total", **labels: str) -> float:
    """A service's metrics sidecar's sum of `family` samples with these labels, once it is non-zero
    (the agent counts in batches): polled for at most 30 s."""
    port = port_of(urls(project)[service]["metrics"])
    return eventually(lambda: metric_sum(http_request(port, "/metrics").body.decode(), family, **labels), 30, 0.2,
                      what=f"{service}'s {family}{labels} above 0")


@pytest.fixture
def strict_shop(tmp_path, engine, sidecar_images):
    folder, project = shop(tmp_path)
    run_meshctl("up", "-d", str(folder), check=True, timeout=600)
    try:
        yield folder, project
    finally:
        run_meshctl("down", str(folder))


def test_a_plain_call_between_services_crosses_the_mesh_with_the_callers_identity(strict_shop, engine):
    _folder, project = strict_shop
    web = port_of(urls(project)["web"]["https"])
    answer = get_json(web, "/")
    api_said = json.loads(answer["api_said"])
    # web called http://api:8080 in plain text; api's proxy verified web's client certificate.
    assert api_said["caller"] == f"spiffe://meshctl.local/ns/{project}/sa/web"
    assert api_said["xfcc"] == (f"By=spiffe://meshctl.local/ns/{project}/sa/api;"
                                f"URI=spiffe://meshctl.local/ns/{project}/sa/web")
    # Both sides of the edge in metrics: web counts it outbound to api, api inbound from web.
    assert counted(project, "web", direction="outbound", destination="api", code="200") >= 1
    assert counted(project, "api", direction="inbound", source="web", code="200") >= 1


def test_a_spoofed_client_certificate_header_is_stripped(strict_shop, engine):
    _folder, project = strict_shop
    api = port_of(urls(project)["api"]["https"])
    seen = get_json(api, "/whoami", **{"X-Forwarded-Client-Cert": "By=x;URI=spiffe://meshctl.local/ns/x/sa/admin"})
    assert seen["caller"] is None and seen["xfcc"] == ""     # from the host, through its own HTTPS port


def test_a_caller_that_is_not_allowed_gets_403(strict_shop, engine):
    _folder, project = strict_shop
    intruder = port_of(urls(project)["intruder"]["https"])
    denied = get_json(intruder, "/call?url=http://api:8080/whoami")
    assert denied["status"] == 403, denied
    # Counted as refused by the mesh's rules, with the caller.
    assert counted(project, "api", "meshctl_requests_denied_total", source="intruder") == 1
    allowed_back = get_json(intruder, "/call?url=http://web:8080/healthz")   # web allows every service
    assert allowed_back["status"] == 200, allowed_back


def test_strict_refuses_plaintext_from_outside_the_mesh_and_no_container_holds_a_capability(strict_shop, engine):
    _folder, project = strict_shop
    assert outside_call(project, "api", 8080) != 0, "a container outside the mesh reached api's app port"
    shown = run_meshctl("ps", "-p", project, check=True).stdout
    assert f"{project}/api: spiffe://meshctl.local/ns/{project}/sa/api, mTLS strict, callers: web" in shown
    [api_entry] = [e for e in ps_json(project) if e["service"] == "api"]
    assert api_entry["mesh"]["allow"] == ["web"] and api_entry["mesh"]["mtls"] == "strict"
    containers = running_containers(engine, project)
    assert not [c for c in containers if c.role == "capture"], "the capture step is gone once it ran"
    api = docker.from_env().api
    for c in containers:
        host = api.inspect_container(c.id)["HostConfig"]
        assert not host.get("CapAdd"), (c.name, host.get("CapAdd"))
        assert not host.get("Privileged")


def test_permissive_lets_plaintext_in_and_still_identifies_mesh_callers(tmp_path, engine, sidecar_images):
    folder, project = shop(tmp_path, mtls="permissive")
    run_meshctl("up", "-d", str(folder), check=True, timeout=600)
    try:
        assert outside_call(project, "api", 8080) == 0
        web = port_of(urls(project)["web"]["https"])
        assert json.loads(get_json(web, "/")["api_said"])["caller"] == f"spiffe://meshctl.local/ns/{project}/sa/web"
        # Apps trust meshctl's CA (a bundle with the system's roots, SSL_CERT_FILE and friends): web's own
        # urllib verifies api's HTTPS certificate when it calls it directly.
        direct = get_json(web, "/call?url=https://api:15443/whoami")
        assert direct["status"] == 200, direct
    finally:
        run_meshctl("down", str(folder))
    assert running_containers(engine, project) == []


@pytest.mark.parametrize("traffic", ["", "    traffic: {retries: {attempts: 2, on: [5xx, reset, connect-failure]}}\n"],
                         ids=["callers-defaults", "traffic-retries"])
def test_a_hot_reload_of_the_callee_under_steady_calls_fails_no_request(tmp_path, engine, sidecar_images, traffic):
    """The caller's proxy settings apply to its outbound calls; the callee's proxy holds requests
    while its app restarts: web → api stays whole while api reloads, with api's `traffic:`
    (web's retries and per-try timeout, docs/traffic.md) as without."""
    import threading

    folder, project = shop(tmp_path)
    text = (folder / "mesh.yaml").read_text()
    (folder / "mesh.yaml").write_text(text.replace("    allow: [web]\n",
                                                   '    allow: [web]\n    watch: {sync: {".": /app}}\n' + traffic))
    up = Foreground(str(folder))
    try:
        up.wait_for_line("meshctl: ready", timeout=600)
        web = port_of(urls(project)["web"]["https"])
        context = tls_context(ca_path())
        outcomes: list[int] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    answer = http_request(web, "/", tls=context, server_hostname="localhost", timeout=20)
                    outcomes.append(answer.status if b'"api_status": 200' in answer.body else 599)
                except OSError:
                    outcomes.append(0)
                time.sleep(0.02)
        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        for round_ in range(3):
            before = len(up.lines)
            server = folder / "api" / "server.js"
            server.write_text(server.read_text() + f"\n// reload {round_}\n")
            eventually(lambda since=before: up.has_line("restart api", since=since), 120, what="'restart api'",
                       detail=lambda: up.output)
            # Calls go on through the restarted app before the next save.
            answered = len(outcomes)
            eventually(lambda mark=answered: len(outcomes) >= mark + 20, 60, 0.05, what="20 more calls")
        stop.set()
        thread.join(30)
        assert len(outcomes) > 50 and set(outcomes) == {200}, (len(outcomes), [o for o in outcomes if o != 200])
    finally:
        up.kill()
        run_meshctl("down", str(folder))
