"""The executor and the stack session on the recording fake engine: the order of engine calls for
up, converge, hot reloads, renewal and down; teardown after every kind of failure; the CLI's
up/down/ps/logs driven through the same fake. No daemon, no network."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import ssl
import stat
import threading
from dataclasses import replace
from pathlib import Path

import time

import pytest
from meshctl.runtime import apply
from meshctl import certs
from meshctl.certs import CertificateAuthority, default_sans
from meshctl.config import ProxySettings, WatchSettings
from meshctl.errors import BuildError, Cancelled, ConfigError, EngineError, StartError
from meshctl.events import BuildEvent, Phase, PodReady
from meshctl.planning.images import BASE_IMAGE, sidecar_images
from meshctl.planning.plan import plan_renewal
from meshctl.planning.steps import IssueCertificate
from meshctl.sidecars import Readiness
from meshctl.runtime.stack import Removed, down_all, down_project, ensure_base_image, ensure_sidecar_images, plan_down_project
from meshctl.runtime.supervise import Tracker
from tests.unit.fake_engine import (METRICS_READY, PROXY_READY, SERVING, FakeEngine, Prober, assert_in_phases, built,
                                    calls, engine_with_images, meshctl, pod_names, shop, stack_on, web)

APP_IMAGE = "meshctl-shop-web:dev"
POD, METRICS, PROXY, APP = pod_names()


def holder_then(*names: str) -> tuple:
    """The holder created, then started while the next group's containers are created (they only
    need it to exist: Compose's create-then-start), then that group started: never before the holder."""
    return ([("create", POD)], {("start", POD), *(("create", n) for n in names)}, {("start", n) for n in names})


def the_pod_starts() -> tuple:
    """The phases of a pod started from nothing (detached): holder, sidecars with the app (it needs
    none of them to start), then at once the sidecars' waits and the whole chain's."""
    return (*holder_then(METRICS, PROXY, APP), {METRICS_READY, PROXY_READY, SERVING})


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def engine() -> FakeEngine:
    return engine_with_images()


def running_shop(engine: FakeEngine, root: Path, home: Path, *services, **options):
    """A stack brought up on the engine; returns it and how many calls that took."""
    stack = stack_on(engine, shop(root, *services), home, **options)
    stack.up()
    return stack, len(engine.calls)


# ---------------------------------------------------------------------------------------------
# up from nothing


def test_up_detached_over_a_running_stack_replaces_the_app_whose_rebuild_gave_its_tag_a_new_image(tmp_path, home):
    engine = FakeEngine(images={BASE_IMAGE, *sidecar_images().values()})
    project = shop(tmp_path, built(tmp_path / "src"))
    stack_on(engine, project, home).up()
    engine.calls.clear()
    stack_on(engine, project, home).up()          # nothing changed: the cached build, the same ID
    assert engine.names("create") == [] and engine.names("build") == [APP_IMAGE]

    engine.image_ids[APP_IMAGE] = "sha256:after-the-code-changed"
    events: list = []
    stack_on(engine, project, home, events=events).up()
    assert engine.names("create") == [APP], "only the app: the same tag now names another image"
    [(_, app)] = [(cid, c) for cid, c in engine.containers_.items() if c["spec"].name == APP]
    assert app["image_id"] == "sha256:after-the-code-changed"
    plan = stack_on(engine, project, home).plan_up()
    assert [s for s in plan.all_steps() if type(s[1]).__name__ == "StartContainers"] == []


def test_up_from_nothing_builds_then_starts_holder_sidecars_and_app_waiting_between(tmp_path, home):
    engine = FakeEngine(images={BASE_IMAGE})
    events: list = []
    stack = stack_on(engine, shop(tmp_path, built(tmp_path / "src")), home, events=events, tied=True)
    [pod] = stack.up()
    refs = sidecar_images()
    assert_in_phases(
        engine.calls,
        {("build", refs["haproxy"]), ("build", refs["metrics"]), ("build", APP_IMAGE),     # in parallel,
         ("ensure_network", "meshctl-shop")},                                              # the network too
        [("create", POD), ("attach_stdin", POD)],                                          # tied: stdin held
        {("start", POD), ("create", METRICS), ("create", PROXY), ("create", APP)},
        {("start", METRICS), ("start", PROXY), ("start", APP)},                            # the app needs none
        {METRICS_READY, PROXY_READY, SERVING})                                             # waited for at once
    assert engine.calls.index(("attach_stdin", POD)) < engine.calls.index(("start", POD))
    assert pod.service == "web" and pod.urls == {"https": "https://localhost:40000/", "http": "http://localhost:40001/",
                                                 "metrics": "http://localhost:40002/metrics"}
    assert [e.phase for e in events if isinstance(e, BuildEvent) and e.image == APP_IMAGE] == ["start", "step", "done"]
    assert [e.service for e in events if isinstance(e, PodReady)] == ["web"]
    # Every container and the network carry meshctl's labels: the only record of what exists.
    for c in engine.containers_.values():
        labels = c["spec"].labels
        assert labels["meshctl.project"] == "shop" and labels["meshctl.service"] == "web"
        assert {"meshctl.role", "meshctl.version", "meshctl.config-hash"} <= set(labels)
        assert c["state"] == "running"
    [network] = engine.networks_.values()
    assert network["Name"] == "meshctl-shop" and network["Labels"]["meshctl.project"] == "shop"
    # The proxy's config is readable, its certificate's key is not.
    folder = home / "projects" / "shop" / "web" / "proxy"
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in folder.iterdir()}
    assert modes == {"haproxy.cfg": 0o644, "cert.pem": 0o644, "ca.pem": 0o644, "key.pem": 0o600, "bundle.pem": 0o600,
                     "faults.lua": 0o644, "faults.map": 0o644, "faults-live.map": 0o644, "faults.json": 0o644}
    assert (home / "ca" / "ca.pem").is_file()


