"""`meshctl fault` on the fake engine: a live fault is written where a reload reads it and sent to the
running proxy through the runtime socket (an exec, no restart); --clear goes back to mesh.yaml's;
an `up` over it (a reload) keeps it; flags are checked as mesh.yaml is; ps shows what applies."""

from __future__ import annotations

import json

import pytest

from meshctl.config import Fault
from meshctl.errors import UsageError
from meshctl.runtime.faults import faults_from_flags, read_faults, runtime_script, set_live
from meshctl.runtime.status import status
from meshctl.sidecars.faults import LIVE_MAP
from tests.unit.fake_engine import calls, engine_with_images, meshctl, shop, stack_on, use_on_the_cli, web


@pytest.fixture
def running(tmp_path):
    engine = engine_with_images()
    home = tmp_path / "home"
    project = shop(tmp_path, web(faults=(Fault("abort", 20.0, status=503),)))
    stack_on(engine, project, home).up()
    return engine, home, project


def live_map(home):
    return (home / "projects" / "shop" / "web" / "proxy" / LIVE_MAP).read_text()


def test_a_live_fault_is_written_and_sent_to_the_running_proxy_without_a_restart(running):
    engine, home, _project = running
    since = len(engine.calls)
    applied = set_live(engine, home, "shop", "web", faults_from_flags("http", delay="2s", percent=12.5))
    assert applied.active == (Fault("delay", 12.5, delay=2.0),)
    assert "- delay:2000:12.5" in live_map(home).splitlines()
    [(verb, container, command)] = calls(engine, since)
    assert (verb, container) == ("exec", "shop-web-proxy") and command[:2] == ("sh", "-c")
    assert "add map @$v /etc/meshctl/faults-live.map - delay:2000:12.5;" in command[2]
    assert read_faults(home, "shop", "web").live == (Fault("delay", 12.5, delay=2.0),)
    [entry] = status(engine, "shop", home=home)
    assert entry.faults == "delay 2000ms 12.5% (live)"


def test_clear_goes_back_to_mesh_yaml_and_an_up_over_a_live_fault_keeps_it(running):
    engine, home, project = running
    set_live(engine, home, "shop", "web", faults_from_flags("http", abort=418))
    stack_on(engine, project, home).up()                 # a reload renders everything again…
    assert "- abort:418:100" in live_map(home)           # …but never the live map
    cleared = set_live(engine, home, "shop", "web", None)
    assert cleared.live is None and cleared.active == (Fault("abort", 20.0, status=503),)
    assert "abort" not in live_map(home) and read_faults(home, "shop", "web").live is None


def test_down_ends_a_live_fault_and_the_next_up_starts_from_mesh_yaml(running):
    engine, home, project = running
    set_live(engine, home, "shop", "web", faults_from_flags("http", abort=418))
    stack_on(engine, project, home).down()
    stack_on(engine, project, home).up()
    assert "abort:418" not in live_map(home)
    assert read_faults(home, "shop", "web").live is None
    [entry] = status(engine, "shop", home=home)
    assert entry.faults == "abort 503 20%"


@pytest.mark.parametrize(("flags", "words"), [
    ({}, "no fault given"),
    ({"reset": True}, "reset is a TCP fault"),
    ({"abort": 503, "percent": 120.0}, "--percent: 120.0 is not a percentage"),
    ({"delay": "soon"}, "--delay: 'soon' is not a delay"),
])
def test_flags_are_checked_as_mesh_yaml_is(flags, words):
    with pytest.raises(UsageError) as caught:
        faults_from_flags("http", **flags)
    assert words in caught.value.message


def test_from_must_name_a_caller_with_an_identity(running):
    engine, home, _project = running
    with pytest.raises(UsageError) as caught:
        set_live(engine, home, "shop", "web", faults_from_flags("http", abort=503, callers=["api"]))
    assert "--from api: no caller of web" in caught.value.message


def test_the_runtime_script_commits_one_new_version_of_the_live_map():
    script = runtime_script({"-": "abort:503:20", "web": "abort:503:20,delay:300:50"})
    assert script.startswith("v=$(echo 'prepare map /etc/meshctl/faults-live.map' | socat stdio UNIX-CONNECT:/tmp/haproxy.sock)")
    assert script.endswith('commit map @$v /etc/meshctl/faults-live.map" | socat stdio UNIX-CONNECT:/tmp/haproxy.sock')


def test_the_cli_sets_lists_and_clears(tmp_path, monkeypatch):
    folder = tmp_path / "shop"
    folder.mkdir()
    engine = use_on_the_cli(folder, monkeypatch)
    meshctl("up", "-d", str(folder), check=True)
    result = meshctl("fault", "web", "--abort", "503", "--percent", "20", "--path", str(folder), check=True)
    assert "abort 503 20% (live" in result.stdout
    listed = json.loads(meshctl("fault", "--list", "--json", "-p", "shop", check=True).stdout)
    assert listed[0]["live"] == [{"abort": 503, "percent": 20.0}]
    assert "no faults" in meshctl("fault", "web", "--clear", "-p", "shop", check=True).stdout
    bad = meshctl("fault", "web", "--abort", "503", "--percent", "-1", "-p", "shop")
    assert bad.exit_code == 2 and "--percent" in bad.stderr
    assert [c for c in engine.calls if c[0] in ("restart", "stop", "remove")] == []


def test_the_proxy_holds_the_projects_probe_key_and_the_readiness_probe_carries_it(tmp_path):
    from meshctl.planning.plan import Observed
    from meshctl.planning.steps import StartContainers, WaitReady
    from meshctl.sidecars.faults import PROBE_HEADER, PROBE_KEY_ENV, probe_key
    from tests.unit.fake_engine import plan_for

    key = probe_key("s" * 64, "shop")
    [(_, steps)] = plan_for(shop(tmp_path), Observed(), tmp_path, probe_secret="s" * 64).pods
    proxy = next(spec for step in steps if isinstance(step, StartContainers) for spec in step.specs
                 if spec.name == "shop-web-proxy")
    assert proxy.env[PROBE_KEY_ENV] == key
    serving = [step for step in steps if isinstance(step, WaitReady) and step.role == "app"]
    assert serving and serving[0].readiness.headers == ((PROBE_HEADER, key),)
    # No secret yet (a dry run before the first `up`): no key anywhere, so nothing can skip a fault.
    [(_, dry)] = plan_for(shop(tmp_path), Observed(), tmp_path).pods
    assert all(PROBE_KEY_ENV not in spec.env for step in dry if isinstance(step, StartContainers) for spec in step.specs)
