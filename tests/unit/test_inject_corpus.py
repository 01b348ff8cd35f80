"""Every file of tests/compose_corpus/: the injected file passes `docker compose config` (Compose v2),
injecting it again changes no byte, and uninject gives back a file whose `docker compose config`
equals the original's. No daemon needed: `config` only reads files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePath

import pytest
import yaml

from meshctl import compose_yaml
from meshctl.compose_cli import ComposeCli
from meshctl.errors import ConfigError
from meshctl.inject import (InjectOptions, Machine, inject, inject_text, uninject, uninject_text,
                            without_generated_blocks)
from meshctl.inject_render import render_injected

CORPUS = Path(__file__).resolve().parent.parent / "compose_corpus"
FILES = sorted(CORPUS.glob("*.yaml"))
# Files the CLI writes by dumping the tree, not into the text: a flow-style x-meshctl beside ports.
TREE_DUMPED = {"21-real-anchors-keep-plain"}
MACHINE = Machine(project="corpus", images={"proxy": "meshctl-haproxy:test", "metrics": "meshctl-metrics:test"},
                  user="1000:1000", state_dir=PurePath("/var/lib/meshctl-test/compose/corpus-0"))


def test_corpus_is_big_enough():
    assert len(FILES) >= 15


def injected_text(text: str, source: str) -> str:
    document, layout = compose_yaml.load(text, source)
    return compose_yaml.dump(inject(document, InjectOptions(), MACHINE, source).document, layout)


def uninjected_text(text: str, source: str) -> str:
    document, layout = compose_yaml.load(text, source)
    return compose_yaml.dump(uninject(document, source).document, layout)


def compose_config(folder: Path, name: str) -> dict:
    # Same folder and project name for every variant, so paths and names compare equal; through
    # meshctl's own adapter, whose Compose reports failures (test_compose_cli proves it). Only the
    # variables the corpus means to set, and HOME, where the docker CLI finds a user's plugins.
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"), "API_KEY": "test"}
    try:
        return ComposeCli(name, project="corpus", cwd=folder, env=env).config()
    except ConfigError as exc:
        pytest.fail(f"{exc.message}\n{exc.details}")


@pytest.fixture(scope="module")
def corpus_copy(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    shutil.copytree(CORPUS, folder, dirs_exist_ok=True)
    return folder


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_inject_is_valid_idempotent_and_round_trips(path: Path, corpus_copy: Path):
    original = path.read_text()
    injected = injected_text(original, path.name)
    assert injected_text(injected, "injected") == injected, "injecting twice must change nothing"
    back = uninjected_text(injected, "injected")
    # What the CLI runs: changes written into the original text (every other byte kept), meaning
    # the same as the dumped tree; idempotent; uninject gives back the very same bytes.
    fast = inject_text(original, InjectOptions(), MACHINE, path.name)[0]
    document, layout = compose_yaml.load(original, path.name)
    result = inject(document, InjectOptions(), MACHINE, path.name)
    if result.injected:
        assert (render_injected(original, result, layout) is None) == (path.stem in TREE_DUMPED)
    assert yaml.safe_load(fast) == yaml.safe_load(injected)
    assert inject_text(fast, InjectOptions(), MACHINE, "fast")[0] == fast
    assert uninject_text(fast, "fast")[0] == original
    if "-mesh-" in fast:
        assert without_generated_blocks(fast) is not None
    # And the tree's own output goes back the same way.
    assert inject_text(injected, InjectOptions(), MACHINE, "injected")[0] in (injected, fast)
    assert yaml.safe_load(uninject_text(injected, "injected")[0]) == yaml.safe_load(original)

    (corpus_copy / f"{path.stem}.mesh.yaml").write_text(injected)
    (corpus_copy / f"{path.stem}.fast.yaml").write_text(fast)
    (corpus_copy / f"{path.stem}.back.yaml").write_text(back)
    before = compose_config(corpus_copy, path.name)
    after = compose_config(corpus_copy, f"{path.stem}.mesh.yaml")
    assert compose_config(corpus_copy, f"{path.stem}.fast.yaml") == after
    assert compose_config(corpus_copy, f"{path.stem}.back.yaml") == before

    # What was injected is what compose sees: sidecars in the app's namespace, nothing else lost.
    sidecars = {name: s for name, s in after["services"].items() if "-mesh-" in name}
    assert not any(name.endswith("-mesh-tls") for name in sidecars)      # the proxy serves HTTPS
    for name, service in sidecars.items():
        app = name.split("-mesh-")[0]
        assert service["network_mode"] == f"service:{app}"
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert service["labels"]["meshctl.service"] == app
        assert service.get("profiles") == before["services"][app].get("profiles")
    assert set(after["services"]) - set(sidecars) == set(before["services"])
    for key in ("volumes", "networks", "secrets", "configs"):
        assert after.get(key) == before.get(key)
