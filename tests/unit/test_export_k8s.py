"""`meshctl export k8s`: every object validates strictly (Kubernetes 1.33, cert-manager's CRD) and
passes the API server's own rules (tests/k8s_rules.py); the pods are `up`'s pods (the same sidecar
definitions, readiness and configs, rendered for cluster names); the output is deterministic and
checked in for examples/shop and examples/hello (tests/golden/export/: a change to the pods shows
up in review as a change to the manifests; MESHCTL_UPDATE_GOLDEN=1 writes them again)."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from meshctl.config import load_project
from meshctl.export import ExportOptions, export_k8s, stream
from meshctl.sidecars import READY_PATH, TLS_PORT, render_capture, render_proxy
from meshctl.sidecars.addresses import Cluster
from tests.k8s_rules import RuleError, api_server_rules, crd_schema, validate_all, validate_object
from tests.unit.fake_engine import meshctl

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "export"
EXAMPLES = ("shop", "hello")


def export(example: str, **options):
    project = load_project(ROOT / "examples" / example)
    opts = ExportOptions(namespace=options.pop("namespace", project.name), source=f"examples/{example}/mesh.yaml", **options)
    return export_k8s(project, opts)


def objects_of(text: str) -> list[dict]:
    return [doc for doc in yaml.load_all(text, Loader=yaml.CSafeLoader) if doc]


def by(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def pod_of(objects: list[dict], name: str) -> dict:
    return by(objects, "Deployment", name)["spec"]["template"]["spec"]


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_export_of_each_example_is_the_checked_in_golden_file(example):
    text = stream(export(example))
    golden = GOLDEN / f"{example}.yaml"
    if os.environ.get("MESHCTL_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"the export of examples/{example} changed: review it, then MESHCTL_UPDATE_GOLDEN=1"
    assert stream(export(example)) == text        # deterministic: the same input, the same bytes


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_object_validates_strictly_and_passes_the_api_servers_rules(example):
    objects = objects_of(stream(export(example)))
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "ServiceAccount", "ConfigMap", "Certificate", "Deployment", "Service"} <= kinds
    validate_all(objects)


def test_strict_validation_and_the_rules_fail_on_what_the_api_server_refuses():
    objects = objects_of(stream(export("shop")))
    deployment = by(objects, "Deployment", "web")
    bogus = copy.deepcopy(deployment)
    bogus["spec"]["template"]["spec"]["initContainers"][0]["bogus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_object(bogus)
    cert = copy.deepcopy(by(objects, "Certificate", "web"))
    cert["spec"]["uri"] = ["spiffe://x"]          # the field is `uris`
    with pytest.raises(Exception, match="uri"):
        validate_object(cert)
    # A native sidecar's restartPolicy on an app container, a probe on a plain init container, a
    # port name twice, a selector that misses the template: each refused.
    breakages = []
    for breaks in (lambda pod: pod["containers"][0].__setitem__("restartPolicy", "Always"),
                   lambda pod: pod["initContainers"][0].__setitem__("readinessProbe", {"tcpSocket": {"port": 1}}),
                   lambda pod: pod["containers"][0]["ports"].append({"name": "mesh", "containerPort": 1})):
        broken = copy.deepcopy(deployment)
        breaks(broken["spec"]["template"]["spec"])
        breakages.append(broken)
    selector = copy.deepcopy(deployment)
    selector["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "other"
    breakages.append(selector)
    for broken in breakages:
        others = [o for o in objects if o is not deployment]
        with pytest.raises(RuleError):
            api_server_rules([*others, broken])
    with pytest.raises(RuleError, match="DNS label"):
        api_server_rules([{**objects[1], "metadata": {**objects[1]["metadata"], "name": "Web_1"}}])


def test_certificate_schema_is_cert_managers_and_strict():
    schema = crd_schema("cert-manager.io/v1", "Certificate")
    assert {"uris", "dnsNames", "subject", "issuerRef", "secretName"} <= set(schema["properties"]["spec"]["properties"])
    assert schema["properties"]["spec"]["additionalProperties"] is False


def test_pods_are_ups_pods_with_native_sidecars_capture_and_probes():
    objects = objects_of(stream(export("shop")))
    api = pod_of(objects, "api")
    init = {c["name"]: c for c in api["initContainers"]}
    assert list(init) == ["capture", "metrics", "proxy"]
    # capture: an ordinary init container, root with NET_ADMIN only, and it exits.
    capture = init["capture"]
    assert "restartPolicy" not in capture
    assert capture["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert capture["securityContext"]["runAsUser"] == 0
    # The sidecars: native, non-root, no capability, read-only, probes from the kinds' Readiness.
    for name in ("metrics", "proxy"):
        sidecar = init[name]
        assert sidecar["restartPolicy"] == "Always"
        ctx = sidecar["securityContext"]
        assert ctx["capabilities"] == {"drop": ["ALL"]} and ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"]
        assert ctx["runAsUser"] != 0
        assert sidecar["startupProbe"]["httpGet"] == sidecar["readinessProbe"]["httpGet"]
        assert "memory" in sidecar["resources"]["limits"]
    assert init["proxy"]["startupProbe"]["httpGet"] == {"path": READY_PATH, "port": TLS_PORT, "scheme": "HTTPS"}
    assert init["proxy"]["securityContext"]["runAsGroup"] == 15999       # capture leaves its connections alone
    assert init["metrics"]["startupProbe"]["httpGet"]["path"] == "/ready"
    app = api["containers"][0]
    assert app["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": TLS_PORT, "scheme": "HTTPS"}
    assert {e["name"]: e["value"] for e in app["env"]}["SSL_CERT_FILE"] == "/etc/meshctl/ca-bundle.pem"
    assert api["securityContext"]["runAsNonRoot"] is True
    # kv speaks TCP: its proxy's readiness is the exec check `up` runs.
    kv_proxy = next(c for c in pod_of(objects, "kv")["initContainers"] if c["name"] == "proxy")
    assert kv_proxy["startupProbe"]["exec"]["command"][:2] == ["bash", "-c"]
    # Prometheus finds the metrics sidecar.
    annotations = by(objects, "Deployment", "api")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "15090", "prometheus.io/path": "/metrics"}


def test_configs_are_rendered_for_cluster_names():
    objects = objects_of(stream(export("shop", namespace="prod")))
    web_proxy = by(objects, "ConfigMap", "web-proxy")["data"]["haproxy.cfg"]
    assert "server api api.prod.svc.cluster.local:15008" in web_proxy
    assert "verifyhost api sni str(api)" in web_proxy          # the certificate's short name
    assert "parse-resolv-conf" in web_proxy and "127.0.0.11" not in web_proxy
    capture = by(objects, "ConfigMap", "web-capture")["data"]["capture.sh"]
    assert "$subnet" not in capture and "--dports 7000,8080" not in capture
    assert "REDIRECT --to-ports 15001" in capture
    # Locally nothing changed: Docker's resolver, peers by their network alias.
    project = load_project(ROOT / "examples" / "shop")
    web = project.service("web")
    local = render_proxy("shop", web)
    assert "server api api:15008" in local and "127.0.0.11" in local
    assert '-d "$subnet"' in render_capture("shop", web) and '-d "$subnet"' not in render_capture("shop", web, Cluster("x"))


def test_certificates_carry_the_spiffe_identity_and_the_subject_the_caller_gate_reads():
    objects = objects_of(stream(export("shop", issuer="ClusterIssuer/corp-ca")))
    spec = by(objects, "Certificate", "web")["spec"]
    assert spec["uris"] == ["spiffe://meshctl.local/ns/shop/sa/web"]
    assert spec["commonName"] == "web" and spec["subject"] == {"organizationalUnits": ["shop"]}
    assert {"web", "web.shop.svc.cluster.local"} <= set(spec["dnsNames"])
    assert spec["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert "client auth" in spec["usages"] and "server auth" in spec["usages"]
    # The proxy mounts the Secret cert-manager writes, beside its ConfigMap.
    volume = next(v for v in pod_of(objects, "web")["volumes"] if v["name"] == "proxy-config")
    assert volume["projected"]["sources"][1]["secret"]["name"] == "web-tls"
    assert not any(o["kind"] == "Secret" for o in objects)      # no private key in the default output


def test_network_policy_lets_only_allowed_callers_reach_the_mesh_port():
    objects = objects_of(stream(export("shop")))
    api = by(objects, "NetworkPolicy", "api")["spec"]
    mesh_rule = next(r for r in api["ingress"] if r.get("ports") == [{"protocol": "TCP", "port": 15008}])
    assert mesh_rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "web",
                                                                  "app.kubernetes.io/part-of": "shop"}}}]
    web = by(objects, "NetworkPolicy", "web")["spec"]       # no allow: any of the project's pods
    assert web["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "shop"}}}]


def test_registry_names_images_built_from_folders():
    objects = objects_of(stream(export("shop", registry="registry.example:5000/team")))
    images = {c["name"]: c["image"] for c in pod_of(objects, "web")["initContainers"] + pod_of(objects, "web")["containers"]}
    assert images["app"].startswith("registry.example:5000/team/shop-web:")
    assert images["proxy"].startswith("registry.example:5000/team/meshctl-haproxy:")


def test_cli_writes_a_stream_or_files_by_kind_and_local_certs_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHCTL_HOME", str(tmp_path / "home"))
    shop = str(ROOT / "examples" / "shop")
    result = meshctl("export", "k8s", "--path", shop, check=True)
    assert result.stdout.startswith("# Generated by `meshctl export k8s` from ")
    validate_all(objects_of(result.stdout))
    refused = meshctl("export", "k8s", "--path", shop, "--certs", "local")
    assert refused.exit_code == 2 and "-o DIR" in refused.stderr
    out = tmp_path / "out"
    result = meshctl("export", "k8s", "--path", shop, "-o", str(out), "--certs", "local", check=True)
    files = sorted(p.name for p in out.iterdir())
    assert files[0] == "01-namespace.yaml" and "secrets.yaml" in files
    secrets = out / "secrets.yaml"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert "private keys" in result.stderr
    secret_objects = objects_of(secrets.read_text())
    assert {o["metadata"]["name"] for o in secret_objects} == {"web-tls", "api-tls", "kv-tls"}
    everything = [o for f in files if f != "secrets.yaml" for o in objects_of((out / f).read_text())] + secret_objects
    assert not any(o["kind"] == "Certificate" for o in everything)
    validate_all(everything)


def test_what_does_not_map_is_one_line_on_stderr_each(tmp_path):
    (tmp_path / "mesh.yaml").write_text(
        "name: p\nservices:\n  db:\n    image: postgres:16\n    port: 5432\n    protocol: tcp\n"
        "  app:\n    image: app:1\n    port: 8080\n    depends_on: [db]\n")
    result = meshctl("export", "k8s", "--path", str(tmp_path), check=True)
    lines = [line for line in result.stderr.splitlines() if line.startswith("not exported:")]
    assert lines == ["not exported: services.app.depends_on: pods start independently in a cluster "
                     "(readiness gates traffic)"]
    validate_all(objects_of(result.stdout))


TRAFFIC_MESH = """\
name: shop
mesh: {mtls: strict}
services:
  web: {image: web:1, port: 8080}
  api:
    image: api:1
    port: 8080
    allow: [web, {from: admin, methods: [GET], paths: ["/admin/*", "*.json"]}]
    traffic:
      timeout: 3s
      retries: {attempts: 2, on: [5xx, reset], per_try_timeout: 1s}
      circuit_breaker: {consecutive_errors: 5, open_for: 30s, max_connections: 10}
      split: {api: 90, api2: 10}
    faults:
      - {delay: 2s, percent: 10}
      - {abort: 503, percent: 5, from: [web]}
  api2: {image: api:2, port: 8080}
  admin: {image: admin:1, port: 8080}
  db: {image: "postgres:16", port: 5432, protocol: tcp, allow: [], faults: [{reset: true, percent: 1}]}
