"""meshctl inject / uninject on compose documents: pure, no daemon, no files."""

from __future__ import annotations

from pathlib import Path, PurePath

import pytest
import yaml

from meshctl import compose_yaml
from meshctl.errors import ConfigError, UsageError
from meshctl.inject import (InjectOptions, Machine, inject, inject_text, uninject, uninject_text,
                            without_generated_blocks)
from meshctl.sidecars import CERT_BUNDLE, METRICS_PORT, PROXY_PORT, READY_PATH, TLS_PORT

MACHINE = Machine(project="demo", images={"proxy": "meshctl-haproxy:t", "metrics": "meshctl-metrics:m"},
                  user="1000:1000", state_dir=PurePath("/state/compose/demo-1"))
LEGACY = Path(__file__).resolve().parent.parent / "compose_corpus" / "legacy"


def run(text: str, **options) -> tuple[str, object]:
    document, layout = compose_yaml.load(text, "compose.yaml")
    result = inject(document, InjectOptions(**options), MACHINE, "compose.yaml")
    return compose_yaml.dump(result.document, layout), result


def services_of(text: str) -> dict:
    """What the output means, read by a plain YAML parser (merge keys resolved)."""
    return yaml.safe_load(text)["services"]


def back(text: str) -> str:
    document, layout = compose_yaml.load(text, "compose.yaml")
    return compose_yaml.dump(uninject(document).document, layout)


WEB = """\
services:
  web:
    image: nginx
    ports:
      - "8080:80"
"""


def test_http_service_gets_a_proxy_serving_https_and_metrics():
    out, result = run(WEB)
    services = services_of(out)
    assert list(services) == ["web", "web-mesh-proxy", "web-mesh-metrics"]
    assert services["web"]["ports"] == [f"8080:{TLS_PORT}", f"127.0.0.1::{METRICS_PORT}"]
    assert services["web"]["x-meshctl"] == {"injected": {"ports": ["8080:80"]}}
    for role in ("proxy", "metrics"):
        sidecar = services[f"web-mesh-{role}"]
        assert sidecar["network_mode"] == "service:web"
        assert sidecar["user"] == "1000:1000"
        assert sidecar["read_only"] is True and sidecar["cap_drop"] == ["ALL"]
        assert sidecar["security_opt"] == ["no-new-privileges:true"] and sidecar["tmpfs"] == ["/tmp"]
        assert sidecar["labels"]["meshctl.project"] == "demo"
        assert sidecar["labels"]["meshctl.service"] == "web"
        assert sidecar["labels"]["meshctl.role"] == role
        assert sidecar["healthcheck"]["test"][:3] == ["CMD", "bash", "-c"]
        assert "ports" not in sidecar
    assert services["web-mesh-proxy"]["image"] == "meshctl-haproxy:t"
    assert services["web-mesh-metrics"]["image"] == "meshctl-metrics:m"
    # The proxy terminates TLS: its folder holds the config and the certificate bundle.
    assert services["web-mesh-proxy"]["volumes"] == [
        {"type": "bind", "source": "/state/compose/demo-1/web/proxy", "target": "/etc/meshctl", "read_only": True}]
    assert services["web-mesh-proxy"]["x-meshctl"] == {"sidecar-of": "web", "terminates-tls": True}
    assert services["web-mesh-metrics"]["x-meshctl"] == {"sidecar-of": "web"}
    for role in ("proxy", "metrics"):
        assert services[f"web-mesh-{role}"]["depends_on"] == {"web": {"condition": "service_started"}}
    [item] = result.injected
    assert item.protocol == "http" and item.app_port == 80 and item.roles == ("proxy", "metrics")
    assert set(item.files) == {PurePath("/state/compose/demo-1/web/proxy/haproxy.cfg")}
    proxy_cfg = item.files[PurePath("/state/compose/demo-1/web/proxy/haproxy.cfg")]
    assert "server app 127.0.0.1:80" in proxy_cfg and f"bind :{PROXY_PORT}\n" in proxy_cfg
    assert f"bind :{TLS_PORT} ssl crt {CERT_BUNDLE} alpn http/1.1" in proxy_cfg
    assert "mode http" in proxy_cfg and "ssl-min-ver TLSv1.2" in proxy_cfg
    assert item.cert_dir == PurePath("/state/compose/demo-1/web/proxy")
    assert set(item.sans) == {"localhost", "127.0.0.1", "::1", "web"}
    assert "host 8080 → proxy (HTTPS) → app:80" in item.summary
    assert result.roles == ("proxy", "metrics")


