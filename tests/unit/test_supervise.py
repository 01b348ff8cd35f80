"""Foreground supervision on the recording fake engine: the Tracker's logs and exits, the supervise
loop's two endings (a container exits by itself, a signal), the signal handlers, the Reloader's
change plans and its iterator, and the renewal timer. Waits are on events and queues, with timeouts."""

from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import threading
from pathlib import Path

import pytest

from meshctl import certs
from meshctl.runtime.supervise import reloader as supervise_module
from meshctl.config import load_project
from meshctl.errors import BuildError, ConfigError, EngineError, MeshctlError, StartError
from meshctl.events import Exited, LogLine, Phase, Reloaded, Restarted
from meshctl.runtime.supervise import Interrupts, Reloader, RenewalTimer, Tracker, supervise
from meshctl.planning.watch import REBUILD, RESTART, SourceChange, classify, watched_folders
from tests.unit.fake_engine import (SERVING, FakeEngine, Prober, built, calls, engine_with_images, pod_names, shop,
                                    stack_on)
from tests.unit.fake_engine import write_mesh_yaml as mesh_yaml

POD, METRICS, PROXY, APP = pod_names()
WAIT = 10      # seconds: the most any wait below may take before the test fails


class Session:
    """A foreground stack on the fake engine: tied, tracked, with its Interrupts and its events."""

    def __init__(self, root: Path, project=None, *, engine: FakeEngine | None = None, answer=None,
                 ready_timeout: float = 60.0):
        self.root = root
        self.engine = engine or engine_with_images(log_lines={APP: ["serving on 8081", "bye"]})
        self.tracker = Tracker(self.engine)
        self.interrupts = Interrupts()
        self.events: list = []
        self.stack = stack_on(self.engine, project or load_project(mesh_yaml(root)), root / "home",
                              events=self.events, tied=True, watch=self.tracker, cancel=self.interrupts.stop,
                              force=self.interrupts.force, prober=Prober(self.engine, answer),
                              ready_timeout=ready_timeout)
        self.running = self.stack.up()
        self.emitted: queue.Queue = queue.Queue()

    def supervise(self, reloader: Reloader | None = None) -> int:
        return supervise(self.stack, self.tracker, self.running, self.interrupts, self.events.append,
                         reloader=reloader)

    def reloader(self) -> Reloader:
        return Reloader(self.stack, self.interrupts.stop, self.emitted.put)

    def reloaded(self) -> Reloaded:
        event = self.emitted.get(timeout=WAIT)
        assert isinstance(event, Reloaded)
        return event

    def shown(self, *kinds: type) -> list:
        return [e for e in self.events if isinstance(e, kinds)]


