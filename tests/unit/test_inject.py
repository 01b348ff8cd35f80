"""meshctl inject / uninject on compose text: pure, no daemon, no files."""

from __future__ import annotations

import re

from dataclasses import replace
from pathlib import Path, PurePath

import pytest

from meshctl.config import ProxySettings, ServiceSpec
from meshctl.errors import ConfigError, UsageError
from meshctl.inject import InjectOptions, Machine, inject_text, uninject_text
from meshctl.inject import document as doc
from meshctl.inject.emit import scalar
from meshctl.sidecars import CERT_BUNDLE, METRICS_PORT, PROXY_PORT, READY_PATH, TLS_PORT, render_proxy, render_tcp_proxy

MACHINE = Machine(project="demo", images={"proxy": "meshctl-haproxy:t", "metrics": "meshctl-metrics:m"},
                  user="1000:1000", state_dir=PurePath("/state/compose/demo-1"))
LEGACY = Path(__file__).resolve().parent.parent / "compose_corpus" / "legacy"


def run(text: str, **options):
    result = inject_text(text, InjectOptions(**options), MACHINE, "compose.yaml")
    return result.text, result


def meaning(text: str) -> dict:
    """What the text means to Compose (YAML 1.2 scalars, merge keys resolved)."""
    return doc.value(doc.parse(text, "t").root)


def services_of(text: str) -> dict:
    return meaning(text)["services"]


def back(text: str) -> str:
    return uninject_text(text, "compose.yaml").text


WEB = """\
services:
  web:
    image: nginx
    ports:
      - "8080:80"
"""


def test_http_service_gets_a_pod_holder_a_proxy_serving_https_and_metrics():
    out, result = run(WEB)
    services = services_of(out)
    assert list(services) == ["web", "web-mesh-pod", "web-mesh-proxy", "web-mesh-metrics"]
    # The app joins the holder's namespace; its ports are parked (kept as written) for uninject.
    assert services["web"]["network_mode"] == "service:web-mesh-pod"
    assert "ports" not in services["web"] and services["web"]["x-meshctl-ports"] == ["8080:80"]
    holder = services["web-mesh-pod"]
    assert holder["ports"] == [f"8080:{TLS_PORT}", f"127.0.0.1::{METRICS_PORT}"]
    assert holder["networks"] == {"default": {"aliases": ["web"]}}     # other services still call `web`
    assert holder["entrypoint"][:2] == ["sh", "-c"] and "trap 'exit 0' TERM" in holder["entrypoint"][2]
    for role in ("pod", "proxy", "metrics"):
        generated = services[f"web-mesh-{role}"]
        assert generated["user"] == "1000:1000"
        assert generated["read_only"] is True and generated["cap_drop"] == ["ALL"]
        assert generated["security_opt"] == ["no-new-privileges:true"]
        assert "cap_add" not in generated and "privileged" not in generated
        assert not any("docker.sock" in str(v) for v in generated.get("volumes", []))
        assert generated["labels"]["meshctl.project"] == "demo"
        assert generated["labels"]["meshctl.service"] == "web"
        assert generated["labels"]["meshctl.role"] == role
        assert generated["labels"]["meshctl.source"] == "compose"
        assert generated["x-meshctl"]["sidecar-of"] == "web"
    for role in ("proxy", "metrics"):
        sidecar = services[f"web-mesh-{role}"]
        assert sidecar["network_mode"] == "service:web-mesh-pod"
        assert sidecar["tmpfs"] == ["/tmp"] and "ports" not in sidecar and "depends_on" not in sidecar
        assert sidecar["healthcheck"]["test"][:3] == ["CMD", "bash", "-c"]
    assert services["web-mesh-proxy"]["image"] == "meshctl-haproxy:t"
    assert services["web-mesh-metrics"]["image"] == "meshctl-metrics:m"
    assert services["web-mesh-proxy"]["volumes"] == [
        {"type": "bind", "source": "/state/compose/demo-1/web/proxy", "target": "/etc/meshctl", "read_only": True}]
    assert services["web-mesh-proxy"]["x-meshctl"] == {"sidecar-of": "web", "terminates-tls": True}
    [item] = result.injected
    assert item.protocol == "http" and item.app_port == 80 and item.roles == ("proxy", "metrics")
    folder = PurePath("/state/compose/demo-1/web/proxy")
    proxy_cfg = item.files[folder / "haproxy.cfg"]
    # Every file the config loads from its mount is written (the certificates are issued apart).
    loaded = set(re.findall(r"/etc/meshctl/([\w.-]+)", proxy_cfg)) - {"bundle.pem", "ca.pem"}
    assert {"faults.lua", "faults-live.map"} <= loaded and {folder / name for name in loaded} <= set(item.files)
    assert all(path.parent == folder for path in item.files)
    assert "server app 127.0.0.1:80" in proxy_cfg and f"bind :{PROXY_PORT}\n" in proxy_cfg
    assert f"bind :{TLS_PORT} ssl crt {CERT_BUNDLE} alpn http/1.1" in proxy_cfg
    assert item.cert_dir == PurePath("/state/compose/demo-1/web/proxy")
    assert set(item.sans) == {"localhost", "127.0.0.1", "::1", "web"}
    assert item.summary.startswith("web: HTTPS on host 8080 → proxy → app:80 (image nginx is a web server (nginx))")
    assert "x-meshctl: {protocol: tcp}" in item.summary
    assert result.roles == ("proxy", "metrics")


