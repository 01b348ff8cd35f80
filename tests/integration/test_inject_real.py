"""`meshctl inject` for real, on examples/compose-app and corpus files 20-22: `docker compose up
--wait` on the injected file, HTTPS served by the injected proxy verified with meshctl's CA (no tls
sidecar: the proxy terminates TLS), metrics scraped, TCP proxied, the app restarted (by compose, and
by its restart policy after a crash) with HTTPS back through the same sidecars, `docker compose down
-v` leaves nothing. Images are built locally (no registry); host ports are free ones."""

from __future__ import annotations

import json
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshctl.runtime.probes import http_request, tls_context
from tests.support import ROOT, compose_cmd, eventually, run_meshctl, unique_project

pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "examples" / "compose-app"
CORPUS = ROOT / "tests" / "compose_corpus"
APP_IMAGE = "meshctl-compose-app:dev"


@pytest.fixture(scope="module")
def app_image(engine, sidecar_images) -> str:
    """The example's image, built once here (`docker compose up` then finds it and builds nothing)."""
    from meshctl.planning.images import build_network
    from meshctl.runtime.stack import ensure_base_image

    ensure_base_image(engine)
    engine.build(EXAMPLE / "web", APP_IMAGE, labels={"meshctl.test": "inject"}, network_mode=build_network())
    return APP_IMAGE


@pytest.fixture
def ca_path() -> Path:
    return Path(run_meshctl("certs", "ca", check=True).stdout.strip())


def compose(folder: Path, project: str, *args: str, file: str = "compose.mesh.yaml",
            timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(compose_cmd("-p", project, "-f", file, *args), cwd=folder, capture_output=True,
                          text=True, timeout=timeout)


def up(folder: Path, project: str, file: str = "compose.mesh.yaml") -> None:
    result = compose(folder, project, "up", "-d", "--wait", "--wait-timeout", "90", file=file)
    if result.returncode != 0:
        logs = compose(folder, project, "logs", "--tail", "20", file=file).stdout
        raise AssertionError(f"docker compose up --wait failed:\n{result.stderr[-3000:]}\n{logs[-4000:]}")


def host_port(folder: Path, project: str, service: str, port: int, file: str = "compose.mesh.yaml") -> int:
    """The host port of a pod port: its holder (NAME-mesh-pod) publishes it."""
    result = compose(folder, project, "port", service, str(port), file=file)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().rsplit(":", 1)[1])


def down_and_check_nothing_is_left(folder: Path, project: str, file: str = "compose.mesh.yaml") -> None:
    result = compose(folder, project, "down", "-v", "--remove-orphans", "-t", "5", file=file)
    assert result.returncode == 0, result.stderr
    for kind in ("ps -a", "network ls", "volume ls"):
        for label in (f"com.docker.compose.project={project}", f"meshctl.project={project}"):
            left = subprocess.run(["docker", *kind.split(), "-q", "--filter", f"label={label}"],
                                  capture_output=True, text=True, timeout=30).stdout.split()
            assert left == [], f"docker {kind} still lists {left} ({label})"


def services_running(folder: Path, project: str, file: str = "compose.mesh.yaml") -> list[str]:
    return sorted(compose(folder, project, "ps", "--services", file=file).stdout.split())


def metrics(port: int) -> dict[str, list]:
    answer = http_request(port, "/metrics")
    assert answer.status == 200
    families = {f.name: f.samples for f in text_string_to_metric_families(answer.body.decode())}
    return families


def tcp_connections(port: int) -> float:
    """meshctl_tcp_connections_total{outcome="ok"} on a metrics port."""
    samples = metrics(port).get("meshctl_tcp_connections", [])
    return sum(s.value for s in samples if s.name.endswith("_total") and s.labels.get("outcome") == "ok")


def copy_example(tmp_path: Path) -> Path:
    """The example with its fixed host ports turned into free ones."""
    folder = tmp_path / "compose-app"
    shutil.copytree(EXAMPLE, folder)
    text = (folder / "compose.yaml").read_text()
    text = text.replace('"127.0.0.1:8443:8080"', '"127.0.0.1::8080"').replace('        published: "7000"\n', "")
    (folder / "compose.yaml").write_text(text)
    return folder


def from_corpus(tmp_path: Path, name: str) -> Path:
    shutil.copy(CORPUS / name, tmp_path / "compose.yaml")
    return tmp_path


