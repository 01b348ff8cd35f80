"""Which changes of a running stack may overlap (lock.Scopes, on the recording fake engine): a
change of one service waits only for changes of that service and for whole-project ones. The
chaos soak's finding: kv's killed proxy waited ~12 s behind api's hot reload, itself waiting on
requests hung on kv. A change is held in its middle by an engine call (or a plan) that blocks
until the test releases it; a change that waits for its turn is seen waiting in the scopes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import pytest

from meshctl.runtime.supervise import Tracker
from tests.unit.fake_engine import calls, engine_with_images, pod_names, shop, stack_on, web

API_POD, API_METRICS, API_PROXY, API_APP = pod_names("api")
KV_POD, KV_METRICS, KV_PROXY, KV_APP = pod_names("kv")
WAIT = 10      # seconds: the most any wait below may take before the test fails


class Watched(threading.Condition):
    """The scopes' condition, telling which threads had to wait for their turn."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: set[str] = set()
        self.changed = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.add(threading.current_thread().name)
        self.changed.set()
        return super().wait(timeout)

    def until_waiting(self, *names: str) -> None:
        for _ in range(WAIT * 20):
            if set(names) <= self.waiting:
                return
            self.changed.wait(0.05)
            self.changed.clear()
        raise AssertionError(f"{names} never waited for their turn; waiting: {self.waiting}")


class Held:
    """Makes a call block until released, once it is entered (a change stuck in its middle: an
    app's restart waiting on its in-flight requests, say)."""

    def __init__(self, call: Callable, when: Callable[..., bool]):
        self.call, self.when = call, when
        self.entered, self.released = threading.Event(), threading.Event()

    def __call__(self, *args, **kwargs):
        if self.when(*args, **kwargs):
            self.entered.set()
            assert self.released.wait(WAIT), "never released"
        return self.call(*args, **kwargs)


class Change(threading.Thread):
    def __init__(self, name: str, job: Callable[[], object]):
        self.error: BaseException | None = None
        super().__init__(target=self._run, args=(job,), name=name, daemon=True)
        self.start()

    def _run(self, job: Callable[[], object]) -> None:
        try:
            job()
        except BaseException as exc:     # the test's thread reports it
            self.error = exc

    def finished(self) -> None:
        self.join(WAIT)
        assert not self.is_alive(), f"{self.name} never finished"
        assert self.error is None, self.error


@pytest.fixture
def stack(tmp_path):
    engine = engine_with_images()
    stop = threading.Event()
    stack = stack_on(engine, shop(tmp_path, web("api"), web("kv")), tmp_path / "home", watch=Tracker(engine),
                     cancel=stop)
    stack.up()
    stack._scopes._changed = Watched()
    yield stack
    stop.set()
    stack.down(force=True)


def hold_app_restart(stack, name: str) -> Held:
    engine = stack.engine
    held = Held(engine.restart, lambda container_id, timeout: engine.containers_[container_id]["spec"].name == name)
    engine.restart = held
    return held


def restarted_sidecar(stack, name: str, since: int) -> bool:
    return {("create", name), ("start", name)} <= set(calls(stack.engine, since))


def test_a_sidecar_of_kv_is_restarted_while_apis_reload_is_held(stack):
    held = hold_app_restart(stack, API_APP)
    reload = Change("reload-api", lambda: stack.restart_app("api"))
    assert held.entered.wait(WAIT)
    before = len(stack.engine.calls)
    stack.engine.exit(KV_PROXY, 137)
    repair = Change("restart-kv-proxy", lambda: stack.restart_sidecar("kv", "proxy"))
    repair.finished()                       # while api's reload is still held
    assert reload.is_alive() and restarted_sidecar(stack, KV_PROXY, before)
    assert stack.engine.by_name(KV_PROXY)["state"] == "running"
    held.released.set()
    reload.finished()
    assert not stack._scopes._changed.waiting


def test_two_changes_of_one_service_still_run_one_after_the_other(stack):
    held = hold_app_restart(stack, API_APP)
    reload = Change("reload-api", lambda: stack.restart_app("api"))
    assert held.entered.wait(WAIT)
    before = len(stack.engine.calls)
    # (Not killed: the reload's own wait would fail on its proxy's exit, which is no matter here.)
    repair = Change("restart-api-proxy", lambda: stack.restart_sidecar("api", "proxy"))
    stack._scopes._changed.until_waiting("restart-api-proxy")
    assert not restarted_sidecar(stack, API_PROXY, before)
    held.released.set()
    reload.finished()
    repair.finished()
    after = calls(stack.engine, before, verbs=("restart", "create"))
    assert after == [("restart", API_APP), ("create", API_PROXY)]


def test_a_converge_waits_for_every_service_change_and_they_wait_for_it(stack):
    # A converge waits for a change of one service in progress…
    held = hold_app_restart(stack, API_APP)
    reload = Change("reload-api", lambda: stack.restart_app("api"))
    assert held.entered.wait(WAIT)
    new = replace(stack.project)
    converge = Change("converge", lambda: stack.converge(new))
    stack._scopes._changed.until_waiting("converge")
    assert stack.project is not new
    held.released.set()
    reload.finished()
    converge.finished()
    assert stack.project is new

    # …and changes of every service wait for a converge in progress.
    planning = Held(stack.plan_up, lambda project=None: True)
    stack.plan_up = planning
    converge = Change("converge-again", lambda: stack.converge(replace(new)))
    assert planning.entered.wait(WAIT)
    before = len(stack.engine.calls)
    repairs = [Change("restart-kv-proxy", lambda: stack.restart_sidecar("kv", "proxy")),
               Change("reload-api-again", lambda: stack.restart_app("api"))]
    stack._scopes._changed.until_waiting("restart-kv-proxy", "reload-api-again")
    assert calls(stack.engine, before, verbs=("restart", "create")) == []
    planning.released.set()
    converge.finished()
    for repair in repairs:
        repair.finished()
    assert sorted(calls(stack.engine, before, verbs=("restart", "create"))) == [("create", KV_PROXY),
                                                                                  ("restart", API_APP)]
