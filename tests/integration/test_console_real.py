"""What `meshctl up` shows once the stack is ready (real engine, examples/shop's web and api): the
apps' lines, a denied call and a 5xx as one line a person reads, none of HAProxy's start-up
chatter, no raw access line, nothing printed twice; `meshctl logs` shows the same, and with -v
every line as written (HAProxy's messages once each: the proxy prints them, the access log
carries none of them)."""

from __future__ import annotations

import re
import signal
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.support import Foreground, copy_shop, eventually, port_of, run_meshctl, unique_project, urls

pytestmark = pytest.mark.integration

PORTS = "    ports: {https: 0, http: 0, metrics: 0}\n"
RAW_ACCESS = re.compile(r"\] (proxy|mesh_in|mesh_out)\S* \S+/\S+ ")
HAPROXY_LEVEL = re.compile(r"^\[(NOTICE|WARNING|ALERT)\] +\(\d+\) : ")
CHATTER = ("changed its IP", "administratively READY", "is UP", "is DOWN", "New worker", "Loading success",
           "metrics: serving", "capture: calls from")


def get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def sidecar_lines(lines: list[str]) -> list[str]:
    """The console's lines of meshctl's sidecars (`service/role | text`, role not app)."""
    return [line for line in lines if re.match(r"^\S+/(proxy|metrics|tls|capture)\s+\| ", line)]


def web_and_api(tmp_path: Path, api_allow: str) -> tuple[Path, str]:
    """examples/shop's web and api (no kv: api's /visits cannot reach it and answers 502, and so
    does web), api letting in `api_allow`."""
    folder = copy_shop(tmp_path / "shop")
    project = unique_project("console")
    web, api = (f"  {name}:\n    build: {name}\n    port: 8080\n    health: /healthz\n{PORTS}" for name in ("web", "api"))
    (folder / "mesh.yaml").write_text(f"name: {project}\nservices:\n{web}{api}    allow: {api_allow}\n")
    return folder, project


def test_up_shows_the_apps_lines_and_what_matters_once(tmp_path: Path, sidecar_images):
    # web may call only these two paths of api: /admin is denied by api's proxy.
    folder, project = web_and_api(tmp_path, '[{from: web, paths: ["/whoami", "/visits"]}]')
    up = Foreground(str(folder), "--progress", "plain")
    try:
        up.wait_for_line("meshctl: ready", timeout=600)
        ready = len(up.lines)
        web = port_of(urls(project)["web"]["http"])
        assert get(web, "/") == 200                                   # web → api /whoami
        assert get(web, "/call?url=http://api:8080/admin") == 200     # web says what api answered: 403
        assert get(web, "/visits") == 502                             # api → kv fails: 502, web 502
        denied = "web → api  GET /admin  403 denied"
        eventually(lambda: up.has_line("host → web  GET /visits  502", since=ready) and up.has_line(denied),
                   60, what="the 502 and the denied call on the console", detail=lambda: up.output)
        up.proc.send_signal(signal.SIGINT)
        assert up.wait(120) == 0
    finally:
        up.kill()
        run_meshctl("down", str(folder))
    after = up.lines[ready:]
    shown = "\n".join(after)
    assert "api: GET /whoami from spiffe://meshctl.local/" in shown and "web: listening on 8080" in up.output
    for text in CHATTER:
        assert text not in up.output, (text, up.output)
    assert not [line for line in up.lines if RAW_ACCESS.search(line) or HAPROXY_LEVEL.search(line.split("| ", 1)[-1])]
    sidecars = sidecar_lines(up.lines)
    assert [line for line, n in Counter(sidecars).items() if n > 1] == [], up.output
    # The denied call and the 5xx: one line each, from the callee's proxy, with the caller and mTLS.
    [denied_line] = [line for line in sidecars if denied in line]
    assert denied_line.startswith("api/proxy") and denied_line.endswith("mTLS")
    assert len([line for line in sidecars if "web → api  GET /visits  502" in line]) == 1
    assert len([line for line in sidecars if "host → web  GET /visits  502" in line]) == 1
    assert not [line for line in sidecars if " 200 " in line]        # requests that went well: --access shows them


def test_logs_follows_the_same_rules_and_v_shows_every_line_as_written_once(tmp_path: Path, sidecar_images):
    folder, project = web_and_api(tmp_path, "[]")
    run_meshctl("up", "-d", str(folder), check=True, timeout=900)
    try:
        web = port_of(urls(project)["web"]["http"])
        assert get(web, "/") == 502                 # api lets no one in: web answers 502

        def logs(*flags: str) -> str:
            return run_meshctl("logs", "-p", project, *flags, check=True).stdout
        eventually(lambda: "web → api  GET /whoami  403 denied" in logs(), 60, what="the denied call",
                   detail=lambda: logs("-v"))
        default = logs()
        assert "web: listening on 8080" in default and "host → web  GET /  502" in default
        assert not any(text in default for text in CHATTER) and not RAW_ACCESS.search(default)
        verbose = logs("-v").splitlines()
        assert any(RAW_ACCESS.search(line) for line in verbose) and any("changed its IP" in line for line in verbose)
        # HAProxy's own messages: printed by the proxy, and not again by the metrics sidecar.
        messages = [HAPROXY_LEVEL.sub("", line.split("| ", 1)[1]) for line in verbose
                    if line.startswith(("web/proxy", "api/proxy")) and HAPROXY_LEVEL.search(line.split("| ", 1)[1])]
        relayed = {line.split("| ", 1)[1] for line in verbose if line.startswith(("web/metrics", "api/metrics"))}
        assert messages and not [m for m in messages if m in relayed]
        def texts(lines: list[str], prefix: str) -> list[str]:
            return [line.split("| ", 1)[1] for line in lines if line.startswith(prefix)]
        proxy = logs("web", "--role", "proxy").splitlines()
        assert proxy and texts(proxy, "web/proxy") == texts(verbose, "web/proxy") and len(proxy) == len(texts(proxy, ""))
    finally:
        run_meshctl("down", str(folder))