def test_the_proxy_healthcheck_tries_the_https_port_and_the_app_and_escapes_dollars():
    out, _ = run(WEB)
    script = services_of(out)["web-mesh-proxy"]["healthcheck"]["test"][3]
    assert f"/dev/tcp/127.0.0.1/{TLS_PORT}" in script and f"/dev/tcp/127.0.0.1/{PROXY_PORT}" in script
    assert "GET / HTTP/1.0" in script and READY_PATH not in script     # the app's answer, not the proxy's own
    assert '[ "$$code" -lt 500 ]' in script
    assert "$$code" in script and "$code" not in script.replace("$$code", "")


def test_inject_twice_is_byte_identical_and_uninject_restores_the_text():
    out, _ = run(WEB)
    again, _ = run(out)
    assert again == out
    assert back(out) == WEB


def test_a_top_level_block_holds_what_sidecars_share_with_anchors():
    out, _ = run(WEB)
    assert "x-meshctl:\n  generated-by: \"meshctl inject\"" in out
    assert "  proxy: &meshctl-proxy\n" in out and "    <<: *meshctl-proxy\n" in out
    assert "meshctl-tls" not in out and "-mesh-tls" not in out
    assert out.index("x-meshctl:") < out.index("services:")


@pytest.mark.parametrize("entry, expected", [
    ('"8080:80"', [f"8080:{TLS_PORT}"]),
    ('"80"', [f"{TLS_PORT}"]),
    ("80", [TLS_PORT]),
    ('"127.0.0.1:8080:80"', [f"127.0.0.1:8080:{TLS_PORT}"]),
    ('"127.0.0.1::80"', [f"127.0.0.1::{TLS_PORT}"]),
    ('"[::1]:8080:80/tcp"', [f"[::1]:8080:{TLS_PORT}/tcp"]),
    ('"${WEB_PORT:-8080}:80"', [f"${{WEB_PORT:-8080}}:{TLS_PORT}"]),
])
def test_short_syntax_keeps_its_shape(entry, expected):
    out, _ = run(f"services:\n  web:\n    image: nginx\n    ports:\n      - {entry}\n")
    assert services_of(out)["web"]["ports"] == expected + [f"127.0.0.1::{METRICS_PORT}"]


def test_long_syntax_keeps_its_shape_and_other_ports_pass_through():
    out, _ = run("""\
services:
  web:
    image: nginx
    ports:
      - target: 80
        published: "8080"
        host_ip: 127.0.0.1
        name: http
      - {target: 9229, published: "9229"}
      - "53:53/udp"
      - "9000-9001:9000-9001"
""")
    ports = services_of(out)["web"]["ports"]
    assert ports[0] == {"target": TLS_PORT, "published": "8080", "host_ip": "127.0.0.1", "name": "http"}
    assert ports[1:4] == [{"target": 9229, "published": "9229"}, "53:53/udp", "9000-9001:9000-9001"]
    assert ports[4] == {"target": METRICS_PORT, "host_ip": "127.0.0.1"}