@pytest.mark.parametrize("source", ["examples/compose-app", "20-real-web-tcp-kv.yaml"])
def test_http_and_tcp_through_the_sidecars(source, tmp_path, app_image, ca_path):
    folder = copy_example(tmp_path) if source.startswith("examples/") else from_corpus(tmp_path, source)
    project = unique_project("inject")
    result = run_meshctl("inject", "compose.yaml", "-o", "compose.mesh.yaml", "-p", project, cwd=folder, check=True)
    assert "worker: left alone: publishes no ports" in result.stderr
    try:
        up(folder, project)
        assert services_running(folder, project) == sorted(
            [f"{s}{suffix}" for s in ("web", "kv") for suffix in ("", "-mesh-pod", "-mesh-proxy", "-mesh-metrics")]
            + ["worker"])
        tls = tls_context(ca_path)
        https = host_port(folder, project, "web-mesh-pod", 15443)
        for name in ("localhost", "web"):     # both are in the certificate
            answer = http_request(https, "/", tls=tls, server_hostname=name)
            assert answer.status == 200 and answer.body == b"hello from compose\n"
        # Services still reach each other by name: web → kv:7000 directly.
        assert http_request(https, "/kv/colour", tls=tls, method="PUT", body=b"green",
                            server_hostname="localhost").status == 200
        assert http_request(https, "/kv/colour", tls=tls, server_hostname="localhost").body == b"green\n"

        # The TCP service: a line protocol through the TCP proxy, byte for byte.
        with socket.create_connection(("127.0.0.1", host_port(folder, project, "kv-mesh-pod", 15080)), timeout=5) as conn:
            conn.sendall(b"GET colour\nPING\n")
            # The reader closed too: a socket's file keeps the connection open until it is.
            with conn.makefile("rb") as reader:
                assert reader.readline() == b"green\n" and reader.readline() == b"PONG\n"

        web = metrics(host_port(folder, project, "web-mesh-pod", 15090))
        # The HTTPS requests above were counted: the proxy that answered them is the one that
        # terminated TLS (nothing else in the pod listens on 15443).
        served = {(s.labels["code"], s.labels["method"]): s.value for s in web["meshctl_requests"]
                  if s.name == "meshctl_requests_total"}
        assert served[("200", "PUT")] >= 1 and served[("200", "GET")] >= 3
        assert "compose_app_pages" in web                     # the app's own metrics, merged
        kv_metrics = host_port(folder, project, "kv-mesh-pod", 15090)
        connections = {s.labels.get("proxy"): s.value for s in metrics(kv_metrics)["haproxy_frontend_connections"]}
        assert connections["proxy"] >= 1
        # The TCP proxy is up's: it logs each connection to the metrics sidecar, counted a moment
        # after the close (the proxy's ring forwards it).
        eventually(lambda: tcp_connections(kv_metrics) >= 1, what="the TCP connection counted")
    finally:
        down_and_check_nothing_is_left(folder, project)


def test_anchors_long_syntax_keep_plain_and_profiles(tmp_path, app_image, ca_path):
    from_corpus(tmp_path, "21-real-anchors-keep-plain.yaml")
    project = unique_project("inject")
    run_meshctl("inject", "--keep-plain", "-o", "compose.mesh.yaml", "-p", project, "compose.yaml",
                cwd=tmp_path, check=True)
    try:
        up(tmp_path, project)
        assert services_running(tmp_path, project) == sorted(
            f"{s}{suffix}" for s in ("front", "back") for suffix in ("", "-mesh-pod", "-mesh-proxy", "-mesh-metrics"))
        tls = tls_context(ca_path)
        for service in ("front", "back"):
            https = host_port(tmp_path, project, f"{service}-mesh-pod", 15443)
            assert http_request(https, "/", tls=tls, server_hostname=service).body == f"{service}\n".encode()
            # --keep-plain: the app's own port still answers, plain HTTP, straight to the app.
            assert http_request(host_port(tmp_path, project, f"{service}-mesh-pod", 8080), "/").body == f"{service}\n".encode()
            samples = metrics(host_port(tmp_path, project, f"{service}-mesh-pod", 15090))["meshctl_requests"]
            assert any(s.labels["service"] == service and s.value >= 1 for s in samples)
    finally:
        down_and_check_nothing_is_left(tmp_path, project)


