"""mesh.yaml's JSON Schema comes from the field table the parser reads its keys from: the shipped
file is what the generator gives, every example and every mesh.yaml in the docs validates, and
the schema and the parser both reject each of a set of bad files.

What a schema cannot know (a build folder that does not exist, a depends_on cycle, a name in
`allow` that is no service) is the parser's alone and not in the set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from meshctl.config import parse_project
from meshctl.config.fields import SECTIONS, keys
from meshctl.config.schema import SCHEMA_FILE, mesh_yaml_schema
from meshctl.errors import ConfigError
from tests.unit.fake_engine import meshctl

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema.Draft7Validator(mesh_yaml_schema())


class Yaml12Loader(yaml.SafeLoader):
    """YAML as editors read it (yaml-language-server: YAML 1.2), where only true/false are
    booleans: `on:` and `off` stay words."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))


def as_editors_read(text: str):
    return yaml.load(text, Loader=Yaml12Loader)


def schema_errors(data, section: str | None = None) -> list[str]:
    validator = VALIDATOR if section is None else jsonschema.Draft7Validator(
        {**mesh_yaml_schema(), "$ref": f"#/definitions/{section}"})
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]


def test_the_shipped_schema_is_what_the_field_table_generates():
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == mesh_yaml_schema(), \
        "regenerate it: meshctl schema > meshctl/mesh.schema.json"
    jsonschema.Draft7Validator.check_schema(mesh_yaml_schema())


def test_meshctl_schema_prints_it():
    result = meshctl("schema", check=True)
    assert json.loads(result.stdout) == mesh_yaml_schema()


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*/mesh.yaml")), ids=lambda p: p.parent.name)
def test_every_example_validates(example):
    assert schema_errors(as_editors_read(example.read_text())) == []
    parse_project(example.read_text(), source=example, variables={})


def doc_snippets() -> list[tuple[str, str]]:
    """(where, YAML text) of every YAML block in README.md and docs/*.md that is a mesh.yaml (it
    has `services:`) or a part of one service (its keys are service fields)."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        blocks = [m.group(1) for m in re.finditer(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)]
        unfenced = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
        blocks += ["\n".join(line[4:] for line in m.group(1).splitlines())
                   for m in re.finditer(r"((?:^    .*\n|^[ \t]*\n)+)", unfenced, re.M)]
        for block in blocks:
            try:
                data = as_editors_read(block)
            except yaml.YAMLError:
                continue
            if isinstance(data, dict) and data and ("services" in data or set(data) <= set(keys("service"))):
                found.append((f"{doc.name}: {block.strip().splitlines()[0]}", block))
    return found


def test_the_docs_hold_mesh_yaml_snippets():
    assert len(doc_snippets()) >= 4, "the snippet finder finds what docs/config.md and docs/mesh.md show"


@pytest.mark.parametrize("where, block", doc_snippets(), ids=lambda v: v if isinstance(v, str) and ":" in v else "")
def test_every_mesh_yaml_snippet_in_the_docs_validates(where, block):
    data = as_editors_read(block)
    assert schema_errors(data, None if "services" in data else "service") == [], where


# Where each section sits in a file: %s is one `key: value` line of it.
_SECTION_AT = {
    "project": "%s\nservices:\n  web:\n    image: web:1\n    port: 8080\n",
    "service": "services:\n  web:\n    image: web:1\n    port: 8080\n    %s\n",
    "mesh": "mesh:\n  %s\nservices:\n  web:\n    image: web:1\n    port: 8080\n",
    "proxy": "services:\n  web:\n    image: web:1\n    port: 8080\n    sidecars:\n      proxy:\n        %s\n",
    "build": "services:\n  web:\n    port: 8080\n    build:\n      %s\n",
    "watch": "services:\n  web:\n    image: web:1\n    port: 8080\n    watch:\n      %s\n",
    "ports": "services:\n  web:\n    image: web:1\n    port: 8080\n    ports:\n      %s\n",
    "dependency": "services:\n  web:\n    image: web:1\n    port: 8080\n    depends_on:\n      web:\n        %s\n",
    "check": "services:\n  web:\n    image: web:1\n    port: 8080\n    checks:\n      - %s\n",
}


@pytest.mark.parametrize("section", _SECTION_AT)
def test_the_parsers_allow_exactly_the_table_s_keys(section):
    """A near-miss of every key of a section is refused with "did you mean" that key: the keys
    the parser allows are the table's."""
    for key in keys(section):
        with pytest.raises(ConfigError) as caught:
            parse_project(_SECTION_AT[section] % f"{key}x: 1", variables={})
        assert caught.value.hint == f"did you mean {key!r}?", (section, key, caught.value.message)


