"""`meshctl trace` on the fake engine: spans read from each pod's metrics sidecar (what the agent's
store dumps), merged by trace, listed with their root, filtered, and drawn in tree order."""

from __future__ import annotations

import json

import pytest

from meshctl.errors import UsageError
from meshctl.model import container_name
from meshctl.runtime.traces import collect, recent, trace_summaries, waterfall
from meshctl.sidecars import METRICS_PORT
from tests.support import metrics_agent
from tests.unit.fake_engine import engine_with_images, meshctl, shop, stack_on, use_on_the_cli, web

metrics_agent()
import spans  # noqa: E402

TRACE, OTHER = "1" * 32, "2" * 32


def span(service, number, parent=0, *, kind="server", start=0, end=10, trace=TRACE, code=200, source="proxy"):
    made = spans.new_span(trace, f"{number:016x}", f"{parent:016x}" if parent else "", f"GET /{service}", kind,
                          1_000_000 + start, 1_000_000 + end, service, "error" if code >= 500 else "unset",
                          {"http.response.status_code": code}, source)
    return made


# web's proxy (server, then client), api's proxy, api's own SDK span; and a failed trace later.
WEB = [span("web", 1, start=0, end=100), span("web", 2, 1, kind="client", start=5, end=90),
       span("web", 9, trace=OTHER, start=500, end=900, code=503)]
API = [span("api", 3, 2, start=10, end=80), span("api", 4, 3, kind="internal", start=20, end=60, source="app")]


def dump(kept, **query):
    """What a sidecar keeping these spans answers to /meshctl/spans?QUERY."""
    store = spans.SpanStore()
    store.add(kept)
    return spans.dump(store, {name: [value] for name, value in query.items()})


@pytest.fixture
def running(tmp_path, monkeypatch):
    engine = use_on_the_cli(tmp_path, monkeypatch)
    project = shop(tmp_path, web(), web(name="api"))
    stack_on(engine, project, tmp_path / "home").up()
    engine.exec_outputs[container_name("shop", "web", "metrics")] = dump(WEB)
    engine.exec_outputs[container_name("shop", "api", "metrics")] = dump(API)
    return engine


def test_spans_of_every_pod_are_merged_and_listed_by_trace(running):
    listed = [(OTHER, "web", "GET /web", 1, ("web",), 400, "503", True),
              (TRACE, "web", "GET /web", 4, ("api", "web"), 100, "200", False)]
    # Sidecars that summarize their own spans (?summary=1), and sidecars from before that send
    # every span (running's, until replaced here), give the same list.
    for summarized in (False, True):
        if summarized:
            running.exec_outputs[container_name("shop", "web", "metrics")] = dump(WEB, summary="1")
            running.exec_outputs[container_name("shop", "api", "metrics")] = dump(API, summary="1")
            assert "spans" not in json.loads(dump(API, summary="1"))
        rows = recent(trace_summaries(running, "shop"))
        assert [(r.trace_id, r.root_service, r.root_name, r.spans, r.services, r.duration_us, r.status, r.error)
                for r in rows] == listed
        assert [r.trace_id for r in recent(trace_summaries(running, "shop"), errors=True)] == [OTHER]
        assert [r.trace_id for r in recent(trace_summaries(running, "shop"), slowest=True, last=1)] == [OTHER]


def test_a_trace_whose_root_is_gone_is_headed_by_its_earliest_span_with_no_parent_kept():
    from meshctl.runtime.traces import _merged, _partials

    orphans = [span("api", 3, 2, start=10, end=80), span("db", 7, 6, kind="client", start=10, end=70),
               span("db", 8, 7, start=12, end=60)]
    for pods in ([orphans], [orphans[:1], orphans[1:]]):       # one pod, or two: the same root
        partials = [p for kept in pods for p in json.loads(dump(kept, summary="1"))["traces"]]
        assert partials == [p for kept in pods for p in _partials(kept)]       # the agent's and meshctl's agree
        merged = _merged(TRACE, partials)
        assert (merged.root_service, merged.spans, merged.services, merged.duration_us) == ("api", 3, ("api", "db"), 70)