@pytest.fixture
def session(tmp_path):
    """Sessions made by the test; their stop Events are set at the end (the renewal timers end)."""
    made: list[Session] = []

    def make(*args, **kwargs) -> Session:
        made.append(Session(tmp_path, *args, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.interrupts.stop.set()


# ---------------------------------------------------------------------------------------------
# supervise


def test_the_apps_own_exit_ends_supervision_with_its_code_and_tears_down(session):
    s = session()
    s.engine.exit(APP, 3)
    assert s.supervise() == 3
    assert s.engine.is_empty() and Phase("tearing down the pod") in s.events
    # The app's last words come first, then its exit with them.
    assert s.shown(LogLine, Exited)[-3:] == [LogLine("web", "app", "serving on 8081"), LogLine("web", "app", "bye"),
                                            Exited("web", "app", 3, ("serving on 8081", "bye"), id=s.tracker.find_name(APP).id)]


class Supervising:
    """supervise() in a thread, so a test can act while it runs and then stop it with a signal."""

    def __init__(self, s: Session, **options):
        self.s = s
        self.result: list[int] = []
        self.thread = threading.Thread(target=lambda: self.result.append(
            supervise(s.stack, s.tracker, s.running, s.interrupts, s.events.append, **options)), daemon=True)
        self.thread.start()

    def until(self, predicate, what: str) -> None:
        deadline = threading.Event()
        for _ in range(WAIT * 50):
            if predicate():
                return
            deadline.wait(0.02)
        raise AssertionError(f"never saw {what}; events: {self.s.events}")

    def stop(self) -> int:
        self.s.interrupts._handle(signal.SIGTERM, None)
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        return self.result[0]


def restarted(s: Session, role: str) -> list:
    return [e for e in s.shown(Restarted) if e.role == role]


@pytest.mark.parametrize("sidecar", [PROXY, METRICS])
def test_a_sidecar_that_exits_is_restarted_in_place_and_the_app_is_left_alone(session, sidecar):
    s = session()
    app_id = s.engine.by_name(APP)["spec"], s.tracker.find("web", "app").id
    before = len(s.engine.calls)
    running = Supervising(s)
    s.engine.exit(sidecar, 137)                      # docker kill, or HAProxy crashing
    role = sidecar.rsplit("-", 1)[1]
    running.until(lambda: restarted(s, role), f"the {role} sidecar restarted")
    [event] = restarted(s, role)
    assert event.error is None and not event.gave_up
    assert [(e.role, e.code) for e in s.shown(Exited)] == [(role, 137)]
    after = calls(s.engine, before)
    assert ("create", sidecar) in after and ("start", sidecar) in after
    assert not [c for c in after if c[1] in (APP, POD) and c[0] in ("stop", "remove", "create", "restart")]
    assert s.tracker.find("web", "app").id == app_id[1]
    assert running.stop() == 0 and s.engine.is_empty()


def test_two_sidecars_that_exit_together_are_both_restarted(session):
    """Showing the log lines queued before an exit must not swallow the other exit queued with them."""
    s = session()
    s.engine.exit(PROXY, 137)
    s.engine.exit(METRICS, 137)
    queued = lambda: [e for e in list(s.tracker.queue.queue) if isinstance(e, Exited)]
    for _ in range(WAIT * 50):
        if len(queued()) == 2:
            break
        threading.Event().wait(0.02)
    assert len(queued()) == 2, "both exits queued before supervision reads them"
    running = Supervising(s)
    ok = lambda role: [e for e in restarted(s, role) if e.error is None]
    running.until(lambda: ok("proxy") and ok("metrics"), "both sidecars restarted")
    assert sorted((e.role, e.code) for e in s.shown(Exited)) == [("metrics", 137), ("proxy", 137)]
    assert {c["spec"].name for c in s.engine.containers_.values()} == {POD, METRICS, PROXY, APP}
    assert running.stop() == 0 and s.engine.is_empty()


def test_a_sidecar_in_a_crash_loop_is_given_up_on_and_the_app_keeps_running(session):
    from meshctl.runtime.supervise import RestartPolicy
    s = session()
    running = Supervising(s, restarts=RestartPolicy(limit=3, first_delay=0.01))
    for attempt in range(1, 4):
        running.until(lambda: s.engine.by_name(PROXY) is not None and s.engine.by_name(PROXY)["state"] == "running",
                      "the proxy running")
        s.engine.exit(PROXY, 1)
        if attempt < 3:
            running.until(lambda: len(restarted(s, "proxy")) == attempt, f"restart {attempt}")
    running.until(lambda: any(e.gave_up for e in restarted(s, "proxy")), "meshctl giving up")
    assert "3 times within 60s" in restarted(s, "proxy")[-1].gave_up
    assert s.engine.by_name(APP)["state"] == "running" and s.engine.by_name(PROXY) is None
    assert running.stop() == 0 and s.engine.is_empty()


def test_a_pod_whose_holder_is_gone_is_rebuilt(session):
    s = session()
    running = Supervising(s)
    for name in (POD, APP, METRICS, PROXY):          # the kernel kills the holder's PID namespace
        s.engine.exit(name, 137)
    running.until(lambda: restarted(s, "pod"), "the pod rebuilt")
    assert restarted(s, "pod")[0].error is None
    assert any("the pod's holder is gone" in e.text for e in s.shown(Phase))
    assert {c["spec"].name for c in s.engine.containers_.values()} == {POD, METRICS, PROXY, APP}
    assert not list(restarted(s, "proxy") + restarted(s, "metrics")), "no sidecar restart of the lost pod"
    assert running.stop() == 0 and s.engine.is_empty()


def test_meshctl_down_from_elsewhere_ends_the_foreground_side_with_0(session):
    from meshctl.runtime.stack import down_project
    s = session()
    running = Supervising(s)
    down_project(s.engine, "shop", home=s.root / "home")
    running.thread.join(WAIT)
    assert running.result == [0]
    assert Phase("the stack was removed from elsewhere (meshctl down): stopping") in s.events
    assert s.engine.is_empty()


def test_a_signal_ends_supervision_with_0_and_tears_down_in_stop_order(session):
    s = session()
    before = len(s.engine.calls)
    reloader = s.reloader()
    s.interrupts._handle(signal.SIGTERM, None)
    assert s.supervise(reloader=reloader) == 0
    assert Phase("SIGTERM: stopping the apps, then the sidecars") in s.events
    assert s.engine.is_empty() and reloader.ready.is_set()
    stops = calls(s.engine, before, verbs=("stop", "remove"))
    assert stops[0] == ("stop", APP) and stops[-1] == ("remove", POD)
    # meshctl stopped them all: no exit was news.
    assert all(t.expected for t in s.tracker.containers.values()) and not s.shown(Exited)


def test_log_lines_and_reloads_are_shown_while_supervising(session):
    s = session()
    s.tracker.queue.put(Reloaded(("app.py",), "restart web", 0.4))
    s.engine.exit(APP, 0)
    assert s.supervise() == 0
    assert Reloaded(("app.py",), "restart web", 0.4) in s.events


def test_the_signal_handlers_only_set_events():
    interrupts = Interrupts()
    previous = signal.getsignal(signal.SIGINT)
    interrupts.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupts.stop.wait(WAIT) and interrupts.signal_name == "SIGINT"
        assert not interrupts.force.is_set()
        os.kill(os.getpid(), signal.SIGINT)      # a second Ctrl-C: kill at once
        assert interrupts.force.wait(WAIT)
    finally:
        interrupts.restore()
    assert signal.getsignal(signal.SIGINT) is previous


def test_the_tracker_keeps_each_containers_tail(session):
    s = session()
    tails = s.tracker.tails("web")
    for tracked in s.tracker.of_service("web"):
        tracked.settle()
    assert set(tails) == {"metrics", "proxy", "app"}          # the holder prints nothing
    assert s.tracker.tails("web")["app"] == ["serving on 8081", "bye"]
    s.tracker.drain_logs(s.events.append)
    assert s.shown(LogLine) == [LogLine("web", "app", "serving on 8081"), LogLine("web", "app", "bye")]
    assert s.tracker.queue.empty()


# ---------------------------------------------------------------------------------------------
# Reloader.apply: one change plan at a time


def test_a_synced_change_restarts_the_app_and_says_so(session):
    s = session()
    before = len(s.engine.calls)
    s.reloader().apply(classify(s.stack.project, {s.root / "app.py"}))
    assert calls(s.engine, before) == [("restart", APP), SERVING]
    event = s.reloaded()
    assert (event.changed, event.action, event.error) == (("app.py",), "restart web", None)


def test_a_rebuild_replaces_the_app_and_a_failed_one_keeps_the_previous_app(tmp_path, session):
    s = session(shop(tmp_path, built(tmp_path / "src")))
    reloader = s.reloader()
    change = classify(s.stack.project, {tmp_path / "src" / "app.py"})
    assert change.actions == {"web": REBUILD}
    before = len(s.engine.calls)
    reloader.apply(change)
    assert calls(s.engine, before, verbs=("build", "stop", "create", "start")) == [
        ("build", "meshctl-shop-web:dev"), ("stop", APP), ("create", APP), ("start", APP)]
    assert s.reloaded().action == "rebuild web"

    app_id = s.tracker.find("web", "app").id
    s.engine.fail_build.add("meshctl-shop-web:dev")
    reloader.apply(change)
    event = s.reloaded()
    assert event.action == "rebuild web failed; the previous app keeps serving"
    assert isinstance(event.error, BuildError) and s.engine.by_name(APP) is s.engine.containers_[app_id]


def test_a_restart_that_never_serves_is_reported_and_supervision_goes_on(session):
    serving = threading.Event()
    serving.set()
    s = session(answer=lambda readiness, port: None if serving.is_set() else "HTTP 502", ready_timeout=0.2)
    serving.clear()
    s.reloader().apply(SourceChange(False, {"web": RESTART}, (s.root / "app.py",)))
    event = s.reloaded()
    assert event.action == "restart web failed; waiting for the next save"
    assert isinstance(event.error, StartError) and "HTTP 502" in event.error.message
    assert len(s.engine.containers_) == 4


def test_a_changed_mesh_yaml_is_applied_in_place(session):
    s = session()
    before = len(s.engine.calls)
    source = mesh_yaml(s.root, timeout="30s")
    s.reloader().apply(classify(s.stack.project, {source, s.root / "app.py"}))
    assert calls(s.engine, before) == [("signal", PROXY, "SIGUSR2"), ("restart", APP), SERVING]
    assert [s.reloaded().action for _ in range(2)] == ["mesh.yaml applied", "restart web"]
    assert s.stack.project.services[0].proxy.timeout == 30


@pytest.mark.parametrize("text, problem", [
    ("services: [\n", "not valid YAML"),
    (None, "name: changed from 'shop' to 'cafe'"),
])
def test_a_bad_mesh_yaml_is_reported_and_the_stack_keeps_running(session, text, problem):
    s = session()
    project, before, ids = s.stack.project, len(s.engine.calls), set(s.engine.containers_)
    source = mesh_yaml(s.root, name="cafe")
    if text is not None:
        source.write_text(text)
    s.reloader().apply(classify(project, {source}))
    event = s.reloaded()
    assert event.action == "mesh.yaml not applied; the stack keeps running as it was"
    assert isinstance(event.error, ConfigError) and problem in event.error.message
    assert s.stack.project is project and calls(s.engine, before) == [] and set(s.engine.containers_) == ids


def test_an_unexpected_failure_of_a_reload_is_reported_and_watching_goes_on(session, monkeypatch):
    s = session()

    def broken(service):
        raise RuntimeError("a bug")

    monkeypatch.setattr(s.stack, "restart_app", broken)
    s.reloader().apply_reporting_bugs(classify(s.stack.project, {s.root / "app.py"}))
    event = s.reloaded()
    assert event.action == "reload failed" and event.error.message == "RuntimeError: a bug"


# ---------------------------------------------------------------------------------------------
# The Reloader as an iterator of change plans, over a scripted watcher


@pytest.fixture
def watcher(monkeypatch):
    """Replaces watchfiles: the test puts change sets in `changes` (set() is a quiet second,
    None ends the stream); `watched` records the folders of each watcher made."""

    class Watcher:
        changes: queue.Queue = queue.Queue()
        watched: list = []

    def change_sets(project, stop):
        Watcher.watched.append(tuple(watched_folders(project)))
        while (paths := Watcher.changes.get(timeout=WAIT)) is not None:
            yield paths

    monkeypatch.setattr(supervise_module, "change_sets", change_sets)
    return Watcher


def ended(thread: threading.Thread) -> bool:
    thread.join(WAIT)
    return not thread.is_alive()


def run_to_the_end(reloader: Reloader, watcher) -> None:
    watcher.changes.put(None)
    assert ended(reloader.thread)


def test_the_reloader_applies_each_change_set_once_the_stack_is_up(session, watcher):
    s = session()
    reloader = s.reloader().start()
    watcher.changes.put(set())                   # a quiet second: nothing to do
    watcher.changes.put({s.root / "app.py"})     # saved while the stack starts…
    reloader.ready.set()                         # …applied once it is up
    assert s.reloaded().action == "restart web"
    run_to_the_end(reloader, watcher)
    assert s.emitted.empty()


def test_the_reloader_follows_the_folders_a_changed_mesh_yaml_names(tmp_path, session, watcher):
    s = session()
    reloader = s.reloader()
    reloader.ready.set()
    reloader.start()
    watcher.changes.put({mesh_yaml(s.root, sync="../lib")})
    assert s.reloaded().action == "mesh.yaml applied"
    run_to_the_end(reloader, watcher)
    assert [set(folders) for folders in watcher.watched] == [{tmp_path}, {tmp_path, tmp_path.parent / "lib"}]


def test_a_stop_while_a_change_waits_for_the_stack_ends_the_reloader(session, watcher):
    s = session()
    reloader = s.reloader().start()
    watcher.changes.put({s.root / "app.py"})
    s.interrupts.stop.set()
    assert ended(reloader.thread)


def test_a_failing_watcher_is_reported_and_the_stack_keeps_running(session, monkeypatch):
    s = session()

    def change_sets(project, stop):
        raise OSError("inotify watch limit reached")
        yield

    monkeypatch.setattr(supervise_module, "change_sets", change_sets)
    s.reloader().start()
    event = s.reloaded()
    assert event.action == "watching stopped; the stack keeps running"
    assert event.error.message == "file watching failed: inotify watch limit reached"
    assert len(s.engine.containers_) == 4


# ---------------------------------------------------------------------------------------------
# Certificate renewal, on its own timer


def near_expiry(monkeypatch) -> None:
    real_now = certs._now
    monkeypatch.setattr(certs, "_now", lambda: real_now() + certs.LEAF_VALIDITY - dt.timedelta(hours=1))


def test_renewal_reissues_a_certificate_near_expiry_and_reloads_tls_in_place(session, monkeypatch):
    s = session()
    timer = RenewalTimer(s.stack, s.interrupts.stop, s.emitted.put)
    before = len(s.engine.calls)
    timer.renew()                                 # current: nothing to do, nothing said
    assert calls(s.engine, before) == []
    near_expiry(monkeypatch)
    timer.renew()
    event = s.reloaded()
    assert (event.changed, event.action) == (("certificate of web",), "re-issued, TLS reloaded in place")
    assert calls(s.engine, before) == [("signal", PROXY, "SIGUSR2")] and s.emitted.empty()


def test_a_failed_renewal_is_reported(session, monkeypatch):
    s = session()

    def unreachable():
        raise EngineError("the Docker engine went away")

    monkeypatch.setattr(s.stack, "renew_certificates", unreachable)
    RenewalTimer(s.stack, s.interrupts.stop, s.emitted.put).renew()
    event = s.reloaded()
    assert event.action == "renewal failed" and isinstance(event.error, MeshctlError)


def test_the_renewal_timer_runs_until_stopped(session, monkeypatch):
    s = session()
    near_expiry(monkeypatch)
    timer = RenewalTimer(s.stack, s.interrupts.stop, s.emitted.put)
    timer.INTERVAL = 0.01
    timer.start()
    assert s.reloaded().action == "re-issued, TLS reloaded in place"
    s.interrupts.stop.set()
    assert ended(timer.thread)


def test_logs_follow_uses_the_trackers_pumps_and_ends_when_every_stream_ends(tmp_path):
    from meshctl.runtime.supervise import follow_logs
    session = Session(tmp_path)
    running = [c for c in session.engine.containers({"meshctl.project": "shop"}, all=False) if c.role != "pod"]
    got = list(follow_logs(session.engine, running, tail=10))
    assert [(line.role, line.line) for line in got if line.role == "app"] == [("app", "serving on 8081"),
                                                                            ("app", "bye")]
    assert {line.service for line in got} == {"web"}
