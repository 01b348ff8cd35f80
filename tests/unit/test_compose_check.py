"""`meshctl test --compose`: reading an injected compose file and `docker compose ps` output."""

import json
from pathlib import Path, PurePath

import pytest

from meshctl.testing.compose_mode import InjectedService, compose_targets, injected_services, parse_ps, planned_targets
from meshctl.errors import ConfigError, UsageError
from meshctl.inject import InjectOptions, Machine, inject_text
from meshctl.inject import document as doc


def load(text: str, source: str):
    return doc.value(doc.parse(text, source).root), None

INJECTED = """\
name: shop
x-meshctl:
  generated-by: "meshctl inject"
  proxy: &meshctl-proxy {image: meshctl-haproxy:1}
services:
  web:
    network_mode: service:web-mesh-pod
    image: web:1
    x-meshctl-ports: ["127.0.0.1::8080"]
    x-meshctl:
      health: /healthz
      hosts: [shop.local]
  web-mesh-pod:
    ports: ["127.0.0.1::15443", "127.0.0.1::15090"]
    labels: {meshctl.role: pod, meshctl.service: web}
    x-meshctl: {sidecar-of: web}
  web-mesh-proxy:
    <<: *meshctl-proxy
    network_mode: service:web-mesh-pod
    labels: {meshctl.role: proxy, meshctl.service: web}
    x-meshctl: {sidecar-of: web, terminates-tls: true}
  web-mesh-metrics:
    network_mode: service:web-mesh-pod
    labels: {meshctl.role: metrics}
    x-meshctl: {sidecar-of: web}
  kv:
    network_mode: service:kv-mesh-pod
    image: kv:1
    x-meshctl-ports: ["7000"]
    x-meshctl: {protocol: tcp}
  kv-mesh-pod:
    labels: {meshctl.role: pod}
    x-meshctl: {sidecar-of: kv}
  kv-mesh-proxy:
    labels: {meshctl.role: proxy}
    x-meshctl: {sidecar-of: kv}
  kv-mesh-metrics:
    labels: {meshctl.role: metrics}
    x-meshctl: {sidecar-of: kv}
  worker:
    image: worker:1
"""


def services():
    document, _ = load(INJECTED, "compose.mesh.yaml")
    return injected_services(document, "compose.mesh.yaml")


def test_injected_services_and_their_sidecars_are_found():
    web, kv = services()
    assert web == InjectedService("web", ("proxy", "metrics"), "/healthz", ("shop.local",), tls_terminator="proxy")
    assert web.https and web.http_proxy
    assert kv == InjectedService("kv", ("proxy", "metrics"))
    assert not kv.https and not kv.http_proxy


def test_a_file_without_injected_services_is_a_usage_error():
    document, _ = load("services:\n  web: {image: web:1}\n", "compose.yaml")
    with pytest.raises(UsageError, match="no service in it was injected"):
        injected_services(document, "compose.yaml")
    with pytest.raises(ConfigError, match="not a compose file"):
        injected_services(load("just: text\n", "x.yaml")[0], "x.yaml")


PUBLISHED = [{"URL": "", "TargetPort": 8080, "PublishedPort": 0, "Protocol": "tcp"},
             {"URL": "127.0.0.1", "TargetPort": 15090, "PublishedPort": 32965, "Protocol": "tcp"},
             {"URL": "127.0.0.1", "TargetPort": 15443, "PublishedPort": 32964, "Protocol": "tcp"}]
# The pod's holder publishes the ports; the app, in its namespace, publishes none.
PS = [
    {"ID": "app1", "Service": "web", "State": "running", "Publishers": []},
    {"ID": "pod1", "Service": "web-mesh-pod", "State": "running", "Publishers": PUBLISHED},
    {"ID": "proxy1", "Service": "web-mesh-proxy", "State": "running", "Publishers": []},
    {"ID": "kvproxy1", "Service": "kv-mesh-proxy", "State": "running", "Publishers": []},
    {"ID": "kv1", "Service": "kv", "State": "running", "Publishers": []},
    {"ID": "kvpod1", "Service": "kv-mesh-pod", "State": "running",
     "Publishers": [{"URL": "127.0.0.1", "TargetPort": 15090, "PublishedPort": 40000, "Protocol": "tcp"}]},
]


def test_targets_use_the_published_ports_and_reach_the_proxy_from_inside():
    web, kv = compose_targets(services(), PS)
    # HTTPS is the proxy's own port; plain HTTP goes to the proxy from inside its container.
    assert web.urls == {"https": "https://localhost:32964/", "metrics": "http://localhost:32965/metrics"}
    assert web.health == "/healthz" and web.proxy_inside == "proxy1" and web.app_container == "app1"
    assert web.hostnames == ("localhost", "127.0.0.1", "::1", "web", "shop.local")
    assert web.check_names() == ("ready", "https", "certificate", "http", "metrics")
    assert web.counts_requests
    # A TCP service: no TLS, no HTTP; its metrics still parse.
    assert kv.urls == {"metrics": "http://localhost:40000/metrics"} and not kv.counts_requests
    assert kv.proxy_inside is None and kv.check_names() == ("ready", "metrics")


def test_checks_are_planned_before_the_stack_runs():
    web, kv = planned_targets(services())
    assert web.check_names() == ("ready", "https", "certificate", "http", "metrics")
    assert kv.check_names() == ("ready", "metrics")


LEGACY = Path(__file__).resolve().parent.parent / "compose_corpus" / "legacy"


def test_what_inject_writes_is_read_back():
    original = (LEGACY / "original.yaml").read_text()
    machine = Machine(project="shop", images={"proxy": "meshctl-haproxy:t", "metrics": "meshctl-metrics:m"},
                      user="1000:1000", state_dir=PurePath("/state/compose/shop-1"))
    text = inject_text(original, InjectOptions(), machine, "compose.yaml").text
    found = {s.name: s for s in injected_services(load(text, "compose.mesh.yaml")[0], "compose.mesh.yaml")}
    assert found["web"] == InjectedService("web", ("proxy", "metrics"), "/healthz", (), tls_terminator="proxy")
    assert found["api"].tls_terminator == "proxy"
    assert found["db"] == InjectedService("db", ("proxy", "metrics"))


def test_a_file_injected_with_a_tls_sidecar_is_still_checked():
    """Its tls sidecar serves HTTPS in front of the proxy; plain HTTP still goes to the proxy."""
    document, _ = load((LEGACY / "injected-with-tls-sidecar.yaml").read_text(), "compose.mesh.yaml")
    found = {s.name: s for s in injected_services(document, "compose.mesh.yaml")}
    assert found["web"] == InjectedService("web", ("tls", "proxy", "metrics"), "/healthz", (), tls_terminator="tls")
    assert found["db"] == InjectedService("db", ("proxy", "metrics"))
    ps = [{**PS[0], "Publishers": PUBLISHED}, {"ID": "tls1", "Service": "web-mesh-tls", "Publishers": []},
          {"ID": "proxy1", "Service": "web-mesh-proxy", "Publishers": []}]
    [web] = compose_targets([found["web"]], ps)
    assert set(web.urls) == {"https", "metrics"} and web.counts_requests and web.proxy_inside == "proxy1"
    assert web.check_names() == ("ready", "https", "certificate", "http", "metrics")
    assert planned_targets([found["web"]])[0].check_names() == web.check_names()


def test_ps_output_as_lines_or_as_an_array():
    assert parse_ps("") == []
    assert parse_ps("\n".join(json.dumps(c) for c in PS)) == PS
    assert parse_ps(json.dumps(PS)) == PS
