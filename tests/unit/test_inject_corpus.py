"""Every file of tests/compose_corpus/ and of tests/compose_corpus/awesome/ (docker/awesome-compose):
the injected file passes `docker compose config` (Compose v2, through compose_cli, which never uses a
Compose that always exits 0), means what inject promises (pods, sidecars, hardening, ports), injects
again to the same bytes, and uninjects to the original bytes, also with CRLF line ends, without a
final newline, with trailing blank lines or a trailing comment, and with a byte-order mark. The awesome files also pin the port and protocol chosen
for every service. No daemon needed: `config` only reads files."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePath

import pytest

from meshctl.engine.compose import ComposeCli
from meshctl.errors import ConfigError
from meshctl.inject import InjectOptions, Machine, inject_text, uninject_text
from meshctl.sidecars import METRICS_PORT, PROXY_PORT, TLS_PORT

CORPUS = Path(__file__).resolve().parent.parent / "compose_corpus"
OWN = sorted(CORPUS.glob("*.yaml"))
AWESOME = sorted((CORPUS / "awesome").glob("*.yaml"))
FILES = OWN + AWESOME
MACHINE = Machine(project="corpus", images={"proxy": "meshctl-haproxy:test", "metrics": "meshctl-metrics:test"},
                  user="1000:1000", state_dir=PurePath("/var/lib/meshctl-test/compose/corpus-0"))

# service → (protocol, container port wrapped), for every service inject wraps in awesome-compose.
# HTTP only on evidence (an HTTP healthcheck, a known web image or port); TCP otherwise.
AWESOME_CHOICES = {
    "angular": {"web": ("http", 4200)},
    "apache-php": {"web": ("http", 80)},
    "aspnet-mssql": {"web": ("http", 80)},
    "django": {"web": ("http", 8000)},
    "elasticsearch-logstash-kibana": {"elasticsearch": ("http", 9200), "logstash": ("http", 9600),
                                      "kibana": ("http", 5601)},
    "fastapi": {"api": ("http", 8000)},
    "flask": {"web": ("http", 8000)},
    "flask-redis": {"redis": ("tcp", 6379), "web": ("http", 8000)},
    "gitea-postgres": {"gitea": ("http", 3000)},
    "minecraft": {"minecraft": ("tcp", 25565)},
    "nextcloud-postgres": {"nc": ("http", 80)},
    "nextcloud-redis-mariadb": {"nc": ("http", 80)},
    "nginx-aspnet-mysql": {"proxy": ("http", 80)},
    "nginx-flask-mongo": {"web": ("http", 80)},
    "nginx-flask-mysql": {"backend": ("http", 8000), "proxy": ("http", 80)},
    "nginx-golang": {"proxy": ("http", 80)},
    "nginx-golang-mysql": {"proxy": ("http", 80)},
    "nginx-golang-postgres": {"proxy": ("http", 80)},
    "nginx-nodejs-redis": {"redis": ("tcp", 6379), "web1": ("http", 5000), "web2": ("http", 5000),
                           "nginx": ("http", 80)},
    "nginx-wsgi-flask": {"nginx-proxy": ("http", 80), "flask-app": ("http", 8000)},
    # Pi-hole: its web UI (80) gets HTTPS; DNS (53), DHCP (67/udp) and its own TLS (443) pass by.
    "pihole-cloudflared-DoH": {"cloudflared": ("tcp", 5054), "pihole": ("http", 80)},
    "plex": {},
    "portainer": {"portainer": ("http", 9000)},
    "postgresql-pgadmin": {"postgres": ("tcp", 5432), "pgadmin": ("http", 80)},
    "prometheus-grafana": {"prometheus": ("http", 9090), "grafana": ("http", 3000)},
    "react-express-mongodb": {"frontend": ("http", 3000)},
    "react-express-mysql": {"backend": ("http", 80), "frontend": ("http", 3000)},
    "react-java-mysql": {"frontend": ("http", 3000)},
    "react-nginx": {"frontend": ("http", 80)},
    "react-rust-postgres": {"frontend": ("http", 3000), "db": ("tcp", 5432)},
    "sparkjava": {"sparkjava": ("http", 8080)},
    "sparkjava-mysql": {"backend": ("http", 8080)},
    "spring-postgres": {"backend": ("http", 8080)},
    "traefik-golang": {"frontend": ("http", 80)},
    "vuejs": {"web": ("http", 8080)},
    "wasmedge-kafka-mysql": {"redpanda": ("http", 8081)},
    "wasmedge-mysql-nginx": {"frontend": ("http", 80), "backend": ("http", 8080)},
    "wireguard": {},
    "wordpress-mysql": {"wordpress": ("http", 80)},
}

# The same for files of our own corpus whose choices are the point of the file.
OWN_CHOICES = {
    # Mail catchers (issue 26): the web UI gets HTTPS, SMTP passes by, known image or not.
    "23-dev-tools-mail-catchers": {"mailhog": ("http", 8025), "mailpit": ("http", 8025), "catcher": ("http", 8025),
                                   "inbox": ("http", 9025), "relay": ("http", 4080), "queue": ("tcp", 7100)},
}


def test_the_corpora_are_complete():
    assert len(OWN) >= 20
    assert len(AWESOME) == 39 and {f.stem for f in AWESOME} == set(AWESOME_CHOICES)


def inject(text: str, source: str):
    return inject_text(text, InjectOptions(), MACHINE, source)


def compose_config(folder: Path, name: str) -> dict:
    # Same folder and project name for every variant, so paths and names compare equal. Only the
    # variables the corpus means to set, and HOME, where the docker CLI finds a user's plugins.
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"), "API_KEY": "test",
           "PLEX_MEDIA_PATH": "/media", "COMPOSE_PROFILES": "*"}     # every profile: all services
    try:
        return ComposeCli(name, project="corpus", cwd=folder, env=env).config()
    except ConfigError as exc:
        pytest.fail(f"{exc.message}\n{exc.details}")


@pytest.fixture(scope="module")
def corpus_copy(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    shutil.copytree(CORPUS, folder, dirs_exist_ok=True)
    return folder


@pytest.mark.parametrize("path", FILES, ids=[f"{f.parent.name}/{f.stem}" for f in FILES])
def test_inject_is_valid_byte_exact_and_means_what_it_says(path: Path, corpus_copy: Path):
    original = path.read_bytes().decode()
    result = inject(original, path.name)
    injected = result.text
    assert inject(injected, "injected").text == injected, "injecting twice must change nothing"
    assert uninject_text(injected, "injected").text == original, "uninject must give back the very bytes"

    folder = corpus_copy / path.parent.relative_to(CORPUS)
    (folder / f"{path.stem}.mesh.yaml").write_text(injected)
    with ThreadPoolExecutor(2) as both:     # two Compose processes at once: half this tier's wait
        before, after = both.map(compose_config, (folder, folder), (path.name, f"{path.stem}.mesh.yaml"))
    assert set(after["services"]) == set(before["services"]) | {
        f"{item.service}-mesh-{role}" for item in result.injected for role in ("pod", "proxy", "metrics")}
    for key in ("volumes", "networks", "secrets", "configs"):
        assert after.get(key) == before.get(key)
    for item in result.injected:
        app, holder = after["services"][item.service], after["services"][f"{item.service}-mesh-pod"]
        original_app = before["services"][item.service]
        assert app["network_mode"] == f"service:{item.service}-mesh-pod"
        assert not app.get("ports") and not app.get("networks") and not app.get("expose")
        for key in ("image", "build", "environment", "volumes", "command", "healthcheck", "restart"):
            assert app.get(key) == original_app.get(key), key
        # Compose adds the namespace's owner to depends_on (restart: true: recreated with it).
        assert {k: v for k, v in app["depends_on"].items() if k != f"{item.service}-mesh-pod"} == \
            (original_app.get("depends_on") or {})
        # The holder publishes what the app published, the wrapped port now reaching the proxy.
        pod_port = TLS_PORT if item.protocol == "http" else PROXY_PORT
        expected = [{**p, "target": pod_port} if p["target"] == item.app_port and p.get("protocol", "tcp") == "tcp"
                    else p for p in original_app["ports"]]
        assert holder["ports"][:-1] == expected
        assert holder["ports"][-1]["target"] == METRICS_PORT and holder["ports"][-1]["host_ip"] == "127.0.0.1"
        # It answers to the service's name on each of the app's networks.
        for network in original_app.get("networks") or {"default": None}:
            assert item.service in holder["networks"][network]["aliases"]
        for role in ("pod", "proxy", "metrics"):
            generated = after["services"][f"{item.service}-mesh-{role}"]
            assert generated["read_only"] is True and generated["cap_drop"] == ["ALL"]
            assert not generated.get("cap_add") and not generated.get("privileged")
            assert "no-new-privileges:true" in generated["security_opt"]
            assert generated["labels"]["meshctl.service"] == item.service
            assert generated["labels"]["meshctl.role"] == role
            assert generated.get("profiles") == original_app.get("profiles")
            assert not any("docker.sock" in str(v.get("source")) for v in generated.get("volumes") or [])
            if role != "pod":
                assert generated["network_mode"] == f"service:{item.service}-mesh-pod"
    chosen = {item.service: (item.protocol, item.app_port) for item in result.injected}
    if path.parent.name == "awesome":
        assert chosen == AWESOME_CHOICES[path.stem]
    if path.stem in OWN_CHOICES:
        assert chosen == OWN_CHOICES[path.stem]


VARIANTS = {
    "crlf": lambda text: text.replace("\r\n", "\n").replace("\n", "\r\n"),
    "no-final-newline": lambda text: text.rstrip("\r\n \t"),
    "trailing-blank-lines": lambda text: text + "\n  \n\n   ",
    "trailing-comment": lambda text: text.rstrip("\n") + "\n# the end   ",
    "byte-order-mark": lambda text: "\ufeff" + text,
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_file_stays_byte_exact_whatever_its_line_ends_and_ending(variant):
    failures = []
    for path in FILES:
        text = VARIANTS[variant](path.read_bytes().decode())
        injected = inject(text, path.name).text
        if inject(injected, path.name).text != injected or uninject_text(injected, path.name).text != text:
            failures.append(path.name)
    assert failures == []


def test_the_protocol_table_of_the_issue():
    """issue 12's table: pihole 80 → HTTPS, 53 not; minecraft TCP; portainer 9000 HTTPS; the databases TCP."""
    def chosen(stem: str) -> dict:
        text = (CORPUS / "awesome" / f"{stem}.yaml").read_text()
        return {i.service: i for i in inject(text, stem).injected}

    pihole = chosen("pihole-cloudflared-DoH")["pihole"]
    assert (pihole.protocol, pihole.app_port) == ("http", 80) and "53:53" in pihole.summary
    assert chosen("minecraft")["minecraft"].protocol == "tcp"
    assert (chosen("portainer")["portainer"].protocol, chosen("portainer")["portainer"].app_port) == ("http", 9000)
    for stem, service in (("postgresql-pgadmin", "postgres"), ("react-rust-postgres", "db"), ("flask-redis", "redis")):
        assert chosen(stem)[service].protocol == "tcp"
    # logstash's TCP input (5000, 5044) never reaches the HTTP proxy: its HTTP API (9600) does.
    assert chosen("elasticsearch-logstash-kibana")["logstash"].app_port == 9600


@pytest.mark.parametrize("path", FILES, ids=[f"{f.parent.name}/{f.stem}" for f in FILES])
def test_every_option_and_each_service_alone_stay_reversible_and_converge(path: Path):
    """--keep-plain, --tcp skip and --service NAME for each service: idempotent, byte-exact on
    uninject, and injecting the result with the defaults gives what injecting the original does."""
    from meshctl.inject import document as doc

    text = path.read_bytes().decode()
    names = [str(k.value) for k, _ in doc.get(doc.parse(text, path.name).root, "services")[1].value]
    default = inject(text, path.name).text
    for options in [InjectOptions(keep_plain=True), InjectOptions(tcp="skip"),
                    *(InjectOptions(services=(name,)) for name in names)]:
        out = inject_text(text, options, MACHINE, path.name).text
        assert inject_text(out, options, MACHINE, path.name).text == out, options
        assert uninject_text(out, path.name).text == text, options
        assert inject(out, path.name).text == default, options
