"""meshctl stat, top and tap on the real engine: web (the traffic test app) calls api a known
number of times, every FAIL_EVERY-th answered 500 by api's app; stat's edge web → api counts every
call, top names the busiest route, tap shows requests made after it started, with the caller's
identity, and its filters keep only what they name."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import (eventually, meshctl_cmd, port_of, run_meshctl, unique_project, urls)

pytestmark = pytest.mark.integration

APP = Path(__file__).resolve().parent / "traffic_app"
CALLS, FAIL_EVERY = 200, 8          # 25 of the 200 calls fail: 87.5% success
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
    env: {{FAIL_EVERY: "{fail_every}"}}
    ports: {{https: 0, http: 0, metrics: 0}}
    allow: [web]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sidecar_images):
    folder = tmp_path_factory.mktemp("observe")
    shutil.copytree(APP, folder / "app")
    name = unique_project("observe")
    (folder / "mesh.yaml").write_text(MESH_YAML.format(name=name, fail_every=FAIL_EVERY))
    run_meshctl("up", "-d", str(folder), check=True, timeout=900)
    try:
        yield name, port_of(urls(name)["web"]["http"])
    finally:
        run_meshctl("down", str(folder))


def burst(web_port: int, path: str, n: int) -> dict:
    """web calls api's `path` n times, through its proxy and the mesh."""
    import urllib.request

    url = f"http://127.0.0.1:{web_port}/burst?url=http://api:8080{path}&n={n}"
    with urllib.request.urlopen(url, timeout=120) as answer:
        return json.loads(answer.read())


def stat_rows(project: str) -> list[dict]:
    return json.loads(run_meshctl("stat", "-p", project, "--window", "10m", "--json", check=True).stdout)


def test_stat_counts_a_known_load_and_top_names_the_busiest_route(stack):
    project, web = stack
    assert burst(web, "/flaky", CALLS)["statuses"] == {"200": CALLS - CALLS // FAIL_EVERY, "500": CALLS // FAIL_EVERY}
    burst(web, "/quiet", 3)

    def edge():
        rows = [r for r in stat_rows(project) if (r["source"], r["destination"]) == ("web", "api")]
        return rows and rows[0]["requests"] >= CALLS + 3 and rows[0]
    row = eventually(edge, 30, 0.5, what="stat's edge web → api with every call")
    assert row["requests"] == CALLS + 3 and row["service"] == "api" and row["mtls"] is True
    assert abs(row["success_rate"] - 100.0 * (CALLS + 3 - CALLS // FAIL_EVERY) / (CALLS + 3)) <= 0.5
    assert row["p50_ms"] is not None and row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    services = {r["service"]: r for r in stat_rows(project) if not r["source"]}
    assert set(services) == {"web", "api"} and services["api"]["destination"] == ""
    assert services["api"]["requests"] >= CALLS + 3

    top = json.loads(run_meshctl("top", "api", "-p", project, "--window", "10m", "--once", "--json", check=True).stdout)
    assert (top[0]["method"], top[0]["path"], top[0]["requests"]) == ("GET", "/flaky", CALLS)
    assert top[0]["callers"] == ["web"] and top[0]["success_rate"] == 100.0 * (CALLS - CALLS // FAIL_EVERY) / CALLS


def tap(project: str, *options: str) -> subprocess.Popen:
    """`meshctl tap api` running; returns once it says it listens."""
    process = subprocess.Popen(meshctl_cmd("tap", "api", "-p", project, "--json", *options),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    line = process.stderr.readline()
    assert "tapping" in line, line + process.stderr.read()
    return process


def tapped(process: subprocess.Popen) -> list[dict]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_tap_shows_the_requests_made_after_it_started_with_the_callers_identity(stack):
    project, web = stack
    burst(web, "/before-tap", 3)
    process = tap(project, "--max", "5")
    burst(web, "/after-tap", 5)
    events = tapped(process)
    assert [e["path"] for e in events] == ["/after-tap"] * 5
    assert {(e["source"], e["destination"], e["direction"], e["mtls"]) for e in events} == {("web", "api", "inbound", True)}
    assert all(e["method"] == "GET" and e["status"] == 200 and e["latency_ms"] >= 0 for e in events)


def test_taps_filters_keep_only_what_they_name(stack):
    project, web = stack
    process = tap(project, "--max", "2", "--status", "5xx", "--path", "/fail", "--from", "web", "--method", "GET")
    burst(web, "/other", 4)
    burst(web, "/fail", 2)
    events = tapped(process)
    assert [(e["path"], e["status"], e["source"]) for e in events] == [("/fail", 500, "web")] * 2