def test_in_place_then_uninject_leaves_no_sidecar_behind(tmp_path, app_image, ca_path):
    compose_file = from_corpus(tmp_path, "22-real-in-place.yaml") / "compose.yaml"
    original = compose_file.read_text()
    project = unique_project("inject")
    run_meshctl("inject", "--in-place", "-p", project, "compose.yaml", cwd=tmp_path, check=True)
    assert (tmp_path / "compose.yaml.bak").read_text() == original
    try:
        up(tmp_path, project, file="compose.yaml")
        https = host_port(tmp_path, project, "web-mesh-pod", 15443, file="compose.yaml")
        assert http_request(https, "/", tls=tls_context(ca_path), server_hostname="web").status == 200

        run_meshctl("uninject", "--in-place", "compose.yaml", cwd=tmp_path, check=True)
        assert compose_file.read_text() == original
        result = compose(tmp_path, project, "up", "-d", "--wait", "--remove-orphans", file="compose.yaml")
        assert result.returncode == 0, result.stderr
        names = compose(tmp_path, project, "ps", "-a", "--services", file="compose.yaml").stdout.split()
        assert names == ["web"]
        left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=meshctl.project={project}"],
                              capture_output=True, text=True).stdout.split()
        assert left == []
        plain = host_port(tmp_path, project, "web", 8080, file="compose.yaml")
        assert answers(plain, None) == b"hello\n"
    finally:
        down_and_check_nothing_is_left(tmp_path, project, file="compose.yaml")


def answers(port: int, ca_path: Path | None, path: str = "/", timeout: float = 60) -> bytes:
    """Polls until the port answers 200 (HTTPS through the pod, or plain HTTP with no ca_path: an
    app with no healthcheck may not listen yet when `up --wait` returns); the body. Fails with the
    last error."""
    tls = tls_context(ca_path) if ca_path else None

    def answered() -> bytes:
        answer = http_request(port, path, tls=tls, server_hostname="localhost", timeout=2)
        assert answer.status == 200, f"HTTP {answer.status}"
        return answer.body
    return eventually(answered, timeout, 0.2, what=f"{'HTTPS' if tls else 'HTTP'} on {port} back",
                      ignore=(OSError, AssertionError))


def container_state(project: str, service: str) -> tuple[str, str]:
    """(container id, start time) of a compose service's container."""
    out = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                          "--filter", f"label=com.docker.compose.service={service}"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    assert len(out) == 1, f"{service}: {out}"
    started = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", out[0]],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    return out[0], started


