"""`meshctl dashboard` without a daemon: who may ask (token, cookie, Host, Origin, a header for
changes), the routes, the graph's JSON from stat's rows and ps's statuses, the bounded chart ring,
and the server itself on 127.0.0.1 over a stub board."""

from __future__ import annotations

import http.client
import json

import pytest

from meshctl.config import CircuitBreaker, Fault, RetryPolicy, TrafficPolicy
from meshctl.runtime.dashboard import auth
from meshctl.runtime.dashboard.board import Hub, request_row
from meshctl.runtime.dashboard.server import DashboardServer, route
from meshctl.runtime.dashboard.views import History, graph, merge_edges, policy_lines, service_view
from meshctl.runtime.faults import ServiceFaults
from meshctl.runtime.status import ServiceStatus

TOKEN = "s3cret-token"
PORT = 8765


def decide(method="GET", target="/", token=TOKEN, **headers):
    return auth.decide(method, target, {"Host": f"127.0.0.1:{PORT}", **headers}, token, PORT)


def test_a_get_needs_the_token_in_the_url_or_the_cookie_and_the_url_sets_the_cookie():
    assert decide(target="/").status == 403
    assert decide(target="/?token=wrong").status == 403
    first = decide(target=f"/?token={TOKEN}")
    assert (first.status, first.set_cookie) == (200, True)
    assert decide(target="/api/graph", Cookie=f"other=1; {auth.COOKIE}={TOKEN}") == auth.Decision(200)
    assert decide(target="/api/graph", Cookie=f"{auth.COOKIE}=nope").status == 403
    assert decide(target="/api/graph", Cookie="garbage;;=\x00").status == 403
    assert auth.cookie_header(TOKEN) == f"{auth.COOKIE}={TOKEN}; HttpOnly; SameSite=Strict; Path=/"


def test_the_host_must_be_loopback_or_localhost_with_our_port():
    for host in ("127.0.0.1", "localhost", f"localhost:{PORT}", f"LOCALHOST:{PORT}", f"127.0.0.1:{PORT}"):
        assert auth.host_allowed(host, PORT), host
    for host in ("evil.example", f"evil.example:{PORT}", "127.0.0.1:1", "127.0.0.2", "", None, f"localhost.evil:{PORT}"):
        assert not auth.host_allowed(host, PORT), host
    assert decide(target=f"/?token={TOKEN}", Host=f"rebound.example:{PORT}").status == 403


def test_a_change_is_a_post_with_the_token_in_a_header_from_our_own_origin():
    assert decide("POST", "/api/faults/api", Cookie=f"{auth.COOKIE}={TOKEN}").status == 403     # the cookie is not enough
    assert decide("POST", f"/api/faults/api?token={TOKEN}").status == 403
    assert decide("POST", "/api/faults/api", **{auth.HEADER: TOKEN}).status == 200
    assert decide("POST", "/api/faults/api", **{auth.HEADER: TOKEN, "Origin": "http://evil.example"}).status == 403
    assert decide("POST", "/api/faults/api", **{auth.HEADER: TOKEN, "Origin": f"http://localhost:{PORT}"}).status == 200
    assert decide("OPTIONS", "/api/faults/api", **{auth.HEADER: TOKEN}).status == 405
    assert decide("DELETE", f"/?token={TOKEN}").status == 405


def test_routes():
    assert route("GET", "/?token=x") == ("page", ())
    assert route("HEAD", "/") == ("page", ())
    assert route("GET", "/api/services/api") == ("service", ("api",))
    assert route("GET", "/api/traces/" + "a" * 32) == ("trace", ("a" * 32,))
    assert route("GET", "/api/traces/xyz") == ("", ())
    assert route("POST", "/api/faults/web") == ("fault", ("web",))
    assert route("GET", "/api/faults/web") == ("", ())
    assert route("POST", "/api/graph") == ("", ())
    assert route("GET", "/api/services/../../etc/passwd") == ("", ())


def edge_row(source, destination, requests, success, p99, *, mtls=True, denied=0, kind="http"):
    return {"service": destination, "kind": kind, "source": source, "destination": destination, "mtls": mtls,
            "requests": requests, "rps": requests / 60, "success_rate": success, "p50_ms": 1, "p95_ms": p99,
            "p99_ms": p99, "denied": denied, "bytes": 0}


