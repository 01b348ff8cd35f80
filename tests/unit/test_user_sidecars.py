"""Sidecars of the user's own (mesh.yaml `sidecars: {NAME: {image|build, …}}`) through the same
machinery as meshctl's: planned, built, started after meshctl's sidecars and waited for before the
app, stopped after it, least privilege unless asked, a build folder's change converges. On the
recording fake engine: no daemon."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from meshctl.config import ReadySpec, UserSidecar, parse_project
from meshctl.errors import StartError
from meshctl.planning.images import folder_hash
from meshctl.planning.steps import BuildImage, WaitReady
from meshctl.sidecars import start_rank
from meshctl.runtime.status import status
from meshctl.planning.watch import CONVERGE, REBUILD, classify
from tests.unit.fake_engine import (METRICS_READY, PROXY_READY, SERVING, FakeEngine, assert_in_phases, engine_with_images,
                                    pod_names, shop, stack_on, web)

POD, METRICS, PROXY, APP = pod_names()
CACHE, NOTES = "shop-web-cache", "shop-web-notes"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def notes_folder(root: Path) -> Path:
    folder = root / "notes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text("FROM debian:bookworm-slim\nCOPY notes.py /notes.py\n")
    (folder / "notes.py").write_text("print('notes')\n")
    return folder


def with_sidecars(root: Path) -> tuple:
    cache = UserSidecar("cache", image="cache:1", ready=ReadySpec(tcp=6379))
    notes = UserSidecar("notes", build=notes_folder(root), command=("python3", "/notes.py"), env=(("MODE", "x"),),
                        ready=ReadySpec(http="/ready", port=9000))
    return cache, notes


def notes_ref(root: Path) -> str:
    return f"meshctl-shop-web-notes:{folder_hash(root / 'notes')}"


def exec_waits(engine: FakeEngine) -> list[tuple]:
    return [c for c in engine.calls if c[0] == "exec"]


def test_user_sidecars_start_after_meshctls_and_are_ready_before_the_app(tmp_path, home):
    engine = engine_with_images("cache:1")
    stack = stack_on(engine, shop(tmp_path, web(user_sidecars=with_sidecars(tmp_path))), home)
    stack.up()
    calls = [c if c[0] != "exec" else ("exec", c[1]) for c in engine.calls]
    assert_in_phases(
        calls,
        {("build", notes_ref(tmp_path)), ("ensure_network", "meshctl-shop")},      # images (the network beside)
        [("create", POD)],
        {("start", POD), ("create", METRICS), ("create", PROXY)},                  # created while the holder starts
        {("start", METRICS), ("start", PROXY)},
        {METRICS_READY, PROXY_READY},
        {("create", CACHE), ("start", CACHE), ("create", NOTES), ("start", NOTES)},
        # Their ports are the pod's own, not published: checked from the holder, on its loopback.
        [("exec", POD), ("exec", POD)],
        [("create", APP), ("start", APP), SERVING])
    tcp, http = (c[2] for c in exec_waits(engine))
    assert tcp == ("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/6379")
    assert "/dev/tcp/127.0.0.1/9000" in http[2] and "GET /ready HTTP/1.0" in http[2] and '"$code" -lt 300' in http[2]


def test_user_sidecars_run_with_least_privilege_unless_their_fields_ask_for_more(tmp_path, home):
    cache, notes = with_sidecars(tmp_path)
    root = replace(cache, name="root", user="0", read_only=False, cap_add=("NET_BIND_SERVICE",))
    engine = engine_with_images("cache:1")
    stack_on(engine, shop(tmp_path, web(user_sidecars=(cache, notes, root))), home).up()
    spec = {c["spec"].role: c["spec"] for c in engine.containers_.values()}
    for role in ("cache", "notes"):
        s = spec[role]
        assert s.cap_drop == ("ALL",) and s.cap_add == () and s.no_new_privileges and s.read_only
        assert s.user == spec["proxy"].user and s.tmpfs == ("/tmp",) and s.namespace_of == POD
        assert s.labels["meshctl.role"] == role and s.labels["meshctl.project"] == "shop"
    assert spec["notes"].image == notes_ref(tmp_path) and spec["notes"].command == ("python3", "/notes.py")
    assert spec["notes"].env == {"MODE": "x"}
    assert (spec["root"].user, spec["root"].read_only, spec["root"].cap_add) == ("0", False, ("NET_BIND_SERVICE",))
    assert spec["root"].cap_drop == ("ALL",) and spec["root"].no_new_privileges
    # The holder never runs a user's image: it runs the in-pod readiness checks with bash.
    assert spec["pod"].image == spec["metrics"].image


def test_an_exec_readiness_runs_in_the_sidecar_itself_and_no_ready_means_no_wait(tmp_path, home):
    probe = UserSidecar("probe", image="cache:1", ready=ReadySpec(exec=("redis-cli", "ping")))
    plain = UserSidecar("plain", image="cache:1")
    engine = engine_with_images("cache:1")
    plan = stack_on(engine, shop(tmp_path, web(user_sidecars=(probe, plain))), home).plan_up()
    waits = [s for _, s in plan.all_steps() if isinstance(s, WaitReady) and s.role in ("probe", "plain")]
    assert [(w.role, w.container, w.readiness.exec) for w in waits] == [("probe", "shop-web-probe", ("redis-cli", "ping"))]
    assert "exits 0 in the sidecar" in waits[0].readiness.describe()


def test_a_user_sidecar_that_never_gets_ready_tears_everything_down_with_its_field(tmp_path, home):
    engine = engine_with_images("cache:1", exec_codes={POD: 1})
    stack = stack_on(engine, shop(tmp_path, web(user_sidecars=with_sidecars(tmp_path)[:1])), home, ready_timeout=0.3)
    with pytest.raises(StartError) as caught:
        stack.up()
    assert "the cache sidecar of web was not ready after 0.3s" in caught.value.message
    assert "connection refused" in caught.value.message
    assert "services.web.sidecars.cache.ready" in caught.value.hint
    assert ("create", APP) not in engine.calls          # the app never started
    assert engine.is_empty()


def test_a_readiness_command_that_hangs_fails_the_start_at_its_timeout(tmp_path, home):
    """Each exec poll is bounded at the engine (the fake's hanging exec ends at its timeout, as
    the real one's is killed), so a hung `ready:` command cannot outlive --timeout."""
    engine = engine_with_images("cache:1", hanging_exec={POD})
    stack = stack_on(engine, shop(tmp_path, web(user_sidecars=with_sidecars(tmp_path)[:1])), home, ready_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StartError) as caught:
        stack.up()
    assert time.monotonic() - started < 5
    assert "the cache sidecar of web was not ready after 0.5s" in caught.value.message
    assert "did not finish within 0.5s" in caught.value.message
    assert engine.is_empty()


def test_a_user_sidecar_that_exits_before_it_is_ready_is_the_news(tmp_path, home):
    from meshctl.runtime.supervise import Tracker

    engine = engine_with_images("cache:1", exec_codes={POD: 1}, exit_on_start={CACHE: 4})
    tracker = Tracker(engine)
    stack = stack_on(engine, shop(tmp_path, web(user_sidecars=with_sidecars(tmp_path)[:1])), home, watch=tracker)
    with pytest.raises(StartError, match="web: the cache sidecar exited with code 4 before it was ready"):
        stack.up()
    assert engine.is_empty()


def test_down_stops_the_app_first_then_every_sidecar_then_the_holder(tmp_path, home):
    engine = engine_with_images("cache:1")
    stack = stack_on(engine, shop(tmp_path, web(user_sidecars=with_sidecars(tmp_path))), home)
    stack.up()
    mark = len(engine.calls)
    stack.down()
    stops = [c for c in engine.calls[mark:] if c[0] in ("stop", "remove")]
    assert_in_phases(stops, [("stop", APP)], {("stop", METRICS), ("stop", PROXY), ("stop", CACHE), ("stop", NOTES)},
                     [("remove", POD)])


def test_ps_lists_user_sidecars_after_meshctls_and_before_the_app(tmp_path, home):
    engine = engine_with_images("cache:1")
    stack_on(engine, shop(tmp_path, web(user_sidecars=with_sidecars(tmp_path))), home).up()
    [entry] = status(engine, "shop")
    assert [c["role"] for c in entry.containers] in (["pod", "metrics", "proxy", "cache", "notes", "app"],
                                                      ["pod", "metrics", "proxy", "notes", "cache", "app"])
    assert start_rank("cache") < start_rank("app")


def test_an_image_already_built_from_an_unchanged_folder_is_not_built_again(tmp_path, home):
    engine = engine_with_images("cache:1")
    project = shop(tmp_path, web(user_sidecars=with_sidecars(tmp_path)))
    stack_on(engine, project, home).up()
    again = stack_on(engine, project, home).plan_up()
    assert not [s for _, s in again.all_steps() if isinstance(s, BuildImage)]
    assert not again.changes


def test_a_change_in_a_sidecars_build_folder_converges_rebuilding_and_replacing_it_then_the_app(tmp_path, home):
    engine = engine_with_images("cache:1")
    project = shop(tmp_path, web(user_sidecars=with_sidecars(tmp_path)))
    stack = stack_on(engine, project, home)
    stack.up()
    (tmp_path / "notes" / "notes.py").write_text("print('notes, again')\n")
    change = classify(project, {tmp_path / "notes" / "notes.py"})
    assert change.actions == {"web": CONVERGE}
    mark = len(engine.calls)
    stack.converge(project)
    after = [c for c in engine.calls[mark:] if c[0] in ("build", "stop", "create")]
    assert after[0] == ("build", notes_ref(tmp_path))            # the new content hash
    assert ("stop", APP) in after and ("stop", NOTES) in after and ("create", NOTES) in after
    assert after.index(("create", NOTES)) < after.index(("create", APP))
    assert ("stop", CACHE) not in after and ("stop", PROXY) not in after


def test_classify_weighs_a_sidecar_folder_above_a_rebuild_of_the_app(tmp_path):
    folder = notes_folder(tmp_path / "src")
    (tmp_path / "src" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    project = shop(tmp_path, web(image=None, build=tmp_path / "src",
                                 user_sidecars=(UserSidecar("notes", build=folder),)))
    assert classify(project, {tmp_path / "src" / "app.py"}).actions == {"web": REBUILD}
    assert classify(project, {tmp_path / "src" / "app.py", folder / "notes.py"}).actions == {"web": CONVERGE}


def test_mesh_yaml_user_sidecars_reach_the_pod(tmp_path, home):
    notes_folder(tmp_path)
    text = """\
name: shop
services:
  web:
    image: web:1
    port: 8081
    ports: {https: 0, http: 0, metrics: 0}
    sidecars:
      cache: {image: "cache:1", command: "cache --fast", ready: {tcp: 6379}}
"""
    project = parse_project(text, source=tmp_path / "mesh.yaml", root=tmp_path)
    engine = engine_with_images("cache:1")
    stack_on(engine, project, home).up()
    cache = next(c["spec"] for c in engine.containers_.values() if c["spec"].role == "cache")
    assert cache.command == ("sh", "-c", "cache --fast") and cache.image == "cache:1"


def test_a_user_sidecar_that_exited_is_restarted_in_place_and_waited_for(tmp_path, home):
    from meshctl.planning.plan import plan_restart_sidecar
    from meshctl.planning.steps import StartContainers

    engine = engine_with_images("cache:1")
    project = shop(tmp_path, web(user_sidecars=with_sidecars(tmp_path)[:1]))
    stack = stack_on(engine, project, home)
    stack.up()
    plan = plan_restart_sidecar(project, "web", "cache", stack.observe(), stack.settings)
    steps = [s for _, s in plan.all_steps()][-2:]      # after removing what is left of it
    assert [type(s).__name__ for s in steps] == ["StartContainers", "WaitReady"]
    assert isinstance(steps[0], StartContainers) and [s.name for s in steps[0].specs] == [CACHE]
    assert steps[1].container == POD and steps[1].readiness.exec[2] == "exec 3<>/dev/tcp/127.0.0.1/6379"


def test_a_converge_that_replaces_a_sidecar_is_not_failed_by_the_app_it_stopped_first(tmp_path, home):
    from meshctl.runtime.supervise import Tracker

    engine = engine_with_images("cache:1")
    tracker = Tracker(engine)
    project = shop(tmp_path, web(user_sidecars=with_sidecars(tmp_path)))
    stack = stack_on(engine, project, home, watch=tracker)
    stack.up()
    (tmp_path / "notes" / "notes.py").write_text("print('notes, again')\n")
    stack.converge(project)          # the app stops, notes is replaced and waited for, then the app
    running = {c["spec"].name for c in engine.containers_.values() if c["state"] == "running"}
    assert {NOTES, APP, CACHE} <= running
