from pathlib import Path

import pytest

from meshctl.sidecars import roles_of
from meshctl.config import load_project, parse_duration, parse_project
from meshctl.errors import ConfigError


def write_app(folder: Path, expose: str = "EXPOSE 8080") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(f"FROM debian:bookworm-slim\n{expose}\n")
    return folder


def parse(tmp_path: Path, text: str):
    write_app(tmp_path)
    source = tmp_path / "mesh.yaml"
    source.write_text(text)
    return parse_project(text, source=source, root=tmp_path)


def test_full_example_parses(tmp_path):
    project = parse(tmp_path, """\
name: shop
services:
  web:
    build: .
    port: 8081
    health: /healthz
    env: {GREETING: hi, DEBUG: true, N: 3}
    metrics_path: /metrics
    sidecars:
      proxy: {timeout: 15s, retries: 3}
      tls: {hosts: [shop.local]}
      metrics: {}
    ports: {https: 9443, http: 9080, metrics: 9091}
""")
    assert project.name == "shop"
    [web] = project.services
    assert web.port == 8081 and web.health == "/healthz"
    assert dict(web.env) == {"GREETING": "hi", "DEBUG": "true", "N": "3"}
    assert web.proxy.timeout == 15.0 and web.proxy.retries == 3
    assert web.tls.hosts == ("shop.local",)
    assert web.host_ports == {"https": 9443, "http": 9080, "metrics": 9091}
    assert roles_of(web) == ("metrics", "proxy")   # in start order; the proxy serves HTTPS: no tls container


def test_defaults_first_service_gets_fixed_ports_later_ones_free(tmp_path):
    write_app(tmp_path / "b")
    project = parse(tmp_path, "services:\n  a: {build: .}\n  b: {build: ./b, port: 9000}\n")
    a, b = project.services
    assert project.name == tmp_path.name.lower().replace("_", "_")
    assert a.port == 8080  # from EXPOSE
    assert a.host_ports == {"https": 8443, "http": 8080, "metrics": 9090}
    assert b.host_ports == {"https": 0, "http": 0, "metrics": 0}


def test_dropping_a_sidecar_drops_its_port(tmp_path):
    project = parse(tmp_path, "services:\n  a: {build: ., sidecars: {tls: false, metrics: false}}\n")
    [a] = project.services
    assert roles_of(a) == ("proxy",)
    assert a.host_ports == {"http": 8080}


@pytest.mark.parametrize("text, where, words", [
    ("services:\n  a:\n    build: .\n   port: 1\n", "mesh.yaml:4:4", "not valid YAML"),
    ("services:\n  a:\n    build: .\n    port: 99999\n", "mesh.yaml:4: services.a.port", "not a port"),
    ("services:\n  a:\n    build: .\n    sidecars:\n      tracing: {}\n", "mesh.yaml:5: services.a.sidecars.tracing",
     "sidecar 'tracing' needs exactly one of `image` or `build`"),
    ("services:\n  a:\n    build: .\n    sidecars:\n      app: {image: x}\n", "mesh.yaml:5: services.a.sidecars.app",
     "a name meshctl uses in every pod"),
    ("services:\n  a:\n    build: .\n    sidecars:\n      c: {image: x, build: .}\n", "mesh.yaml:5: services.a.sidecars.c",
     "exactly one of `image` or `build`"),
    ("services:\n  a:\n    build: .\n    sidecars:\n      c:\n        image: x\n        ready: {grpc: 9}\n",
     "mesh.yaml:7: services.a.sidecars.c.ready.grpc", "unknown ready kind 'grpc'"),
    ("services:\n  a:\n    build: .\n    sidecars:\n      c:\n        image: x\n        ready: {http: /r}\n",
     "services.a.sidecars.c.ready.port", "missing"),
    ("services:\n  a:\n    build: .\n    sidecars:\n      c:\n        image: x\n        ready: {tcp: 1, exec: [a]}\n",
     "mesh.yaml:7: services.a.sidecars.c.ready", "exactly one of tcp, http or exec"),
    ("services:\n  a:\n    build: .\n    sidecars:\n      c:\n        image: x\n        privileged: true\n",
     "mesh.yaml:7: services.a.sidecars.c.privileged", "unknown field"),
    ("services:\n  a:\n    build: .\n    sidecars:\n      c:\n        build: ./nowhere\n",
     "mesh.yaml:6: services.a.sidecars.c.build", "no Dockerfile"),
    ("services:\n  a:\n    build: .\n    prot: 80\n", "mesh.yaml:4: services.a.prot", "unknown field"),
    ("services:\n  a:\n    image: x\n", "services.a.port", "missing"),
    ("services:\n  a:\n    build: .\n    image: x\n", "services.a", "exactly one"),
    ("services:\n  a:\n    build: ./nowhere\n", "mesh.yaml:3: services.a.build", "no Dockerfile"),
    ("services:\n  a:\n    build: .\n    sidecars: {proxy: {timeout: soon}}\n", "services.a.sidecars.proxy.timeout",
     "not a duration"),
    ("services:\n  a:\n    build: .\n    port: 15080\n", "services.a.port", "sidecars use"),
    ("services:\n  a: {build: ., ports: {http: 7000}}\n  b: {build: ., ports: {http: 7000}}\n",
     "mesh.yaml:3: services.b.ports.http", "also used by services.a.ports.http"),
    ("name: Bad Name\nservices:\n  a: {build: .}\n", "mesh.yaml:1: name", "not valid"),
    ("[1, 2]\n", "mesh.yaml", "expected a mapping"),
    ("", "mesh.yaml", "empty"),
])
def test_errors_name_file_line_and_field(tmp_path, text, where, words):
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, text)
    assert where in info.value.message
    assert words in info.value.message
    assert info.value.exit_code == 2


