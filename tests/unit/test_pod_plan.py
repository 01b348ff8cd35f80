from dataclasses import replace
from pathlib import Path

from meshctl.sidecars import roles_of
from meshctl.engine.docker import ContainerInfo
from meshctl.config import ProjectSpec, ServiceSpec
from meshctl.planning.converge import plan_pod, stop_order, stop_phases
from meshctl.planning.pod import build_pod


def make_pod(tied: bool = True, **service_changes):
    service = ServiceSpec(name="web", port=8080, image="web:1",
                          ports=(("https", 8443), ("http", 0), ("metrics", 9090)))
    service = replace(service, **service_changes)
    project = ProjectSpec(name="shop", root=Path("/tmp"), services=(service,))
    images = {"tls": "meshctl-haproxy:abc", "proxy": "meshctl-haproxy:abc", "metrics": "meshctl-metrics:def"}
    return build_pod(project, service, app_image="web:1", sidecar_images={r: images[r] for r in roles_of(service)},
                     state_dir=Path("/state/shop/web"), tied=tied, user="1000:1000")


def running(spec, state="running"):
    return ContainerInfo(id=spec.name + "-id", name=spec.name, labels=spec.labels, state=state, ports={})


def test_pod_shape_and_security():
    pod = make_pod()
    roles = [c.labels["meshctl.role"] for c in pod.containers]
    assert roles == ["pod", "metrics", "proxy", "app"]   # the proxy terminates TLS itself
    for c in pod.containers:
        assert c.labels["meshctl.project"] == "shop" and c.labels["meshctl.service"] == "web"
        assert not any("docker.sock" in host for host, _, _ in c.mounts)
    holder = pod.holder
    assert holder.ports == {15443: 8443, 15080: 0, 15090: 9090}
    assert holder.tied_to_caller and holder.network == "meshctl-shop" and holder.aliases == ("web",)
    for sidecar in pod.sidecars:
        assert sidecar.namespace_of == holder.name
        assert sidecar.read_only and sidecar.cap_drop == ("ALL",) and sidecar.no_new_privileges
        assert sidecar.user == "1000:1000" and not sidecar.ports
    assert pod.app.namespace_of == holder.name and pod.app.env["PORT"] == "8080"


def test_no_proxy_publishes_the_app_port_as_http():
    pod = make_pod(proxy=None)
    assert pod.holder.ports == {15443: 8443, 8080: 0, 15090: 9090}
    assert "proxy" not in pod.config_dirs


def test_plan_creates_everything_from_nothing():
    pod = make_pod()
    plan = plan_pod(pod, [])
    assert plan.create == pod.containers and not plan.remove


def test_plan_keeps_an_identical_detached_pod():
    pod = make_pod(tied=False)
    plan = plan_pod(pod, [running(c) for c in pod.containers])
    assert plan.unchanged and len(plan.keep) == 4


def test_plan_replaces_only_the_app_when_only_the_app_changed():
    old = make_pod(tied=False)
    new = make_pod(tied=False, env=(("GREETING", "hey"),))
    plan = plan_pod(new, [running(c) for c in old.containers])
    assert [c.labels["meshctl.role"] for c in plan.create] == ["app"]
    assert [c.label("role") for c in plan.remove] == ["app"]


def test_plan_restarts_the_app_after_a_recreated_sidecar():
    old = make_pod(tied=False)
    new = make_pod(tied=False, metrics_path="/metrics")  # the metrics sidecar's environment changes
    plan = plan_pod(new, [running(c) for c in old.containers])
    assert [c.labels["meshctl.role"] for c in plan.create] == ["metrics", "app"]
    assert [c.label("role") for c in plan.remove] == ["app", "metrics"]


def test_plan_reloads_a_sidecar_whose_config_files_changed():
    pod = make_pod(tied=False)
    observed = [running(c) for c in pod.containers]
    assert not plan_pod(pod, observed).reload        # nothing rewritten: nothing to reload
    plan = plan_pod(pod, observed, refreshed={"proxy"})
    assert not plan.create and not plan.remove
    assert [c.label("role") for c in plan.reload] == ["proxy"]


def test_plan_replaces_the_whole_pod_when_the_holder_changes():
    old = make_pod(tied=False)
    new = make_pod(tied=True)
    plan = plan_pod(new, [running(c) for c in old.containers])
    assert plan.create == new.containers
    assert [c.label("role") for c in plan.remove] == ["app", "metrics", "proxy", "pod"]


def test_stop_phases_app_then_sidecars_then_holder():
    pod = make_pod()
    infos = [running(c) for c in reversed(pod.containers)]
    phases = stop_phases(infos)
    assert [[c.label("role") for c in phase] for phase in phases] == [["app"], ["metrics", "proxy"], ["pod"]]
    assert [c.label("role") for c in stop_order(infos)] == ["app", "metrics", "proxy", "pod"]
