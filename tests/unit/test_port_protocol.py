"""The evidence for HTTP, one port at a time, and the port grammar: pure."""

from __future__ import annotations

import pytest

from meshctl.inject import document as doc
from meshctl.inject.ports import parse_entry, split_short
from meshctl.config.port_protocol import HTTP, TCP, facts, image_name, port_protocol
from meshctl.inject.port_choice import choose


def service(text: str) -> dict:
    return doc.value(doc.parse(text, "t").root)


@pytest.mark.parametrize("text, port, expected, why", [
    ("image: acme/app\nhealthcheck: {test: [CMD, curl, -f, 'http://localhost:7000/health']}", 7000, HTTP, "healthcheck"),
    ("image: acme/app\nhealthcheck: {test: 'curl --silent --fail localhost:9200/_cluster/health'}", 9200, HTTP, "healthcheck"),
    ("image: acme/app\nhealthcheck: {test: [CMD, wget, -q, 'http://127.0.0.1/']}", 80, HTTP, "healthcheck"),
    # A port from a variable says nothing about 80; an https URL means the app serves TLS itself.
    ("image: acme/app\nhealthcheck: {test: [CMD, curl, 'http://localhost:${PORT}/']}", 80, HTTP, "by convention"),
    ("image: acme/app\nhealthcheck: {test: [CMD, curl, -k, 'https://localhost:7443/']}", 7443, None, "nothing says"),
    ("image: acme/app\nlabels: [traefik.http.services.a.loadbalancer.server.port=7001]", 7001, HTTP, "Traefik"),
    ("image: acme/app\nlabels: {traefik.tcp.services.a.loadbalancer.server.port: '7002'}", 7002, TCP, "Traefik"),
    ("image: acme/app\nenvironment: [ASPNETCORE_URLS=http://+:7003]", 7003, HTTP, "environment"),
    ("image: pihole/pihole:latest", 80, HTTP, "Pi-hole"),
    ("image: pihole/pihole:latest", 53, TCP, "not HTTP"),
    ("image: portainer/portainer-ce:alpine", 9000, HTTP, "Portainer"),
    ("image: registry.example.com:5000/team/postgres:16", 5432, TCP, "PostgreSQL"),
    ("image: nginx:alpine", 8081, HTTP, "web server"),
    ("image: nginx:alpine", 443, TCP, "TLS already"),
    ("build: .", 8000, HTTP, "by convention"),
    ("build: .", 9000, None, "nothing says"),
    ("build: .", 25565, TCP, "Minecraft"),
    # Mail catchers' conventional ports, for images nobody here knows (issue 26).
    ("image: acme/catcher", 8025, HTTP, "mail catchers' web UI"),
    ("image: acme/catcher", 1025, TCP, "SMTP"),
    ("image: mailhog/mailhog", 8025, HTTP, "MailHog serves HTTP"),
    ("image: mailhog/mailhog", 1025, TCP, "MailHog's port 1025 is not HTTP"),
    # A port's long-syntax name.
    ("image: acme/app\nports: [{target: 7200, name: web-ui}]", 7200, HTTP, "named 'web-ui'"),
    ("image: acme/app\nports: [{target: 7201, name: http}]", 7201, HTTP, "named 'http'"),
    ("image: acme/app\nports: [{target: 7202, name: smtp}]", 7202, TCP, "not plain HTTP"),
    ("image: acme/app\nports: [{target: 7203, name: https}]", 7203, TCP, "not plain HTTP"),
    ("image: acme/app\nports: [{target: 7204, name: admin}]", 7204, None, "nothing says"),
])
def test_evidence_for_one_port(text, port, expected, why):
    verdict, reason = port_protocol(port, facts(service(text)))
    assert verdict == expected and why in reason


def test_a_web_images_other_ports_are_http_only_when_it_publishes_one():
    found = facts(service("image: nginx:alpine"))
    assert port_protocol(1935, found)[0] == HTTP
    verdict, why = port_protocol(1935, found, one_of_several=True)
    assert verdict is None and "several ports" in why
    assert port_protocol(8080, found, one_of_several=True)[0] == HTTP      # its own convention still counts


def test_a_mail_catchers_web_ui_wins_over_its_smtp_port_listed_first():
    for image in ("mailhog/mailhog", "axllent/mailpit", "registry.example.com/tools/catcher"):
        choice = choose(entries("'1025:1025'", "'8025:8025'"), facts(service(f"image: {image}")))
        assert (choice.entry_port, choice.protocol) == (8025, HTTP), image
    # An unknown image with nothing said about either port: TCP on the first, never HTTPS.
    choice = choose(entries("'7100:7100'", "'7101:7101'"), facts(service("image: acme/mystery")))
    assert (choice.entry_port, choice.protocol) == (7100, TCP)
    # A web image publishing an unknown second port: the first still gets no HTTP from the image alone.
    choice = choose(entries("'1935:1935'", "'7102:7102'"), facts(service("image: nginx:alpine")))
    assert choice.protocol == TCP


def entries(*ports: str) -> list:
    node = doc.parse("ports: [" + ", ".join(ports) + "]", "t").root.value[0][1]
    return [parse_entry(item, f"ports[{i}]", None) for i, item in enumerate(node.value)]


def test_the_http_port_of_several_wins_else_the_first_gets_tcp():
    found = facts(service("image: acme/app"))
    assert choose(entries("'2222:22'", "'8080:80'"), found).entry_port == 80
    choice = choose(entries("'7000:7000'", "'7001:7001'"), found)
    assert (choice.entry_port, choice.protocol) == (7000, TCP)
    assert choose(entries("'53:53/udp'"), found) is None
    # The user's word wins: protocol alone picks the first port that agrees.
    assert choose(entries("'2222:22'", "'8080:80'"), found, protocol=TCP).entry_port == 22
    assert choose(entries("'2222:22'", "'8080:80'"), found, port=22, protocol=HTTP).protocol == HTTP


@pytest.mark.parametrize("text, parts, protocol", [
    ("8080:80", ["8080", "80"], None),
    ("127.0.0.1::80/udp", ["127.0.0.1", "", "80"], "udp"),
    ("[::1]:8080:80/tcp", ["[::1]", "8080", "80"], "tcp"),
    ("${HOST:-0.0.0.0}:${PORT:-80}:80", ["${HOST:-0.0.0.0}", "${PORT:-80}", "80"], None),
    ("${P:-a/b}", ["${P:-a/b}"], None),
])
def test_the_short_syntax_splits_outside_variables_and_brackets(text, parts, protocol):
    assert split_short(text) == (parts, protocol)


def test_entries_say_what_they_publish():
    web, dns, free = entries("'8080:80'", "53:53/udp", "{target: 9000, host_ip: 127.0.0.1}")
    assert (web.target, web.published, web.protocol, web.describe()) == (80, "8080", "tcp", "8080:80")
    assert (dns.target, dns.protocol, dns.describe()) == (53, "udp", "53:53/udp")
    assert (free.target, free.published, free.host_ip, free.long) == (9000, None, "127.0.0.1", True)


@pytest.mark.parametrize("image, name", [
    ("nginx", "nginx"), ("nginx:1.27-alpine", "nginx"), ("registry:5000/team/app:1@sha256:ab", "app"),
    ("docker.redpanda.com/vectorized/redpanda:v22.2.2", "redpanda"), ("mcr.microsoft.com/azure-sql-edge:1.0.4", "azure-sql-edge"),
])
def test_image_names(image, name):
    assert image_name(image) == name
