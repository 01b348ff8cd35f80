"""`traffic:` and `allow:` route rules on the real engine, seen from a calling app: a caller's proxy
gives up with 504 at the callee's timeout, retries a callee's own 5xx into successes and counts
them, never replays a POST (retries.methods), cuts a stalled try at per_try_timeout, opens its
circuit breaker after N failed calls (503 at once, the callee's app not reached) and closes it
after open_for, and splits calls by weight; a callee's route rule refuses one path and lets
another in. One stack for the module: the test app (tests/integration/traffic_app, in
examples/shop/web's image recipe) fails, stalls and counts requests on its own."""

from __future__ import annotations

import functools
import json
import shutil
import ssl
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from meshctl.runtime.probes import http_request, tls_context
from tests.support import (ca_path, counter, eventually, metric_sum, port_of, run_meshctl, unique_project,
                           urls)

pytestmark = pytest.mark.integration

APP = Path(__file__).resolve().parent / "traffic_app"
OPEN_FOR = 5.0
MESH_YAML = """\
name: {name}
services:
  web:
    build: app
    health: /healthz
    stop_grace_period: 1s
    ports: {{https: 0, http: 0, metrics: 0}}
  api:
    build: app
    health: /healthz
    stop_grace_period: 1s
    ports: {{https: 0, http: 0, metrics: 0}}
    allow: [web]
    traffic:
      timeout: 2s
      retries: {{attempts: 3, on: [5xx], per_try_timeout: 500ms}}
      split: {{api: 90, api-v2: 10}}
  api-v2:
    build: app
    health: /healthz
    stop_grace_period: 1s
    env: {{VERSION: v2}}
    ports: {{https: 0, http: 0, metrics: 0}}
    allow: [web]
  fragile:
    build: app
    health: /healthz
    stop_grace_period: 1s
    ports: {{https: 0, http: 0, metrics: 0}}
    allow: [{{from: web, methods: [GET], paths: [/ok, /fail, /flak*, "*.txt"]}}]
    traffic:
      circuit_breaker: {{consecutive_errors: 3, open_for: {open_for}s}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sidecar_images):
    folder = tmp_path_factory.mktemp("traffic")
    shutil.copytree(APP, folder / "app")
    name = unique_project("traffic")
    (folder / "mesh.yaml").write_text(MESH_YAML.format(name=name, open_for=OPEN_FOR))
    run_meshctl("up", "-d", str(folder), check=True, timeout=900)
    try:
        yield {service: {key: port_of(url) for key, url in found.items()} for service, found in urls(name).items()}
    finally:
        run_meshctl("down", str(folder))


@functools.cache
def verified() -> ssl.SSLContext:
    """One TLS context for the module: building one reads the CA bundle (over a second on a busy
    machine), longer than the breaker test's calls may take."""
    return tls_context(ca_path())


def https_json(port: int, path: str) -> dict:
    answer = http_request(port, path, tls=verified(), server_hostname="localhost", timeout=30)
    assert answer.status == 200, answer.body
    return json.loads(answer.body)


def web_calls(stack, url: str, method: str = "GET") -> dict:
    """One call made by web's app (through web's proxy): status, body, seconds."""
    return https_json(stack["web"]["https"], f"/call?url={quote(url, safe='')}&method={method}")