def test_an_app_restart_keeps_its_sidecars_serving(tmp_path, app_image, ca_path):
    """`docker compose restart web`, and a crash that its restart policy restarts: the app gets a
    new process in the holder's namespace, and HTTPS through the same sidecars answers again; a client
    linked to web (links: [web]) reaches it before and after."""
    folder = copy_example(tmp_path)
    # A client that reaches web through a link (a link names a container: the holder's, now).
    with (folder / "compose.yaml").open("a") as compose_file:
        compose_file.write('  client:\n    <<: *app\n    command: ["python3", "-c", "import time; time.sleep(3600)"]\n'
                           '    stop_grace_period: 1s\n    links: [web]\n')
    project = unique_project("inject")
    run_meshctl("inject", "compose.yaml", "-o", "compose.mesh.yaml", "-p", project, cwd=folder, check=True)

    def through_the_link() -> bytes:
        result = compose(folder, project, "exec", "-T", "client", "python3", "-c",
                         "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://web:8080/').read().decode())")
        assert result.returncode == 0, result.stderr
        return result.stdout.encode()

    try:
        up(folder, project)
        https = host_port(folder, project, "web-mesh-pod", 15443)
        assert answers(https, ca_path) == b"hello from compose\n"
        assert through_the_link() == b"hello from compose\n"
        kept = {s: container_state(project, s) for s in ("web-mesh-pod", "web-mesh-proxy", "web-mesh-metrics")}
        for service, (container, _) in kept.items():      # as the engine runs them: no capability, no socket
            info = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True, text=True,
                                             timeout=30).stdout)[0]
            assert info["HostConfig"]["CapDrop"] == ["ALL"] and not info["HostConfig"]["CapAdd"]
            assert info["HostConfig"]["ReadonlyRootfs"] is True and not info["HostConfig"]["Privileged"]
            assert not any("docker.sock" in m.get("Source", "") for m in info["Mounts"])
            assert info["Config"]["Labels"]["meshctl.role"] == service.rsplit("-", 1)[1]
            if service != "web-mesh-pod":                   # in the holder's namespace
                mode, _, joined = info["HostConfig"]["NetworkMode"].partition(":")
                assert mode == "container" and joined.startswith(kept["web-mesh-pod"][0])
        app_before = container_state(project, "web")

        result = compose(folder, project, "restart", "web")
        assert result.returncode == 0, result.stderr
        assert container_state(project, "web")[1] != app_before[1]           # the app did restart
        assert answers(https, ca_path) == b"hello from compose\n"
        # Still by name to its peer (web → kv:7000), and web still answers to its name (kv's pod → web).
        assert http_request(https, "/kv/colour", tls=tls_context(ca_path), method="PUT", body=b"blue",
                            server_hostname="localhost").status == 200
        assert answers(https, ca_path, "/kv/colour") == b"blue\n"
        assert through_the_link() == b"hello from compose\n"

        # A crash: the app exits on its own; `restart: unless-stopped` brings it back in the same pod.
        app_now = container_state(project, "web")
        exited = subprocess.run(["docker", "exec", app_now[0], "python3", "-c",
                                 "import os, signal; os.kill(1, signal.SIGTERM)"], capture_output=True, timeout=30)
        assert exited.returncode == 0, exited.stderr
        eventually(lambda: container_state(project, "web")[1] != app_now[1], 60, 0.2, what="web started again")
        assert answers(https, ca_path) == b"hello from compose\n"
        # Neither restart touched the holder or the sidecars.
        assert {s: container_state(project, s) for s in kept} == kept
        names = subprocess.run(["docker", "exec", kept["web-mesh-proxy"][0], "getent", "hosts", "web"],
                               capture_output=True, text=True, timeout=30)
        assert names.returncode == 0 and names.stdout.split()[0]             # `web` resolves: the holder's alias
    finally:
        down_and_check_nothing_is_left(folder, project)


def test_a_portable_pair_committed_cloned_elsewhere_runs_and_builds_its_sidecars(tmp_path, app_image, ca_path):
    """--portable: the compose file and .meshctl/ go into git (the keys do not); a clone in another
    folder gets its keys from `meshctl inject --portable`, which changes no committed byte; compose
    builds the sidecar images itself from .meshctl/images when they are missing (here under tags of
    this test's own); HTTPS from the clone verifies against meshctl's CA."""
    folder = copy_example(tmp_path)
    project = unique_project("portable")
    inject = ["inject", "--portable", "--no-build", "compose.yaml", "-o", "compose.mesh.yaml", "-p", project]
    run_meshctl(*inject, cwd=folder, check=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "shared"]):
        subprocess.run([*git, *args], cwd=folder, check=True)
    clone = tmp_path / "elsewhere" / "clone"
    subprocess.run([*git, "clone", "-q", str(folder), str(clone)], check=True)
    assert not list(clone.rglob("*.pem")) and (clone / ".meshctl" / "web" / "proxy" / "haproxy.cfg").is_file()
    run_meshctl(*inject, cwd=clone, check=True)
    assert subprocess.run([*git, "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout == ""
    assert stat.S_IMODE((clone / ".meshctl" / "web" / "proxy" / "key.pem").stat().st_mode) == 0o600
    # Tags no engine has: compose must build them from the clone's .meshctl/images (never pull).
    text = (clone / "compose.mesh.yaml").read_text()
    tags = {}
    for name in ("haproxy", "metrics"):
        [ref] = {line.split("image: ", 1)[1] for line in text.splitlines() if f"image: meshctl-{name}:" in line}
        tags[ref] = f"{project}-{name}:built-by-compose"
        text = text.replace(ref, tags[ref])
    (clone / "compose.mesh.yaml").write_text(text)
    try:
        up(clone, project)
        for tag in tags.values():
            labels = json.loads(subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", tag],
                                               capture_output=True, text=True, check=True).stdout)
            assert labels["meshctl.sidecar"] in tag
        https = host_port(clone, project, "web-mesh-pod", 15443)
        assert answers(https, ca_path) == b"hello from compose\n"
        assert "compose_app_pages" in metrics(host_port(clone, project, "web-mesh-pod", 15090))
    finally:
        down_and_check_nothing_is_left(clone, project)
        subprocess.run(["docker", "rmi", *tags.values()], capture_output=True)