def status_of(service, state="running", mesh=None):
    return ServiceStatus("shop", service, state, {"https": "https://localhost:1/", "metrics": "http://localhost:2/metrics"},
                         [{"name": f"shop-{service}-holder", "role": "pod", "state": "running"},
                          {"name": f"shop-{service}-app", "role": "app", "state": state}],
                         mesh or {"identity": f"spiffe://meshctl.local/ns/shop/sa/{service}", "mtls": "strict",
                                  "allow": ["web"], "protocol": "http", "calls": ["kv"]})


def test_one_edge_per_caller_and_callee_with_weighted_success_and_the_worst_p99():
    [edge] = merge_edges([edge_row("web", "api", 30, 100.0, 5), edge_row("web", "api", 10, 50.0, 9, mtls=False, denied=2)])
    assert (edge["requests"], edge["success_rate"], edge["p99_ms"], edge["mtls"], edge["denied"]) == (40, 87.5, 9, False, 2)


def test_the_graph_has_every_service_its_edges_and_the_faults_that_apply_to_each_caller():
    rows = [{**edge_row("", "", 12, 100.0, 3), "service": "api", "destination": ""},
            edge_row("web", "api", 12, 100.0, 3), edge_row("api", "kv", 4, 100.0, 1, kind="tcp")]
    faults = {"api": ServiceFaults("shop", "api", "http", (), (Fault("abort", 50, status=503, callers=("other",)),
                                                                  Fault("delay", delay=0.2)))}
    shown = graph([status_of("web"), status_of("api"), status_of("kv", state="degraded")], rows, faults)
    assert [n["service"] for n in shown["nodes"]] == ["web", "api", "kv"]
    api = shown["nodes"][1]
    assert (api["requests"], api["state"], api["live_fault"], api["faults"]) == (12, "running", True,
                                                                                ["abort 503 50% from other", "delay 200ms"])
    assert shown["nodes"][2]["state"] == "degraded" and shown["nodes"][0]["requests"] == 0
    assert [(e["source"], e["destination"], e["faults"]) for e in shown["edges"]] == [
        ("api", "kv", []), ("web", "api", ["delay 200ms"])]
    assert "env" not in json.dumps(shown)


def test_an_open_circuit_marks_its_edge_as_the_callers_gauge_says():
    from meshctl.runtime.observe import circuits_in

    text = ('# HELP meshctl_circuit_open 1 while open\n# TYPE meshctl_circuit_open gauge\n'
            'meshctl_circuit_open{service="web",destination="api"} 1.0\n'
            'meshctl_circuit_open{service="web",destination="kv"} 0.0\n')
    assert circuits_in(text) == {("web", "api")} and circuits_in("not { an exposition") == set()
    shown = graph([status_of("web"), status_of("api")], [edge_row("web", "api", 5, 0.0, 1), edge_row("api", "kv", 1, 100, 1)],
                  {}, circuits_in(text))
    assert [(e["destination"], e["circuit_open"]) for e in shown["edges"]] == [("kv", False), ("api", True)]


def test_the_service_view_says_policy_in_words_and_serves_no_environment():
    policy = TrafficPolicy(timeout=2.0, retries=RetryPolicy(2, ("5xx",), 0.5, ("GET",)),
                           circuit_breaker=CircuitBreaker(consecutive_errors=5, open_for=30.0), split=(("api", 90), ("api-v2", 10)))
    assert policy_lines(policy) == ["timeout 2s", "retries 2 on 5xx (per try 500ms; methods GET)",
                                    "circuit breaker: opens after 5 consecutive errors, for 30s", "split api 90%, api-v2 10%"]
    view = service_view(status_of("api"), None, policy, {"shop-api-app": ["line 1"]}, True)
    assert [c["role"] for c in view["containers"]] == ["app"] and view["containers"][0]["logs"] == ["line 1"]
    assert view["allow"] == ["web"] and view["policy"][0] == "timeout 2s"
    assert service_view(status_of("api"), None, None, {}, False)["policy"] is None


def test_the_chart_ring_is_bounded_and_forgets_a_service_gone_for_its_span():
    history = History(points=3, every=10)
    for t in range(10):
        history.add(t * 10.0, [{"service": "api", "source": "", "rps": t, "p99_ms": 5}, edge_row("web", "api", 1, 100, 1)])
    assert history.as_json()["series"] == {"api": [[70.0, 7, 5], [80.0, 8, 5], [90.0, 9, 5]]}
    history.add(200.0, [{"service": "web", "source": "", "rps": 1, "p99_ms": None}])
    assert list(history.as_json()["series"]) == ["web"]


