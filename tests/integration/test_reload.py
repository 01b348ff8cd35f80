"""Hot reload on the real engine: sync and rebuild modes, bursts, broken builds, mesh.yaml
changes applied in place, and no failed request while the app restarts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import docker
import pytest

from meshctl.runtime.probes import http_request, tls_context
from tests.support import (Foreground, ca_path, eventually, hello_project, port_of, ps_json, running_containers,
                           run_meshctl, unique_project)

pytestmark = pytest.mark.integration


def mesh_yaml(name: str, *, sync: bool, timeout: str = "15s") -> str:
    watch = '    watch: {sync: {".": /app}}\n' if sync else ""
    return (f"name: {name}\nservices:\n  hello:\n    build: .\n    port: 8080\n    health: /healthz\n"
            f"    stop_grace_period: 5s\n    sidecars: {{proxy: {{timeout: {timeout}}}}}\n{watch}"
            "    ports: {https: 0, http: 0, metrics: 0}\n")


class Running:
    def __init__(self, tmp_path: Path, *, sync: bool, while_starting=None):
        self.name = unique_project("reload")
        self.folder = hello_project(tmp_path, mesh_yaml=mesh_yaml(self.name, sync=sync))
        self.up = Foreground(str(self.folder))
        if while_starting is not None:
            self.up.wait_for_line(": starting pod")     # the image is built, the containers not yet up
            while_starting(self)
        self.up.wait_for_line("meshctl: ready")
        [entry] = ps_json(self.name)
        self.https = port_of(entry["urls"]["https"])
        self.context = tls_context(ca_path())

    def get(self, path: str = "/") -> tuple[int, bytes]:
        answer = http_request(self.https, path, tls=self.context, timeout=20)
        return answer.status, answer.body

    def greeting(self, word: str) -> None:
        app = self.folder / "app.py"
        text = app.read_text()
        start = text.index('f"{GREETING} ') + len('f"{GREETING} ')
        end = text.index("\\n", start)
        app.write_text(text[:start] + word + text[end:])

    def wait_for_body(self, body: bytes, timeout: float = 60) -> None:
        eventually(lambda: self.get()[1] == body, timeout, 0.05, ignore=(), what=f"answers {body!r}",
                   detail=lambda: self.up.output)

    def wait_for_reloads(self, count: int, timeout: float = 30) -> list[str]:
        """The reload lines, once there are `count` of them."""
        eventually(lambda: len(self.reload_lines()) >= count, timeout, 0.05, what=f"{count} reload lines",
                   detail=lambda: self.up.output)
        return self.reload_lines()

    def reload_lines(self) -> list[str]:
        return [line for line in self.up.lines if line.startswith(("↻", "✗"))]

    def has_reload_line(self, text: str) -> bool:
        return any(text in line for line in self.reload_lines())

    def close(self) -> None:
        self.up.proc.send_signal(2)
        try:
            self.up.wait(60)
        finally:
            self.up.kill()
            run_meshctl("down", "--project", self.name)


@pytest.fixture
def synced(tmp_path, engine, sidecar_images):
    running = Running(tmp_path, sync=True)
    yield running
    running.close()


@pytest.fixture
def rebuilt(tmp_path, engine, sidecar_images):
    running = Running(tmp_path, sync=False)
    yield running
    running.close()


def test_a_save_while_the_stack_starts_is_applied_once_it_is_up(tmp_path, engine, sidecar_images):
    """Rebuild mode: the image was built before the save, so only a reload after `ready` brings the
    new code; watching starts before the stack does, so the save is not lost."""
    running = Running(tmp_path, sync=False, while_starting=lambda r: r.greeting("saved while starting"))
    try:
        running.wait_for_body(b"hello saved while starting\n")
        lines = running.wait_for_reloads(1)
        assert len(lines) == 1 and "rebuild hello" in lines[0], lines
    finally:
        running.close()


def test_sync_mode_restarts_only_the_app_and_coalesces_bursts(synced, engine):
    ids = {c.name: c.id for c in running_containers(engine, synced.name)}
    synced.greeting("from the first save")
    synced.wait_for_body(b"hello from the first save\n")
    after = {c.name: c.id for c in running_containers(engine, synced.name)}
    assert {n: i for n, i in after.items() if not n.endswith("-app")} == \
        {n: i for n, i in ids.items() if not n.endswith("-app")}        # holder and sidecars stay
    # The app restarted in place, or replaced where the engine lost it in its restart (and said so).
    assert after == ids or "replacing its container" in synced.up.output
    lines = synced.wait_for_reloads(1)
    assert len(lines) == 1 and "restart hello" in lines[0], lines

    # 20 saves in a burst (a formatter, a checkout) make one reload.
    for i in range(20):
        synced.greeting(f"from burst save {i}")
        (synced.folder / f"extra{i}.txt").write_text(str(i))
    synced.wait_for_body(b"hello from burst save 19\n")
    synced.wait_for_reloads(2)
    # A marker save after the burst: the next reload is the marker's own, so the burst made one.
    (synced.folder / "marker1.txt").write_text("1")
    lines = synced.wait_for_reloads(3)
    assert len(lines) == 3 and "marker1.txt" in lines[2] and "extra" not in lines[2], lines

    # Ignored paths trigger nothing: the next reload after them names only the next marker.
    (synced.folder / "__pycache__").mkdir(exist_ok=True)
    (synced.folder / "__pycache__" / "x.pyc").write_text("x")
    (synced.folder / ".app.py.swp").write_text("x")
    (synced.folder / "marker2.txt").write_text("2")
    lines = synced.wait_for_reloads(4)
    assert len(lines) == 4 and "marker2.txt" in lines[3], lines
    assert ".pyc" not in lines[3] and ".swp" not in lines[3], lines


def test_steady_traffic_sees_no_error_during_ten_reloads(synced):
    failures: list[str] = []
    served = 0
    stop = threading.Event()

    def client() -> None:
        nonlocal served
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                status, _ = synced.get()
                if status >= 500:
                    failures.append(f"HTTP {status}")
                served += 1
            except OSError as exc:
                failures.append(repr(exc))
            next_at += 0.04            # two clients: about 50 requests a second in all
            time.sleep(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=client) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for i in range(10):
            synced.greeting(f"from reload {i}")
            synced.wait_for_body(f"hello from reload {i}\n".encode())
            # The reload is done, and the steady traffic has crossed the new app, before the next save.
            synced.wait_for_reloads(i + 1)
            eventually(lambda mark=served: served >= mark + 20, 30, 0.02, what="20 requests after the reload")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert len([l for l in synced.wait_for_reloads(10) if l.startswith("↻")]) == 10, synced.reload_lines()
    assert served > 150 and failures == [], (served, failures[:5])


def test_rebuild_mode_and_a_broken_build_keeps_the_old_app(rebuilt, engine):
    app_before = next(c.id for c in running_containers(engine, rebuilt.name) if c.label("role") == "app")
    rebuilt.greeting("from a rebuilt image")
    rebuilt.wait_for_body(b"hello from a rebuilt image\n")
    app_after = next(c.id for c in running_containers(engine, rebuilt.name) if c.label("role") == "app")
    assert app_after != app_before
    assert "rebuild hello" in rebuilt.wait_for_reloads(1)[-1]

    dockerfile = rebuilt.folder / "Dockerfile"
    good = dockerfile.read_text()
    dockerfile.write_text(good + "RUN echo this build is broken && exit 1\n")
    eventually(lambda: any(line.startswith("✗") for line in rebuilt.reload_lines()), 60, what="a failed reload",
               detail=lambda: rebuilt.up.output)
    assert "the previous app keeps serving" in rebuilt.reload_lines()[-1]
    assert "this build is broken" in rebuilt.up.output
    assert rebuilt.get() == (200, b"hello from a rebuilt image\n")

    dockerfile.write_text(good)   # the next save tries again
    rebuilt.greeting("from the fixed build")
    rebuilt.wait_for_body(b"hello from the fixed build\n")


def test_mesh_yaml_change_reloads_the_proxy_in_place(synced, engine):
    proxy_before = next(c.id for c in running_containers(engine, synced.name) if c.label("role") == "proxy")
    source = synced.folder / "mesh.yaml"
    source.write_text(source.read_text().replace("services:\n  hello:\n    build", "services:\n  hello:\n  build"))
    eventually(lambda: synced.has_reload_line("not applied"), 30, detail=lambda: synced.up.output)
    assert synced.get()[0] == 200    # an invalid mesh.yaml leaves the stack serving

    source.write_text(mesh_yaml(synced.name, sync=True, timeout="42s"))
    eventually(lambda: synced.has_reload_line("mesh.yaml applied"), 30, detail=lambda: synced.up.output)
    proxy = next(c for c in running_containers(engine, synced.name) if c.label("role") == "proxy")
    assert proxy.id == proxy_before
    config = docker.from_env().containers.get(proxy.id).exec_run(["cat", "/etc/meshctl/haproxy.cfg"]).output
    assert b"timeout server 42000ms" in config
    assert "reloading the proxy sidecar's config" in synced.up.output
    assert synced.get()[0] == 200