"""


def export_mesh(tmp_path, mesh: str):
    (tmp_path / "mesh.yaml").write_text(TRAFFIC_MESH)
    result = meshctl("export", "k8s", "--path", str(tmp_path), "--mesh", mesh, check=True)
    (tmp_path / "out").write_text(result.stdout)
    objects = objects_of(result.stdout)
    validate_all(objects)           # Kubernetes 1.33, and Istio's or Linkerd's CRDs, strictly
    return objects, [line for line in result.stderr.splitlines() if line.startswith("not exported:")]


def test_istio_gets_peer_authentication_authorization_and_routes(tmp_path):
    objects, unmapped = export_mesh(tmp_path, "istio")
    assert "# namespace shop · mesh istio · certificates: istio's own\n" in (tmp_path / "out").read_text()
    assert by(objects, "Namespace", "shop")["metadata"]["labels"]["istio-injection"] == "enabled"
    assert by(objects, "PeerAuthentication", "default")["spec"] == {"mtls": {"mode": "STRICT"}}
    # No meshctl sidecar: the app alone, probed on its own port.
    api_pod = pod_of(objects, "api")
    assert "initContainers" not in api_pod and [c["name"] for c in api_pod["containers"]] == ["app"]
    assert api_pod["containers"][0]["readinessProbe"]["httpGet"]["port"] == 8080
    rules = by(objects, "AuthorizationPolicy", "api")["spec"]["rules"]
    assert rules[0] == {"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}]}
    assert rules[1]["to"] == [{"operation": {"methods": ["GET"], "paths": ["/admin/*", "*.json"]}}]
    db = by(objects, "AuthorizationPolicy", "db")["spec"]
    assert db["action"] == "ALLOW" and "rules" not in db          # allow: [] lets nobody in
    routes = by(objects, "VirtualService", "api")["spec"]["http"]
    web_route, everyone = routes
    assert web_route["match"] == [{"sourceLabels": {"app.kubernetes.io/name": "web"}}]
    assert web_route["fault"] == {"delay": {"percentage": {"value": 10.0}, "fixedDelay": "2s"},
                                  "abort": {"percentage": {"value": 5.0}, "httpStatus": 503}}
    assert "abort" not in everyone["fault"] and everyone["timeout"] == "3s"
    assert [(r["destination"]["host"], r["weight"]) for r in everyone["route"]] == [("api", 90), ("api2", 10)]
    assert everyone["retries"] == {"attempts": 2, "perTryTimeout": "1s", "retryOn": "5xx,reset"}
    breaker = by(objects, "DestinationRule", "api")["spec"]["trafficPolicy"]
    assert breaker["outlierDetection"]["consecutive5xxErrors"] == 5 and breaker["outlierDetection"]["baseEjectionTime"] == "30s"
    assert breaker["connectionPool"] == {"tcp": {"maxConnections": 10}}
    assert "not exported: services.db.faults: a TCP reset has no Istio equivalent (HTTP faults only)" in unmapped
    assert any("retries.methods" in line for line in unmapped)


def test_linkerd_gets_servers_authentications_policies_and_annotations(tmp_path):
    objects, unmapped = export_mesh(tmp_path, "linkerd")
    namespace = by(objects, "Namespace", "shop")["metadata"]["annotations"]
    assert namespace == {"linkerd.io/inject": "enabled", "config.linkerd.io/default-inbound-policy": "all-authenticated"}
    assert by(objects, "Server", "api")["spec"]["port"] == "app"
    assert by(objects, "Server", "db")["spec"]["proxyProtocol"] == "opaque"
    assert not [o for o in objects if o["kind"] == "AuthorizationPolicy" and o["metadata"]["name"].startswith("db")]
    callers = by(objects, "MeshTLSAuthentication", "api-allow-0")["spec"]["identityRefs"]
    assert callers == [{"kind": "ServiceAccount", "name": "web"}]
    assert by(objects, "AuthorizationPolicy", "api-allow-0")["spec"]["targetRef"]["kind"] == "Server"
    assert by(objects, "AuthorizationPolicy", "api-allow-1")["spec"]["targetRef"] == {
        "group": "policy.linkerd.io", "kind": "HTTPRoute", "name": "api-allow-1"}
    matches = by(objects, "HTTPRoute", "api-allow-1")["spec"]["rules"][0]["matches"]
    assert {"path": {"type": "PathPrefix", "value": "/admin"}, "method": "GET"} in matches
    annotations = by(objects, "Service", "api")["metadata"]["annotations"]
    assert annotations["timeout.linkerd.io/request"] == "3s" and annotations["retry.linkerd.io/limit"] == "2"
    split = by(objects, "HTTPRoute", "api-split")["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in split] == [("api", 90), ("api2", 10)]
    assert "not exported: services.db.faults: reset: Linkerd has no fault injection" in unmapped
    assert len([line for line in unmapped if "faults" in line]) == 3


def test_user_sidecars_and_services_without_sidecars_map_as_they_do_locally(tmp_path):
    (tmp_path / "mesh.yaml").write_text(
        "name: p\nservices:\n  app:\n    image: app:1\n    port: 8080\n    health: /healthz\n"
        "    sidecars:\n      proxy: {}\n      metrics: {}\n      cache:\n        image: redis:7\n"
        "        ready: {tcp: 6379}\n        cap_add: [NET_BIND_SERVICE]\n"
        "  legacy:\n    image: legacy:1\n    port: 9000\n    sidecars: false\n")
    result = meshctl("export", "k8s", "--path", str(tmp_path), check=True)
    objects = objects_of(result.stdout)
    validate_all(objects)
    app = pod_of(objects, "app")
    init = {c["name"]: c for c in app["initContainers"]}
    assert list(init)[-1] == "cache"                     # after meshctl's, as locally (start group 2)
    cache = init["cache"]
    assert cache["restartPolicy"] == "Always" and cache["image"] == "redis:7"
    assert cache["startupProbe"]["exec"]["command"] == ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/6379"]
    assert cache["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    legacy = pod_of(objects, "legacy")
    assert "initContainers" not in legacy and legacy["containers"][0]["image"] == "legacy:1"
    assert [p["name"] for p in by(objects, "Service", "legacy")["spec"]["ports"]] == ["app"]


def test_push_builds_the_images_built_from_folders_and_pushes_them_as_the_export_names_them(cli_engine):
    shop = str(ROOT / "examples" / "shop")
    refused = meshctl("export", "k8s", "--path", shop, "--push")
    assert refused.exit_code == 2 and "--registry" in refused.stderr and cli_engine.pushed == []
    result = meshctl("export", "k8s", "--path", shop, "--registry", "reg.example/team", "--push", check=True)
    named = {c["image"] for o in objects_of(result.stdout) if o["kind"] == "Deployment"
             for c in o["spec"]["template"]["spec"]["initContainers"] + o["spec"]["template"]["spec"]["containers"]}
    assert set(cli_engine.pushed) == named and len(cli_engine.pushed) == len(named) == 6   # 3 apps, 3 sidecar images
    built = [args[0] for name, *args in cli_engine.calls if name == "build"]
    assert sorted(built) == sorted(named)          # nothing was here yet: each built once, as named
    again = meshctl("export", "k8s", "--path", shop, "--registry", "reg.example/team", "--push", check=True)
    assert again.stdout == result.stdout
    assert len([c for c in cli_engine.calls if c[0] == "build"]) == 6      # a content-hash tag that is here is not rebuilt
