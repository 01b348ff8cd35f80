"""`meshctl dashboard` in a real browser (Debian's chromium, headless, driven by Playwright) against
a real examples/shop stack: the graph shows every service and the web → api → kv edges with
figures that grow with traffic; a request shows in the requests view within 2 s; a fault set from
the page fails the next call and shows on the graph, and clearing it heals; a trace opens as a
waterfall; no token, no page. One stack, one dashboard and one browser for the module."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.support import copy_shop, eventually, meshctl_cmd, port_of, run_meshctl, unique_project, urls

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"          # Debian's (.ci/setup installs it); Playwright cannot download one here
PORTS = "    ports: {https: 0, http: 0, metrics: 0}\n"
SCREENSHOT = os.environ.get("MESHCTL_DASHBOARD_SCREENSHOT")    # where to save the graph's screenshot too
SECRET = f"dash-secret-{uuid.uuid4().hex}"      # an app's environment value: never served


def shop_yaml(name: str) -> str:
    return (f"name: {name}\nservices:\n"
            f"  web:\n    build: web\n    port: 8080\n    health: /healthz\n{PORTS}"
            f"  api:\n    build: api\n    port: 8080\n    health: /healthz\n    allow: [web]\n{PORTS}"
            f"    env: {{DASH_SECRET: {SECRET}}}\n"
            f"  kv:\n    build: kv\n    port: 7000\n    protocol: tcp\n    allow: [api]\n{PORTS}")


class Dashboard:
    """`meshctl dashboard PATH --no-open` running; its URL read from what it prints."""

    def __init__(self, folder: Path):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(meshctl_cmd("dashboard", str(folder), "--no-open"), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "400"})
        threading.Thread(target=self._read, daemon=True).start()
        self.url = eventually(self._url, 60, 0.1, what="the dashboard's URL", detail=lambda: "\n".join(self.lines))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _url(self) -> str | None:
        assert self.proc.poll() is None, "\n".join(self.lines)
        found = re.search(r"http://127\.0\.0\.1:\d+/\?token=[\w-]+", "\n".join(self.lines))
        return found.group(0) if found else None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine, sidecar_images):
    folder = copy_shop(tmp_path_factory.mktemp("dashboard") / "shop")
    name = unique_project("dash")
    (folder / "mesh.yaml").write_text(shop_yaml(name))
    run_meshctl("up", "-d", str(folder), check=True, timeout=900)
    dashboard = None
    try:
        dashboard = Dashboard(folder)
        yield name, dashboard.url, port_of(urls(name)["web"]["http"])
    finally:
        if dashboard is not None:
            dashboard.stop()
        run_meshctl("down", str(folder))


@pytest.fixture(scope="module")
def page(stack):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto(stack[1])
        yield tab
        browser.close()
        assert errors == [], errors


def get(port: int, path: str) -> int:
    """A plain call into web, as curl makes it: its status."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def show(page, key: str) -> None:
    """A view by its key, as a keyboard user opens it (Escape leaves a form field first)."""
    page.keyboard.press("Escape")
    page.keyboard.press(key)


def edge_requests(page, edge: str) -> int:
    cell = page.query_selector(f'#edges tr[data-edge="{edge}"] td[data-field="requests"]')
    return int(cell.inner_text()) if cell is not None else 0


def test_the_graph_shows_every_service_and_the_edges_with_figures_that_grow(stack, page, tmp_path_factory):
    _project, _url, web = stack
    for service in ("web", "api", "kv"):
        page.wait_for_selector(f'#graph-svg [data-service="{service}"]', timeout=10_000)
    assert "RUNNING" in page.text_content('#graph-svg [data-service="api"]')
    assert all(get(web, "/visits") == 200 for _ in range(3))            # web → api → kv
    before = eventually(lambda: edge_requests(page, "web->api") >= 3 and edge_requests(page, "api->kv") >= 3
                        and (edge_requests(page, "web->api"), edge_requests(page, "api->kv")), 20, 0.2,
                        what="the web → api and api → kv edges")
    assert page.query_selector('#graph-svg [data-edge="web->api"]') and page.query_selector('#graph-svg [data-edge="api->kv"]')
    assert all(get(web, "/visits") == 200 for _ in range(4))
    eventually(lambda: edge_requests(page, "web->api") >= before[0] + 4 and edge_requests(page, "api->kv") >= before[1] + 4,
               20, 0.2, what="the edges' counts grown by 4")
    label = page.get_attribute('#graph-svg [data-edge="web->api"]', "aria-label")
    assert "mutual TLS" in label and "100.0%" in label and "req/s" in label, label
    shot = tmp_path_factory.mktemp("screenshots") / "dashboard-graph.png"
    page.locator("#graph").screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if SCREENSHOT:
        shutil.copy(shot, SCREENSHOT)