def test_a_missing_base_image_is_pulled_first_and_without_a_registry_the_hint_says_how_to_seed_it(tmp_path, home):
    online = FakeEngine(fail_pull=False)
    stack_on(online, shop(tmp_path), home).up()
    images = [c for c in online.calls if c[0] != "ensure_network"]     # the network is made beside them
    assert images[0] == ("pull", BASE_IMAGE) and ("pull", "web:1") in online.calls

    offline = FakeEngine()
    with pytest.raises(BuildError) as caught:
        stack_on(offline, shop(tmp_path), home).up()
    assert "debian:bookworm-slim is not here and could not be pulled" in caught.value.message
    assert "debootstrap" in caught.value.hint
    assert offline.is_empty()


def test_an_image_that_cannot_be_pulled_names_its_field(tmp_path, home):
    engine = engine_with_images()
    engine.images.discard("web:1")
    with pytest.raises(BuildError, match=r"image nginx:9 \(services.web.image\) is not here"):
        stack_on(engine, shop(tmp_path, web(image="nginx:9")), home).up()
    assert engine.is_empty()


# ---------------------------------------------------------------------------------------------
# up over a running stack, converge


def test_up_over_an_identical_running_stack_changes_nothing(tmp_path, engine, home):
    stack, before = running_shop(engine, tmp_path, home)
    ids = set(engine.containers_)
    again = stack_on(engine, stack.project, home)
    assert not again.plan_up().changes
    [pod] = again.up()
    assert calls(engine, before) == [] and set(engine.containers_) == ids
    assert pod.urls["https"] == "https://localhost:40000/"


def test_a_changed_proxy_setting_reloads_the_proxy_in_place_and_recreates_nothing(tmp_path, engine, home):
    stack, before = running_shop(engine, tmp_path, home)
    ids = set(engine.containers_)
    changed = shop(tmp_path, web(proxy=ProxySettings(timeout=30)))
    stack.converge(changed)
    assert calls(engine, before) == [("signal", PROXY, "SIGUSR2")]
    assert set(engine.containers_) == ids and stack.project is changed
    assert "timeout server 30000ms" in (home / "projects" / "shop" / "web" / "proxy" / "haproxy.cfg").read_text()


def test_after_a_reload_in_place_the_same_mesh_yaml_again_changes_nothing(tmp_path, engine, home):
    """The proxy was reloaded with the new config; `up -d` (or --dry-run) with that same config
    again must find nothing to do, not signal HAProxy once more on every run."""
    stack, _ = running_shop(engine, tmp_path, home)
    changed = shop(tmp_path, web(proxy=ProxySettings(timeout=30)))
    stack.converge(changed)
    after = len(engine.calls)
    plan = stack.plan_up(changed)
    assert not plan.changes, plan.as_json()
    stack.converge(changed)
    assert calls(engine, after) == []


def test_a_changed_app_env_replaces_only_the_app(tmp_path, engine, home):
    _stack, before = running_shop(engine, tmp_path, home)
    kept = {cid for cid, c in engine.containers_.items() if c["spec"].name != APP}
    stack_on(engine, shop(tmp_path, web(env=(("GREETING", "hey"),))), home).up()
    assert calls(engine, before) == [("stop", APP), ("create", APP), ("start", APP), SERVING]
    assert kept < set(engine.containers_)
    assert engine.by_name(APP)["spec"].env["GREETING"] == "hey"