def test_keep_plain_keeps_the_app_port_and_gives_https_its_own():
    out, result = run(WEB.replace('- "8080:80"', '- "8080:80"\n    x-meshctl: {tls_port: 8443, metrics_port: 9090}'),
                      keep_plain=True)
    ports = services_of(out)["web"]["ports"]
    assert ports == ["8080:80", f"8443:{TLS_PORT}", f"127.0.0.1:9090:{METRICS_PORT}"]
    assert services_of(back(out))["web"]["x-meshctl"] == {"tls_port": 8443, "metrics_port": 9090}


@pytest.mark.parametrize("service, why", [
    ("image: postgres:16\n    ports: ['5432:5432']", "PostgreSQL"),
    ("image: bitnami/postgresql\n    ports: ['15432:5432']", "PostgreSQL"),
    ("image: mysql:8\n    ports: ['3307:3306']", "MySQL"),
    ("image: redis:7-alpine\n    ports: ['6379']", "Redis"),
    ("image: mongo\n    ports: ['27017:27017']", "MongoDB"),
    ("image: acme/cache\n    ports: ['6380:6379']", "Redis"),
    ("image: acme/grpc\n    ports: ['7000:7000']\n    x-meshctl: {protocol: tcp}", "x-meshctl.protocol"),
    ("image: acme/grpc\n    ports: [{target: 7000, app_protocol: grpc}]", "app_protocol: grpc"),
])
def test_tcp_services_get_a_tcp_proxy_and_never_an_http_one(service, why):
    out, result = run(f"services:\n  db:\n    {service}\n")
    [item] = result.injected
    assert item.protocol == "tcp" and why in item.why
    services = services_of(out)
    assert set(services) == {"db", "db-mesh-proxy", "db-mesh-metrics"}
    assert services["db-mesh-proxy"]["x-meshctl"] == {"sidecar-of": "db"}      # no HTTPS here
    assert item.cert_dir is None and "TCP proxy → app" in item.summary
    config = next(iter(item.files.values()))
    assert "mode tcp" in config and "mode http\n    bind :" not in config
    assert f"server app 127.0.0.1:{item.app_port}" in config
    first = services["db"]["ports"][0]
    assert (first["target"] if isinstance(first, dict) else str(first).rsplit(":", 1)[-1]) in (PROXY_PORT, str(PROXY_PORT))
    # The metrics sidecar serves HAProxy's connection counters.
    assert "15021" in services["db-mesh-metrics"]["environment"]["MESHCTL_APP_METRICS"]


def test_tcp_skip_leaves_tcp_services_alone_with_a_reason():
    out, result = run("services:\n  db:\n    image: postgres\n    ports: ['5432:5432']\n", tcp="skip")
    assert not result.injected
    assert "PostgreSQL" in result.skipped[0].reason and "--tcp skip" in result.skipped[0].reason
    assert services_of(out) == {"db": {"image": "postgres", "ports": ["5432:5432"]}}


def test_protocol_http_overrides_detection():
    _, result = run("services:\n  db:\n    image: redis\n    ports: ['6379:6379']\n    x-meshctl: {protocol: http}\n")
    assert result.injected[0].protocol == "http"


@pytest.mark.parametrize("body, reason", [
    ("image: x\n    network_mode: host\n    ports: ['80:80']", "network_mode: host"),
    ("image: x\n    network_mode: 'service:db'\n    ports: ['80:80']", "another namespace"),
    ("image: x\n    network_mode: none", "network_mode: none"),
    ("image: x", "publishes no ports"),
    ("extends: {file: base.yaml, service: web}", "`extends`"),
    ("image: x\n    ports: ['53:53/udp']", "only UDP"),
    ("image: x\n    ports: ['8000-8010:8000-8010']", "x-meshctl.port"),
    ("image: x\n    ports: ['80']\n    deploy: {replicas: 3}", "3 replicas"),
    ("image: x\n    ports: ['80:80']\n    x-meshctl: {inject: false}", "inject is false"),
    ("image: x\n    ports: ['15080:15080']", "sidecars use"),
])
def test_services_left_alone_say_why(body, reason):
    text = f"services:\n  app:\n    {body}\n  db:\n    image: x\n"
    out, result = run(text)
    assert not result.injected
    assert reason in result.skipped[0].reason
    assert result.skipped[0].summary.startswith("app: left alone: ")
    assert out == compose_yaml.dump(*compose_yaml.load(text, "c"))