def test_the_proxy_healthcheck_tries_the_https_port_and_the_app_and_escapes_dollars():
    out, _ = run(WEB)
    script = services_of(out)["web-mesh-proxy"]["healthcheck"]["test"][3]
    assert f"/dev/tcp/127.0.0.1/{TLS_PORT}" in script and f"/dev/tcp/127.0.0.1/{PROXY_PORT}" in script
    assert "GET / HTTP/1.0" in script and READY_PATH not in script
    assert '[ "$$code" -lt 500 ]' in script
    assert "$code" not in script.replace("$$code", "")


def test_inject_twice_is_byte_identical_and_uninject_restores_the_text():
    out, _ = run(WEB)
    assert run(out)[0] == out
    assert back(out) == WEB
    # The app's own lines are edited in place, not rewritten.
    assert '    network_mode: service:web-mesh-pod\n    image: nginx\n    x-meshctl-ports:\n      - "8080:80"\n' in out


def test_a_top_level_block_holds_what_generated_services_share_with_anchors():
    out, _ = run(WEB)
    assert out.startswith('x-meshctl:\n  generated-by: "meshctl inject"\n')
    for role in ("pod", "proxy", "metrics"):
        assert f"  {role}: &meshctl-{role}\n" in out and f"    <<: *meshctl-{role}\n" in out
    assert "-mesh-tls" not in out and out.index("x-meshctl:") < out.index("services:")


@pytest.mark.parametrize("entry, expected", [
    ('"8080:80"', f'"8080:{TLS_PORT}"'),
    ("'8080:80'", f"'8080:{TLS_PORT}'"),
    ("8080:80", f"8080:{TLS_PORT}"),
    ('"80"', f'"{TLS_PORT}"'),
    ("80", f"{TLS_PORT}"),
    ('"127.0.0.1:8080:80"', f'"127.0.0.1:8080:{TLS_PORT}"'),
    ('"127.0.0.1::80"', f'"127.0.0.1::{TLS_PORT}"'),
    ('"[::1]:8080:80/tcp"', f'"[::1]:8080:{TLS_PORT}/tcp"'),
    ('"${WEB_PORT:-8080}:80"', f'"${{WEB_PORT:-8080}}:{TLS_PORT}"'),
])
def test_short_syntax_keeps_its_shape_and_quotes(entry, expected):
    out, _ = run(f"services:\n  web:\n    image: nginx\n    ports:\n      - {entry}\n")
    assert f"\n    ports:\n      - {expected}\n      - \"127.0.0.1::{METRICS_PORT}\"\n" in out
    assert back(out) == f"services:\n  web:\n    image: nginx\n    ports:\n      - {entry}\n"