def test_a_removed_service_has_its_containers_removed_app_first(tmp_path, engine, home):
    stack, before = running_shop(engine, tmp_path, home, web(), web("api"))
    stack.converge(shop(tmp_path, web()))
    assert_in_phases(calls(engine, before), [("stop", "shop-api-app")],
                     {("stop", "shop-api-metrics"), ("stop", "shop-api-proxy")}, [("remove", "shop-api-pod")])
    assert {c["spec"].service for c in engine.containers_.values()} == {"web"}


def test_a_removed_service_leaves_no_config_and_no_private_key_behind(tmp_path, engine, home):
    """As for a retired sidecar's folder: nothing of a service that no longer runs stays on disk."""
    stack, _ = running_shop(engine, tmp_path, home, web(), web("api"))
    assert (home / "projects" / "shop" / "api" / "proxy" / "key.pem").is_file()
    stack.converge(shop(tmp_path, web()))
    assert not (home / "projects" / "shop" / "api").exists()


def test_a_changed_holder_replaces_the_whole_pod(tmp_path, engine, home):
    stack, before = running_shop(engine, tmp_path, home)
    stack.converge(shop(tmp_path, web(ports=(("https", 18443), ("http", 0), ("metrics", 0)))))
    assert_in_phases(calls(engine, before), [("stop", APP)], {("stop", METRICS), ("stop", PROXY)},
                     [("remove", POD)], *the_pod_starts())
    assert engine.published_ports(POD)[15443] == 18443


def test_converge_refuses_a_changed_name_and_changes_nothing(tmp_path, engine, home):
    stack, before = running_shop(engine, tmp_path, home)
    source = tmp_path / "mesh.yaml"
    with pytest.raises(ConfigError) as caught:
        stack.converge(replace(shop(tmp_path, name="cafe"), source=source))
    assert caught.value.message == f"{source}: name: changed from 'shop' to 'cafe' while the stack runs"
    assert "set name back to 'shop'" in caught.value.hint
    assert calls(engine, before) == [] and stack.project.name == "shop"


# ---------------------------------------------------------------------------------------------
# A failed up removes everything it started


def up_fails(stack, error: type) -> pytest.ExceptionInfo:
    with pytest.raises(error) as caught:
        stack.up()
    assert stack.engine.is_empty(), stack.engine.containers_
    return caught


def test_a_build_failure_tears_down_and_shows_the_build_log(tmp_path, home):
    engine = engine_with_images(fail_build={APP_IMAGE})
    events: list = []
    caught = up_fails(stack_on(engine, shop(tmp_path, built(tmp_path / "src")), home, events=events), BuildError)
    assert "boom" in caught.value.details
    assert Phase("start failed: removing what was started") in events
    assert "create" not in {c[0] for c in engine.calls}


def test_a_sidecar_that_never_gets_ready_tears_down_with_the_last_reason(tmp_path, home):
    engine = engine_with_images()
    never = Prober(engine, lambda readiness, port: "connection refused" if readiness.path == "/ready" else None)
    stack = stack_on(engine, shop(tmp_path), home, prober=never, ready_timeout=0.2, tied=True)
    caught = up_fails(stack, StartError)
    assert caught.value.message == "the metrics sidecar of web was not ready after 0.2s (last: connection refused)"
    assert never.polls >= 1 and engine.by_name(APP) is None and engine.is_empty()
    assert engine.calls[-1] == ("close_stdin", POD)     # the tie closes last


def test_the_sidecars_and_the_app_started_together_are_waited_for_at_once(tmp_path, home):
    """The metrics sidecar answers only once the whole chain has been polled: waited for one after
    the other, the first wait would time out."""
    engine = engine_with_images()
    asked: set[str | None] = set()

    def answer(readiness, port):
        asked.add(readiness.path)
        return None if readiness.port != "metrics" or "/" in asked else "not yet"

    stack_on(engine, shop(tmp_path), home, prober=Prober(engine, answer), ready_timeout=2).up()
    assert asked == {"/ready", "/.meshctl/ready", "/"}


def test_one_wait_failing_ends_the_others_at_once_and_is_the_error(tmp_path, home):
    engine = engine_with_images(log_lines={METRICS: ["agent: cannot bind :15090"]})

    def answer(readiness, port):
        if readiness.port == "metrics" and engine.by_name(METRICS) is not None:
            engine.exit(METRICS, 1)
        return "not yet" if readiness.port == "metrics" or readiness.path == "/" else None

    started = time.monotonic()
    stack = stack_on(engine, shop(tmp_path), home, prober=Prober(engine, answer), watch=Tracker(engine),
                     ready_timeout=30)
    caught = up_fails(stack, StartError)
    assert caught.value.message == "web: the metrics sidecar exited with code 1 before it was ready"
    assert time.monotonic() - started < 10      # the app's wait (30 s) ended with it


