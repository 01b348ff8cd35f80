"""Plans are pure: the steps for what was observed, in order, each with what it acts on and why;
and `--dry-run` prints one and changes nothing (through the CLI, on the fake engine)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from meshctl.config import MeshSettings, ProjectSpec
from meshctl.planning.images import BASE_IMAGE
from meshctl.model import ContainerInfo
from meshctl.planning.plan import Observed, plan_down, plan_rebuild_app, plan_renewal, plan_restart_app, pods_for
from meshctl.planning.steps import (Announce, BuildImage, EnsureCA, EnsureNetwork, IssueCertificate, Keep, PullImage,
                                    RemoveContainers, RemoveFolder, RemoveNetwork, RestartContainer, SignalReload,
                                    StartContainers, WaitReady, WriteFiles, describe)
from tests.unit.fake_engine import SIDECAR_IMAGES, built, meshctl, plan_for, pod_names, settings, shop, stack_on, web

POD, METRICS, PROXY, APP = pod_names()


def running(project: ProjectSpec, tmp_path: Path, state: str = "running") -> tuple[ContainerInfo, ...]:
    """What the engine reports when the project's pods run exactly as planned."""
    return tuple(ContainerInfo(spec.name + "-id", spec.name, spec.labels, state, {})
                 for pod in pods_for(project, settings(tmp_path)) for spec in pod.containers)


def kinds(steps) -> list[str]:
    return [type(step).__name__ for step in steps]


def test_a_cold_machine_pulls_the_base_image_once_then_builds_every_image_together(tmp_path):
    """The sidecar images and an app image FROM the base need it once; consecutive builds run in
    parallel, so nothing may sit between them."""
    plan = plan_for(shop(tmp_path, built(tmp_path / "src")), Observed(ca_exists=False), tmp_path)
    assert kinds(plan.steps) == ["EnsureNetwork", "PullImage", "BuildImage", "BuildImage", "BuildImage",
                                 "EnsureCA", "WriteFiles", "IssueCertificate"]
    assert [s.ref for s in plan.steps if isinstance(s, (PullImage, BuildImage))] == [
        BASE_IMAGE, "meshctl-haproxy:h", "meshctl-metrics:m", "meshctl-shop-web:dev"]


def test_up_from_nothing_starts_each_pod_in_start_order_waiting_between(tmp_path):
    project = shop(tmp_path, built(tmp_path / "src"))
    plan = plan_for(project, Observed(ca_exists=False, images={BASE_IMAGE: 'sha256:base'}), tmp_path)
    assert kinds(plan.steps) == ["EnsureNetwork", "BuildImage", "BuildImage", "BuildImage", "EnsureCA", "WriteFiles",
                                 "IssueCertificate"]
    [(service, steps)] = plan.pods
    assert service == "web"
    assert [(type(s).__name__, describe(s)["target"]) for s in steps] == [
        ("StartContainers", [POD]), ("StartContainers", [METRICS, PROXY, APP]),
        ("WaitReady", "web/metrics"), ("WaitReady", "web/proxy"), ("WaitReady", "web/app"), ("Announce", "web")]
    assert plan.changes


def test_an_app_that_may_reach_a_sidecar_at_its_first_line_starts_once_they_answer(tmp_path):
    """In a mesh its calls go out through the proxy (and depends_on or a user's sidecar say the
    same): the app starts after the sidecars' waits. Otherwise it starts with them."""
    meshed = shop(tmp_path, web(mesh=MeshSettings(project="shop")))
    [(_, steps)] = plan_for(meshed, Observed(), tmp_path).pods
    starts = [(i, describe(s)["target"]) for i, s in enumerate(steps) if isinstance(s, StartContainers)]
    waits = [i for i, s in enumerate(steps) if isinstance(s, WaitReady) and s.role != "app"]
    assert starts[-1][1] == [APP] and starts[-1][0] > max(waits) and APP not in starts[-2][1]


def test_without_waiting_the_app_is_announced_as_started(tmp_path):
    [(_, steps)] = plan_for(shop(tmp_path), Observed(), tmp_path, wait_serving=False).pods
    assert kinds(steps)[-2:] == ["WaitReady", "Announce"] and not steps[-1].serving
    assert [s.role for s in steps if isinstance(s, WaitReady)] == ["metrics", "proxy"]    # none for the app