def test_long_syntax_keeps_its_shape_and_other_ports_pass_through_as_written():
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
      - 53:53/udp
      - "9000-9001:9000-9001"
""")
    ports = services_of(out)["web-mesh-pod"]["ports"]
    assert ports[0] == {"target": TLS_PORT, "published": "8080", "host_ip": "127.0.0.1", "name": "http"}
    assert ports[1:4] == [{"target": 9229, "published": "9229"}, "53:53/udp", "9000-9001:9000-9001"]
    assert ports[4] == f"127.0.0.1::{METRICS_PORT}"
    assert '      - {target: 9229, published: "9229"}\n      - 53:53/udp\n      - "9000-9001:9000-9001"\n' in out


def test_keep_plain_keeps_the_app_port_and_gives_https_its_own():
    text = WEB.replace('- "8080:80"', '- "8080:80"\n    x-meshctl: {tls_port: 8443, metrics_port: 9090}')
    out, _ = run(text, keep_plain=True)
    assert services_of(out)["web-mesh-pod"]["ports"] == ["8080:80", f"8443:{TLS_PORT}", f"127.0.0.1:9090:{METRICS_PORT}"]
    assert back(out) == text


@pytest.mark.parametrize("service, why", [
    ("image: postgres:16\n    ports: ['5432:5432']", "PostgreSQL"),
    ("image: bitnami/postgresql\n    ports: ['15432:5432']", "PostgreSQL"),
    ("image: mysql:8\n    ports: ['3307:3306']", "MySQL"),
    ("image: redis:7-alpine\n    ports: ['6379']", "Redis"),
    ("image: mongo\n    ports: ['27017:27017']", "MongoDB"),
    ("image: acme/cache\n    ports: ['6380:6379']", "Redis"),
    ("image: acme/thing\n    ports: ['7000:7000']", "nothing says port 7000 speaks HTTP"),
    ("image: acme/grpc\n    ports: ['7000:7000']\n    x-meshctl: {protocol: tcp}", "x-meshctl.protocol"),
    ("image: acme/grpc\n    ports: [{target: 7000, app_protocol: grpc}]", "app_protocol: grpc"),
    ("image: itzg/minecraft-server\n    ports: ['25565:25565']", "Minecraft"),
])
def test_tcp_services_get_a_tcp_proxy_and_never_an_http_one(service, why):
    out, result = run(f"services:\n  db:\n    {service}\n")
    [item] = result.injected
    assert item.protocol == "tcp" and why in item.why
    services = services_of(out)
    assert set(services) == {"db", "db-mesh-pod", "db-mesh-proxy", "db-mesh-metrics"}
    assert services["db-mesh-proxy"]["x-meshctl"] == {"sidecar-of": "db"}      # no HTTPS here
    assert item.cert_dir is None and "TCP proxy on" in item.summary and "{protocol: http}" in item.summary
    config = next(iter(item.files.values()))
    assert "mode tcp" in config and "mode http\n    bind :" not in config
    assert f"server app 127.0.0.1:{item.app_port}" in config
    first = services["db-mesh-pod"]["ports"][0]
    assert str(first["target"] if isinstance(first, dict) else first).endswith(str(PROXY_PORT))
    assert "15021" in services["db-mesh-metrics"]["environment"]["MESHCTL_APP_METRICS"]


def test_tcp_skip_leaves_tcp_services_alone_with_a_reason():
    text = "services:\n  db:\n    image: postgres\n    ports: ['5432:5432']\n"
    out, result = run(text, tcp="skip")
    assert not result.injected and out == text
    assert "PostgreSQL" in result.skipped[0].reason and "--tcp skip" in result.skipped[0].reason


def test_protocol_http_overrides_detection():
    _, result = run("services:\n  db:\n    image: redis\n    ports: ['6379:6379']\n    x-meshctl: {protocol: http}\n")
    assert result.injected[0].protocol == "http"


def test_the_http_port_of_several_is_the_one_wrapped_and_udp_keeps_its_mapping():
    out, result = run("""\