def test_an_app_that_exits_before_it_is_ready_tears_down_and_says_so(tmp_path, home):
    engine = engine_with_images(log_lines={APP: ["Traceback (most recent call last):", "ImportError: flask"]})

    def crash_once(readiness, port):
        if readiness.path != "/":
            return None
        if engine.by_name(APP) is not None:
            engine.exit(APP, 3)
        return "connection refused"

    stack = stack_on(engine, shop(tmp_path), home, prober=Prober(engine, crash_once), watch=Tracker(engine),
                     ready_timeout=60)
    caught = up_fails(stack, StartError)
    assert caught.value.message == "web: the app exited with code 3 before it was ready"
    assert caught.value.details == "app | Traceback (most recent call last):\napp | ImportError: flask"


def test_a_readiness_port_that_is_not_published_is_a_start_error(tmp_path, home):
    engine = engine_with_images()
    unpublished = web(ports=(("https", 0), ("http", 0)))       # the metrics sidecar runs, its port is not published
    caught = up_fails(stack_on(engine, shop(tmp_path, unpublished), home), StartError)
    assert caught.value.message == "web: no host port for metrics, so its readiness cannot be checked"


def test_a_container_that_fails_to_start_tears_down(tmp_path, home):
    engine = engine_with_images(fail_start={PROXY})
    up_fails(stack_on(engine, shop(tmp_path), home), EngineError)


def test_one_pod_failing_stops_the_others_and_its_own_error_is_raised(tmp_path, home):
    """Pods start in parallel; web's app never answers, so only api's failure can end the wait."""
    engine = engine_with_images()

    def answer(readiness, port):
        if (readiness.path == "/ready" and port in engine.published_ports("shop-api-pod").values()
                and engine.by_name("shop-api-metrics") is not None):
            engine.exit("shop-api-metrics", 1)
        return "no answer yet" if readiness.path == "/" else None

    stack = stack_on(engine, shop(tmp_path, web(), web("api")), home, prober=Prober(engine, answer),
                     watch=Tracker(engine), ready_timeout=60)
    caught = up_fails(stack, StartError)
    assert caught.value.message == "api: the metrics sidecar exited with code 1 before it was ready"


def test_cancel_during_a_readiness_wait_raises_cancelled_and_tears_down(tmp_path, home):
    engine = engine_with_images()
    cancel = threading.Event()

    def ctrl_c(readiness, port):
        cancel.set()
        return "not yet"

    events: list = []
    stack = stack_on(engine, shop(tmp_path), home, events=events, prober=Prober(engine, ctrl_c), cancel=cancel)
    up_fails(stack, Cancelled)
    assert Phase("interrupted: removing what was started") in events


def test_cancel_during_a_build_does_not_wait_for_the_build(tmp_path, home):
    gate = threading.Event()          # the build never ends by itself
    engine = engine_with_images(build_gate=gate)
    cancel = threading.Event()
    builds: list = []

    def on_event(event):
        if isinstance(event, BuildEvent):
            builds.append(event.phase)
            cancel.set()

    try:
        up_fails(stack_on(engine, shop(tmp_path, built(tmp_path / "src")), home, on_event=on_event, cancel=cancel),
                 Cancelled)
        assert "done" not in builds       # raised while the build still ran
    finally:
        gate.set()


# ---------------------------------------------------------------------------------------------
# Hot reloads of one app, certificate renewal


def test_restart_app_in_sync_mode_restarts_only_the_app(tmp_path, engine, home):
    synced = web(watch=WatchSettings(sync=((".", "/app"),)))
    stack, before = running_shop(engine, tmp_path, home, synced, watch=Tracker(engine))
    ids = set(engine.containers_)
    stack.restart_app("web")
    assert calls(engine, before) == [("restart", APP), SERVING]
    assert set(engine.containers_) == ids
    assert (str(tmp_path.resolve()), "/app", True) in engine.by_name(APP)["spec"].mounts


def test_restart_app_starts_the_app_afresh_when_it_had_exited(tmp_path, engine, home):
    synced = web(watch=WatchSettings(sync=((".", "/app"),)))
    stack, _ = running_shop(engine, tmp_path, home, synced)
    engine.exit(APP, 1)
    before = len(engine.calls)
    stack.restart_app("web")
    assert calls(engine, before) == [("create", APP), ("start", APP), SERVING]


def synced_and_tracked(engine, tmp_path, home, **options):
    """A stack of one synced service whose containers a Tracker follows (as in the foreground)."""
    synced = web(watch=WatchSettings(sync=((".", "/app"),)))
    stack, before = running_shop(engine, tmp_path, home, synced, watch=Tracker(engine), **options)
    return stack, engine.by_name(APP), before


