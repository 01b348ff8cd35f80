"""`meshctl test --compose`: reading an injected compose file and `docker compose ps` output."""

import json

import pytest

from meshctl.compose_test import InjectedService, compose_targets, injected_services, parse_ps
from meshctl.compose_yaml import load
from meshctl.errors import ConfigError, UsageError

INJECTED = """\
name: shop
x-meshctl:
  generated-by: "meshctl inject"
  tls: &meshctl-tls {image: meshctl-haproxy:1}
services:
  web:
    image: web:1
    ports: ["127.0.0.1::15443", "127.0.0.1::15090"]
    x-meshctl:
      health: /healthz
      hosts: [shop.local]
      injected: {ports: ["127.0.0.1::8080"]}
  web-mesh-tls:
    <<: *meshctl-tls
    network_mode: service:web
    labels: {meshctl.role: tls, meshctl.service: web}
    x-meshctl: {sidecar-of: web}
  web-mesh-proxy:
    network_mode: service:web
    labels: {meshctl.role: proxy}
    x-meshctl: {sidecar-of: web}
  web-mesh-metrics:
    network_mode: service:web
    labels: {meshctl.role: metrics}
    x-meshctl: {sidecar-of: web}
  kv:
    image: kv:1
    ports: ["127.0.0.1::15080", "127.0.0.1::15090"]
    x-meshctl: {protocol: tcp, injected: {ports: ["7000"]}}
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
    assert services() == [InjectedService("web", ("tls", "proxy", "metrics"), "/healthz", ("shop.local",)),
                          InjectedService("kv", ("proxy", "metrics"))]


def test_a_file_without_injected_services_is_a_usage_error():
    document, _ = load("services:\n  web: {image: web:1}\n", "compose.yaml")
    with pytest.raises(UsageError, match="no service in it was injected"):
        injected_services(document, "compose.yaml")
    with pytest.raises(ConfigError, match="not a compose file"):
        injected_services(load("just: text\n", "x.yaml")[0], "x.yaml")


PS = [
    {"ID": "app1", "Service": "web", "State": "running",
     "Publishers": [{"URL": "", "TargetPort": 8080, "PublishedPort": 0, "Protocol": "tcp"},
                    {"URL": "127.0.0.1", "TargetPort": 15090, "PublishedPort": 32965, "Protocol": "tcp"},
                    {"URL": "127.0.0.1", "TargetPort": 15443, "PublishedPort": 32964, "Protocol": "tcp"}]},
    {"ID": "tls1", "Service": "web-mesh-tls", "State": "running", "Publishers": []},
    {"ID": "kv1", "Service": "kv", "State": "running",
     "Publishers": [{"URL": "127.0.0.1", "TargetPort": 15090, "PublishedPort": 40000, "Protocol": "tcp"}]},
]


def test_targets_use_the_published_ports_and_reach_the_proxy_from_inside():
    web, kv = compose_targets(services(), PS)
    assert web.urls == {"https": "https://localhost:32964/", "metrics": "http://localhost:32965/metrics"}
    assert web.health == "/healthz" and web.proxy_inside == "tls1" and web.app_container == "app1"
    assert web.hostnames == ("localhost", "127.0.0.1", "::1", "web", "shop.local")
    assert web.check_names() == ("ready", "https", "certificate", "http", "metrics")
    # A TCP service: no TLS, no HTTP; its metrics still parse.
    assert kv.urls == {"metrics": "http://localhost:40000/metrics"} and not kv.counts_requests
    assert kv.check_names() == ("ready", "metrics")


def test_ps_output_as_lines_or_as_an_array():
    assert parse_ps("") == []
    assert parse_ps("\n".join(json.dumps(c) for c in PS)) == PS
    assert parse_ps(json.dumps(PS)) == PS
