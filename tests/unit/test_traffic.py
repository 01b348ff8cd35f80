"""`traffic:` and `allow:` route rules without a daemon: what mesh.yaml may say and every mistake as
one file:line message (exit 2), the rules as rendered into the callers' outbound backends and the
callee's mesh listener, and the caller-side series the metrics agent serves."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from meshctl.config import AllowRule, parse_project
from meshctl.errors import ConfigError
from meshctl.sidecars import render_proxy
from tests.support import counter, metrics_agent

agent = metrics_agent()

SERVICES = ("  web: {image: web:1, port: 8080}\n"
            "  admin: {image: web:1, port: 8080}\n"
            "  api-v2: {image: api:1, port: 8080}\n")


def project(tmp_path: Path, api: str, services: str = SERVICES):
    text = f"name: shop\nservices:\n{services}  api:\n    image: api:1\n    port: 8080\n{api}"
    source = tmp_path / "mesh.yaml"
    source.write_text(text)
    return parse_project(text, source=source, root=tmp_path)


def backend(config: str, name: str) -> str:
    """One section of a rendered HAProxy config, from its header to the next blank line."""
    start = config.index(f"\nbackend {name}\n") + 1
    return config[start:config.index("\n\n", start)]


def test_the_issues_example_parses_with_its_defaults(tmp_path):
    api = project(tmp_path, "    traffic:\n      timeout: 2s\n"
                  "      retries: {attempts: 3, on: [5xx, reset, connect-failure], per_try_timeout: 500ms, "
                  "methods: [GET, PUT]}\n"
                  "      circuit_breaker: {consecutive_errors: 5, open_for: 10s, max_connections: 100, max_pending: 50}\n"
                  "      split: {api: 90, api-v2: 10}\n").service("api")
    traffic = api.traffic
    assert traffic is not None and traffic.timeout == 2.0 and traffic.split == (("api", 90), ("api-v2", 10))
    assert traffic.retries is not None
    assert (traffic.retries.attempts, traffic.retries.on, traffic.retries.per_try_timeout, traffic.retries.methods) == \
        (3, ("5xx", "reset", "connect-failure"), 0.5, ("GET", "PUT"))
    breaker = traffic.circuit_breaker
    assert breaker is not None
    assert (breaker.consecutive_errors, breaker.open_for, breaker.max_connections, breaker.max_pending) == (5, 10, 100, 50)


def test_per_try_timeout_defaults_to_the_timeout_shared_by_every_try(tmp_path):
    traffic = project(tmp_path, "    traffic: {timeout: 2s, retries: {attempts: 3}}\n").service("api").traffic
    assert traffic is not None and traffic.retries is not None
    assert traffic.retries.per_try_timeout == 0.5
    assert traffic.retries.methods == ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")   # never POST or PATCH


@pytest.mark.parametrize("api, where, words", [
    ("    traffic: {timeout: 2s, retry: {}}\n", "mesh.yaml:9: services.api.traffic.retry", "did you mean 'retries'"),
    ("    traffic: {timeout: soon}\n", "mesh.yaml:9: services.api.traffic.timeout", "not a duration"),
    ("    traffic: {timeout: 0s}\n", "mesh.yaml:9: services.api.traffic.timeout", "above 0"),
    ("    traffic:\n      timeout: 1s\n      retries: {attempts: 3, per_try_timeout: 300ms}\n",
     "mesh.yaml:11: services.api.traffic.retries.per_try_timeout", "4 tries of 0.3s outlive timeout"),
    ("    traffic:\n      retries: {attempts: 3, per_try_timeout: 5s}\n",
     "mesh.yaml:10: services.api.traffic.retries.per_try_timeout", "outlive the default timeout (15s)"),
    ("    traffic:\n      retries: {attempts: -1}\n", "mesh.yaml:10: services.api.traffic.retries.attempts",
     "expected a whole number"),
    ("    traffic:\n      retries: {on: [5xx, resett]}\n", "mesh.yaml:10: services.api.traffic.retries.on.1",
     "unknown retry condition 'resett'"),
    ("    traffic:\n      retries: {on: [409]}\n", "mesh.yaml:10: services.api.traffic.retries.on.0",
     "unknown retry condition 409"),
    ("    traffic:\n      retries: {methods: [GET, FETCH]}\n", "mesh.yaml:10: services.api.traffic.retries.methods.1",
     "'FETCH' is not an HTTP method"),
    ("    traffic:\n      circuit_breaker: {open_for: 10s}\n",
     "mesh.yaml:10: services.api.traffic.circuit_breaker.open_for", "consecutive_errors is not set"),
    ("    traffic:\n      circuit_breaker: {consecutive_errors: 0}\n",
     "mesh.yaml:10: services.api.traffic.circuit_breaker.consecutive_errors", "expected a whole number (1 or more)"),
    ("    traffic:\n      circuit_breaker: {consecutive_errors: 5, open_for: forever}\n",
     "mesh.yaml:10: services.api.traffic.circuit_breaker.open_for", "not a duration"),
    ("    traffic:\n      split: {api: 90, api-v2: 20}\n", "mesh.yaml:10: services.api.traffic.split",
     "sum to 110, not 100"),
    ("    traffic:\n      split:\n        api: 90\n        api-v3: 10\n",
     "mesh.yaml:12: services.api.traffic.split.api-v3", "no service named 'api-v3'"),
    ("    allow: [web]\n    traffic:\n      split: {api: 90, api-v2: 10}\n    \n",
     "mesh.yaml:11: services.api.traffic.split.api-v2", "web may call api but not api-v2"),
    ("    allow: [web, {from: admin, methods: [GET], paths: [admin]}]\n",
     "mesh.yaml:9: services.api.allow.1.paths.0", "'admin' is not a path rule"),
    ("    allow: [web, {from: admin, paths: ['/a/*/b']}]\n",
     "mesh.yaml:9: services.api.allow.1.paths.0", "is not a path rule"),
    ("    allow: [web, {form: admin}]\n", "mesh.yaml:9: services.api.allow.1.form", "did you mean 'from'"),
    ("    allow: [web, {from: nobody}]\n", "mesh.yaml:9: services.api.allow", "no service named 'nobody'"),
])
def test_every_mistake_is_one_message_with_file_line_and_field(tmp_path, api, where, words):
    services = SERVICES.replace("api-v2: {image: api:1, port: 8080}", "api-v2: {image: api:1, port: 8080, allow: [admin]}")
    with pytest.raises(ConfigError) as info:
        project(tmp_path, api, services)
    assert where in info.value.message and words in f"{info.value.message} {info.value.hint}", info.value.message
    assert info.value.hint and info.value.exit_code == 2


def test_traffic_needs_an_http_service_in_a_mesh(tmp_path):
    with pytest.raises(ConfigError) as info:
        project(tmp_path, "    protocol: tcp\n    traffic: {timeout: 1s}\n")
    assert "mesh.yaml:10: services.api.traffic" in info.value.message and "protocol: tcp" in info.value.message
    with pytest.raises(ConfigError) as info:
        project(tmp_path, "    traffic: {timeout: 1s}\n", services="")
    assert "not in a mesh" in info.value.message


def test_retries_timeouts_and_the_breaker_land_in_every_callers_backend_for_the_callee(tmp_path):
    spec = project(tmp_path, "    traffic:\n      timeout: 2s\n"
                   "      retries: {attempts: 3, on: [gateway-error, 425], per_try_timeout: 500ms}\n"
                   "      circuit_breaker: {consecutive_errors: 5, open_for: 10s, max_connections: 100, max_pending: 50}\n")
    for caller in ("web", "admin"):
        to_api = backend(render_proxy("shop", spec.service(caller)), "to_api")
        assert "timeout server 500ms" in to_api and "timeout queue 2000ms" in to_api
        assert "retries 3" in to_api
        # A refused connection is retried a per_try_timeout later, within the caller's timeout.
        assert "timeout connect 500ms" in to_api
        # A refused or unanswered connection (the callee's proxy restarting) is always retried.
        assert "retry-on conn-failure empty-response 502 503 504 425" in to_api
        assert "disable-l7-retry unless { method GET HEAD OPTIONS PUT DELETE }" in to_api
        assert "lt 10000 }" in to_api and "-m int ge 5 }" in to_api and "{ queue ge 50 }" in to_api
        assert to_api.rstrip().endswith("init-addr none maxconn 100")
    # The other backends and the callee's own config carry none of it.
    assert "retries" not in backend(render_proxy("shop", spec.service("web")), "to_admin")
    assert "backend to_api\n" not in render_proxy("shop", spec.service("api"))


@pytest.mark.parametrize(("traffic", "caller", "pause", "attempts"), [
    # The shop of the chaos soak: 3 retries, each after 1 s (HAProxy's cap), outlast a proxy's
    # restart in place (about a second), where 200 ms apart they covered 0.6 s.
    ("{retries: {attempts: 3, on: [reset, connect-failure]}}", "", "1000ms", "3"),
    ("{retries: {}}", "", "1000ms", "2"),
    # No refused try costs more than an answered one may: the pause is at most per_try_timeout…
    ("{timeout: 1s, retries: {attempts: 3}}", "", "250ms", "3"),
    # …and never under the caller's own connect timeout.
    ("{timeout: 1s, retries: {attempts: 3}}", "{proxy: {connect_timeout: 400ms}}", "400ms", "3"),
    ("{retries: {attempts: 1}}", "{proxy: {connect_timeout: 3s}}", "3000ms", "1"),
])
def test_refused_connections_are_retried_far_enough_apart_to_outlast_a_callee_proxy_restart(
        tmp_path, traffic, caller, pause, attempts):
    services = SERVICES.replace("web: {image: web:1, port: 8080}",
                                f"web: {{image: web:1, port: 8080{', sidecars: ' + caller if caller else ''}}}")
    to_api = backend(render_proxy("shop", project(tmp_path, f"    traffic: {traffic}\n", services).service("web")),
                     "to_api")
    # `attempts` still counts every retry, answer-based ones included: only the pause between
    # connection retries grows (HAProxy makes none before an answer-based retry).
    assert f"\n    timeout connect {pause}\n    retries {attempts}\n" in to_api
    assert to_api.count("\n    timeout connect ") == 1 and to_api.count("\n    retries ") == 1
    # The other backends keep the caller's connect timeout (the defaults section's).
    assert "timeout connect" not in backend(render_proxy("shop", project(tmp_path, "").service("web")), "to_api")


def test_a_split_weighs_one_server_per_target(tmp_path):
    spec = project(tmp_path, "    traffic: {split: {api: 90, api-v2: 10}}\n")
    to_api = backend(render_proxy("shop", spec.service("web")), "to_api")
    servers = [line.split()[1:3] + line.split()[-2:] for line in to_api.splitlines() if line.strip().startswith("server")]
    assert servers == [["api", "api:15008", "weight", "90"], ["api-v2", "api-v2:15008", "weight", "10"]]
    assert "verifyhost api-v2 sni str(api-v2)" in to_api


def test_without_traffic_a_callers_backend_is_as_before(tmp_path):
    to_api = backend(render_proxy("shop", project(tmp_path, "").service("web")), "to_api")
    assert to_api.splitlines()[1:] == ["    mode http", "    no log", "    server api api:15008 ssl crt /etc/meshctl/bundle.pem "
                                       "ca-file /etc/meshctl/ca.pem verify required alpn http/1.1 verifyhost api "
                                       "sni str(api) resolvers docker init-addr none"]


def test_route_rules_render_as_acls_any_of_which_lets_a_call_in(tmp_path):
    spec = project(tmp_path, '    allow: [web, {from: admin, methods: [GET, post], paths: ["/admin/*", "/x", "*.json"]},'
                   ' {methods: [HEAD]}]\n')
    assert spec.service("api").allow == (
        AllowRule(("web",)), AllowRule(("admin",), ("GET", "POST"), ("/admin/*", "/x", "*.json")),
        AllowRule(None, ("HEAD",)))
    config = render_proxy("shop", spec.service("api"))
    for acl in ("acl allow_0 ssl_c_s_dn(CN) -m str web", "acl allow_1 ssl_c_s_dn(CN) -m str admin",
                "acl allow_1_methods method GET POST", "acl allow_1_paths path -m str /x",
                "acl allow_1_paths path -m beg /admin/", "acl allow_1_paths path -m end .json",
                "acl allow_2_methods method HEAD",
                "http-request deny status 403 unless allow_0 || allow_1 allow_1_methods allow_1_paths || allow_2_methods"):
        assert acl in config


def test_the_shorthand_still_renders_one_caller_list(tmp_path):
    config = render_proxy("shop", project(tmp_path, "    allow: [web, admin]\n").service("api"))
    assert "http-request deny status 403 unless { ssl_c_s_dn(CN) -m str web admin }" in config
    assert "acl allow_" not in config


def test_the_agent_serves_retries_and_each_breakers_state_by_destination():
    stats = agent.AccessStats()
    stats.breaker_until.update({"api": 4102444800000, "kv-admin": 1000})    # open until 2100; closed since 1970
    stats.retries.update({"api": 7})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(agent.MeshCollector("web", stats, {"url": None, "up": False}))
    text = generate_latest(registry).decode()
    assert counter(text, "meshctl_retries_total", service="web", destination="api") == 7
    assert counter(text, "meshctl_circuit_open", service="web", destination="api") == 1
    assert 'meshctl_circuit_open{destination="kv-admin",service="web"} 0.0' in text