@pytest.mark.parametrize("race", ["marked", "killed"])
def test_an_app_the_engine_loses_during_its_restart_is_replaced_in_its_pod(tmp_path, home, race):
    """Docker 20.10 under load: the restart is refused ("marked for removal", the container gone),
    or it answers and the engine then removes the container by force (exit 137). Either way a new
    app container from the same spec (labels, mounts, the holder's namespace) serves again."""
    engine = engine_with_images(restart_races={APP: [race]})
    events: list = []
    stack, old, before = synced_and_tracked(engine, tmp_path, home, events=events)
    stack.restart_app("web")
    made = [c for c in calls(engine, before) if c[0] != "ready"]
    assert made == [("restart", APP), ("remove", old_id := next(i for i, c in engine.gone_.items() if c is old)),
                    ("create", APP), ("start", APP)], made
    assert SERVING in calls(engine, before)      # its readiness wait (the second race is seen in it)
    new = engine.by_name(APP)
    assert new is not old and new["state"] == "running" and new["spec"] == old["spec"]
    assert new["spec"].namespace_of == POD and old_id not in engine.containers_
    why = "marked for removal" if race == "marked" else "the engine killed it right after (exit code 137)"
    [phase] = [e.text for e in events if isinstance(e, Phase) and "replacing" in e.text]
    assert phase.startswith("web: restarting the app in place failed (") and why in phase


def test_a_replacement_that_keeps_failing_is_tried_with_a_back_off_then_reported(tmp_path, home, monkeypatch):
    monkeypatch.setattr(apply, "REPLACE_BACKOFF", (0.0, 0.0))
    engine = engine_with_images(restart_races={APP: ["marked"]})
    stack, _, before = synced_and_tracked(engine, tmp_path, home)
    engine.fail_start.add(APP)
    with pytest.raises(EngineError, match=f"could not start container {APP}"):
        stack.restart_app("web")
    assert calls(engine, before, verbs=("create", "start")) == [("create", APP), ("start", APP)] * 3
    assert engine.by_name(APP) is None           # no half-started app left behind
    assert {c["spec"].role for c in engine.containers_.values()} == {"pod", "metrics", "proxy"}


def test_an_app_that_crashes_after_its_restart_is_not_replaced(tmp_path, engine, home):
    """Its own exit (code 1) is the reload's failure: replacing it would only crash again."""
    def crash_once(readiness, port):
        if engine.by_name(APP) is not None and readiness.path == "/":
            engine.exit(APP, 1)
        return "HTTP 503"

    stack, _, before = synced_and_tracked(engine, tmp_path, home)
    stack.prober = Prober(engine, crash_once)
    with pytest.raises(StartError, match="the app exited with code 1 before it was ready"):
        stack.restart_app("web")
    assert calls(engine, before, verbs=("create", "start", "remove")) == []


def test_a_build_step_container_of_the_apps_image_is_no_pod(tmp_path, engine, home):
    """While an app image builds (a hot reload in rebuild mode), the classic builder runs step
    containers from its half-built image, which already carries the project's label: ps lists one
    entry per service still, and a plan made meanwhile sees only the pods' containers."""
    from meshctl.model import ContainerSpec
    from meshctl.runtime.status import status

    stack, _ = running_shop(engine, tmp_path, home)
    engine.create(ContainerSpec("elegant_build_step", "web:1", {"meshctl.project": "shop"}))
    assert [(s.service, s.state) for s in status(engine, "shop")] == [("web", "running")]
    assert {c.name for c in stack.observe().containers} == {POD, METRICS, PROXY, APP}


def test_rebuild_pod_starts_that_pod_anew_and_leaves_the_other_pods_alone(tmp_path, engine, home):
    """A lost holder takes its pod's containers with it; the rebuild starts that pod only. Another
    pod whose sidecar exited at the same moment waits for its own in-place restart (its app is not
    restarted behind it), and no other pod is announced again."""
    events: list = []
    stack, _ = running_shop(engine, tmp_path, home, web(), web("api"), events=events)
    for name in (APP, METRICS, PROXY, POD):
        engine.exit(name, 137)
    engine.exit("shop-api-metrics", 1)
    before, shown = len(engine.calls), len(events)
    stack.rebuild_pod("web")
    assert_in_phases(calls(engine, before), *the_pod_starts())
    assert not [c for c in calls(engine, before) if "shop-api" in str(c[1:])]
    assert [e.service for e in events[shown:] if isinstance(e, PodReady)] == ["web"]


def test_rebuild_app_builds_then_replaces_only_the_app(tmp_path, engine, home):
    stack, before = running_shop(engine, tmp_path, home, built(tmp_path / "src"))
    old_app = engine.by_name(APP)["spec"]
    stack.rebuild_app("web")
    assert calls(engine, before) == [("build", APP_IMAGE), ("stop", APP), ("create", APP), ("start", APP), SERVING]
    assert engine.by_name(APP)["spec"] == old_app and len(engine.containers_) == 4


