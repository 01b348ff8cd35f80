"""The Docker adapter against the real engine, where the fake cannot speak for it: an exec's
bound (the call returns at its timeout, and the command is killed)."""

from __future__ import annotations

import time

import docker
import pytest

from meshctl.errors import ExecTimeout
from meshctl.planning.images import BASE_IMAGE
from tests.conftest import unique_project

pytestmark = pytest.mark.integration


@pytest.fixture
def sleeper(engine):
    """A bare container of the base image that runs until removed, labelled as a test project's
    (the session's safety net removes it if the test cannot)."""
    api = docker.from_env().api
    name = unique_project("exec")
    container = api.create_container(BASE_IMAGE, ["sleep", "600"], name=name, labels={"meshctl.project": name},
                                     host_config=api.create_host_config(auto_remove=True))
    api.start(container["Id"])
    yield container["Id"]
    api.remove_container(container["Id"], force=True)
    api.close()


def processes(container_id: str) -> list[str]:
    return [row[-1] for row in docker.from_env().api.top(container_id)["Processes"]]


def test_an_exec_that_hangs_returns_at_its_timeout_and_is_killed(engine, sleeper):
    started = time.monotonic()
    with pytest.raises(ExecTimeout) as caught:
        engine.exec(sleeper, ["sleep", "60"], timeout=1)
    assert time.monotonic() - started < 5
    assert caught.value.message == "`sleep 60` did not finish within 1s; it was killed"
    deadline = time.monotonic() + 5
    while "sleep 60" in processes(sleeper) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "sleep 60" not in processes(sleeper)
    # The container and the connection pool are fine afterwards: a quick command still answers.
    code, output = engine.exec(sleeper, ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=5)
    assert (code, sorted(output.splitlines())) == (3, ["err", "out"])      # both streams, each in order