def test_a_tapped_request_shows_once_and_a_slow_page_loses_only_its_oldest_messages():
    assert request_row({"direction": "outbound", "destination": "api"}, {"api"}) is None
    assert request_row({"direction": "outbound", "destination": "db"}, {"api"}) is not None
    hub = Hub()
    listener = hub.listen()
    for i in range(1500):
        hub.publish("request", {"n": i})
    taken = listener.take(0)
    assert len(taken) == 1000 and json.loads(taken[0][1]) == {"n": 500}
    hub.stop(listener)
    hub.publish("graph", {})
    assert listener.take(0) == []


class StubBoard:
    project = "shop<script>"

    def __init__(self):
        self.snapshot = {"nodes": [], "edges": []}
        self.history = History()
        self.hub = Hub()
        self.changes = []

    def set_fault(self, service, form):
        self.changes.append((service, form))
        return {"service": service}

    def stop(self):
        pass


@pytest.fixture
def server():
    import threading

    board = StubBoard()
    srv = DashboardServer(board, 0, token=TOKEN)   # type: ignore[arg-type]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.close()


def ask(srv, method, target, body=None, **headers):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request(method, target, body=body, headers={"Host": f"127.0.0.1:{srv.port}", **headers})
    answer = conn.getresponse()
    data = answer.read()
    conn.close()
    return answer, data


def test_the_server_listens_on_loopback_refuses_without_the_token_and_sets_a_strict_cookie(server):
    assert server.server_address[0] == "127.0.0.1" and server.url == f"http://127.0.0.1:{server.port}/?token={TOKEN}"
    answer, body = ask(server, "GET", "/")
    assert answer.status == 403 and TOKEN.encode() not in body
    answer, body = ask(server, "GET", f"/?token={TOKEN}")
    assert answer.status == 200 and answer.getheader("Set-Cookie") == auth.cookie_header(TOKEN)
    assert b"shop&lt;script&gt;" in body and b"shop<script>" not in body
    policy = answer.getheader("Content-Security-Policy")
    assert f"script-src 'nonce-{server.nonce}'" in policy and "frame-ancestors 'none'" in policy
    assert answer.getheader("Referrer-Policy") == "no-referrer"
    assert not [h for h, _ in answer.getheaders() if h.lower().startswith("access-control-")]
    answer, body = ask(server, "GET", "/api/graph", Cookie=f"{auth.COOKIE}={TOKEN}")
    assert (answer.status, json.loads(body)) == (200, {"nodes": [], "edges": []})
    answer, _ = ask(server, "GET", "/api/graph", Cookie=f"{auth.COOKIE}={TOKEN}", Host=f"attacker.example:{server.port}")
    assert answer.status == 403


def test_a_fault_change_needs_the_header_and_a_json_object(server):
    form = json.dumps({"kind": "abort", "value": 503})
    answer, _ = ask(server, "POST", "/api/faults/api", form, Cookie=f"{auth.COOKIE}={TOKEN}", **{"Content-Type": "application/json"})
    assert answer.status == 403 and server.board.changes == []
    answer, _ = ask(server, "POST", "/api/faults/api", "[1]", **{auth.HEADER: TOKEN, "Content-Type": "application/json"})
    assert answer.status == 400
    answer, body = ask(server, "POST", "/api/faults/api", form, **{auth.HEADER: TOKEN, "Content-Type": "application/json"})
    assert (answer.status, json.loads(body)) == (200, {"service": "api"})
    assert server.board.changes == [("api", {"kind": "abort", "value": 503})]
    answer, _ = ask(server, "POST", "/api/faults/api", "not json at all", **{auth.HEADER: TOKEN, "Content-Type": "text/plain"})
    assert (answer.status, answer.getheader("Connection")) == (400, "close")     # the unread body is never parsed as a request


def test_the_stream_sends_the_graph_then_what_is_published(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/api/stream", headers={"Host": f"localhost:{server.port}", "Cookie": f"{auth.COOKIE}={TOKEN}"})
    answer = conn.getresponse()
    assert answer.status == 200 and answer.getheader("Content-Type") == "text/event-stream"
    assert answer.readline() == b"event: graph\n"
    server.board.hub.publish("request", {"path": "/x"})
    lines = [answer.readline() for _ in range(8)]
    assert b"event: request\n" in lines and b'data: {"path":"/x"}\n' in lines
    conn.close()