def test_a_failed_rebuild_leaves_the_running_app_alone(tmp_path, engine, home):
    stack, before = running_shop(engine, tmp_path, home, built(tmp_path / "src"))
    ids = set(engine.containers_)
    engine.fail_build.add(APP_IMAGE)
    with pytest.raises(BuildError):
        stack.rebuild_app("web")
    assert calls(engine, before) == [("build", APP_IMAGE)] and set(engine.containers_) == ids


def test_a_certificate_near_expiry_is_reissued_and_the_proxy_reloads(tmp_path, engine, home, monkeypatch):
    stack, before = running_shop(engine, tmp_path, home)
    assert stack.renew_certificates() == [] and calls(engine, before) == []
    cert = home / "projects" / "shop" / "web" / "proxy" / "cert.pem"
    old = cert.read_bytes()
    real_now = certs._now
    monkeypatch.setattr(certs, "_now", lambda: real_now() + certs.LEAF_VALIDITY - dt.timedelta(hours=12))
    plan = plan_renewal(stack.project, stack.observe(), stack.settings)
    assert [s.why for s in plan.steps if isinstance(s, IssueCertificate)] == ["expires in 12 h"]
    assert stack.renew_certificates() == ["web"]
    assert calls(engine, before) == [("signal", PROXY, "SIGUSR2")] and cert.read_bytes() != old


# ---------------------------------------------------------------------------------------------
# down


def test_down_stops_apps_then_sidecars_then_holders_and_removes_network_and_files(tmp_path, engine, home):
    stack, before = running_shop(engine, tmp_path, home, tied=True)
    assert stack.down() == Removed(4, ("meshctl-shop",))
    assert_in_phases(calls(engine, before), [("stop", APP)], {("stop", METRICS), ("stop", PROXY)},
                     [("remove", POD), ("remove_network", "meshctl-shop"), ("close_stdin", POD)])
    assert engine.is_empty()
    assert not (home / "projects" / "shop").exists() and (home / "ca" / "ca.pem").is_file()   # the CA stays


def test_down_force_kills_everything_at_once(tmp_path, engine, home):
    stack, before = running_shop(engine, tmp_path, home)
    stack.down(force=True)
    assert_in_phases(calls(engine, before), {("remove", n) for n in (APP, METRICS, PROXY, POD)},
                     [("remove_network", "meshctl-shop")])


def test_a_second_signal_during_teardown_switches_to_killing(tmp_path, home):
    engine = engine_with_images(slow_stop={APP})       # the app takes its whole grace period
    events: list = []
    stack, before = running_shop(engine, tmp_path, home, events=events)

    def second_ctrl_c():
        if ("stop", APP) in engine.calls:
            stack.force.set()

    stack.teardown(tick=second_ctrl_c)
    assert Phase("forced: killing every container now") in events
    assert ("remove", APP) in calls(engine, before) and engine.is_empty()


def test_a_container_that_cannot_be_stopped_is_killed(tmp_path, home):
    engine = engine_with_images(fail_stop={APP})
    stack, before = running_shop(engine, tmp_path, home)
    stack.down()
    assert calls(engine, before)[:2] == [("stop", APP), ("remove", APP)] and engine.is_empty()


def test_a_teardown_that_cannot_remove_everything_says_so_and_the_first_error_stays_the_news(tmp_path, home):
    engine = engine_with_images(fail_remove={POD})
    events: list = []
    never = Prober(engine, lambda readiness, port: "connection refused")
    with pytest.raises(StartError):
        stack_on(engine, shop(tmp_path), home, events=events, prober=never, ready_timeout=0.1).up()
    assert Phase(f"could not remove everything: could not remove container {POD}: the engine refused") in events
    assert [c["spec"].name for c in engine.containers_.values()] == [POD]


def test_down_on_nothing_plans_nothing_and_does_nothing(tmp_path, home):
    engine = FakeEngine()
    plan = plan_down_project(engine, "shop", home=home)
    assert plan.steps == () and not plan.changes
    assert not down_project(engine, "shop", home=home) and engine.calls == []


def test_down_takes_one_project_and_down_all_every_one(tmp_path, engine, home):
    running_shop(engine, tmp_path, home)
    stack_on(engine, shop(tmp_path, name="cafe"), home).up()
    assert down_project(engine, "shop", home=home).containers == 4
    assert {c["spec"].labels["meshctl.project"] for c in engine.containers_.values()} == {"cafe"}
    running_shop(engine, tmp_path, home)
    assert {name: r.containers for name, r in down_all(engine).items()} == {"cafe": 4, "shop": 4}
    assert engine.is_empty()


