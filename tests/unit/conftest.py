"""Fixtures of the unit tier that several test modules share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.fake_engine import FakeEngine, use_on_the_cli


@pytest.fixture
def cli_engine(tmp_path, monkeypatch) -> FakeEngine:
    """`meshctl` commands in this test run against a fake engine (fake_engine.use_on_the_cli)."""
    return use_on_the_cli(tmp_path, monkeypatch)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """The whole tier (`pytest tests/unit`, as the stop hook and .ci/lowest-deps run it) runs on two
    workers with pytest-xdist: its ~1,100 tests take ~75 s on one core of these machines, ~48 s on
    two. A run of some files, `-n N`, `--pdb` or a worker of its own keeps what it asked for. This
    hook runs only when the tier's folder is among the arguments (pytest reads this conftest before
    the command line's main then); CI's one `pytest` run over every tier is not changed."""
    whole_tier = all(Path(arg.split("::")[0]).is_dir() for arg in config.args)
    if (whole_tier and config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput")
            and config.option.numprocesses is None and config.option.dist == "no" and not config.option.usepdb):
        config.option.numprocesses = 2