def test_a_request_shows_in_the_requests_view_within_2s(stack, page):
    _project, _url, web = stack
    show(page, "3")
    page.wait_for_selector('#tapping[data-services="api,kv,web"]', state="attached", timeout=20_000)
    path = f"/dash-{uuid.uuid4().hex[:8]}"
    assert get(web, path) == 200
    row = page.wait_for_selector(f'#request-table tr[data-path="{path}"]', timeout=2_000)
    assert "host → web" in row.inner_text() and "200" in row.inner_text()
    page.fill("#f-status", "5xx")
    assert page.query_selector(f'#request-table tr[data-path="{path}"]') is None
    page.fill("#f-status", "")


def test_a_fault_set_on_the_page_fails_the_next_call_and_clearing_it_heals(stack, page):
    _project, _url, web = stack
    show(page, "5")
    form = page.wait_for_selector('form[data-fault-form="api"]', timeout=10_000)
    form.query_selector('select[name="kind"]').select_option("abort")
    form.query_selector('input[name="value"]').fill("503")
    form.query_selector('input[name="percent"]').fill("100")
    form.query_selector('button[type="submit"]').click()
    page.wait_for_selector('[data-fault-state="api"]:has-text("live: abort 503")', timeout=15_000)
    assert get(web, "/") == 502                 # web says api failed: api's proxy answered 503
    show(page, "1")
    page.wait_for_selector('#graph-svg [data-service="api"]:has-text("FAULT abort 503")', timeout=10_000)
    page.wait_for_selector('#graph-svg [data-edge="web->api"]:has-text("FAULT abort 503")', timeout=10_000)

    show(page, "5")
    page.click('button[data-clear="api"]')
    eventually(lambda: page.text_content('[data-fault-state="api"]') == "mesh.yaml's: none", 15, 0.1,
               what="api's faults back to mesh.yaml's")
    assert get(web, "/") == 200
    show(page, "1")
    eventually(lambda: "FAULT" not in page.text_content('#graph-svg [data-service="api"]'), 10, 0.2,
               what="api's node without a fault")


def test_a_trace_opens_as_a_waterfall_and_nothing_is_served_without_the_token(stack, page):
    _project, url, web = stack
    assert get(web, "/visits") == 200
    show(page, "4")

    def listed():
        page.click("#trace-refresh")
        return page.query_selector('#trace-table tr:has-text("web: GET /visits"):has-text("api, web") [data-trace]')
    trace_id = eventually(listed, 20, 0.5, what="a web → api trace in the list").get_attribute("data-trace")
    proxies = ["web · server · GET /visits", "web · client · GET /visits", "api · server · GET /visits"]

    def waterfall():           # web's own spans come in batches every 0.5 s: the trace is opened again until they are in
        # Found again each time: the list is drawn anew when it refreshes, and an old row is gone.
        page.click(f'#trace-table [data-trace="{trace_id}"]')
        page.wait_for_selector(f'#waterfall-title:has-text("{trace_id}")', timeout=10_000)
        rows = [(row.get_attribute("data-depth"), row.inner_text().split("\n")[0])
                for row in page.query_selector_all("#waterfall .wf-row")]
        return "handle /visits" in str(rows) and rows
    rows = eventually(waterfall, 20, 0.5, what="the trace with web's own spans")
    names = [name for _, name in rows]
    assert [n for n in names if n in proxies] == proxies, rows                  # the proxies' hops, in order
    depth = {name: int(d) for d, name in rows}
    assert depth["web · server · GET /visits"] < depth["web · server · handle /visits"] < depth["api · server · GET /visits"], rows
    assert len(page.query_selector_all("#waterfall .wf-bar")) == len(rows)

    base, token = url.split("?token=")
    for path in ("", "api/graph", "api/services/api", "api/services/web", "api/faults", "api/requests", "api/traces"):
        request = urllib.request.Request(base + path, headers={"Cookie": f"meshctl_dashboard={token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert SECRET not in answer.read().decode(), path
    for target in (base, base + "api/graph", base + "api/stream", f"{base}?token=x{token}"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(target, timeout=5)
        assert refused.value.code == 403, target
    request = urllib.request.Request(url, headers={"Host": "rebound.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403