services:
  pihole:
    image: pihole/pihole:latest
    ports:
      - "53:53/tcp"
      - "53:53/udp"
      - "8080:80/tcp"
      - "8443:443/tcp"
  dns:
    image: acme/dns
    ports: ["5054:5054/tcp", "5054:5054/udp"]
""")
    items = {i.service: i for i in result.injected}
    assert (items["pihole"].protocol, items["pihole"].app_port) == ("http", 80)
    assert services_of(out)["pihole-mesh-pod"]["ports"][:4] == ["53:53/tcp", "53:53/udp", f"8080:{TLS_PORT}/tcp", "8443:443/tcp"]
    assert "53:53, 53:53/udp, 8443:443 published as before" in items["pihole"].summary
    assert (items["dns"].protocol, items["dns"].app_port) == ("tcp", 5054)
    assert services_of(out)["dns-mesh-pod"]["ports"][:2] == [f"5054:{PROXY_PORT}/tcp", "5054:5054/udp"]


@pytest.mark.parametrize("body, reason", [
    ("image: x\n    network_mode: host\n    ports: ['80:80']", "network_mode: host"),
    ("image: x\n    network_mode: 'service:db'\n    ports: ['80:80']", "another namespace"),
    ("image: x\n    network_mode: none", "network_mode: none"),
    ("image: x", "publishes no ports"),
    ("image: x\n    expose: ['80']", "publishes no ports"),
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
    assert out == text


def test_a_service_extending_one_with_networks_is_left_alone():
    text = ("services:\n  base:\n    image: nginx\n    networks: [front]\n  web:\n    extends: base\n"
            "    ports: ['80:80']\n  api:\n    extends: {service: base}\n    ports: ['81:80']\n"
            "  plain:\n    extends: {service: other}\n    ports: ['82:80']\n  other:\n    image: nginx\n"
            "networks:\n  front:\n")
    _, result = run(text)
    reasons = {s.service: s.reason for s in result.skipped}
    assert "extends base, which sets networks" in reasons["web"] and "extends base" in reasons["api"]
    assert [i.service for i in result.injected] == ["plain"]
    assert "image nginx is a web server" in result.injected[0].why        # the evidence of what it extends


def test_a_service_others_join_is_left_alone():
    _, result = run("services:\n  web:\n    image: nginx\n    ports: ['80:80']\n  debug:\n    image: x\n"
                    "    network_mode: service:web\n")
    assert result.skipped[0].reason == "debug joins its namespace (network_mode: service:web)"


def test_a_service_others_merge_is_left_alone():
    text = "services:\n  web: &web\n    image: nginx\n    ports: ['80:80']\n  web2:\n    <<: *web\n    ports: ['81:80']\n"
    out, result = run(text)
    assert [s.service for s in result.skipped] == ["web"] and "web2 merges it" in result.skipped[0].reason
    assert [i.service for i in result.injected] == ["web2"]
    assert back(out) == text


def test_only_selected_services():
    text = WEB + "  api:\n    image: acme/api\n    ports: ['9000:9000']\n"
    out, result = run(text, services=("api",))
    assert [i.service for i in result.injected] == ["api"]
    assert "web-mesh-proxy" not in services_of(out)
    with pytest.raises(UsageError, match="no service named 'nope'"):
        run(text, services=("nope",))


def test_the_holder_takes_what_a_joined_container_may_not_have():
    text = """\
services:
  web:
    image: nginx
    container_name: shop
    hostname: web.internal
    ports: ["80"]
    expose: ["81"]
    dns: [1.1.1.1]
    extra_hosts: ["api:10.0.0.2"]
    networks:
      front:
        aliases: [www, shop.local]
        ipv4_address: 172.20.0.5
      back:
    x-meshctl: {hosts: [shop.example.test]}
