"""HTTP or TCP, and which port: HTTP only on evidence, TCP otherwise.

An HTTP proxy in front of a database, a DNS server or a game server breaks it; a TCP proxy in
front of a web app only measures less. So a port is HTTP when something says so, in this order:
the service's `x-meshctl.protocol`, the port's `app_protocol:`, the service's own healthcheck
asking it for a URL, a Traefik label routing HTTP to it, a bind URL in its environment
(`ASPNETCORE_URLS=http://+:8000`), the port's long-syntax `name:` (http, web, ui), a known image
that serves HTTP there, or a port that is HTTP by convention. Well-known ports of other protocols
(DNS, databases, brokers, mail, game servers, TLS) are never HTTP by detection. The evidence is per
port: a known web image's "any other port is HTTP too" holds only when it publishes one port, so of
a mail catcher's SMTP port and web UI only the web UI is HTTP. Among a service's ports the first
HTTP one is wrapped; with none, the first TCP port gets a TCP proxy."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model import split_image_ref

HTTP, TCP = "http", "tcp"

# Ports that speak something else than plain HTTP: an HTTP proxy must never sit in front of them.
NOT_HTTP_PORTS = {
    20: "FTP data", 21: "FTP", 22: "SSH", 23: "Telnet", 25: "SMTP", 53: "DNS", 67: "DHCP", 69: "TFTP",
    110: "POP3", 123: "NTP", 143: "IMAP", 161: "SNMP", 389: "LDAP", 443: "HTTPS (TLS already)",
    445: "SMB", 465: "SMTPS", 514: "syslog", 587: "SMTP submission", 636: "LDAPS", 853: "DNS over TLS",
    993: "IMAPS", 995: "POP3S", 1433: "SQL Server", 1521: "Oracle", 1883: "MQTT", 2181: "ZooKeeper",
    2379: "etcd", 2380: "etcd peers", 3306: "MySQL", 3389: "RDP", 4222: "NATS", 4369: "Erlang epmd",
    5044: "Beats", 5432: "PostgreSQL", 5671: "AMQPS", 5672: "AMQP", 5900: "VNC", 6379: "Redis",
    6650: "Pulsar", 6443: "Kubernetes API (TLS)", 7687: "Neo4j Bolt", 8443: "HTTPS (TLS already)",
    8883: "MQTT over TLS", 9042: "Cassandra", 9092: "Kafka", 9300: "Elasticsearch transport",
    9443: "HTTPS (TLS already)", 1025: "SMTP (mail catchers' unprivileged port)", 2525: "SMTP alternate",
    11211: "Memcached", 19132: "Minecraft Bedrock", 25565: "Minecraft",
    26257: "CockroachDB", 27015: "Source game server", 27017: "MongoDB", 29092: "Kafka", 33060: "MySQL X",
    51820: "WireGuard",
}
# Ports that are HTTP by convention (web servers, app servers, dev servers).
HTTP_PORTS = {80: "HTTP", 3000: "HTTP (dev servers, Grafana)", 4200: "HTTP (Angular dev server)",
              5000: "HTTP (Flask, ASP.NET Core)", 5173: "HTTP (Vite dev server)", 8000: "HTTP (app servers)",
              8008: "HTTP alternate", 8025: "HTTP (mail catchers' web UI)", 8080: "HTTP alternate",
              8081: "HTTP alternate", 8888: "HTTP (notebooks, proxies)"}


@dataclass(frozen=True)
class Image:
    what: str
    http: frozenset[int] = frozenset()       # ports it serves HTTP on
    other: frozenset[int] = frozenset()      # ports it serves something else on
    default: str | None = None               # its other ports: HTTP, TCP or unknown (None)


def _image(what: str, http: Sequence[int] = (), other: Sequence[int] = (), default: str | None = None) -> Image:
    return Image(what, frozenset(http), frozenset(other), default)


_DATABASE = TCP
# By the image's name (the last part of its repository, or a word of it).
IMAGES: dict[str, Image] = {
    # Servers of other protocols: every port TCP unless listed as HTTP.
    **{name: _image(what, default=_DATABASE) for name, what in {
        "postgres": "PostgreSQL", "postgresql": "PostgreSQL", "postgis": "PostgreSQL", "timescaledb": "PostgreSQL",
        "pgvector": "PostgreSQL", "mysql": "MySQL", "mariadb": "MariaDB", "percona": "MySQL", "redis": "Redis",
        "redismod": "Redis", "valkey": "Valkey", "keydb": "KeyDB", "dragonfly": "Redis", "mongo": "MongoDB",
        "mongodb": "MongoDB", "memcached": "Memcached", "cassandra": "Cassandra", "scylla": "Cassandra",
        "zookeeper": "ZooKeeper", "nats": "NATS", "mssql": "SQL Server", "azure-sql-edge": "SQL Server",
        "mosquitto": "MQTT", "etcd": "etcd", "cloudflared": "DNS (cloudflared)", "pihole": "DNS (Pi-hole)",
        "bind9": "DNS", "coredns": "DNS", "dnsmasq": "DNS", "minecraft-server": "Minecraft",
        "minecraft": "Minecraft", "wireguard": "WireGuard", "openvpn": "OpenVPN", "php-fpm": "FastCGI",
        "postfix": "SMTP", "openldap": "LDAP", "logstash": "Logstash inputs",
    }.items()},
    "rabbitmq": _image("RabbitMQ", http=[15672], default=TCP),
    "kafka": _image("Kafka", default=TCP),
    "redpanda": _image("Redpanda", http=[8081, 8082, 9644], default=TCP),
    "neo4j": _image("Neo4j", http=[7474], default=TCP),
    "elasticsearch": _image("Elasticsearch", http=[9200], other=[9300]),
    "opensearch": _image("OpenSearch", http=[9200], other=[9300]),
    # Pi-hole's web UI and Logstash's monitoring API are HTTP; the rest of their ports are not.
    # (Listed again below by their full name, which is looked up first.)
    # Web servers and web apps: HTTP on their usual ports, and on any port not known as something else.
    **{name: _image(what, default=HTTP) for name, what in {
        "nginx": "nginx", "httpd": "Apache httpd", "apache": "Apache httpd", "caddy": "Caddy",
        "traefik": "Traefik", "haproxy": "HAProxy", "envoy": "Envoy", "wordpress": "WordPress",
        "nextcloud": "Nextcloud", "grafana": "Grafana", "prometheus": "Prometheus", "alertmanager": "Alertmanager",
        "kibana": "Kibana", "pgadmin4": "pgAdmin", "pgadmin": "pgAdmin", "adminer": "Adminer",
        "phpmyadmin": "phpMyAdmin", "gitea": "Gitea", "gitlab-ce": "GitLab", "jenkins": "Jenkins",
        "tomcat": "Tomcat", "keycloak": "Keycloak", "minio": "MinIO (S3 over HTTP)", "portainer": "Portainer",
        "portainer-ce": "Portainer", "jaeger": "Jaeger UI", "whoami": "whoami", "registry": "Docker registry",
        "vault": "Vault", "consul": "Consul",
        "wiremock": "WireMock", "httpbin": "httpbin", "swagger-ui": "Swagger UI", "ghost": "Ghost",
        "drupal": "Drupal", "joomla": "Joomla", "mediawiki": "MediaWiki", "sonarqube": "SonarQube",
        "nexus3": "Nexus", "superset": "Superset", "metabase": "Metabase", "n8n": "n8n",
    }.items()},
}
# More precise entries for images whose main port is not HTTP but one of them is.
IMAGES.update({
    "pihole": _image("Pi-hole", http=[80], other=[53, 67, 443], default=TCP),
    "logstash": _image("Logstash", http=[9600], other=[5000, 5044], default=TCP),
    "portainer": _image("Portainer", http=[9000], other=[8000, 9443], default=HTTP),
    "portainer-ce": _image("Portainer", http=[9000], other=[8000, 9443], default=HTTP),
    "gitea": _image("Gitea", http=[3000], other=[22], default=HTTP),
    "gitlab-ce": _image("GitLab", http=[80], other=[22, 443], default=HTTP),
    "minio": _image("MinIO", http=[9000, 9001], default=HTTP),
    "vault": _image("Vault", http=[8200], other=[8201], default=HTTP),
    "consul": _image("Consul", http=[8500], other=[8300, 8301, 8302, 8600], default=HTTP),
    # Mail catchers: a web UI, and SMTP (and POP3/IMAP) beside it; their other ports say nothing.
    "mailhog": _image("MailHog", http=[8025], other=[1025]),
    "mailpit": _image("Mailpit", http=[8025], other=[1025, 1110]),
    "maildev": _image("MailDev", http=[1080], other=[1025]),
    "mailcatcher": _image("MailCatcher", http=[1080], other=[1025]),
    "smtp4dev": _image("smtp4dev", http=[80], other=[25, 110, 143]),
    "greenmail": _image("GreenMail", http=[8080], other=[3025, 3110, 3143, 3465, 3993, 3995]),
})
# A port's long-syntax `name:` that says what it speaks.
_HTTP_NAME = re.compile(r"(?:^|[-_.])(?:http|web|www|ui|webui|dashboard)(?:$|[-_.\d])", re.IGNORECASE)
_OTHER_NAME = re.compile(r"(?:^|[-_.])(?:https|tls|ssl|grpc|smtp|imap|pop3|ssh|dns|sql|amqp|mqtt)(?:$|[-_.\d])",
                         re.IGNORECASE)


def image_name(image: str) -> str:
    """`registry:5000/team/app:1.2@sha256:…` → `app`."""
    return split_image_ref(image)[0].rsplit("/", 1)[-1].lower()


def known_image(image: str | None) -> tuple[str, Image] | None:
    if not image or "$" in image:
        return None
    name = image_name(image)
    if name in IMAGES:
        return name, IMAGES[name]
    for word in re.split(r"[_.-]", name):
        if word in IMAGES:
            return word, IMAGES[word]
    return None


_LOCAL = r"(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1?\])"
_HEALTH_URL = re.compile(rf"(https?)://{_LOCAL}(?::(\d+))?(?=[/'\"\s,\])]|$)|(?<![\w/.]){_LOCAL}:(\d+)/")
_BIND_URL = re.compile(r"\bhttps?://(?:\+|\*|0\.0\.0\.0|\[::\]|localhost)?:(\d+)")
_TRAEFIK_PORT = re.compile(r"^traefik\.(http|tcp|udp)\.services\.[^.]+\.loadbalancer\.server\.port$")


@dataclass(frozen=True)
class Facts:
    """What a service says about its ports, read from the compose file."""
    image: str | None
    health_http: tuple[int, ...] = ()        # ports its healthcheck asks for a URL
    labels: Mapping[int, str] = field(default_factory=dict)   # port → protocol by a Traefik label
    bind_http: tuple[int, ...] = ()          # ports an environment URL binds HTTP on
    names: Mapping[int, str] = field(default_factory=dict)    # port → its long-syntax `name:`


def facts(service: Mapping[str, Any]) -> Facts:
    image = service.get("image")
    test = (service.get("healthcheck") or {}).get("test") if isinstance(service.get("healthcheck"), Mapping) else None
    words = " ".join(map(str, test)) if isinstance(test, list) else str(test or "")
    health = []
    for match in _HEALTH_URL.finditer(words):
        scheme, port, bare = match.group(1), match.group(2), match.group(3)
        if scheme == "https":
            continue                          # the app serves TLS itself: not for an HTTP proxy
        health.append(int(port or bare or 80))
    labels: dict[int, str] = {}
    raw_labels = service.get("labels")
    pairs = (raw_labels.items() if isinstance(raw_labels, Mapping)
             else (str(item).split("=", 1) for item in raw_labels if "=" in str(item)) if isinstance(raw_labels, list)
             else ())
    for key, value in pairs:
        routed = _TRAEFIK_PORT.match(str(key))
        if routed and str(value).strip().isdigit():
            labels[int(value)] = HTTP if routed.group(1) == HTTP else TCP
    env = service.get("environment")
    values = (env.values() if isinstance(env, Mapping) else
              (str(item).split("=", 1)[-1] for item in env) if isinstance(env, list) else ())
    bind = [int(m.group(1)) for value in values for m in _BIND_URL.finditer(str(value or ""))]
    return Facts(str(image) if image is not None else None, tuple(health), labels, tuple(bind), _port_names(service))


def _port_names(service: Mapping[str, Any]) -> dict[int, str]:
    ports = service.get("ports")
    named = [item for item in ports if isinstance(item, Mapping) and item.get("name")] if isinstance(ports, list) else []
    return {int(item["target"]): str(item["name"]) for item in named if str(item.get("target", "")).strip().isdigit()}


def _by_name(port: int, found: Facts) -> tuple[str, str] | None:
    name = found.names.get(port)
    if name is None:
        return None
    if _OTHER_NAME.search(name):
        return TCP, f"port {port} is named {name!r}: not plain HTTP"
    if _HTTP_NAME.search(name):
        return HTTP, f"port {port} is named {name!r}"
    return None


def port_protocol(port: int, found: Facts, *, one_of_several: bool = False) -> tuple[str | None, str]:
    """HTTP, TCP or None (no evidence either way) for one container port, and why.
    `one_of_several`: the service publishes other ports too, so a web image's default for its
    unlisted ports is no evidence for this one."""
    if port in found.health_http:
        return HTTP, f"its healthcheck asks port {port} for an HTTP URL"
    if port in found.labels:
        return found.labels[port], f"a Traefik label routes {found.labels[port].upper()} to port {port}"
    if port in found.bind_http:
        return HTTP, f"its environment binds HTTP on port {port}"
    named = _by_name(port, found)
    if named is not None:
        return named
    image = known_image(found.image)
    if image is not None:
        _name, known = image
        if port in known.http:
            return HTTP, f"image {found.image}: {known.what} serves HTTP on {port}"
        if port in known.other:
            return TCP, f"image {found.image}: {known.what}'s port {port} is not HTTP"
    if port in NOT_HTTP_PORTS:
        return TCP, f"port {port} is {NOT_HTTP_PORTS[port]}"
    if image is not None and image[1].default is not None:
        _name, known = image
        if known.default == HTTP and not one_of_several:
            return HTTP, f"image {found.image} is a web server ({known.what})"
        if known.default == HTTP and port in HTTP_PORTS:
            return HTTP, f"port {port} is {HTTP_PORTS[port]} by convention"
        if known.default == HTTP:
            return None, f"image {found.image} ({known.what}) publishes several ports and nothing says {port} is its web one"
        return TCP, f"image {found.image} is {known.what}, not HTTP"
    if port in HTTP_PORTS:
        return HTTP, f"port {port} is {HTTP_PORTS[port]} by convention"
    return None, f"nothing says port {port} speaks HTTP (no HTTP healthcheck, known image or port)"
