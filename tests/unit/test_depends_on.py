"""depends_on: a service's app starts once the services it names are ready (or started); pods
otherwise start in parallel; unknown names and cycles are file:line errors."""

from pathlib import Path

import pytest

from meshctl.config import parse_project
from meshctl.errors import ConfigError, StartError
from meshctl.model import APP
from meshctl.planning.steps import AwaitServices, StartContainers, WaitReady
from tests.unit.fake_engine import Prober, engine_with_images, plan_for, stack_on
from meshctl.planning.plan import Observed

SERVICE = "    image: web:1\n    port: 8081\n    ports: {https: 0, http: 0, metrics: 0}\n"


def project(tmp_path: Path, *depends: str, text: str | None = None):
    """kv and api, api with `depends_on` as given (a YAML value), and web that depends on nothing."""
    text = text or ("name: shop\nservices:\n  kv:\n" + SERVICE + "  api:\n" + SERVICE
                    + "".join(f"    depends_on: {d}\n" for d in depends) + "  web:\n" + SERVICE)
    source = tmp_path / "mesh.yaml"
    source.write_text(text)
    return parse_project(text, source=source, root=tmp_path, variables={})


@pytest.mark.parametrize("value, needs", [
    ("[kv]", (("kv", "ready"),)),
    ("{kv: {condition: ready}}", (("kv", "ready"),)),
    ("{kv: {condition: service_healthy}, web: {condition: service_started}}", (("kv", "ready"), ("web", "started"))),
    ("{kv: {condition: started}}", (("kv", "started"),)),
    ("{kv: }", (("kv", "ready"),)),
])
def test_the_forms_compose_users_write(tmp_path, value, needs):
    assert project(tmp_path, value).service("api").depends_on == needs


@pytest.mark.parametrize("text, where, words, hint", [
    ("name: shop\nservices:\n  kv:\n" + SERVICE + "  api:\n" + SERVICE + "    depends_on: [kvs]\n",
     "mesh.yaml:11: services.api.depends_on", "no service named 'kvs'", "did you mean 'kv'?"),
    ("name: shop\nservices:\n  kv:\n" + SERVICE + "    depends_on:\n      api: {condition: ready}\n"
     "  api:\n" + SERVICE + "    depends_on: [kv]\n",
     "mesh.yaml:8: services.kv.depends_on.api", "a cycle: kv → api → kv", "remove one"),
    ("name: shop\nservices:\n  kv:\n" + SERVICE + "    depends_on: [kv]\n",
     "mesh.yaml:7: services.kv.depends_on", "a cycle: kv → kv", "remove one"),
    ("name: shop\nservices:\n  kv:\n" + SERVICE + "  api:\n" + SERVICE
     + "    depends_on: {kv: {condition: service_completed_successfully}}\n",
     "mesh.yaml:11: services.api.depends_on.kv.condition", "unknown condition", "none completes"),
    ("name: shop\nservices:\n  kv:\n" + SERVICE + "  api:\n" + SERVICE + "    depends_on: {kv: {conditon: ready}}\n",
     "mesh.yaml:11: services.api.depends_on.kv.conditon", "unknown field", "did you mean 'condition'?"),
])
def test_mistakes_name_file_line_and_field(tmp_path, text, where, words, hint):
    with pytest.raises(ConfigError) as caught:
        project(tmp_path, text=text)
    assert where in caught.value.message and words in caught.value.message and hint in caught.value.hint


def test_a_cycle_through_three_services(tmp_path):
    text = ("name: shop\nservices:\n  a:\n" + SERVICE + "    depends_on: [b]\n  b:\n" + SERVICE
            + "    depends_on: [c]\n  c:\n" + SERVICE + "    depends_on: [a]\n")
    with pytest.raises(ConfigError) as caught:
        project(tmp_path, text=text)
    assert "services.a.depends_on: a cycle: a → b → c → a" in caught.value.message


def test_the_plan_waits_before_the_app_only_and_a_needed_pod_waits_for_its_serving(tmp_path):
    plan = plan_for(project(tmp_path, "[kv]"), Observed(), tmp_path, wait_serving=False)
    pods = dict(plan.pods)
    [await_step] = [s for s in pods["api"] if isinstance(s, AwaitServices)]
    assert await_step.needs == (("kv", "ready"),)
    starts = [s for s in pods["api"] if isinstance(s, StartContainers)]
    assert pods["api"].index(await_step) + 1 == pods["api"].index(starts[-1]) and starts[-1].specs[0].role == APP
    # --no-wait (wait_serving False) still waits for kv's serving: api needs it; web's not.
    assert any(isinstance(s, WaitReady) and s.role == APP for s in pods["kv"])
    assert not any(isinstance(s, WaitReady) and s.role == APP for s in pods["web"])
    assert not any(isinstance(s, AwaitServices) for s in pods["kv"] + pods["web"])


class KvSlow(Prober):
    """kv's app answers 503 for its first 40 polls; a poll that finds an app serving is recorded
    as ("serving", service)."""

    def __init__(self, engine):
        super().__init__(engine, self.slow_kv)
        self.kv_polls = 0

    def slow_kv(self, readiness, port):
        answer = self.serving_while_the_app_runs(readiness, port)
        service = next(c["spec"].service for c in list(self.engine.containers_.values()) if port in c["ports"].values())
        if readiness.path == "/" and readiness.port == "https":
            if service == "kv" and answer is None and self.kv_polls < 40:
                self.kv_polls += 1
                return "HTTP 503"
            if answer is None:
                self.engine.record("serving", service)
        return answer


def order(engine, *calls):
    return [engine.calls.index(call) for call in calls]


def test_on_the_engine_the_app_starts_after_the_service_it_depends_on_serves(tmp_path):
    engine = engine_with_images()
    stack_on(engine, project(tmp_path, "[kv]"), tmp_path / "home", prober=KvSlow(engine)).up()
    kv_serving, api_app, web_app = order(engine, ("serving", "kv"), ("create", "shop-api-app"),
                                         ("create", "shop-web-app"))
    assert kv_serving < api_app, "api's app waited for kv to serve"
    assert web_app < kv_serving, "web depends on nothing: its pod did not wait for kv"
    # api's own holder and sidecars started in parallel with kv's, before kv served.
    assert engine.calls.index(("create", "shop-api-pod")) < kv_serving


def test_without_depends_on_the_app_does_not_wait(tmp_path):
    engine = engine_with_images()
    stack_on(engine, project(tmp_path), tmp_path / "home", prober=KvSlow(engine)).up()
    kv_serving, api_app = order(engine, ("serving", "kv"), ("create", "shop-api-app"))
    assert api_app < kv_serving


def test_condition_started_waits_for_the_app_s_start_only(tmp_path):
    engine = engine_with_images()
    stack_on(engine, project(tmp_path, "{kv: {condition: started}}"), tmp_path / "home", prober=KvSlow(engine)).up()
    kv_app, kv_serving, api_app = order(engine, ("start", "shop-kv-app"), ("serving", "kv"), ("create", "shop-api-app"))
    assert kv_app < api_app < kv_serving


def test_a_dependency_that_fails_stops_the_waiting_pod_with_the_dependency_s_error(tmp_path):
    from meshctl.runtime.supervise import Tracker

    engine = engine_with_images(exit_on_start={"shop-kv-app": 1})
    with pytest.raises(StartError) as caught:
        stack_on(engine, project(tmp_path, "[kv]"), tmp_path / "home", watch=Tracker(engine)).up()
    assert "kv: the app exited with code 1 before it was ready" in caught.value.message
    assert ("create", "shop-api-app") not in engine.calls