"""
    out, result = run(text)
    services = services_of(out)
    app, holder = services["web"], services["web-mesh-pod"]
    for key in ("ports", "expose", "hostname", "dns", "extra_hosts", "networks"):
        assert key not in app and f"x-meshctl-{key}" in app
    assert app["container_name"] == "shop"
    assert holder["hostname"] == "web.internal" and holder["expose"] == ["81"] and holder["dns"] == ["1.1.1.1"]
    assert holder["extra_hosts"] == ["api:10.0.0.2"]
    assert holder["networks"] == {"front": {"aliases": ["web", "shop", "www", "shop.local"], "ipv4_address": "172.20.0.5"},
                                  "back": {"aliases": ["web", "shop"]}}
    assert {"web", "web.internal", "www", "shop.local", "shop", "shop.example.test", "localhost"} <= set(result.injected[0].sans)
    assert back(out) == text


def test_profiles_and_restart_policy_follow_the_app():
    out, _ = run(WEB.replace("image: nginx", "image: nginx\n    profiles: [debug]\n    restart: always"))
    for role in ("pod", "proxy", "metrics"):
        assert services_of(out)[f"web-mesh-{role}"]["profiles"] == ["debug"]
        assert services_of(out)[f"web-mesh-{role}"]["restart"] == "always"


def test_health_and_metrics_path_settings():
    out, result = run(WEB + "    x-meshctl: {health: /healthz, metrics_path: /metrics, timeout: 30s}\n")
    services = services_of(out)
    script = services["web-mesh-proxy"]["healthcheck"]["test"][3]
    assert f"/dev/tcp/127.0.0.1/{TLS_PORT}" in script and "GET /healthz" in script
    assert '[ "$$code" -ge 200 ] && [ "$$code" -lt 400 ]' in script
    assert services["web-mesh-metrics"]["environment"]["MESHCTL_APP_METRICS"] == "http://127.0.0.1:80/metrics"
    assert "timeout server 30000ms" in next(iter(result.injected[0].files.values()))


def test_keys_inherited_through_a_merge_key_are_overridden_and_the_anchor_never_changes():
    text = """\
x-defaults: &defaults
  image: nginx
  ports:
    - "8080:80"
  networks: [front]
services:
  web:
    <<: *defaults
  other:
    <<: *defaults
    ports: ["9090:80"]
networks:
  front:
"""
    out, _ = run(text)
    services = services_of(out)
    assert services["web"]["ports"] == [] and services["web"]["networks"] == {}
    assert services["web-mesh-pod"]["ports"][0] == f"8080:{TLS_PORT}"
    assert services["web-mesh-pod"]["networks"] == {"front": {"aliases": ["web"]}}
    assert services["other"]["ports"] == [] and services["other"]["x-meshctl-ports"] == ["9090:80"]
    assert services["other-mesh-pod"]["ports"][0] == f"9090:{TLS_PORT}"
    assert meaning(out)["x-defaults"]["ports"] == ["8080:80"]
    assert back(out) == text and run(out)[0] == out


def test_ports_shared_by_an_anchor_are_never_changed_in_place():
    text = "services:\n  a:\n    image: x\n    ports: &p\n      - \"8080:80\"\n  b:\n    image: x\n    ports: *p\n"
    out, _ = run(text, services=("a",))
    services = services_of(out)
    assert services["a-mesh-pod"]["ports"][0] == f"8080:{TLS_PORT}"
    assert services["b"]["ports"] == ["8080:80"]
    assert back(out) == text and run(out, services=("a",))[0] == out
    both, _ = run(text)
    assert services_of(both)["b-mesh-pod"]["ports"][0] == f"8080:{TLS_PORT}"
    assert "    x-meshctl-ports: *p\n" in both and back(both) == text


def test_comments_quotes_and_key_order_survive():
    text = """\