def test_only_selected_services():
    text = WEB + "  api:\n    image: acme/api\n    ports: ['9000:9000']\n"
    out, result = run(text, services=("api",))
    assert [i.service for i in result.injected] == ["api"]
    assert "web-mesh-proxy" not in services_of(out)
    with pytest.raises(UsageError, match="no service named 'nope'"):
        run(text, services=("nope",))


def test_sans_include_aliases_hostname_and_hosts():
    _, result = run("""\
services:
  web:
    image: nginx
    hostname: web.internal
    ports: ["80"]
    networks:
      front:
        aliases: [www, shop.local]
    x-meshctl: {hosts: [shop.example.test]}
""")
    assert {"web", "web.internal", "www", "shop.local", "shop.example.test", "localhost"} <= set(result.injected[0].sans)


def test_profiles_and_restart_policy_follow_the_app():
    out, _ = run(WEB.replace("image: nginx", "image: nginx\n    profiles: [debug]\n    restart: always"))
    for role in ("proxy", "metrics"):
        assert services_of(out)[f"web-mesh-{role}"]["profiles"] == ["debug"]
        assert services_of(out)[f"web-mesh-{role}"]["restart"] == "always"


def test_health_and_metrics_path_settings():
    out, result = run(WEB + "    x-meshctl: {health: /healthz, metrics_path: /metrics, timeout: 30s}\n")
    services = services_of(out)
    script = services["web-mesh-proxy"]["healthcheck"]["test"][3]
    assert f"/dev/tcp/127.0.0.1/{TLS_PORT}" in script and "GET /healthz" in script
    assert '[ "$$code" -ge 200 ] && [ "$$code" -lt 400 ]' in script
    assert services["web-mesh-metrics"]["environment"]["MESHCTL_APP_METRICS"] == "http://127.0.0.1:80/metrics"
    proxy_cfg = next(text for path, text in result.injected[0].files.items() if "proxy" in str(path))
    assert "timeout server 30000ms" in proxy_cfg


def test_ports_inherited_through_a_merge_key():
    text = """\
x-defaults: &defaults
  image: nginx
  ports:
    - "8080:80"
services:
  web:
    <<: *defaults
  other:
    <<: *defaults
    ports: ["9090:80"]
"""
    out, result = run(text)
    services = services_of(out)
    assert services["web"]["ports"][0] == f"8080:{TLS_PORT}"
    assert services["other"]["ports"][0] == f"9090:{TLS_PORT}"
    assert yaml.safe_load(out)["x-defaults"]["ports"] == ["8080:80"]    # the shared anchor is untouched
    assert yaml.safe_load(back(out)) == yaml.safe_load(text)
    assert run(out)[0] == out


def test_ports_shared_by_an_anchor_are_never_changed_in_place():
    text = """\
services:
  a:
    image: x
    ports: &p
      - "8080:80"
  b:
    image: x
    ports: *p
"""
    out, _ = run(text, services=("a",))
    services = services_of(out)
    assert services["a"]["ports"][0] == f"8080:{TLS_PORT}"
    assert services["b"]["ports"] == ["8080:80"]
    assert yaml.safe_load(back(out)) == yaml.safe_load(text)
    assert run(out, services=("a",))[0] == out


def test_comments_quotes_and_key_order_survive():
    text = """\
# top
name: demo   # project
services:
  web:
    image: 'nginx'   # quoted
    environment: {A: "1", B: yes}
    ports:
      - "8080:80"
    x-team: core
  # database
  db:
    image: postgres
volumes:
  data: {}
"""
    out, _ = run(text)
    for fragment in ("# top", "name: demo   # project", "image: 'nginx'   # quoted", 'environment: {A: "1", B: yes}',
                     "x-team: core", "# database", "volumes:\n  data: {}"):
        assert fragment in out
    assert back(out) == text


