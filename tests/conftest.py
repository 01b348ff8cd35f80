"""Shared fixtures; the helpers test modules import are in tests/support.py. Integration tests talk
to the real Docker engine; when it is unreachable they fail (never skip), because CI must not pass
without them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import TEST_PROJECT_PREFIX, hello_project, project_of, ps_json, run_meshctl
import contextlib


@pytest.fixture(scope="session", autouse=True)
def meshctl_home(tmp_path_factory) -> Path:
    """One MESHCTL_HOME (CA, certificates, rendered configs) for the session, inherited by the
    meshctl processes the tests start."""
    home = tmp_path_factory.mktemp("meshctl-home")
    os.environ["MESHCTL_HOME"] = str(home)
    os.environ.setdefault("MESHCTL_BUILD_NETWORK", "host")
    # Dependency installs (run mode) trust what this machine's own TLS goes through (a TLS-inspecting
    # proxy in front of PyPI): the CA bundle the host's pip and requests use, if one is set.
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
    if bundle and Path(bundle).is_file():
        os.environ.setdefault("MESHCTL_INSTALL_CA", bundle)
    return home


@pytest.fixture(scope="session")
def engine():
    from meshctl.engine.docker import DockerEngine as Engine
    from meshctl.errors import MeshctlError
    from meshctl.runtime.stack import down_project
    from meshctl.runtime.status import project_names

    eng = Engine()
    try:
        eng.version()
    except MeshctlError as exc:
        pytest.fail(f"integration tests need a Docker engine: {exc.message} ({exc.hint})")
    yield eng
    # Safety net: nothing a test started may outlive the session, nor the app images it built.
    volume_projects = {v.get("Labels", {}).get("meshctl.project", "") for v in eng.volumes({"meshctl.project": ""})}
    for name in set(project_names(eng)) | volume_projects:
        if name.startswith(TEST_PROJECT_PREFIX):
            down_project(eng, name, force=True, volumes=True)
    import docker

    api = docker.from_env().api
    for image in api.images(filters={"label": "meshctl.project"}):
        if (image.get("Labels") or {}).get("meshctl.project", "").startswith(TEST_PROJECT_PREFIX):
            for tag in image.get("RepoTags") or []:
                with contextlib.suppress(docker.errors.APIError):
                    api.remove_image(tag, force=True)
    eng.close()


@pytest.fixture(scope="session")
def sidecar_images(engine) -> dict[str, str]:
    """Build the sidecar images once per session (a no-op when their content hash is built)."""
    from meshctl.runtime.stack import ensure_sidecar_images

    return ensure_sidecar_images(engine, ("tls", "proxy", "metrics"), lambda event: None)


@pytest.fixture
def detached_hello(tmp_path, engine, sidecar_images):
    """examples/hello brought up with `meshctl up -d`; yields (folder, project, ps entry); down after."""
    folder = hello_project(tmp_path)
    name = project_of(folder)
    run_meshctl("up", "-d", str(folder), check=True)
    try:
        [entry] = ps_json(name)
        yield folder, name, entry
    finally:
        run_meshctl("down", str(folder))
