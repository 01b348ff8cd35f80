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