def test_user_settings_survive_uninject():
    text = WEB + "    x-meshctl:\n      protocol: http\n      health: /ok\n"
    out, _ = run(text)
    assert yaml.safe_load(out)["services"]["web"]["x-meshctl"]["protocol"] == "http"
    assert back(out) == text


def test_sidecar_name_collision_is_an_error():
    with pytest.raises(ConfigError, match="web-mesh-proxy"):
        run(WEB + "  web-mesh-proxy:\n    image: x\n")


@pytest.mark.parametrize("text, message, line", [
    ("services: [web]\n", "expected a mapping of service names", 1),
    ("name: x\nimage: nginx\n", "not a compose file", 1),
    ("- a\n- b\n", "expected a mapping with `services:`", 1),
    ("services:\n  web: nginx\n", "services.web: expected a mapping of settings", 2),
    ("services:\n  web:\n    image: x\n    ports: '80:80'\n", "services.web.ports: expected a list", 4),
    ("services:\n  web:\n    image: x\n    ports: [80]\n    x-meshctl: {protocol: udp}\n", "expected http or tcp", 5),
    ("services:\n  web:\n    image: x\n    ports: [80]\n    x-meshctl:\n      colour: red\n", "unknown setting", 6),
    ("services:\n  web:\n    image: x\n    ports: [80]\n    x-meshctl: {port: high}\n", "not a port number", 5),
])
def test_not_a_compose_file_names_the_line(text, message, line):
    with pytest.raises(ConfigError, match=message) as caught:
        run(text)
    assert caught.value.message.startswith(f"compose.yaml:{line}:")
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("text, line", [
    ("services:\n  web:\n    image: [x\n", 4),
    ("services:\n  web:\n\t image: x\n", 3),
    ("services:\n  web: {}\n  web: {}\n", 3),
    ("services: {}\n---\nservices: {}\n", 2),
])
def test_not_yaml_names_the_line(text, line):
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        compose_yaml.load(text, "compose.yaml")
    assert caught.value.message.startswith(f"compose.yaml:{line}:")


def test_empty_file_is_not_a_compose_file():
    with pytest.raises(ConfigError, match="empty"):
        run("")


def test_uninject_of_a_plain_file_changes_nothing():
    document, layout = compose_yaml.load(WEB, "c")
    result = uninject(document)
    assert not result.restored and not result.removed
    assert compose_yaml.dump(result.document, layout) == WEB


def test_layout_follows_the_file():
    out, _ = run("services:\n    web:\n        image: nginx\n        ports:\n        - '80:80'\n")
    assert "\n    web-mesh-proxy:\n        <<: *meshctl-proxy\n" in out
    assert "\n        -" in out and "\n          -" not in out


@pytest.mark.parametrize("value, text", [
    ("yes", '"yes"'), ("on", '"on"'), ("1000:1000", '"1000:1000"'), ("0.1.0", '"0.1.0"'), ("-f", '"-f"'),
    ("service:web", "service:web"), ("/etc/meshctl", "/etc/meshctl"), ("", '""'), ("a b", '"a b"'),
    (True, "true"), (3, "3"), ("$$code", '"$$code"'),
])
def test_generated_scalars_mean_the_same_to_any_yaml_parser(value, text):
    assert compose_yaml._scalar(value) == text
    assert yaml.safe_load(f"k: {text}")["k"] == value