def test_the_spans_come_from_the_published_port_with_the_projects_key_else_through_the_engine(running, tmp_path,
                                                                                                monkeypatch):
    from urllib.parse import urlsplit

    from meshctl.home import probe_secret
    from meshctl.runtime import traces
    from meshctl.sidecars import OBSERVE_KEY_ENV, observe_key

    home = tmp_path / "home"
    key = observe_key(probe_secret(home), "shop")
    # The metrics sidecars got the key in their environment at `up`; an app's container did not.
    [web_metrics] = [c for c in running.containers_.values() if c["spec"].name == "shop-web-metrics"]
    assert web_metrics["spec"].env[OBSERVE_KEY_ENV] == key and len(key) == 40
    assert all(OBSERVE_KEY_ENV not in c["spec"].env for c in running.containers_.values()
               if c["spec"].labels.get("meshctl.role") != "metrics")
    asked = []

    def get_from(url, path, *, headers, timeout=5.0):
        asked.append((urlsplit(url).netloc + path, headers["Authorization"]))
        if urlsplit(url).port != web_port:
            raise ConnectionRefusedError("refused")          # api's agent: from before the key
        return dump(WEB).encode()
    web_port = metrics_port(running, "web")
    monkeypatch.setattr(traces, "get_from", get_from)
    running.exec_outputs[container_name("shop", "web", "metrics")] = dump([])      # not asked
    calls = len(running.calls)
    spans_read = collect(running, "shop", home=home)
    assert sorted(s["span_id"] for s in spans_read) == sorted(s["span_id"] for s in WEB + API)
    assert sorted(asked) == sorted([(f"localhost:{web_port}/meshctl/spans", f"Bearer {key}"),
                                    (f"localhost:{metrics_port(running, 'api')}/meshctl/spans", f"Bearer {key}")])
    execs = [c for c in running.calls[calls:] if c[0] == "exec"]
    assert [c[1] for c in execs] == [container_name("shop", "api", "metrics")]
    # Without meshctl's home (so no key), every sidecar is asked through the engine, as before.
    asked.clear()
    assert len(collect(running, "shop")) == len(API) and asked == []


def metrics_port(engine, service):
    """The host port the fake engine bound to the pod's metrics port (its holder's)."""
    [holder] = [c for c in engine.containers_.values() if c["spec"].name == f"shop-{service}-pod"]
    return holder["ports"][METRICS_PORT]


def test_the_waterfall_is_in_tree_order_with_offsets():
    rows = waterfall([*API, WEB[1], WEB[0]])
    assert [(r.span["service"], r.span["kind"], r.depth, r.offset_us, r.duration_us) for r in rows] == [
        ("web", "server", 0, 0, 100), ("web", "client", 1, 5, 85), ("api", "server", 2, 10, 70),
        ("api", "internal", 3, 20, 40)]


def test_the_cli_lists_as_json_and_draws_one_trace(running):
    listed = json.loads(meshctl("trace", "-p", "shop", "--json", check=True).stdout)
    assert [row["trace_id"] for row in listed] == [OTHER, TRACE]
    assert listed[1]["services"] == ["api", "web"]
    drawn = meshctl("trace", "-p", "shop", TRACE, check=True).stdout
    lines = [line.split() for line in drawn.splitlines() if "GET /" in line]
    assert [(words[0], words[1], words[3]) for words in lines] == [
        ("web", "GET", "server"), ("web", "GET", "client"), ("api", "GET", "server"), ("api", "GET", "internal")]
    one = json.loads(meshctl("trace", "-p", "shop", TRACE, "--json", check=True).stdout)
    assert [s["depth"] for s in one["spans"]] == [0, 1, 2, 3] and one["spans"][2]["offset_us"] == 10


def test_a_bad_trace_id_and_no_metrics_sidecar_are_clear(running, tmp_path):
    result = meshctl("trace", "-p", "shop", "xyz")
    assert result.exit_code == 2 and "not a trace id (32 hex digits)" in result.stderr
    with pytest.raises(UsageError, match="no running metrics sidecar in other"):
        collect(engine_with_images(), "other")