def test_unknown_sidecar_hint_suggests_the_close_name(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, "services:\n  a:\n    build: .\n    sidecars: {proxxy: {}}\n")
    assert "did you mean 'proxy'" in info.value.hint


def test_folder_with_only_a_dockerfile_uses_expose(tmp_path):
    write_app(tmp_path / "My App", "EXPOSE 3000/tcp")
    project = load_project(tmp_path / "My App")
    assert project.name == "my-app"
    [service] = project.services
    assert service.port == 3000 and service.build == (tmp_path / "My App").resolve()


def test_dockerfile_without_expose_says_what_to_do(tmp_path):
    write_app(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    assert "EXPOSE" in info.value.message and "--port" in info.value.hint


def test_image_and_port_need_no_file(tmp_path):
    project = load_project(tmp_path, image="registry.local/team/api:1.2", port=9000)
    [service] = project.services
    assert service.name == "api" and service.image == "registry.local/team/api:1.2" and service.port == 9000
    with pytest.raises(ConfigError):
        load_project(tmp_path, image="api:1")


@pytest.mark.parametrize("value, seconds", [("15s", 15), ("500ms", 0.5), ("2m", 120), (3, 3), ("1.5s", 1.5)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", -1, True, "5 parsecs"])
def test_not_durations(value):
    assert parse_duration(value) is None


def test_one_image_reference_parser_for_pull_names_and_inject():
    from meshctl.model import split_image_ref
    assert split_image_ref("redis") == ("redis", None, None)
    assert split_image_ref("redis:7") == ("redis", "7", None)
    # a registry's port is not a tag
    assert split_image_ref("localhost:5000/team/api") == ("localhost:5000/team/api", None, None)
    assert split_image_ref("localhost:5000/team/api:1.2") == ("localhost:5000/team/api", "1.2", None)
    assert split_image_ref("ghcr.io/x/y:1@sha256:ab") == ("ghcr.io/x/y", "1", "sha256:ab")


def test_a_yaml_syntax_error_points_at_line_and_column(tmp_path):
    source = tmp_path / "mesh.yaml"
    with pytest.raises(ConfigError) as caught:
        parse_project("services:\n  web: {port: [8080\n", source=source)
    assert caught.value.message.startswith(f"{source}:3:1: not valid YAML")


def test_user_sidecars_parse_with_least_privilege_unless_asked(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    project = parse(tmp_path, """\
services:
  web:
    build: .
    sidecars:
      proxy: {timeout: 5s}
      cache: {image: redis:7, ready: {tcp: 6379}}
      notes:
        build: ./notes
        command: [python3, notes.py]
        env: {MODE: fast}
        ready: {http: /ready, port: 9000}
        user: "0"
        read_only: false
        cap_add: [net_bind_service]
      probe: {image: x, ready: {exec: "test -f /tmp/up"}}
""")
    [web] = project.services
    cache, notes, probe = web.user_sidecars
    assert (cache.name, cache.image, cache.build, cache.ready.tcp) == ("cache", "redis:7", None, 6379)
    assert (cache.user, cache.read_only, cache.cap_add) == (None, True, ())
    assert notes.build == (tmp_path / "notes").resolve() and notes.command == ("python3", "notes.py")
    assert dict(notes.env) == {"MODE": "fast"} and (notes.ready.http, notes.ready.port) == ("/ready", 9000)
    assert (notes.user, notes.read_only, notes.cap_add) == ("0", False, ("NET_BIND_SERVICE",))
    assert probe.ready.exec == ("sh", "-c", "test -f /tmp/up")
    assert web.proxy.timeout == 5.0
    assert roles_of(web) == ("metrics", "proxy", "cache", "notes", "probe")