def burst(stack, url: str, n: int) -> dict[str, dict[str, int]]:
    """n calls in a row made by web's app, in rounds of 200 (each answers well within get_json's
    timeout): statuses and bodies counted."""
    total: dict[str, dict[str, int]] = {"statuses": {}, "bodies": {}}
    for size in [200] * (n // 200) + ([n % 200] if n % 200 else []):
        for kind, counts in https_json(stack["web"]["https"], f"/burst?url={quote(url, safe='')}&n={size}").items():
            for key, count in counts.items():
                total[kind][key] = total[kind].get(key, 0) + count
    return total


def reached(stack, *services: str) -> dict[str, int]:
    """Requests that reached the apps of these services, by path (summed)."""
    total: dict[str, int] = {}
    for service in services:
        for path, count in https_json(stack[service]["https"], "/stats").items():
            total[path] = total.get(path, 0) + count
    return total


def web_metrics(stack) -> str:
    return http_request(stack["web"]["metrics"], "/metrics").body.decode()


def test_the_callers_timeout_answers_504_once_every_try_has_waited_its_share(stack):
    answer = web_calls(stack, "http://api:8080/slow?ms=10000")
    # 2 s: four tries of 500 ms each (the first and 3 retries), then 504, not the app's 10 s.
    assert answer["status"] == 504, answer
    assert 2.0 <= answer["seconds"] < 3.5, answer
    eventually(lambda: reached(stack, "api", "api-v2").get("/slow") == 4, 10, what="4 tries of /slow at the apps")


def test_a_stalled_try_is_cut_at_per_try_timeout_and_the_retry_answers(stack):
    key = uuid.uuid4().hex
    answer = web_calls(stack, f"http://api:8080/slow-once?key={key}")   # the first try stalls 1.5 s
    assert answer["status"] == 200 and answer["body"] in ("v1", "v2"), answer
    assert answer["seconds"] < 1.5, answer
    assert reached(stack, "api", "api-v2").get("/slow-once") == 2


def test_retries_turn_a_20_percent_failure_into_success_and_are_counted(stack):
    def retries_counted() -> float:
        return counter(web_metrics(stack), "meshctl_retries_total", service="web", destination="api")

    before_app, before_counted = reached(stack, "api", "api-v2").get("/flaky", 0), retries_counted()
    result = burst(stack, "http://api:8080/flaky", 200)
    assert result["statuses"] == {"200": 200}, result
    failed_tries = reached(stack, "api", "api-v2")["/flaky"] - before_app - 200
    assert failed_tries >= 200 // 5 - 2                        # every 5th request to each app failed
    eventually(lambda: retries_counted() - before_counted == failed_tries, 30,
               what=f"web's meshctl_retries_total{{destination=api}} up by {failed_tries}")
    # The same 20% without retries (fragile has none): one call in five fails.
    assert burst(stack, "http://fragile:8080/flaky", 100)["statuses"] == {"200": 80, "500": 20}


def test_a_post_is_never_replayed_where_a_get_is_retried_attempts_times(stack):
    """retries.methods defaults to GET, HEAD, OPTIONS, PUT, DELETE: api's /fail (always 500) is tried
    1 + attempts times for a GET, once for a POST (the issue: never a POST unless methods names it)."""
    def tries_of(method: str) -> int:
        before = reached(stack, "api", "api-v2").get("/fail", 0)
        assert web_calls(stack, "http://api:8080/fail", method=method)["status"] == 500
        return reached(stack, "api", "api-v2")["/fail"] - before

    assert tries_of("GET") == 1 + 3
    assert tries_of("POST") == 1


def test_the_breaker_opens_after_n_failed_calls_answers_503_without_the_app_and_closes_after_open_for(stack):
    eventually(lambda: web_calls(stack, "http://fragile:8080/ok")["status"] == 200, 2 * OPEN_FOR,
               what="fragile's breaker closed")       # an earlier test may have left it open
    reached_before = reached(stack, "fragile").get("/ok", 0)
    for _ in range(3):
        assert web_calls(stack, "http://fragile:8080/fail")["status"] == 500
    opened = time.monotonic()
    refused = web_calls(stack, "http://fragile:8080/ok")
    assert refused["status"] == 503 and "circuit open" in refused["body"], refused
    assert reached(stack, "fragile").get("/ok", 0) == reached_before          # the app was not reached
    eventually(lambda: counter(web_metrics(stack), "meshctl_circuit_open", destination="fragile") == 1, OPEN_FOR,
               what="web's circuit gauge for fragile at 1")
    eventually(lambda: web_calls(stack, "http://fragile:8080/ok")["status"] == 200, 3 * OPEN_FOR, interval=0.05,
               what="fragile's breaker closed again")
    closed = time.monotonic()
    assert OPEN_FOR - 0.2 <= closed - opened < OPEN_FOR + 2.5, closed - opened
    assert reached(stack, "fragile")["/ok"] == reached_before + 1
    assert counter(web_metrics(stack), "meshctl_circuit_open", destination="fragile") == 0


def test_a_split_sends_each_target_its_share(stack):
    bodies = burst(stack, "http://api:8080/ok", 1000)["bodies"]
    assert set(bodies) == {"v1", "v2"} and sum(bodies.values()) == 1000, bodies
    assert 50 <= bodies["v2"] <= 150, bodies                   # 10% ± 5 points


def test_a_route_rule_refuses_one_path_and_method_and_lets_another_in(stack):
    assert web_calls(stack, "http://fragile:8080/secret")["status"] == 403
    assert web_calls(stack, "http://fragile:8080/ok", method="POST")["status"] == 403     # GET only
    assert web_calls(stack, "http://fragile:8080/ok")["status"] == 200
    assert web_calls(stack, "http://fragile:8080/notes.txt")["status"] == 200            # *.txt
    assert "/secret" not in reached(stack, "fragile")
    assert reached(stack, "fragile")["/notes.txt"] >= 1
    # Both refusals counted as denied at fragile, with the caller (the agent counts in batches).
    eventually(lambda: metric_sum(http_request(stack["fragile"]["metrics"], "/metrics").body.decode(),
                                  "meshctl_requests_denied_total", source="web") == 2, 30,
               what="fragile's meshctl_requests_denied_total{source=web} at 2")
