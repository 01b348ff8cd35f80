"""`meshctl inject --portable`: configs, certificates and the sidecar images' build contexts in
`.meshctl/` next to the written file, named by relative paths; keys 0600 and kept out of git by the
written `.meshctl/.gitignore`; the pair still means the same to `docker compose config` after the
folder moved. And the note about compose.override.yaml. In-process, --no-build: no daemon."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import yaml

from meshctl.engine.compose import ComposeCli
from meshctl.planning.images import folder_hash
from tests.unit.fake_engine import meshctl

COMPOSE = """\
services:
  web:
    image: nginx
    ports: ["8080:80"]
  db:
    image: postgres:16
    ports: ["5432:5432"]
"""


def portable(folder: Path, *extra: str) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compose.yaml").write_text(COMPOSE)
    result = meshctl("inject", "--no-build", "--portable", str(folder / "compose.yaml"),
                     "-o", str(folder / "compose.mesh.yaml"), *extra, check=True)
    return (folder / "compose.mesh.yaml").read_text(), result.stderr


def test_everything_the_file_names_is_relative_and_inside_meshctl_folder(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MESHCTL_HOME", str(home))
    folder = tmp_path / "shop"
    text, _ = portable(folder)
    assert str(tmp_path) not in text and str(home) not in text
    data = yaml.safe_load(text)
    services, shared = data["services"], data["x-meshctl"]
    assert services["web-mesh-proxy"]["volumes"][0]["source"] == "./.meshctl/web/proxy"
    assert services["db-mesh-proxy"]["volumes"][0]["source"] == "./.meshctl/db/proxy"
    # The sidecar images: built by compose from the copied contexts when missing, never pulled.
    for role, context in (("pod", "haproxy"), ("proxy", "haproxy"), ("metrics", "metrics")):
        assert shared[role]["build"]["context"] == f"./.meshctl/images/{context}"
        assert shared[role]["pull_policy"] == "never"
        assert shared[role]["build"]["network"] == "${MESHCTL_BUILD_NETWORK:-default}"
        # The copy is meshctl's own folder: the same content hash, so the same tag meshctl builds.
        tag = shared[role]["image"].rsplit(":", 1)[1]
        assert folder_hash(folder / ".meshctl" / "images" / context) == tag
    proxy = folder / ".meshctl" / "web" / "proxy"
    assert "bind :15443 ssl crt /etc/meshctl/bundle.pem" in (proxy / "haproxy.cfg").read_text()
    for key in ("key.pem", "bundle.pem"):
        assert stat.S_IMODE((proxy / key).stat().st_mode) == 0o600
    assert not (home / "compose").exists()          # nothing of this file under MESHCTL_HOME
    # Again: the same bytes (the certificate is current, nothing is re-issued).
    key = (proxy / "key.pem").read_bytes()
    assert portable(folder)[0] == text and (proxy / "key.pem").read_bytes() == key


def test_git_keeps_the_keys_and_certificates_out_and_takes_the_rest(tmp_path):
    folder = tmp_path / "repo"
    portable(folder)
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    staged = set(subprocess.run([*git, "diff", "--cached", "--name-only"], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not [name for name in staged if name.endswith(".pem")]
    assert {"compose.mesh.yaml", ".meshctl/.gitignore", ".meshctl/web/proxy/haproxy.cfg",
            ".meshctl/db/proxy/haproxy.cfg", ".meshctl/images/haproxy/Dockerfile",
            ".meshctl/images/metrics/Dockerfile", ".meshctl/images/metrics/agent.py"} <= staged
    ignored = subprocess.run([*git, "check-ignore", ".meshctl/web/proxy/key.pem", ".meshctl/web/proxy/bundle.pem"],
                             capture_output=True, text=True).stdout.split()
    assert ignored == [".meshctl/web/proxy/key.pem", ".meshctl/web/proxy/bundle.pem"]


def test_a_moved_copy_means_the_same_to_compose(tmp_path):
    folder = tmp_path / "first"
    portable(folder)
    moved = tmp_path / "elsewhere" / "second"
    shutil.copytree(folder, moved)
    shutil.rmtree(folder)
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")}
    config = ComposeCli("compose.mesh.yaml", project="moved", cwd=moved, env=env).config()
    proxy = config["services"]["web-mesh-proxy"]
    assert proxy["volumes"][0]["source"] == str(moved / ".meshctl" / "web" / "proxy")
    assert proxy["build"]["context"] == str(moved / ".meshctl" / "images" / "haproxy")
    assert proxy["build"]["network"] == "default"
    built = ComposeCli("compose.mesh.yaml", project="moved", cwd=moved,
                       env={**env, "MESHCTL_BUILD_NETWORK": "host"}).config()
    assert built["services"]["web-mesh-metrics"]["build"]["network"] == "host"


def test_without_portable_nothing_is_written_next_to_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHCTL_HOME", str(tmp_path / "home"))
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    text = meshctl("inject", "--no-build", str(tmp_path / "compose.yaml"), check=True).stdout
    assert not (tmp_path / ".meshctl").exists() and "build:" not in text
    assert yaml.safe_load(text)["services"]["web-mesh-proxy"]["volumes"][0]["source"].startswith(str(tmp_path / "home"))


def test_an_override_beside_the_file_is_named_with_what_it_means(tmp_path):
    (tmp_path / "compose.override.yaml").write_text('services:\n  web:\n    ports: ["9999:80"]\n')
    _, stderr = portable(tmp_path)
    assert "compose.override.yaml was not read: inject reads only compose.yaml" in stderr
    assert "the injected output, run with -f, does not read it either" in stderr
    assert "docker compose -f compose.yaml -f compose.override.yaml config > compose.merged.yaml" in stderr
    result = meshctl("inject", "--no-build", "-i", str(tmp_path / "compose.yaml"), check=True)
    assert "`docker compose up` without -f will merge it over the injected compose.yaml" in result.stderr
    assert "it sets web, which inject wrapped" in result.stderr
    # No override, no note; a file compose would not pair with an override, no note either.
    (tmp_path / "compose.override.yaml").unlink()
    assert "was not read" not in meshctl("inject", "--no-build", str(tmp_path / "compose.yaml"), check=True).stderr
    (tmp_path / "docker-compose.override.yml").write_text("services: {}\n")
    (tmp_path / "other.yaml").write_text(COMPOSE)
    assert "was not read" not in meshctl("inject", "--no-build", str(tmp_path / "other.yaml"), check=True).stderr
