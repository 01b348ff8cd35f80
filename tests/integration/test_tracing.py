"""W3C tracing on the real engine: a chain a → b → c whose apps forward `traceparent` gives one
trace with a server span per inbound hop and a client span per outbound hop, each under the one
before; b uses the OpenTelemetry Python SDK (from PyPI, in its image) with nothing but the OTEL_*
variables meshctl sets, and its own spans sit inside that trace, under its proxy's span.
`meshctl trace --json` lists the trace, `meshctl trace ID` draws it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meshctl.runtime.probes import http_request, tls_context
from tests.support import build_ca_bundle, ca_path, eventually, port_of, run_meshctl, unique_project, urls

# b's image installs the OpenTelemetry SDK from PyPI: the first build takes minutes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

APP = Path(__file__).resolve().parent / "trace_app"
MESH_YAML = """\
name: {name}
services:
  a:
    build: app
    port: 8080
    health: /healthz
    stop_grace_period: 1s
    env: {{NEXT: "http://b:8080/chain"}}
    ports: {{https: 0, http: 0, metrics: 0}}
  b:
    build: {{context: app, dockerfile: Dockerfile.sdk}}
    port: 8080
    health: /healthz
    stop_grace_period: 1s
    env: {{NEXT: "http://c:8080/chain"}}
    ports: {{https: 0, http: 0, metrics: 0}}
  c:
    build: app
    port: 8080
    health: /healthz
    stop_grace_period: 1s
    ports: {{https: 0, http: 0, metrics: 0}}
"""


@pytest.fixture(scope="module")
def chain(tmp_path_factory, sidecar_images):
    folder = tmp_path_factory.mktemp("tracing")
    shutil.copytree(APP, folder / "app")
    # pip in b's image build trusts what this machine trusts (a TLS-inspecting proxy's root too).
    shutil.copy(build_ca_bundle(), folder / "app" / "build-ca.pem")
    name = unique_project("trace")
    (folder / "mesh.yaml").write_text(MESH_YAML.format(name=name))
    run_meshctl("up", "-d", str(folder), check=True, timeout=900)
    try:
        yield name, port_of(urls(name)["a"]["https"])
    finally:
        run_meshctl("down", str(folder))


def trace_json(project: str, *args: str) -> object:
    result = run_meshctl("trace", "-p", project, "--json", *args, check=True, timeout=60)
    return json.loads(result.stdout)


def hops(project: str, trace_id: str, count: int) -> list[dict]:
    """The trace's spans once `count` have arrived (the agent reads the proxies' lines in batches)."""
    return eventually(lambda: (spans := trace_json(project, trace_id)["spans"]) and len(spans) >= count and spans,
                      30, 0.5, what=f"{count} spans of {trace_id}")


def test_a_chain_that_forwards_traceparent_is_one_trace_with_every_hop_and_the_apps_spans(chain):
    project, port = chain
    answer = http_request(port, "/chain", tls=tls_context(ca_path()), server_hostname="localhost", timeout=30)
    assert answer.status == 200, answer.body
    seen = json.loads(answer.body)
    # Each app got a traceparent of one trace (started at a's proxy), each with another parent.
    received = [seen["traceparent"], seen["next"]["traceparent"], seen["next"]["next"]["traceparent"]]
    trace_id = received[0].split("-")[1]
    assert [value.split("-")[1] for value in received] == [trace_id] * 3
    assert len({value.split("-")[2] for value in received}) == 3

    # a: server (published port), client (→ b); b: server (mesh), its app's 2 spans, client (→ c); c: server.
    spans = hops(project, trace_id, 7)
    proxy = [s for s in spans if s["source"] == "proxy"]
    app = [s for s in spans if s["source"] == "app"]
    assert sorted((s["service"], s["kind"]) for s in proxy) == [
        ("a", "client"), ("a", "server"), ("b", "client"), ("b", "server"), ("c", "server")]
    by_id = {s["span_id"]: s for s in spans}
    one = {(s["service"], s["kind"]): s for s in proxy}
    root = one["a", "server"]
    assert root["parent_span_id"] == "" and root["attributes"]["url.path"] == "/chain"
    assert one["a", "client"]["parent_span_id"] == root["span_id"]           # a's app forwarded it
    assert one["b", "server"]["parent_span_id"] == one["a", "client"]["span_id"]
    assert one["b", "server"]["attributes"]["meshctl.peer.spiffe_id"].endswith(f"/ns/{project}/sa/a")
    assert one["c", "server"]["parent_span_id"] == one["b", "client"]["span_id"]
    # b's own spans: its SDK's server span under b's proxy span, its inner span under that, and
    # the call to c under the SDK's span (the SDK's propagator wrote the traceparent).
    handle = next(s for s in app if s["name"] == "handle /chain")
    prepare = next(s for s in app if s["name"] == "prepare")
    assert handle["service"] == "b" and handle["parent_span_id"] == one["b", "server"]["span_id"]
    assert prepare["parent_span_id"] == handle["span_id"]
    assert one["b", "client"]["parent_span_id"] == handle["span_id"]
    # Times in µs, each child inside its parent's.
    for span in spans:
        parent = by_id.get(span["parent_span_id"])
        assert span["start_us"] <= span["end_us"]
        if parent and parent["source"] == span["source"] == "proxy":
            assert parent["start_us"] <= span["start_us"] and span["end_us"] <= parent["end_us"]

    listed = trace_json(project, "--last", "50")
    row = next(r for r in listed if r["trace_id"] == trace_id)
    assert (row["root_service"], row["root_name"], row["spans"], row["services"], row["status"], row["error"]) == (
        "a", "GET /chain", 7, ["a", "b", "c"], "200", False)

    drawn = run_meshctl("trace", "-p", project, trace_id, check=True, timeout=60).stdout
    lines = [line for line in drawn.splitlines() if "GET /chain" in line or "handle /chain" in line or "prepare" in line]
    assert len(lines) == 7
    assert lines[0].split()[0] == "a" and "+0.00 ms" in lines[0]
    assert [line.split()[0] for line in lines] == ["a", "a", "b", "b", "b", "b", "c"]


def test_the_spans_are_served_on_the_metrics_port_to_meshctls_key_only(chain):
    from meshctl.home import meshctl_home, probe_secret
    from meshctl.sidecars import observe_key

    project, port = chain
    http_request(port, "/chain", tls=tls_context(ca_path()), server_hostname="localhost", timeout=30)
    metrics = port_of(urls(project)["a"]["metrics"])
    assert http_request(metrics, "/meshctl/spans").status == 403
    assert http_request(metrics, "/meshctl/spans", headers={"Authorization": "Bearer " + "0" * 40}).status == 403
    key = observe_key(probe_secret(meshctl_home()), project)
    answer = eventually(lambda: (got := http_request(metrics, "/meshctl/spans", headers={"Authorization": f"Bearer {key}"}))
                        and json.loads(got.body)["spans"] and got, 30, 0.5, what="a's spans")
    assert answer.status == 200 and {s["service"] for s in json.loads(answer.body)["spans"]} == {"a"}
    assert http_request(metrics, "/metrics").status == 200          # Prometheus' scrape needs no key
