"""One command changes a project at a time, and a project whose network was created twice (two
commands at one moment: Docker allows two networks of one name) recovers by itself. On the fake
engine; the lock's other holder is a real process, since flock locks are per open file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from meshctl.errors import ProjectBusy
from meshctl.model import HOLDER, labels
from meshctl.runtime.lock import project_lock
from meshctl.runtime.stack import Removed, down_project
from tests.unit.fake_engine import (
    engine_with_images,
    meshctl,
    pod_names,
    shop,
    stack_on,
)

POD = pod_names()[0]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def wedged(engine):
    """Two networks named meshctl-shop with the project's labels, as two `up -d` at one moment left them."""
    return [engine.add_network("meshctl-shop", labels("shop")) for _ in range(2)]


def test_down_removes_both_networks_of_one_name(tmp_path, home):
    engine = engine_with_images()
    wedged(engine)
    assert down_project(engine, "shop", home=home) == Removed(0, ("meshctl-shop",))
    assert engine.networks_ == {}


def test_up_uses_one_of_two_networks_of_one_name_and_serves(tmp_path, home):
    engine = engine_with_images()
    first, second = wedged(engine)
    stack_on(engine, shop(tmp_path), home).up()
    [network] = engine.networks_.values()     # the stale pair went; one network, made afresh
    assert network["Name"] == "meshctl-shop" and network["Id"] not in (first, second)
    holder = engine.by_name(POD)["spec"]
    assert holder.role == HOLDER and holder.network == network["Id"]      # by ID, never by the name


def test_ensure_network_keeps_the_oldest_and_removes_the_others():
    engine = engine_with_images()
    first, _ = wedged(engine)
    assert engine.ensure_network("meshctl-shop", labels("shop")) == first
    assert list(engine.networks_) == [first]


@pytest.fixture
def holder(home):
    """Another process holding the project's lock, as a `meshctl up -d` that is starting would."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.argv = ["meshctl", "up", "-d", "examples/shop"]
        from meshctl.runtime.lock import project_lock
        project_lock(__import__("pathlib").Path({str(home)!r}), "shop").acquire()
        print("held", flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def test_a_second_command_waits_then_names_the_holder_and_exits_3(home, holder):
    with pytest.raises(ProjectBusy) as caught:
        project_lock(home, "shop").acquire(wait=0.3)
    assert caught.value.exit_code == 3
    assert f"pid {holder.pid}: meshctl up -d examples/shop" in caught.value.message
    assert f"kill {holder.pid}" in caught.value.hint


def test_down_while_another_command_changes_the_project_exits_3_and_touches_nothing(tmp_path, cli_engine, holder,
                                                                                     monkeypatch):
    from meshctl.runtime import lock

    monkeypatch.setattr(lock, "WAIT", 0.3)
    result = meshctl("down", str(tmp_path))
    assert result.exit_code == 3, result.output
    assert f"pid {holder.pid}" in result.output and cli_engine.names("remove") == []


def test_a_lock_whose_holder_was_killed_is_taken_over(home, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = project_lock(home, "shop")
    with lock.held(wait=0.3):                    # the kernel released it when the holder died
        assert lock.holder()["pid"] == os.getpid()
    assert lock.holder() == {}


def test_an_app_stopped_by_a_signal_while_it_starts_is_not_blamed_on_its_command(tmp_path, home):
    """What `up -d` said when a `down` stopped its app mid-start (before the lock): 'check the
    image's command and the port'. A signal's exit code says the container was stopped instead."""
    from meshctl.errors import StartError
    from meshctl.runtime.supervise import Tracker

    app = pod_names()[3]
    engine = engine_with_images(exit_on_start={app: 143})
    with pytest.raises(StartError) as caught:
        stack_on(engine, shop(tmp_path), home, watch=Tracker(engine)).up()
    assert "the app exited with code 143 before it was ready" in caught.value.message
    assert "ended by SIGTERM, not by an error of its own" in caught.value.hint
    assert "check the image's command" not in caught.value.hint
