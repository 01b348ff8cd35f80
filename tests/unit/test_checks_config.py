"""mesh.yaml `checks:`: what parses, and errors that name the file, the line and the field."""

from pathlib import Path

import pytest

from meshctl.config import ExecCheck, HttpCheck, parse_project
from meshctl.errors import ConfigError


def parse(tmp_path: Path, checks: str, sidecars: str = ""):
    text = f"name: shop\nservices:\n  web:\n    image: web:1\n    port: 8080\n{sidecars}    checks:\n{checks}"
    source = tmp_path / "mesh.yaml"
    source.write_text(text)
    return parse_project(text, source=source, root=tmp_path)


def checks_of(tmp_path: Path, checks: str, sidecars: str = ""):
    return parse(tmp_path, checks, sidecars).services[0].checks


def error_of(tmp_path: Path, checks: str, sidecars: str = "") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, checks, sidecars)
    return info.value


def test_every_kind_of_check_parses(tmp_path):
    http, post, shorthand, command, listed = checks_of(tmp_path, """\
      - name: greets
        request: {method: get, path: /hello, headers: {Accept-Language: fr, X-N: 3}}
        expect: {status: [200, 203], body_contains: bonjour, body_matches: "^bon", json: {"items.0.id": 3, ok: true}, max_latency: 250ms}
        timeout: 2s
      - name: creates
        request: {method: POST, path: /items, body: {name: a}}
        via: http
        expect: {status: 201}
      - request: DELETE /items/1
      - exec: test -f /app/app.py
        expect: {exit_code: 1, output_contains: nope}
      - name: python
        exec: [python3, -c, "print(1)"]
""")
    assert http == HttpCheck(name="greets", path="/hello", method="GET",
                             headers=(("Accept-Language", "fr"), ("X-N", "3")), via="https", status=(200, 203),
                             body_contains="bonjour", body_matches="^bon", json=(("items.0.id", 3), ("ok", True)),
                             max_latency=0.25, timeout=2.0)
    assert post.body == b'{"name": "a"}' and ("Content-Type", "application/json") in post.headers
    assert post.via == "http" and post.status == (201,)
    assert (shorthand.name, shorthand.method, shorthand.path, shorthand.status) == ("DELETE /items/1", "DELETE", "/items/1", ())
    assert command == ExecCheck(name="exec test -f /app/app.py", command=("sh", "-c", "test -f /app/app.py"),
                                exit_code=1, output_contains="nope")
    assert listed.command == ("python3", "-c", "print(1)") and listed.exit_code == 0


def test_no_checks_is_an_empty_tuple(tmp_path):
    text = "services:\n  web:\n    image: web:1\n    port: 8080\n"
    assert parse_project(text, root=tmp_path).services[0].checks == ()


def test_without_tls_checks_default_to_plain_http(tmp_path):
    [check] = checks_of(tmp_path, "      - request: /\n", sidecars="    sidecars: {tls: false}\n")
    assert check.via == "http"


def test_https_without_tls_is_an_error_at_its_line(tmp_path):
    error = error_of(tmp_path, "      - request: /\n        via: https\n", sidecars="    sidecars: {tls: false}\n")
    assert f"{tmp_path / 'mesh.yaml'}:9: services.web.checks.0.via" in error.message
    assert "tls is off" in error.message and error.exit_code == 2


@pytest.mark.parametrize("checks, field, problem", [
    ("      - {request: /, exec: ls}\n", "checks.0", "exactly one of `request`"),
    ("      - {name: a}\n", "checks.0", "exactly one of `request`"),
    ("      - request: {path: nope}\n", "checks.0.request.path", "starting with /"),
    ("      - request: {method: FETCH, path: /}\n", "checks.0.request.method", "not an HTTP method"),
    ("      - request: /\n        expect: {status: 99}\n", "checks.0.expect.status", "status code"),
    ("      - request: /\n        expect: {stauts: 200}\n", "checks.0.expect.stauts", "unknown field"),
    ("      - request: /\n        expect: {body_matches: '('}\n", "checks.0.expect.body_matches", "regular expression"),
    ("      - request: /\n        expect: {max_latency: fast}\n", "checks.0.expect.max_latency", "not a duration"),
    ("      - request: /\n        expect: {json: [a]}\n", "checks.0.expect.json", "dotted field paths"),
    ("      - request: /\n        via: ftp\n", "checks.0.via", "not an endpoint"),
    ("      - exec: []\n", "checks.0.exec", "expected a command"),
    ("      - exec: ls\n        expect: {exit_code: 300}\n", "checks.0.expect.exit_code", "0 to 255"),
    ("      - exec: ls\n        expect: {status: 200}\n", "checks.0.expect.status", "unknown field"),
    ("      - request: /\n        name: https\n", "checks.0.name", "built-in check"),
    ("      - {request: /, name: a}\n      - {request: /b, name: a}\n", "checks.1.name", "also used by check 1"),
    ("      - just a string\n", "checks.0", "expected a mapping"),
])
def test_mistakes_name_the_line_and_field(tmp_path, checks, field, problem):
    error = error_of(tmp_path, checks)
    assert f"{tmp_path / 'mesh.yaml'}:" in error.message
    assert f"services.web.{field}" in error.message and problem in error.message


def test_checks_must_be_a_list(tmp_path):
    error = error_of(tmp_path, "      request: /\n")
    assert "expected a list of checks" in error.message and "request:" in (error.hint or "")