def test_a_killed_meshctl_leaves_a_network_that_down_all_down_and_up_remove(tmp_path, engine, home):
    running_shop(engine, tmp_path, home, tied=True)
    for cid in list(engine.containers_):          # SIGKILL: the pods die with their tie, the network stays
        engine._gone(cid, 137)
    assert [n["Name"] for n in engine.networks_.values()] == ["meshctl-shop"]
    from meshctl.runtime.doctor import diagnose
    from meshctl.certs import CertificateAuthority
    [finding] = [f for f in diagnose(engine, CertificateAuthority(home)) if f.name == "meshctl networks"]
    assert not finding.ok and "meshctl-shop" in finding.detail and "down --all" in finding.detail

    removed = down_all(engine)
    assert removed == {"shop": Removed(0, ("meshctl-shop",))} and engine.networks_ == {}
    assert "left by a meshctl that was killed" in removed["shop"].summary()

    running_shop(engine, tmp_path, home, tied=True)
    for cid in list(engine.containers_):
        engine._gone(cid, 137)
    engine.calls.clear()
    stack_on(engine, shop(tmp_path), home).up()      # `up` starts from a fresh network
    assert engine.calls[:2] == [("remove_network", "meshctl-shop"), ("ensure_network", "meshctl-shop")]
    assert down_project(engine, "shop", home=home) == Removed(4, ("meshctl-shop",))
    assert engine.is_empty() and engine.networks_ == {}


def test_the_base_image_is_pulled_only_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHCTL_HOME", str(tmp_path))
    engine = FakeEngine(fail_pull=False)
    ensure_base_image(engine)
    ensure_base_image(engine)
    assert engine.calls == [("pull", BASE_IMAGE)]


def test_sidecar_images_are_built_only_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHCTL_HOME", str(tmp_path))
    engine = FakeEngine(images={BASE_IMAGE})
    refs = ensure_sidecar_images(engine, ("proxy", "metrics"), lambda event: None)
    assert refs == {"proxy": sidecar_images()["haproxy"], "metrics": sidecar_images()["metrics"]}
    assert sorted(engine.names("build")) == sorted(refs.values())
    ensure_sidecar_images(engine, ("tls",), lambda event: None)
    assert len(engine.names("build")) == 2          # tls shares the proxy's image


# ---------------------------------------------------------------------------------------------
# The readiness probes the executor uses by default (loopback only: a server in this process)


@pytest.fixture
def serve(tmp_path):
    """serve(tls) → the port of an HTTP(S) server on 127.0.0.1 answering /healthz 200, /down 503,
    anything else 404; its certificate is from the CA in tmp_path/home, for localhost."""
    ca = CertificateAuthority(tmp_path / "home")
    servers = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response({"/healthz": 200, "/down": 503}.get(self.path, 404))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    def start(tls: bool) -> int:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            leaf = ca.issue(tmp_path / "leaf", default_sans("web"))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(leaf.cert_path, leaf.key_path)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def probe(readiness: Readiness, port: int, ca: Path) -> str | None:
    return apply.probe_for(readiness, port, ca)()


def test_readiness_probes_verify_tls_against_meshctls_ca_and_judge_the_status(tmp_path, serve):
    https, plain = serve(tls=True), serve(tls=False)
    ca = tmp_path / "home" / "ca" / "ca.pem"
    assert probe(Readiness("https", "/healthz", tls=True), https, ca) is None
    assert probe(Readiness("https", "/down", tls=True), https, ca) == "HTTP 503"
    assert probe(Readiness("https", None, tls=True), https, ca) is None              # a verified handshake
    assert probe(Readiness("http", "/nothing-here", accept="below 500"), plain, ca) is None
    assert probe(Readiness("http", "/nothing-here"), plain, ca) == "HTTP 404"
    other_ca = CertificateAuthority(tmp_path / "elsewhere").ensure()
    for readiness in (Readiness("https", "/healthz", tls=True), Readiness("https", None, tls=True)):
        assert probe(readiness, https, other_ca).startswith("certificate did not verify")


def test_a_probe_of_a_closed_port_says_why(tmp_path):
    ca = CertificateAuthority(tmp_path).ensure()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert probe(Readiness("http", "/"), port, ca).startswith("ConnectionRefusedError")
    assert probe(Readiness("https", None, tls=True), port, ca).startswith("ConnectionRefusedError")


# ---------------------------------------------------------------------------------------------
# The CLI on the fake engine