def test_an_existing_image_is_neither_pulled_nor_built(tmp_path):
    observed = Observed(images=dict.fromkeys({*SIDECAR_IMAGES.values(), "web:1"}, "sha256:x"))
    plan = plan_for(shop(tmp_path), observed, tmp_path)
    assert kinds(plan.steps) == ["EnsureNetwork", "WriteFiles", "IssueCertificate"]


def test_a_build_folder_without_a_readable_dockerfile_pulls_no_base(tmp_path):
    (tmp_path / "src").mkdir()
    service = web(image=None, build=tmp_path / "src")
    observed = Observed(images=dict.fromkeys(SIDECAR_IMAGES.values(), 'sha256:x'))
    steps = plan_for(shop(tmp_path, service), observed, tmp_path).steps
    assert [s.ref for s in steps if isinstance(s, (PullImage, BuildImage))] == ["meshctl-shop-web:dev"]


def test_a_tls_sidecar_runs_without_a_proxy_and_its_retired_proxy_folder_goes(tmp_path):
    project = shop(tmp_path, web(proxy=None))
    folder = tmp_path / "home" / "projects" / "shop" / "web"
    plan = plan_for(project, Observed(folders=frozenset({str(folder / "proxy")})), tmp_path)
    assert RemoveFolder(folder / "proxy", "web runs no proxy sidecar now") in plan.steps
    [written] = [s for s in plan.steps if isinstance(s, WriteFiles)]
    assert written.folder == folder / "tls" and set(written.files) == {"haproxy.cfg"}
    waits = [s for _, s in plan.all_steps() if isinstance(s, WaitReady)]
    assert [describe(w)["why"] for w in waits] == ["/ready answers 2xx over HTTP", "a verified TLS handshake on https",
                                                   "/ answers below 500 over HTTPS"]


def test_a_stopped_container_is_replaced_and_says_why(tmp_path):
    project = shop(tmp_path)
    current = running(project, tmp_path)
    observed = Observed(containers=current[:3] + (replace(current[3], state="exited"),))
    [(_, steps)] = plan_for(project, observed, tmp_path).pods
    [removal] = [s for s in steps if isinstance(s, RemoveContainers)]
    assert removal.why == "replaced: it is exited" and [c.name for c in removal.containers] == [APP]


def test_restart_app_restarts_a_running_app_and_starts_an_exited_one_afresh(tmp_path):
    project = shop(tmp_path)
    current = running(project, tmp_path)
    [(_, (restart, wait))] = plan_restart_app(project, "web", Observed(containers=current), settings(tmp_path)).pods
    assert isinstance(restart, RestartContainer) and restart.container.name == APP and restart.timeout == 10.0
    assert isinstance(wait, WaitReady) and "services.web.port and .health" in wait.hint
    gone = Observed(containers=current[:3])
    [(_, (start, _))] = plan_restart_app(project, "web", gone, settings(tmp_path)).pods
    assert isinstance(start, StartContainers) and start.reloading and start.specs[0].name == APP


def test_rebuild_app_builds_before_it_removes_the_running_app(tmp_path):
    project = shop(tmp_path, built(tmp_path / "src"))
    plan = plan_rebuild_app(project, "web", Observed(containers=running(project, tmp_path)), settings(tmp_path))
    assert kinds(s for _, s in plan.all_steps()) == ["BuildImage", "RemoveContainers", "StartContainers", "WaitReady"]


def test_renewal_reissues_only_certificates_that_need_it_and_reloads_their_servers(tmp_path):
    project = shop(tmp_path, web(), web("api", tls=None))
    folder = str(tmp_path / "home" / "projects" / "shop" / "web" / "proxy")
    observed = Observed(containers=running(project, tmp_path), certificates={folder: "expires in 5 h"})
    plan = plan_renewal(project, observed, settings(tmp_path))
    assert [(type(s).__name__, describe(s)["target"]) for s in plan.steps] == [
        ("IssueCertificate", f"{folder} for localhost, 127.0.0.1, ::1, web"),
        ("SignalReload", f"{PROXY} (SIGUSR2)")]
    assert not plan_renewal(project, replace(observed, certificates={folder: None}), settings(tmp_path)).steps