def test_the_shortcut_refuses_anything_but_meshctls_own_blocks():
    out, _ = run(WEB)
    assert without_generated_blocks(WEB) is None
    stripped = without_generated_blocks(out)
    assert "mesh-proxy" not in stripped and "generated-by" not in stripped and "injected:" in stripped
    edited = out.replace("    network_mode: service:web\n", "    # edited by hand\n    network_mode: service:web\n", 1)
    assert without_generated_blocks(edited) is None
    # A hand-edited file still re-injects (the long way) to the same output.
    assert inject_text(edited, InjectOptions(), MACHINE, "c")[0] == out


def test_errors_in_an_injected_file_name_the_right_line():
    out, _ = run(WEB)
    broken = out.replace("      injected:", "      colour: red\n      injected:")
    line = broken.splitlines().index("      colour: red") + 1
    with pytest.raises(ConfigError) as caught:
        inject_text(broken, InjectOptions(), MACHINE, "compose.yaml")
    assert caught.value.message.startswith(f"compose.yaml:{line}: ")


def test_a_flow_style_services_mapping_becomes_a_block():
    out, _ = run('services: {web: {image: nginx, ports: ["8080:80"]}}\n')
    assert "__meshctl_generated" not in out
    assert services_of(out)["web-mesh-proxy"]["network_mode"] == "service:web"
    assert run(out)[0] == out


@pytest.mark.parametrize("text", [
    WEB,
    "# header\n\nservices:\n  web:\n    image: x\n    ports:   # published\n      - '80:80'   # http\n\n  # next\n  db:\n    image: y\n",
    "x-d: &d\n  image: x\n  ports: ['80:80']\nservices:\n  web:\n    <<: *d\n",
    "services:\n  web:\n    image: x\n    ports: &p\n    - 80\n    x-meshctl:\n      health: /h\n  other:\n    image: x\n    ports: *p\n",
    "---\nservices:\n    web:\n        image: x\n        ports: [{target: 80, published: '8080'}]\n",
    "services:\n  web:\n    x-meshctl:\n      health: /h   # mine\n    image: x\n    ports:\n      - 80\n",
    "x-d: &d\n  ports: ['80']\nservices:\n  a:\n    image: x\n  web:\n    <<: *d\n    x-meshctl:\n      hosts: [w]\n# end\n",
    "services:\n  web:\n    image: x\n    ports:\n      - name: web\n        target: 80\n        published: '8080'\n"
    "        app_protocol: http\n      - 9229:9229\n    # trailing\n\n# the end\n",
])
def test_the_cli_path_writes_into_the_text_and_takes_it_out_byte_for_byte(text):
    fast, result = inject_text(text, InjectOptions(), MACHINE, "c")
    assert result.injected
    tree, _ = run(text)
    assert yaml.safe_load(fast) == yaml.safe_load(tree)
    assert inject_text(fast, InjectOptions(), MACHINE, "c")[0] == fast
    back_text, undone = uninject_text(fast, "c")
    assert back_text == text and undone.removed


def test_new_port_items_go_where_the_file_puts_its_dashes():
    text = "services:\n  web:\n    image: x\n    ports:\n    - '80:80'\n    environment:\n      - A=1\n      - B=2\n"
    fast, _ = inject_text(text, InjectOptions(), MACHINE, "c")
    assert "    ports:\n    - '80:15443'\n    - \"127.0.0.1::15090\"\n" in fast
    assert uninject_text(fast, "c")[0] == text


def test_crlf_files_take_the_tree_path():
    text = WEB.replace("\n", "\r\n")
    fast, result = inject_text(text, InjectOptions(), MACHINE, "c")
    assert result.injected and "web-mesh-proxy" in fast
    assert yaml.safe_load(uninject_text(fast, "c")[0]) == yaml.safe_load(WEB)


# ---------------------------------------------------------------------------------------------
# Files injected when a tls sidecar served HTTPS in front of the proxy (HTTPS → tls → proxy → app)


def legacy() -> tuple[str, str]:
    """(a file, and what inject wrote when a tls sidecar served HTTPS), with this file's MACHINE."""
    return (LEGACY / "original.yaml").read_text(), (LEGACY / "injected-with-tls-sidecar.yaml").read_text()