GOOD = """\
name: ${PROJECT:-shop}
mesh: {mtls: permissive, capture: false}
services:
  web:
    build: {context: ., dockerfile: Dockerfile, args: [V=1], target: dev}
    port: ${PORT:-8080}
    protocol: HTTP
    health: /healthz
    environment: [A=1, B]
    command: [python3, app.py]
    metrics_path: /metrics
    stop_grace_period: 1m30s
    sidecars:
      proxy: {timeout: 2.5s, retries: 3, connect_timeout: 500us}
      tls: {hosts: [web.local]}
      metrics: {}
      cache: {image: redis:7, ready: {tcp: 6379}, environment: {X: y}, cap_add: [NET_BIND_SERVICE]}
    ports: {https: 0, http: 0, metrics: 0}
    watch: {sync: {".": /app}, rebuild: [requirements.txt], ignore: ["*.log"]}
    checks:
      - {name: greets, request: "GET /", expect: {status: [200, 204], body_contains: hi, max_latency: 1s}}
      - {exec: [python3, -V], expect: {exit_code: 0}}
      - {name: survives, request: /, faults: {web: [{abort: 503, percent: 10}]}}
    faults: [{delay: 300ms, percent: 50.5}]
    depends_on: {kv: {condition: service_healthy}}
    allow: [api, {from: admin, methods: [GET, post], paths: ["/admin/*"]}]
    traffic:
      timeout: 2s
      retries: {attempts: 3, on: [5xx, 503], per_try_timeout: 500ms, methods: [GET]}
      circuit_breaker: {consecutive_errors: 5, open_for: 10s, max_connections: 100, max_pending: 50}
      split: {web: 90, api: 10}
  api:
    image: api:1
    port: 8080
    allow: [web, admin]
  admin:
    image: admin:1
    port: 8080
  kv:
    image: redis:7
    port: 6379
    protocol: tcp
    health: {exec: [redis-cli, ping]}
    sidecars: false
"""


