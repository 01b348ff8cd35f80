"""The Docker adapter and the project lock against the real engine, where the fake cannot speak
for them: an exec's bound (the call returns at its timeout, and the command is killed); a project
whose network exists twice under one name (Docker allows it) recovers by itself; two `up -d` of
one project at one moment leave one stack and one clear refusal."""

from __future__ import annotations

import os
import subprocess
import time

import docker
import pytest

from meshctl.errors import ExecTimeout
from meshctl.model import labels, network_name
from meshctl.planning.images import BASE_IMAGE
from meshctl.runtime.probes import http_request, tls_context
from tests.support import (HELLO, ca_path, eventually, hello_project, meshctl_cmd, port_of, project_of, ps_json,
                           run_meshctl, unique_project)

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
    eventually(lambda: "sleep 60" not in processes(sleeper), 5, what="`sleep 60` gone from the container")
    # The container and the connection pool are fine afterwards: a quick command still answers.
    code, output = engine.exec(sleeper, ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=5)
    assert (code, sorted(output.splitlines())) == (3, ["err", "out"])      # both streams, each in order


def networks_named(project: str) -> list[str]:
    api = docker.from_env().api
    return [n["Id"] for n in api.networks(names=[network_name(project)]) if n["Name"] == network_name(project)]


def wedge(project: str) -> None:
    """What two `up -d` at one moment left before the lock: two networks of the project's name and labels."""
    api = docker.from_env().api
    for _ in range(2):
        api.create_network(network_name(project), driver="bridge", labels=labels(project))
    assert len(networks_named(project)) == 2


def serves_https(project: str) -> None:
    [entry] = ps_json(project)
    assert entry["state"] == "running" and {c["role"] for c in entry["containers"]} == {"pod", "app", "proxy", "metrics"}
    assert http_request(port_of(entry["urls"]["https"]), "/", tls=tls_context(ca_path())).body == b"hi from meshctl\n"


def test_a_project_whose_network_exists_twice_recovers_by_itself(tmp_path, engine, sidecar_images):
    folder = hello_project(tmp_path, name=unique_project("wedged"))
    project = project_of(folder)
    try:
        wedge(project)
        down = run_meshctl("down", str(folder))
        assert down.returncode == 0, down.stderr      # was: "network … is ambiguous", and every command failed
        assert networks_named(project) == []
        wedge(project)
        run_meshctl("up", "-d", str(folder), check=True)
        assert len(networks_named(project)) == 1
        serves_https(project)
    finally:
        run_meshctl("down", str(folder))
    assert networks_named(project) == []


SLOW_START = (HELLO / "app.py").read_text().replace('GREETING = os.environ', 'import time; time.sleep(8)\nGREETING = os.environ', 1)


def test_two_up_d_at_once_leave_one_stack_and_one_clear_refusal(tmp_path, engine, sidecar_images):
    # The app takes 8 s to serve, so the first `up -d` holds the lock longer than the second waits (5 s).
    folder = hello_project(tmp_path, name=unique_project("twice"), app_py=SLOW_START)
    project = project_of(folder)
    try:
        both = [subprocess.Popen(meshctl_cmd("up", "-d", str(folder)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env={**os.environ, "COLUMNS": "200"}) for _ in range(2)]
        outcomes = sorted((p.wait(240), p.stderr.read(), p.pid) for p in both)
        (ok, _, _), (refused, message, _) = outcomes
        assert (ok, refused) == (0, 3), outcomes
        winner = next(p.pid for p in both if p.returncode == 0)
        assert f"project {project} is being changed by another meshctl command (pid {winner}: meshctl up -d" \
            in " ".join(message.split()), message
        assert len(networks_named(project)) == 1
        serves_https(project)
    finally:
        run_meshctl("down", str(folder))
