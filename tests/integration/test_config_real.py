"""mesh.yaml's compose vocabulary on the real engine: `build: {context, dockerfile, args, target}`
builds what it names, and `${VAR}` from .env reaches the build."""

from __future__ import annotations

import shutil

import pytest

from meshctl.runtime.probes import http_request, tls_context
from tests.support import HELLO, ca_path, port_of, ps_json, run_meshctl, unique_project

pytestmark = pytest.mark.integration

# Two stages after the shared one: the target is `dev`; building `broken` would fail the build.
DOCKERFILE_DEV = """\
FROM debian:bookworm-slim AS base
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-minimal python3-prometheus-client \\
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
USER nobody
CMD ["python3", "-u", "/app/app.py"]

FROM base AS dev
ARG GREETING=unset
ENV GREETING=$GREETING
COPY app.py /app/app.py

FROM base AS broken
RUN exit 1
"""


def test_build_mapping_builds_the_named_dockerfile_stage_and_args(tmp_path, engine, sidecar_images):
    folder = tmp_path / "svc"
    (folder / "src").mkdir(parents=True)
    shutil.copy(HELLO / "app.py", folder / "src" / "app.py")
    (folder / "src" / "Dockerfile.dev").write_text(DOCKERFILE_DEV)         # and no file named Dockerfile
    (folder / ".env").write_text("GREETING_ARG=built-in\n")
    name = unique_project("build")
    (folder / "mesh.yaml").write_text(f"""\
name: {name}
services:
  hello:
    build:
      context: ./src
      dockerfile: Dockerfile.dev
      target: dev
      args:
        - GREETING=${{GREETING_ARG}}
    port: 8080
    health: /healthz
    ports: {{https: 0, http: 0, metrics: 0}}
""")
    try:
        run_meshctl("up", "-d", str(folder), check=True)
        [entry] = ps_json(name)
        answer = http_request(port_of(entry["urls"]["https"]), "/", tls=tls_context(ca_path()))
        assert (answer.status, answer.body) == (200, b"built-in from meshctl\n")
    finally:
        run_meshctl("down", str(folder))


# api's app calls kv through the mesh at its first line and exits 1 unless kv answers 200.
NEEDS_KV = '''\
import os, socket, sys
if os.environ.get("NEEDS"):
    try:
        with socket.create_connection((os.environ["NEEDS"], 8080), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.0\\r\\nHost: " + os.environ["NEEDS"].encode() + b"\\r\\n\\r\\n")
            status = s.recv(64).split(b" ")[1]
    except OSError as exc:
        status = repr(exc).encode()
    if status != b"200":
        print("kv answered", status, flush=True)
        sys.exit(1)
'''


def test_depends_on_starts_the_app_once_the_service_it_needs_serves(tmp_path, engine, sidecar_images):
    folder = tmp_path / "svc"
    shutil.copytree(HELLO, folder)
    (folder / "app.py").write_text(NEEDS_KV + (HELLO / "app.py").read_text())
    name = unique_project("deps")
    ports = "    ports: {https: 0, http: 0, metrics: 0}\n"
    (folder / "mesh.yaml").write_text(
        f"name: {name}\nservices:\n"
        # kv takes 8 s before it listens (longer than api's 5 s call waits): started is not ready.
        f"  kv:\n    build: .\n    health: /healthz\n    command: sh -c 'sleep 8; exec python3 -u /app/app.py'\n{ports}"
        f"  api:\n    build: .\n    health: /healthz\n    environment: [NEEDS=kv]\n"
        f"    depends_on:\n      kv: {{condition: service_healthy}}\n{ports}")
    try:
        run_meshctl("up", "-d", str(folder), check=True)
        entries = {e["service"]: e for e in ps_json(name)}
        answer = http_request(port_of(entries["api"]["urls"]["https"]), "/", tls=tls_context(ca_path()))
        assert (answer.status, answer.body) == (200, b"hello from meshctl\n")
    finally:
        run_meshctl("down", str(folder))


def test_a_command_the_image_does_not_have_is_one_clear_message_and_nothing_is_left(tmp_path, engine, sidecar_images):
    name = unique_project("noprog")
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "mesh.yaml").write_text(
        f"name: {name}\nservices:\n  app:\n    image: debian:bookworm-slim\n    source: .\n"
        "    command: [no-such-program, --serve]\n    port: 8080\n    ports: {https: 0, http: 0, metrics: 0}\n")
    result = run_meshctl("up", "-d", str(folder))
    assert result.returncode == 3, result.stderr
    assert "its command's program 'no-such-program' is not on the image's PATH, so it cannot start" in result.stderr
    assert "OCI runtime" not in result.stderr and "Traceback" not in result.stderr
    assert ps_json(name) == []