# top
name: demo   # project
services:
  web:
    image: 'nginx'   # quoted
    environment: {A: "1", B: yes}
    ports:
      # the web port
      - "8080:80"
      - 9229:9229   # debugger
    x-team: core
    # what follows is the database
  # database
  db:
    image: postgres
volumes:
  data: {}
"""
    out, _ = run(text)
    assert "      # the web port\n      - \"8080:80\"\n      - 9229:9229   # debugger\n" in out
    # The generated services follow web's own trailing comment, before db's.
    assert out.index("# what follows is the database") < out.index("web-mesh-pod:") < out.index("  # database")
    assert "      - 9229:9229\n" in out     # passed through to the holder unquoted, as written
    assert back(out) == text


def test_user_settings_survive_uninject():
    text = WEB + "    x-meshctl:\n      protocol: http\n      health: /ok\n"
    out, _ = run(text)
    assert services_of(out)["web"]["x-meshctl"] == {"protocol": "http", "health": "/ok"}
    assert back(out) == text


def test_generated_name_collision_is_an_error():
    with pytest.raises(ConfigError, match="web-mesh-pod"):
        run(WEB + "  web-mesh-pod:\n    image: x\n")


@pytest.mark.parametrize("text, message, line", [
    ("services: [web]\n", "expected a mapping of service names", 1),
    ("name: x\nimage: nginx\n", "not a compose file", 1),
    ("- a\n- b\n", "expected a mapping with `services:`", 1),
    ("services:\n  web: nginx\n", "services.web: expected a mapping of settings", 2),
    ("services:\n  web:\n    image: x\n    ports: '80:80'\n", "services.web.ports: expected a list", 4),
    ("services:\n  web:\n    image: x\n    ports: [true]\n", r"services.web.ports\[0\]: expected a port", 4),
    ("services:\n  web:\n    image: x\n    ports: [80]\n    x-meshctl: {protocol: udp}\n", "expected http or tcp", 5),
    ("services:\n  web:\n    image: x\n    ports: [80]\n    x-meshctl:\n      colour: red\n", "unknown setting", 6),
    ("services:\n  web:\n    image: x\n    ports: [80]\n    x-meshctl: {port: high}\n", "not a port number", 5),
    ("services: {web: {image: x, ports: ['80:80']}}\n", "flow style", 1),
    ("x-meshctl: {mine: true}\nservices:\n  web: {image: x}\n", "meshctl inject's own", 1),
    ("services:\n  web:\n    image: x\n    x-meshctl-ports: [80]\n", "a key meshctl inject writes", 4),
])
def test_bad_input_names_the_line(text, message, line):
    with pytest.raises(ConfigError, match=message) as caught:
        run(text)
    assert caught.value.message.startswith(f"compose.yaml:{line}:")
    assert caught.value.exit_code == 2 and caught.value.hint


@pytest.mark.parametrize("text, line", [
    ("services:\n  web:\n    image: [x\n", 4),
    ("services:\n  web:\n\t image: x\n", 3),
    ("services: {}\n---\nservices: {}\n", 2),
])
def test_not_yaml_names_the_line(text, line):
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        run(text)
    assert caught.value.message.startswith(f"compose.yaml:{line}:")


def test_empty_file_is_not_a_compose_file():
    with pytest.raises(ConfigError, match="empty"):
        run("")


def test_no_services_injects_nothing():
    out, result = run("services: {}\n")
    assert out == "services: {}\n" and not result.injected and not result.skipped


def test_uninject_of_a_plain_file_changes_nothing():
    result = uninject_text(WEB, "c")
    assert not result.restored and not result.removed and result.text == WEB


def test_layout_follows_the_file():
    out, _ = run("services:\n    web:\n        image: nginx\n        ports:\n        - '80:80'\n")
    assert "\n    web-mesh-proxy:\n        <<: *meshctl-proxy\n" in out
    assert "\n        ports:\n        - '80:15443'\n" in out


@pytest.mark.parametrize("value, text", [
    ("yes", '"yes"'), ("on", '"on"'), ("1000:1000", '"1000:1000"'), ("0.1.0", '"0.1.0"'), ("-f", '"-f"'),
    ("service:web", "service:web"), ("/etc/meshctl", "/etc/meshctl"), ("", '""'), ("a b", '"a b"'),
    (True, "true"), (3, "3"), ("$$code", '"$$code"'),
])
def test_generated_scalars_mean_the_same_to_any_yaml_parser(value, text):
    import yaml

    assert scalar(value) == text
    assert yaml.safe_load(f"k: {text}")["k"] == value
    assert meaning(f"k: {text}")["k"] == value


def test_errors_in_an_injected_file_name_the_right_line():
    out, _ = run(WEB + "    x-meshctl:\n      health: /h\n")
    broken = out.replace("      health: /h", "      health: /h\n      colour: red")
    line = broken.splitlines().index("      colour: red") + 1
    with pytest.raises(ConfigError) as caught:
        run(broken)
    assert caught.value.message.startswith(f"compose.yaml:{line}: ")


@pytest.mark.parametrize("text", [
    WEB,
    WEB.replace("\n", "\r\n"),
    WEB.rstrip("\n"),
    WEB + "\n  \n    ",
    WEB + "   \n# the end",
    "\ufeff" + WEB,
    "%YAML 1.2\n---\n" + WEB + "...\n# after the document\n",
    "# header\n\nservices:\n  web:\n    image: x\n    ports:   # published\n      - '80:80'   # http\n\n  # next\n  db:\n    image: y\n",
    "x-d: &d\n  image: x\n  ports: ['80:80']\nservices:\n  web:\n    <<: *d\n",
    "services:\n  web:\n    image: x\n    ports: &p\n    - 80\n    x-meshctl:\n      health: /h\n  other:\n    image: x\n    ports: *p\n",
    "---\nservices:\n    web:\n        image: x\n        ports: [{target: 80, published: '8080'}]\n",
    "services:\n  web:\n    x-meshctl:\n      health: /h   # mine\n    image: x\n    ports:\n      - 80\n",
    "x-d: &d\n  ports: ['80']\nservices:\n  a:\n    image: x\n  web:\n    <<: *d\n    x-meshctl:\n      hosts: [w]\n# end\n",
    "services:\n  web:\n    image: x\n    ports:\n      - name: web\n        target: 80\n        published: '8080'\n"
    "        app_protocol: http\n      - 9229:9229\n    # trailing\n\n# the end\n",
    "services:\n  web: {image: x, \"ports\": ['80:80']}\n",
    "services:\n  web:\n    image: x\n    command: |\n      run\n\n    ports: [80]\n",
    "services:\n  web:\n    image: x\n    ports: [80]\n    command: |\n      run\n\n\n",
    "services:\n  web:\n    image: é\n    ports: [80]\n  café:\n    image: x\n    ports: [8080]",
])
def test_byte_exact_whatever_the_line_ends_final_newline_and_trailing_space(text):
    out, result = run(text)
    assert result.injected
    assert run(out)[0] == out
    assert back(out) == text
    if "\r\n" in text:
        assert "\n" not in out.replace("\r\n", "")
    meaning(out)      # still one valid YAML document


# ---------------------------------------------------------------------------------------------
# Files injected by earlier versions: ports rewired on the app, originals under x-meshctl.injected,
# sidecars in the app's own namespace (and, before that, a tls sidecar in front of the proxy)


def legacy() -> tuple[str, str]:
    return (LEGACY / "original.yaml").read_text(), (LEGACY / "injected-with-tls-sidecar.yaml").read_text()


def test_the_legacy_fixture_has_the_old_shape():
    _, old = legacy()
    services = services_of(old)
    assert {"web-mesh-tls", "api-mesh-tls"} <= set(services) and "web-mesh-pod" not in services
    assert services["web"]["x-meshctl"]["injected"]["ports"] == ["8080:80"]


def test_a_legacy_file_uninjects_to_the_original_text():
    original, old = legacy()
    result = uninject_text(old, "compose.mesh.yaml")
    assert result.text == original
    assert result.restored == ("web", "api", "db")
    assert {"web-mesh-tls", "web-mesh-proxy", "web-mesh-metrics", "api-mesh-tls", "db-mesh-proxy"} <= set(result.removed)


def test_re_injecting_a_legacy_file_converges_to_the_new_shape():
    original, old = legacy()
    fresh, _ = run(original)
    again, result = run(old)
    assert again == fresh
    assert "-mesh-tls" not in again and "meshctl-tls" not in again
    services = services_of(again)
    assert services["web-mesh-pod"]["ports"][0] == f"8080:{TLS_PORT}"
    assert services["web-mesh-proxy"]["x-meshctl"]["terminates-tls"] is True
    web = next(item for item in result.injected if item.service == "web")
    assert {item.service: item.retired for item in result.injected} == {
        "web": ("web-mesh-tls",), "api": ("api-mesh-tls",), "db": ()}
    assert "web-mesh-tls is gone" in web.summary and "--remove-orphans" in web.summary
    assert web.retired_dirs == (PurePath("/state/compose/demo-1/web/tls"),)
    assert not any(item.retired for item in run(again)[1].injected)
    assert back(again) == original


def test_links_to_a_wrapped_service_reach_its_holder_and_come_back():
    text = ("services:\n  web:\n    image: nginx\n    ports: ['80:80']\n    links: [api]\n"
            "  api:\n    image: nginx\n    ports: ['8081:80']\n"
            "  client:\n    image: x\n    links:\n      - web\n      - \"web:www\"\n      - db\n  db:\n    image: x\n")
    out, _ = run(text)
    services = services_of(out)
    # A link names a container, and the app's has no address of its own on the network any more.
    assert services["client"]["links"] == ["web-mesh-pod:web", "web-mesh-pod:www", "db"]
    assert services["web-mesh-pod"]["links"] == ["api-mesh-pod:api"]
    assert services["web"]["x-meshctl-links"] == ["api"]
    assert back(out) == text and run(out)[0] == out


@pytest.mark.parametrize("name", ["original", "19-comments-quotes-flow", "04-rails-sidekiq-anchors"])
def test_a_file_injected_before_pods_uninjects_and_re_injects_to_the_current_shape(name):
    old = (LEGACY / "before-pods" / f"{name}.yaml").read_text()
    source = LEGACY / "original.yaml" if name == "original" else LEGACY.parent / f"{name}.yaml"
    original = source.read_text()
    assert "x-meshctl-ports" not in old and "injected:" in old        # the old shape
    assert back(old) == original
    assert run(old)[0] == run(original)[0]
    assert not any(item.retired for item in run(old)[1].injected)


def test_injects_tcp_proxy_is_ups_in_the_clear_with_keepalive_and_a_health_endpoint():
    """One TCP proxy template for up and inject: inject's is up's (health-checked server, readiness
    gate, connections logged to the metrics sidecar), with no TLS and no mesh."""
    spec = ServiceSpec(name="db", port=5432, proxy=ProxySettings())
    injected = render_tcp_proxy("demo", spec, "port 5432 is PostgreSQL")
    up = render_proxy("demo", replace(spec, protocol="tcp"))
    for config in (injected, up):
        assert "option clitcpka\n    option srvtcpka\n" in config
        assert "server app 127.0.0.1:5432 check" in config and "tcp-request connection reject if { nbsrv(app) eq 0 }" in config
        assert f"monitor-uri {READY_PATH}" in config.split("frontend stats")[1]
        assert "log ring@meshctl-events" in config and "$" not in config
    assert "(port 5432 is PostgreSQL)" in injected and "ssl" not in injected and "mesh_in" not in injected
    assert f"bind :{TLS_PORT} ssl crt {CERT_BUNDLE}\n" in up