def test_cli_up_detached_ps_logs_and_down(tmp_path, cli_engine):
    cli_engine.log_lines[APP] = ["listening on 8081"]
    result = meshctl("up", "-d", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "https://localhost:40000/" in result.stdout and "meshctl down" in result.stdout
    assert len(cli_engine.containers_) == 4

    [entry] = json.loads(meshctl("ps", "--json").stdout)
    assert entry["state"] == "running" and entry["urls"]["https"] == "https://localhost:40000/"
    assert [c["role"] for c in entry["containers"]] == ["pod", "metrics", "proxy", "app"]
    assert "shop/web (running)" in meshctl("ps").stdout

    for follow in ([], ["-f"]):
        logs = meshctl("logs", "-p", "shop", "web", *follow)
        assert logs.exit_code == 0 and "web/app" in logs.stdout and "listening on 8081" in logs.stdout

    down = meshctl("down", str(tmp_path))
    assert down.exit_code == 0 and "shop: removed 4 containers" in down.output
    assert cli_engine.is_empty()
    assert "nothing was running" in meshctl("down", "-p", "shop").output
    assert "no meshctl stacks are running" in meshctl("ps").stdout
    assert meshctl("logs", "-p", "shop").exit_code == 2


def test_cli_up_on_a_fresh_machine_builds_the_sidecar_images_and_says_so(tmp_path, cli_engine):
    cli_engine.images -= set(sidecar_images().values())
    result = meshctl("up", "-d", str(tmp_path))
    assert result.exit_code == 0, result.output
    used = sidecar_images({"haproxy", "metrics"}).values()      # one service: no capture step, no capture image
    for ref in used:
        assert f"built {ref} in" in result.stderr
    assert sorted(cli_engine.names("build")) == sorted(used)


def test_cli_down_all(tmp_path, cli_engine):
    assert meshctl("up", "-d", str(tmp_path)).exit_code == 0
    result = meshctl("down", "--all", "--force")
    assert result.exit_code == 0 and "removed 4 containers of 1 projects" in result.output
    assert cli_engine.is_empty() and "no meshctl stacks were running" in meshctl("down", "--all").output


def test_cli_up_in_the_foreground_ends_with_the_apps_exit_code_and_removes_everything(tmp_path, cli_engine,
                                                                                      monkeypatch):
    def then_exit(readiness, port):
        if readiness.path == "/" and cli_engine.by_name(APP) is not None:
            cli_engine.exit(APP, 7)      # serves once, then exits by itself
        return None

    monkeypatch.setattr(apply, "probe_for", Prober(cli_engine, then_exit))
    result = meshctl("up", "--no-watch", str(tmp_path))
    assert result.exit_code == 7, result.output
    assert "web: the app exited with code 7" in result.output and cli_engine.is_empty()


def test_cli_up_that_cannot_start_exits_3_and_leaves_nothing(tmp_path, cli_engine):
    cli_engine.exit_on_start[APP] = 1
    result = meshctl("up", "--no-watch", str(tmp_path))
    assert result.exit_code == 3
    assert "error: web: the app exited with code 1 before it was ready" in result.output
    assert cli_engine.is_empty()


def test_cli_up_interrupted_exits_130_and_leaves_nothing(tmp_path, cli_engine, monkeypatch):
    from meshctl.runtime import supervise

    class AlreadyInterrupted(supervise.Interrupts):
        def install(self):
            self.stop.set()
            return self

    monkeypatch.setattr(supervise, "Interrupts", AlreadyInterrupted)     # up imports it when it runs
    result = meshctl("up", "-d", str(tmp_path))
    assert result.exit_code == 130 and "interrupted" in result.output
    assert cli_engine.is_empty()


def test_cli_up_no_wait_needs_detach(tmp_path, cli_engine):
    result = meshctl("up", "--no-wait", str(tmp_path))
    assert result.exit_code == 2 and "--no-wait only makes sense with -d" in result.output


def test_a_tcp_services_handshake_through_the_proxy_is_waited_for_after_the_proxy(tmp_path, home):
    """A TCP service's readiness is a verified handshake through its proxy, which the proxy completes
    only while it counts the app up, and a server counts as up until its first check fails: the
    handshake means something only after the proxy's own wait (run at once, a TCP app that never
    listened was once found ready)."""
    engine = engine_with_images()
    began, metrics_ready_at, handshake_polls = time.monotonic(), [], []

    def answer(readiness, port):
        if readiness.port == "metrics":
            if time.monotonic() - began < 0.3:
                return "not yet"
            metrics_ready_at.append(time.monotonic())
        elif readiness.path is None:
            handshake_polls.append(time.monotonic())
        return None

    stack_on(engine, shop(tmp_path, web(protocol="tcp")), home, prober=Prober(engine, answer)).up()
    assert metrics_ready_at and handshake_polls and handshake_polls[0] >= metrics_ready_at[0]
