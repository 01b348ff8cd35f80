"""Fixtures of the unit tier that several test modules share."""

from __future__ import annotations

import pytest

from tests.unit.fake_engine import FakeEngine, use_on_the_cli


@pytest.fixture
def cli_engine(tmp_path, monkeypatch) -> FakeEngine:
    """`meshctl` commands in this test run against a fake engine (fake_engine.use_on_the_cli)."""
    return use_on_the_cli(tmp_path, monkeypatch)
