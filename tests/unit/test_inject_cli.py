"""`meshctl inject` and `meshctl uninject` as a user runs them: files, stdin, stdout, exit codes.
In-process (typer's CliRunner), but for the shell's redirect of stdout into the input file, which
needs a real process. --no-build keeps these daemon-free; certificates go to the session's MESHCTL_HOME."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import yaml
from cryptography import x509

from tests.support import meshctl_cmd
from tests.unit.fake_engine import meshctl

COMPOSE = """\
# shop
services:
  web:
    image: nginx   # the front
    ports:
      - "8080:80"
  db:
    image: postgres:16
    ports: ["5432:5432"]
  worker:
    image: acme/worker
"""


def write(tmp_path: Path, text: str = COMPOSE, name: str = "compose.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_stdout_by_default_with_one_line_per_service_on_stderr(tmp_path):
    path = write(tmp_path)
    result = meshctl("inject", "--no-build", str(path), check=True)
    services = yaml.safe_load(result.stdout)["services"]
    assert {"web-mesh-pod", "web-mesh-proxy", "web-mesh-metrics", "db-mesh-pod", "db-mesh-proxy",
            "db-mesh-metrics"} <= set(services)
    assert not any(name.endswith("-mesh-tls") for name in services)
    # One line per service: what was chosen, why, and how to choose otherwise.
    assert "web: HTTPS on host 8080 → proxy → app:80 (image nginx is a web server (nginx))" in result.stderr
    assert "not HTTP? x-meshctl: {protocol: tcp}" in result.stderr
    assert "db: TCP proxy on host 5432 → app:5432 (port 5432 is PostgreSQL)" in result.stderr
    assert "HTTP? x-meshctl: {protocol: http}" in result.stderr
    assert "worker: left alone: publishes no ports" in result.stderr
    assert path.read_text() == COMPOSE


def test_certificates_and_configs_are_written_for_the_sidecars(tmp_path):
    path = write(tmp_path)
    services = yaml.safe_load(meshctl("inject", "--no-build", str(path), check=True).stdout)["services"]
    # The proxy terminates TLS: its folder holds its config and the certificate.
    proxy_dir = Path(services["web-mesh-proxy"]["volumes"][0]["source"])
    assert proxy_dir.name == "proxy" and not (proxy_dir.parent / "tls").exists()
    config = (proxy_dir / "haproxy.cfg").read_text()
    assert "mode http" in config and "bind :15443 ssl crt /etc/meshctl/bundle.pem" in config
    for key in ("bundle.pem", "key.pem"):
        assert stat.S_IMODE((proxy_dir / key).stat().st_mode) == 0o600
    assert not list(proxy_dir.glob("*.tmp")) and not list(proxy_dir.glob(".*.tmp"))
    assert services["web-mesh-proxy"]["user"] == f"{os.getuid()}:{os.getgid()}"
    leaf = x509.load_pem_x509_certificate((proxy_dir / "cert.pem").read_bytes())
    names = {str(n.value) for n in leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}
    assert {"web", "localhost", "127.0.0.1"} <= names
    tcp_dir = Path(services["db-mesh-proxy"]["volumes"][0]["source"])
    assert "mode tcp" in (tcp_dir / "haproxy.cfg").read_text() and not (tcp_dir / "bundle.pem").exists()


def test_stdin_and_output_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)       # stdin's compose project is named after the current folder
    out = tmp_path / "compose.mesh.yaml"
    result = meshctl("inject", "--no-build", "-", "-o", str(out), input=COMPOSE, check=True)
    assert result.stdout == ""
    assert "web-mesh-proxy" in out.read_text()
    # Injecting the injected file changes no byte; uninject gives the original back.
    again = meshctl("inject", "--no-build", str(out), check=True).stdout
    assert again == out.read_text()
    assert meshctl("uninject", str(out), check=True).stdout == COMPOSE
    assert meshctl("inject", "--uninject", str(out), check=True).stdout == COMPOSE


def test_in_place_is_atomic_keeps_a_backup_and_is_idempotent(tmp_path):
    path = write(tmp_path)
    path.chmod(0o640)
    result = meshctl("inject", "--no-build", "--in-place", str(path), check=True)
    assert "wrote" in result.stderr
    injected = path.read_text()
    assert "web-mesh-proxy" in injected
    assert (tmp_path / "compose.yaml.bak").read_text() == COMPOSE
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    result = meshctl("inject", "--no-build", "--in-place", str(path), check=True)
    assert "unchanged" in result.stderr
    assert path.read_text() == injected
    assert (tmp_path / "compose.yaml.bak").read_text() == COMPOSE     # still the true original
    meshctl("uninject", "-i", str(path), check=True)
    assert path.read_text() == COMPOSE
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_error_writes_nothing(tmp_path):
    broken = COMPOSE.replace("image: acme/worker", "image: acme/worker\n    ports: [80]\n    x-meshctl: {protocol: udp}")
    path = write(tmp_path, broken)
    result = meshctl("inject", "--no-build", "--in-place", str(path))
    assert result.exit_code == 2
    assert "compose.yaml:13: services.worker.x-meshctl.protocol: expected http or tcp" in result.stderr
    assert path.read_text() == broken
    assert not (tmp_path / "compose.yaml.bak").exists()
    assert result.stdout == ""


def test_not_yaml_and_not_compose_exit_2_with_the_line(tmp_path):
    result = meshctl("inject", "--no-build", str(write(tmp_path, "services:\n  web:\n    image: [nginx\n")))
    assert result.exit_code == 2
    assert "compose.yaml:4:1: not valid YAML" in result.stderr and isinstance(result.exception, SystemExit)
    result = meshctl("inject", "--no-build", str(write(tmp_path, "apiVersion: v1\nkind: Pod\n")))
    assert result.exit_code == 2
    assert "not a compose file" in result.stderr
    result = meshctl("inject", "--no-build", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_redirecting_stdout_into_the_input_is_caught(tmp_path):
    """A real process: its stdout is the file the shell opened (and emptied), exit 2 seen by the shell."""
    path = write(tmp_path)
    with open(path, "w") as stdout:      # what `meshctl inject compose.yaml > compose.yaml` does
        result = subprocess.run(meshctl_cmd("inject", "--no-build", str(path)), stdout=stdout,
                                stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "the shell emptied it" in result.stderr and "--in-place" in result.stderr


def test_usage_errors(tmp_path):
    path = write(tmp_path)
    assert meshctl("inject", "--no-build", "-i", "-").exit_code == 2
    assert meshctl("inject", "--no-build", "-i", str(path), "-o", str(tmp_path / "x")).exit_code == 2
    result = meshctl("inject", "--no-build", "--service", "nope", str(path))
    assert result.exit_code == 2 and "no service named 'nope'" in result.stderr


def test_finds_compose_yaml_in_the_current_folder(tmp_path, monkeypatch):
    write(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = meshctl("inject", "--no-build", "--service", "web", check=True)
    assert "web-mesh-proxy" in result.stdout and "db-mesh-proxy" not in result.stdout


def test_a_folder_means_its_compose_file_as_docker_compose_finds_it(tmp_path):
    write(tmp_path, name="docker-compose.yml")
    result = meshctl("inject", "--no-build", str(tmp_path), check=True)
    assert "web-mesh-proxy" in result.stdout
    empty = tmp_path / "adir"
    empty.mkdir()
    (empty / "stack.yml").write_text(COMPOSE)
    result = meshctl("inject", "--no-build", str(empty))
    assert result.exit_code == 2 and result.stdout == ""
    assert f"{empty} is a folder, and it has no compose file (compose.yaml, compose.yml" in result.stderr
    assert "stack.yml" in result.stderr and "no such file" not in result.stderr
    missing = meshctl("inject", "--no-build", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "nope.yaml: no such file" in missing.stderr
    # `meshctl test --compose` finds the file in a folder the same way.
    checked = meshctl("test", "--compose", str(empty), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert checked.exit_code == 2 and f"{empty} is a folder, and it has no compose file" in checked.stderr


def test_nothing_to_inject_says_so(tmp_path):
    path = write(tmp_path, "services: {}\n")
    result = meshctl("inject", "--no-build", str(path), check=True)
    assert result.stdout == "services: {}\n" and "nothing was injected: it has no services" in result.stderr
    path = write(tmp_path, "services:\n  worker:\n    image: x\n")
    result = meshctl("inject", "--no-build", str(path), check=True)
    assert "worker: left alone: publishes no ports" in result.stderr and "nothing was injected" in result.stderr


LEGACY = Path(__file__).resolve().parent.parent / "compose_corpus" / "legacy"


def test_a_file_injected_with_a_tls_sidecar_uninjects_and_re_injects_in_place(tmp_path, monkeypatch):
    """Its web-mesh-tls services go; the proxy takes over the TLS port and gets the certificate."""
    monkeypatch.chdir(tmp_path)
    original = (LEGACY / "original.yaml").read_text()
    old = (LEGACY / "injected-with-tls-sidecar.yaml").read_text()
    path = write(tmp_path, old, "compose.mesh.yaml")
    assert meshctl("uninject", str(path), check=True).stdout == original

    fresh = meshctl("inject", "--no-build", "-", input=original, check=True).stdout
    # What the old injection left on disk: the tls sidecar's config and private key.
    old_tls_dir = Path(yaml.safe_load(fresh)["services"]["web-mesh-proxy"]["volumes"][0]["source"]).parent / "tls"
    old_tls_dir.mkdir(parents=True, exist_ok=True)
    (old_tls_dir / "key.pem").write_text("old key")
    result = meshctl("inject", "--no-build", "-i", str(path), check=True)
    assert not old_tls_dir.exists()       # no unused private key is left behind
    assert "wrote" in result.stderr and "web-mesh-tls is gone" in result.stderr and "--remove-orphans" in result.stderr
    assert path.read_text() == fresh and "-mesh-tls" not in fresh
    assert (tmp_path / "compose.mesh.yaml.bak").read_text() == old
    services = yaml.safe_load(fresh)["services"]
    assert services["web-mesh-pod"]["ports"][0] == "8080:15443"
    proxy_dir = Path(services["web-mesh-proxy"]["volumes"][0]["source"])
    assert stat.S_IMODE((proxy_dir / "bundle.pem").stat().st_mode) == 0o600
    assert "unchanged" in meshctl("inject", "--no-build", "-i", str(path), check=True).stderr
    assert meshctl("uninject", str(path), check=True).stdout == original
