"""`mesh.tracing` (otlp, sample) and OTEL_EXPORTER_OTLP_ENDPOINT: parsing, file:line errors, what
the metrics sidecar is told, and the loopback forwarder a collector on the host needs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from meshctl.config import ProjectSpec, ServiceSpec, TracingSettings, parse_project
from meshctl.engine.wire import host_config_options
from meshctl.errors import ConfigError
from meshctl.planning.pod import build_pod
from meshctl.sidecars import roles_of
from meshctl.sidecars.otlp import OTLP_FORWARD, render_forward

SERVICES = "services:\n  web: {image: nginx, port: 80}\n  api: {image: nginx, port: 81}\n"


def load(tracing: str, variables: dict[str, str] | None = None, tmp_path: Path = Path("/tmp")) -> ProjectSpec:
    source = tmp_path / "mesh.yaml"
    text = SERVICES + ("mesh:\n  tracing:\n" + tracing if tracing else "")
    source.write_text(text)
    return parse_project(text, source=source, variables=variables or {})


def test_every_service_gets_the_url_as_written_and_the_share(tmp_path):
    project = load("    otlp: http://localhost:4318/\n    sample: 0.25\n", tmp_path=tmp_path)
    assert {s.tracing for s in project.services} == {TracingSettings("http://localhost:4318", 0.25)}


def test_sample_defaults_to_every_trace_and_no_url_means_no_export(tmp_path):
    assert load("    otlp: http://collector:4318\n", tmp_path=tmp_path).services[0].tracing.sample == 1.0
    assert load("", tmp_path=tmp_path).services[0].tracing is None


def test_the_environment_variable_says_where_when_mesh_yaml_does_not(tmp_path):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger.internal:4318"}
    assert load("", env, tmp_path).services[1].tracing == TracingSettings("http://jaeger.internal:4318")
    written = load("    otlp: http://tempo:4318\n", env, tmp_path)
    assert written.services[0].tracing.otlp == "http://tempo:4318"


@pytest.mark.parametrize(("tracing", "field", "words"), [
    ("    otlp: ftp://collector\n", "mesh.tracing.otlp", "expected http:// or https://"),
    ("    otlp: http://:4318\n", "mesh.tracing.otlp", "names no host"),
    ("    otlp: http://c:port\n", "mesh.tracing.otlp", "is not a URL"),
    ("    otlp: https://localhost:4318\n", "mesh.tracing.otlp", "plain HTTP"),
    ("    otlp: 4318\n", "mesh.tracing.otlp", "expected a URL"),
    ("    sample: 1.5\n", "mesh.tracing.sample", "from 0.0 to 1.0"),
    ("    sample: -0.1\n", "mesh.tracing.sample", "from 0.0 to 1.0"),
    ("    sample: all\n", "mesh.tracing.sample", "from 0.0 to 1.0"),
    ("    sampel: 0.5\n", "mesh.tracing.sampel", "did you mean 'sample'"),
])
def test_bad_values_name_file_line_and_field(tmp_path, tracing, field, words):
    with pytest.raises(ConfigError) as raised:
        load(tracing, tmp_path=tmp_path)
    message = f"{raised.value} {raised.value.hint}"
    assert "mesh.yaml:6" in message and field in message and words in message


def test_a_bad_environment_variable_is_named():
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT in meshctl's environment"):
        load("", {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})


def make_pod(otlp: str | None):
    service = ServiceSpec(name="web", port=8080, image="web:1", ports=(("https", 8443), ("metrics", 9090)),
                          tracing=TracingSettings(otlp, 0.5) if otlp else None)
    project = ProjectSpec(name="shop", root=Path("/tmp"), services=(service,))
    images = {"proxy": "meshctl-haproxy:abc", "metrics": "meshctl-metrics:def", OTLP_FORWARD: "meshctl-metrics:def"}
    return build_pod(project, service, app_image="web:1", sidecar_images={r: images[r] for r in roles_of(service)},
                     state_dir=Path("/state/shop/web"), tied=False, user="1000:1000")


def by_role(pod, role):
    return next(c for c in pod.sidecars if c.role == role)


def test_a_loopback_collector_gets_a_forwarder_in_the_host_network_with_nothing_else():
    pod = make_pod("http://localhost:4318")
    forwarder, metrics = by_role(pod, OTLP_FORWARD), by_role(pod, "metrics")
    options = host_config_options(forwarder)
    assert options["network_mode"] == "host"
    assert options["pid_mode"] == f"container:{pod.holder.name}"      # it goes with the pod
    assert options["cap_drop"] == ["ALL"] and not options["cap_add"] and not options["port_bindings"]
    assert forwarder.user == "1000:1000" and forwarder.read_only and forwarder.no_new_privileges
    assert forwarder.labels["meshctl.project"] == "shop"
    assert forwarder.mounts == (("/state/shop/web/otlp-forward", "/etc/meshctl", False),)
    assert ("/state/shop/web/otlp-forward", "/run/meshctl-otlp", True) in metrics.mounts
    assert metrics.env["MESHCTL_OTLP_ENDPOINT"] == "http://localhost:4318"
    assert metrics.env["MESHCTL_OTLP_SOCKET"] == "/run/meshctl-otlp/otlp.sock"
    assert metrics.env["MESHCTL_OTLP_SAMPLE"] == "0.5"


def test_a_remote_collector_is_reached_directly_and_no_export_means_no_settings():
    remote = make_pod("http://collector.example:4318")
    assert OTLP_FORWARD not in [c.role for c in remote.sidecars]
    metrics = by_role(remote, "metrics")
    assert metrics.env["MESHCTL_OTLP_ENDPOINT"] == "http://collector.example:4318"
    assert "MESHCTL_OTLP_SOCKET" not in metrics.env and len(metrics.mounts) <= 1
    assert not any(key.startswith("MESHCTL_OTLP") for key in by_role(make_pod(None), "metrics").env)


@pytest.mark.parametrize(("url", "to"), [("http://localhost:4318", "127.0.0.1:4318"),
                                         ("http://127.0.0.1:14318/otlp", "127.0.0.1:14318"),
                                         ("http://[::1]:4318", "[::1]:4318"), ("http://localhost", "127.0.0.1:80")])
def test_the_forwarder_relays_to_the_urls_loopback_port(url, to):
    service = replace(ServiceSpec(name="web", port=8080), tracing=TracingSettings(url))
    assert render_forward("shop", service) == {"forward.json": f'{{"to": "{to}"}}\n'}