def test_down_plans_stop_groups_networks_and_the_state_folder(tmp_path):
    project = shop(tmp_path)
    state = tmp_path / "home" / "projects" / "shop"
    observed = Observed(containers=running(project, tmp_path), networks=frozenset({"meshctl-shop"}),
                        folders=frozenset({str(state)}))
    plan = plan_down("shop", observed, state)
    assert [describe(s)["target"] for s in plan.steps] == [[APP], [METRICS, PROXY], [POD], "meshctl-shop", str(state)]
    forced = plan_down("shop", observed, state, force=True)
    assert forced.steps[0].force and len(forced.steps[0].containers) == 4
    assert plan_down("shop", Observed(), state).steps == ()


def test_every_step_says_what_it_acts_on_and_why(tmp_path):
    project = shop(tmp_path)
    info = running(project, tmp_path)[3]
    [pod] = pods_for(project, settings(tmp_path))
    steps = [EnsureNetwork("meshctl-shop", {}), PullImage("web:1", "missing", hint=""),
             BuildImage("x:1", tmp_path, {}, "changed"), EnsureCA(), WriteFiles(tmp_path, {"b.cfg": "", "a.cfg": ""}, "new"),
             RemoveFolder(tmp_path, "retired"), IssueCertificate(tmp_path, ("localhost",), "web", "missing"),
             RemoveContainers((info,), "down"), StartContainers("web", (pod.app,), "new"),
             RestartContainer("web", info, 1.0, "synced"), SignalReload(info, "SIGUSR2", "config"),
             Keep(info, "unchanged"), RemoveNetwork("meshctl-shop", "down"),
             Announce("web", POD, {}, serving=True)]
    rows = [describe(s) for s in steps]
    assert [r["step"] for r in rows] == kinds(steps)
    assert rows[4]["target"] == f"{tmp_path} (a.cfg, b.cfg)"
    assert all(r["target"] and r["why"] for r in rows)


# ---------------------------------------------------------------------------------------------
# --dry-run through the CLI: prints the plan, changes nothing


def test_up_dry_run_json_prints_the_plan_and_creates_nothing(tmp_path, cli_engine):
    result = meshctl("up", "--dry-run", "--json", str(tmp_path))
    assert result.exit_code == 0, result.output
    [plan] = json.loads(result.stdout)
    assert plan["project"] == "shop" and plan["changes"]
    rows = [(s["service"], s["step"]) for s in plan["steps"]]
    assert rows[:4] == [(None, "EnsureNetwork"), (None, "EnsureCA"), (None, "WriteFiles"), (None, "IssueCertificate")]
    assert ("web", "StartContainers") in rows
    assert {"step": "StartContainers", "service": "web", "target": [METRICS, PROXY, APP], "why": "new"} in plan["steps"]
    assert cli_engine.calls == [] and not (tmp_path / "home").exists()