def test_the_legacy_fixture_has_the_old_shape():
    _, old = legacy()
    services = services_of(old)
    assert {"web-mesh-tls", "api-mesh-tls"} <= set(services) and "db-mesh-tls" not in services
    assert services["web-mesh-tls"]["x-meshctl"] == {"sidecar-of": "web"}
    assert services["web-mesh-tls"]["depends_on"] == {"web-mesh-proxy": {"condition": "service_started"}}
    assert "tls" in yaml.safe_load(old)["x-meshctl"]


def test_a_legacy_file_uninjects_to_the_original_text():
    original, old = legacy()
    text, result = uninject_text(old, "compose.mesh.yaml")
    assert text == original
    assert result.restored == ("web", "api", "db")
    assert {"web-mesh-tls", "web-mesh-proxy", "web-mesh-metrics", "api-mesh-tls", "db-mesh-proxy"} <= set(result.removed)
    # The tree (what a hand-edited file takes) gets there too.
    assert back(old) == original


def test_re_injecting_a_legacy_file_converges_to_the_new_shape():
    original, old = legacy()
    fresh, _ = inject_text(original, InjectOptions(), MACHINE, "compose.yaml")
    again, result = inject_text(old, InjectOptions(), MACHINE, "compose.mesh.yaml")
    assert again == fresh                                   # as if injected afresh, byte for byte
    assert inject_text(again, InjectOptions(), MACHINE, "c")[0] == again
    assert "-mesh-tls" not in again and "meshctl-tls" not in again
    services = services_of(again)
    # The proxy takes over the TLS port, with the certificate in its own folder.
    assert services["web"]["ports"][0] == f"8080:{TLS_PORT}"
    assert services["web"]["x-meshctl"] == {"health": "/healthz", "injected": {"ports": ["8080:80"]}}
    assert services["web-mesh-proxy"]["x-meshctl"]["terminates-tls"] is True
    assert "/healthz" in services["web-mesh-proxy"]["healthcheck"]["test"][3]
    assert services["api-mesh-proxy"]["profiles"] == ["api"]
    web = next(item for item in result.injected if item.service == "web")
    assert web.cert_dir == PurePath("/state/compose/demo-1/web/proxy")
    # A running web-mesh-tls would still take HTTPS connections: the summary says how to remove it.
    retired = {item.service: item.retired for item in result.injected}
    assert retired == {"web": ("web-mesh-tls",), "api": ("api-mesh-tls",), "db": ()}
    assert "web-mesh-tls is gone" in web.summary and "--remove-orphans" in web.summary
    assert not any(item.retired for item in inject_text(again, InjectOptions(), MACHINE, "c")[1].injected)
    assert not any(item.retired for item in inject_text(original, InjectOptions(), MACHINE, "c")[1].injected)
    assert services["db-mesh-proxy"]["x-meshctl"] == {"sidecar-of": "db"}
    assert uninject_text(again, "c")[0] == original
    # And through the tree.
    assert run(old)[0] == run(original)[0]
    assert [item.retired for item in run(old)[1].injected] == [("web-mesh-tls",), ("api-mesh-tls",), ()]
    assert yaml.safe_load(run(old)[0]) == yaml.safe_load(fresh)


def test_a_hand_edited_legacy_file_takes_the_tree_path_to_the_same_shape():
    original, old = legacy()
    edited = old.replace("    network_mode: service:web\n", "    # edited by hand\n    network_mode: service:web\n", 1)
    assert without_generated_blocks(edited) is None
    again, _ = inject_text(edited, InjectOptions(), MACHINE, "c")
    assert yaml.safe_load(again) == yaml.safe_load(inject_text(original, InjectOptions(), MACHINE, "c")[0])
    assert yaml.safe_load(uninject_text(edited, "c")[0]) == yaml.safe_load(original)