def test_a_file_using_every_kind_of_field_passes_both(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    assert schema_errors(as_editors_read(GOOD)) == []
    project = parse_project(GOOD, source=tmp_path / "mesh.yaml", variables={"B": "2"})
    assert project.name == "shop" and project.service("web").port == 8080


SERVICE = "    image: web:1\n    port: 8080\n"
BAD = {
    "unknown top-level key": "servics:\n  web:\n" + SERVICE,
    "no services": "services: {}\n",
    "services a list": "services: [web]\n",
    "a service name in capitals": "services:\n  Web:\n" + SERVICE,
    "unknown service key": "services:\n  web:\n" + SERVICE + "    enviroment: [A=1]\n",
    "a port in words": "services:\n  web:\n    image: web:1\n    port: eighty\n",
    "a port too high": "services:\n  web:\n    image: web:1\n    port: 70000\n",
    "not a duration": "services:\n  web:\n" + SERVICE + "    stop_grace_period: 1m30x\n",
    "an unknown protocol": "services:\n  web:\n" + SERVICE + "    protocol: udp\n",
    "an unknown runtime": "services:\n  web:\n    runtime: ruby\n    command: [ruby, app.rb]\n",
    "health a number": "services:\n  web:\n" + SERVICE + "    health: 42\n",
    "TCP health with two kinds": "services:\n  web:\n" + SERVICE + "    protocol: tcp\n"
                                 "    health: {tcp: true, exec: [x]}\n",
    "env a string": "services:\n  web:\n" + SERVICE + "    environment: A=1\n",
    "env items as mappings": "services:\n  web:\n" + SERVICE + "    env: [{A: 1}]\n",
    "a build key misspelt": "services:\n  web:\n    port: 8080\n    build: {context: ., dockerfil: Dockerfile}\n",
    "negative retries": "services:\n  web:\n" + SERVICE + "    sidecars: {proxy: {retries: -1}}\n",
    "a proxy key misspelt": "services:\n  web:\n" + SERVICE + "    sidecars: {proxy: {timeot: 1s}}\n",
    "a sidecar with image and build": "services:\n  web:\n" + SERVICE + "    sidecars: {cache: {image: redis:7, build: .}}\n",
    "a sidecar with neither": "services:\n  web:\n" + SERVICE + "    sidecars: {cache: {ready: {tcp: 6379}}}\n",
    "a sidecar name in capitals": "services:\n  web:\n" + SERVICE + "    sidecars: {Cache: {image: redis:7}}\n",
    "ready with two kinds": "services:\n  web:\n" + SERVICE + "    sidecars: {cache: {image: redis:7, ready: {tcp: 1, exec: [x]}}}\n",
    "an unknown host port name": "services:\n  web:\n" + SERVICE + "    ports: {https: 8443, admin: 1}\n",
    "an unknown mtls mode": "mesh: {mtls: loose}\nservices:\n  web:\n" + SERVICE,
    "capture not a boolean": "mesh: {capture: maybe}\nservices:\n  web:\n" + SERVICE,
    "a sync target not absolute": "services:\n  web:\n" + SERVICE + "    watch: {sync: {'.': app}}\n",
    "a check with request and exec": "services:\n  web:\n" + SERVICE + "    checks: [{request: /, exec: [x]}]\n",
    "a status out of range": "services:\n  web:\n" + SERVICE + "    checks: [{request: /, expect: {status: 700}}]\n",
    "an exit code out of range": "services:\n  web:\n" + SERVICE + "    checks: [{exec: [x], expect: {exit_code: 300}}]\n",
    "an unknown HTTP method": "services:\n  web:\n" + SERVICE + "    checks: [{request: {method: FETCH, path: /}}]\n",
    "a compose condition meshctl cannot meet": "services:\n  web:\n" + SERVICE
        + "    depends_on: {kv: {condition: service_completed_successfully}}\n  kv:\n" + SERVICE,
    "a dependency key misspelt": "services:\n  web:\n" + SERVICE + "    depends_on: {kv: {conditon: ready}}\n"
                                 "  kv:\n" + SERVICE,
    "a fault of two kinds": "services:\n  web:\n" + SERVICE + "    faults: [{abort: 503, delay: 1s}]\n",
    "an abort status too low": "services:\n  web:\n" + SERVICE + "    faults: [{abort: 100}]\n",
    "a percent above 100": "services:\n  web:\n" + SERVICE + "    faults: [{abort: 503, percent: 200}]\n",
    "a check's faults a list": "services:\n  web:\n" + SERVICE + "    checks: [{request: /, faults: [{abort: 503}]}]\n",
    "a traffic key misspelt": "services:\n  web:\n" + SERVICE + "    traffic: {timout: 2s}\n",
    "an unknown retry condition": "services:\n  web:\n" + SERVICE + "    traffic: {retries: {on: [timeout]}}\n",
    "a split weight above 100": "services:\n  web:\n" + SERVICE + "    traffic: {split: {web: 150}}\n",
    "a breaker that never opens": "services:\n  web:\n" + SERVICE + "    traffic: {circuit_breaker: {max_pending: 0}}\n",
    "an allow rule key misspelt": "services:\n  web:\n" + SERVICE + "    allow: [{form: web}]\n",
    "the file a list": "- services\n",
}


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_the_schema_and_the_parser_both_reject(text):
    assert schema_errors(as_editors_read(text)) != [], "the schema accepted it"
    with pytest.raises(ConfigError):
        parse_project(text, variables={})


def test_every_section_of_the_table_is_in_the_schema_with_its_help():
    definitions = mesh_yaml_schema()["definitions"]
    for name, section in SECTIONS.items():
        generated = mesh_yaml_schema() if name == "project" else definitions[name]
        assert list(generated["properties"]) == list(keys(name))
        assert all(generated["properties"][f.name]["description"] == f.help for f in section.fields)


VARIABLES = """\
mesh: {capture: "${CAPTURE}"}
services:
  web:
    image: web:1
    port: ${PORT:-8080}
    sidecars:
      proxy: {retries: "${RETRIES}"}
      cache: {image: redis:7, read_only: "${RO}", ready: {tcp: "${CACHE_PORT}"}}
    checks:
      - {exec: [x], expect: {exit_code: "${CODE}"}}
      - {request: /, expect: {status: ["${STATUS}"]}}
    faults: [{abort: "${STATUS}", percent: "${PERCENT}"}]
    traffic: {retries: {attempts: "${RETRIES}"}, split: {web: "${SHARE}", api: 50}}
    env: {ZIP: "${ZIP}"}
  api:
    image: api:1
    port: 8080
"""


def test_a_variable_stands_wherever_a_number_or_boolean_goes_for_both():
    """The schema allows a ${VAR} there; the parser reads its value as the number or boolean the
    schema wants (and text where text is allowed: a zip code keeps its 0)."""
    variables = {"CAPTURE": "false", "RETRIES": "3", "RO": "false", "CACHE_PORT": "6379", "CODE": "1",
                 "STATUS": "503", "PERCENT": "12.5", "SHARE": "50", "ZIP": "01234"}
    assert schema_errors(as_editors_read(VARIABLES)) == []
    web, _api = parse_project(VARIABLES, variables=variables).services
    assert (web.port, web.proxy.retries, web.mesh.capture) == (8080, 3, False)
    [cache] = web.user_sidecars
    assert (cache.read_only, cache.ready.tcp) == (False, 6379)
    assert [getattr(c, "exit_code", None) or c.status for c in web.checks] == [1, (503,)]
    assert (web.faults[0].status, web.faults[0].percent) == (503, 12.5)
    assert web.traffic.retries.attempts == 3 and web.traffic.split == (("web", 50), ("api", 50))
    assert dict(web.env) == {"ZIP": "01234"}