def test_up_dry_run_over_a_running_stack_says_there_are_no_changes(tmp_path, cli_engine):
    from meshctl.config import load_project

    stack_on(cli_engine, load_project(tmp_path), tmp_path / "home", tied=True).up()
    before = list(cli_engine.calls)
    result = meshctl("up", "--dry-run", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "plan for shop (no changes)" in result.stdout and f"web: Keep {APP}  (unchanged)" in result.stdout
    assert cli_engine.calls == before


def test_down_dry_run_lists_what_would_go_in_stop_order_and_removes_nothing(tmp_path, cli_engine):
    stack_on(cli_engine, shop(tmp_path), tmp_path / "home").up()
    before, ids = list(cli_engine.calls), set(cli_engine.containers_)
    result = meshctl("down", "--dry-run", "-p", "shop")
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert lines == ["plan for shop", f"RemoveContainers {APP}  (meshctl down)",
                     f"RemoveContainers {METRICS}, {PROXY}  (meshctl down)",
                     f"RemoveContainers {POD}  (meshctl down)", "RemoveNetwork meshctl-shop  (meshctl down)",
                     f"RemoveFolder {tmp_path / 'home' / 'projects' / 'shop'}  (its rendered configs and leaf keys)"]
    assert "dry run: nothing was built, created or changed" in result.stderr
    [plan] = json.loads(meshctl("down", "--dry-run", "--json", "--all", "--force").stdout)
    assert next(s["step"] for s in plan["steps"]) == "RemoveContainers" and plan["changes"]
    assert cli_engine.calls == before and set(cli_engine.containers_) == ids
    empty = meshctl("down", "--dry-run", "-p", "nothing")
    assert "plan for nothing (no changes)" in empty.stdout and "nothing to do" in empty.stdout


def two_services(tmp_path, extra: str = "", mesh: str = ""):
    from meshctl.config import parse_project
    for name in ("web", "api", "kv"):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    return parse_project(f"name: shop\n{mesh}services:\n  web: {{build: web, port: 8080}}\n"
                         f"  api: {{build: api, port: 9000, allow: [web]}}\n{extra}", root=tmp_path)


def test_a_mesh_installs_capture_once_per_new_namespace_before_the_sidecars_and_the_app(tmp_path):
    from meshctl.planning.steps import RunOnce, StartContainers
    project = two_services(tmp_path)
    plan = plan_for(project, Observed(), tmp_path)
    for _service, steps in plan.pods:
        names = [type(s).__name__ for s in steps]
        assert names.index("RunOnce") == names.index("StartContainers") + 1     # right after the holder
        [capture] = [s.spec for s in steps if isinstance(s, RunOnce)]
        assert capture.cap_drop == ("ALL",) and capture.cap_add == ("NET_ADMIN",) and capture.user == "0:0"
        assert capture.no_new_privileges and capture.read_only
        started = [spec for s in steps if isinstance(s, StartContainers) for spec in s.specs]
        assert all(not spec.cap_add for spec in started), "no long-running container holds a capability"
        [proxy] = [spec for spec in started if spec.role == "proxy"]
        assert proxy.user == "1000:15999"          # capture tells the proxy's own connections by its group
        [app] = [spec for spec in started if spec.role == "app"]
        assert app.env["SSL_CERT_FILE"] == app.env["NODE_EXTRA_CA_CERTS"] == "/etc/meshctl/ca-bundle.pem"
        assert (str(tmp_path / "home/ca/ca-bundle.pem"), "/etc/meshctl/ca-bundle.pem", True) in app.mounts
    writes = {str(s.folder): s.files for s in plan.steps if type(s).__name__ == "WriteFiles"}
    web_capture = writes[str(tmp_path / "home/projects/shop/web/capture")]["capture.sh"]
    assert "--dports 9000 -j REDIRECT --to-ports 15001" in web_capture      # web calls api on 9000
    assert "--gid-owner 15999 -j RETURN" in web_capture and "REJECT" in web_capture    # strict by default
    from meshctl.planning.steps import describe
    [shown] = [describe(s)["why"] for _, s in plan.all_steps() if isinstance(s, RunOnce) and s.service == "web"]
    assert "ports 9000 → its proxy's outbound listener" in shown and "refused except to the mesh listener" in shown


def test_permissive_or_no_capture_or_one_service_change_what_is_installed(tmp_path):
    from meshctl.config import parse_project
    permissive = plan_for(two_services(tmp_path, mesh="mesh: {mtls: permissive}\n"), Observed(), tmp_path)
    script = next(s.files["capture.sh"] for s in permissive.steps if type(s).__name__ == "WriteFiles"
                  and "capture.sh" in s.files)
    assert "REJECT" not in script and "REDIRECT" in script
    no_capture = two_services(tmp_path, mesh="mesh: {capture: false}\n")
    assert all(s.mesh is not None and not s.mesh.capture for s in no_capture.services)
    off = parse_project("name: shop\nmesh: {mtls: off}\nservices:\n  web: {build: web, port: 8080}\n"
                        "  api: {build: api, port: 9000}\n", root=tmp_path)
    assert all(s.mesh is None for s in off.services)
    for project in (no_capture, off):
        plan = plan_for(project, Observed(), tmp_path)
        assert not [s for _, s in plan.all_steps() if type(s).__name__ == "RunOnce"]
    single = parse_project("name: one\nservices:\n  web: {build: web, port: 8080}\n", root=tmp_path)
    assert single.services[0].mesh is None
