"""What `meshctl up` and `meshctl logs` show of a pod's lines (meshctl/sidecars/console.py): the
access lines are written by the formats meshctl ships (tests/support.py renders them as HAProxy
would), HAProxy's own messages are lines HAProxy 2.6 printed in a real `meshctl up` of examples/shop."""

from __future__ import annotations

import io

from rich.console import Console

from meshctl.cli.ui import Ui
from meshctl.events import LogLine
from meshctl.sidecars.console import ACCESS, APP_LINE, CHATTER, NOTICE, classify, parse_access, shown
from tests.support import HTTP_VALUES, TCP_VALUES, render_log_line, shipped_formats
from tests.unit.fake_engine import meshctl, use_on_the_cli

FORMATS = shipped_formats()

# Printed by the proxies of a real `meshctl up examples/shop` (HAProxy 2.6.12, Debian bookworm) on
# stderr, from start to Ctrl-C; the same messages without the `[LEVEL] (pid) :` went into the log.
STARTUP = """\
[NOTICE]   (33) : New worker (47) forked
[NOTICE]   (33) : Loading success.
[WARNING]  (47) : Server app/app is DOWN, reason: Layer4 connection problem, info: "Connection refused", check duration: 360ms. 0 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.
[ALERT]    (47) : backend 'app' has no server available!
[WARNING]  (47) : to_web/web changed its IP from (none) to 172.18.0.3 by docker/dns.
[WARNING]  (47) : Server to_web/web ('web') is UP/READY (resolves again).
[WARNING]  (47) : Server to_web/web administratively READY thanks to valid DNS answer.
[WARNING]  (47) : Server app/app is UP, reason: Layer4 check passed, check duration: 0ms. 1 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.
[NOTICE]   (34) : haproxy version is 2.6.12-1+deb12u3
[NOTICE]   (34) : path to executable is /usr/sbin/haproxy
[WARNING]  (34) : Exiting Master process...
[ALERT]    (34) : Current worker (47) exited with code 143 (Terminated)
[WARNING]  (34) : All workers exited. Exiting... (0)
Server app/app is DOWN, reason: Layer4 connection problem, info: "Connection refused", check duration: 360ms. 0 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.
backend app has no server available!
to_api/api changed its IP from (none) to 172.18.0.2 by docker/dns.""".splitlines()


def http(service: str, frontend: str, **values: object) -> str:
    return render_log_line(FORMATS[service, frontend], {**HTTP_VALUES, **values})


def tcp(service: str, frontend: str, **values: object) -> str:
    return render_log_line(FORMATS[service, frontend], {**TCP_VALUES, **values})


def console(service: str, role: str, line: str, **flags: bool) -> str | None:
    """The console's line for it ("service/role | text"), or None when it is not shown."""
    what = shown(LogLine(service, role, line), **flags)
    return None if what is None else f"{what.line.service}/{what.line.role} | {what.line.line}"


def test_haproxys_startup_and_shutdown_chatter_is_hidden_and_shown_as_written_with_verbose():
    for line in STARTUP:
        for role in ("proxy", "metrics", "tls"):
            assert classify("kv", role, line).kind == CHATTER, line
            assert console("kv", role, line) is None
            assert console("kv", role, line, verbose=True) == f"kv/{role} | {line}"


def test_a_sidecars_error_is_shown_as_written():
    errors = ["[ALERT]    (34) : Current worker (47) exited with code 139 (Segmentation fault)",
              "[ALERT]    (1) : config : parsing [/etc/meshctl/haproxy.cfg:12] : unknown keyword 'retry-onn'",
              "metrics: the app's metrics at http://127.0.0.1:8080/metrics did not answer: timed out",
              "Traceback (most recent call last):"]
    for line in errors:
        assert classify("web", "proxy", line).kind == NOTICE
        assert shown(LogLine("web", "proxy", line)) == (LogLine("web", "proxy", line), True)


def test_the_apps_lines_and_a_user_sidecars_are_always_shown_even_when_they_look_like_haproxys():
    for role in ("app", "cache"):
        line = "Server app/app is DOWN (my own log line)"
        assert classify("web", role, line).kind == APP_LINE
        assert shown(LogLine("web", role, line)) == (LogLine("web", role, line), False)


def test_meshctls_own_sidecars_say_what_they_set_up_only_with_verbose():
    for role, line in (("metrics", "metrics: serving :15090/metrics for web"),
                       ("metrics", "metrics: access log: 420 more requests in the last second not shown "
                                   "(MESHCTL_ACCESS_LOG_LIMIT=100/s); /metrics counts every one"),
                       ("capture", "capture: calls from web to 172.18.0.0/16 ports 8080 go through its proxy (:15001)"),
                       ("capture", "capture: strict: other pods reach web only through the mesh listener (15008, "
                                   "mutual TLS)")):
        assert console("web", role, line) is None
        assert console("web", role, line, verbose=True) == f"web/{role} | {line}"
    assert console("web", "capture", "capture: no project network on eth0") == \
        "web/capture | capture: no project network on eth0"


def test_every_listeners_access_line_is_read():
    ok = http("api", "mesh_in", ft="mesh_in~", ST=200, r="GET /whoami HTTP/1.1", **{"ssl_c_s_dn(CN)": "web"})
    access = parse_access("api", ok)
    assert access is not None
    assert (access.kind, access.direction, access.source, access.destination, access.method, access.path,
            access.status, access.mtls, access.denied, access.failed) == \
        ("http", "inbound", "web", "api", "GET", "/whoami", 200, True, False, False)
    assert access.latency_ms == 3.5          # the span's end minus its start, in µs; %Ta counts whole ms
    assert parse_access("web", http("web", "proxy", ft="proxy~")).source == "host"
    out = parse_access("web", http("web", "mesh_out", ft="mesh_out", b="to_api", s="api", rc=0,
                                   **{"var(txn.breaker_until)": "-"}))
    assert out is not None and (out.direction, out.source, out.destination) == ("outbound", "web", "api")
    kv = parse_access("kv", tcp("kv", "mesh_in", ft="mesh_in~", U=12, B=2, **{"ssl_c_s_dn(CN)": "api"}))
    assert kv is not None and (kv.kind, kv.source, kv.destination, kv.bytes, kv.mtls) == ("tcp", "api", "kv", 14, True)
    assert parse_access("kv", tcp("kv", "proxy")) is not None
    for line in STARTUP + ["web: listening on 8080", "meshctl-fault abort web"]:
        assert parse_access("web", line) is None


def test_by_default_only_the_requests_that_matter_are_shown_in_a_form_a_person_reads():
    ok = http("api", "mesh_in", ft="mesh_in~", **{"ssl_c_s_dn(CN)": "web"})
    assert classify("api", "metrics", ok).kind == ACCESS
    assert console("api", "metrics", ok) is None
    assert console("api", "metrics", ok, access=True) == "api/proxy | web → api  POST /orders  201  3.5 ms  mTLS"
    assert console("api", "metrics", ok, verbose=True) == f"api/metrics | {ok}"
    denied = http("api", "mesh_in", ft="mesh_in~", ST=403, tsc="PR--", r="DELETE /orders/7 HTTP/1.1",
                  **{"ssl_c_s_dn(CN)": "intruder"})
    assert console("api", "metrics", denied) == "api/proxy | intruder → api  DELETE /orders/7  403 denied  3.5 ms  mTLS"
    error = http("web", "proxy", ft="proxy~", ST=502, r="GET /visits HTTP/1.1")
    assert console("web", "metrics", error) == "web/proxy | host → web  GET /visits  502  3.5 ms"
    # Without a metrics sidecar the proxy prints its access log itself: the same reading.
    assert console("web", "proxy", error) == "web/proxy | host → web  GET /visits  502  3.5 ms"
    # The app's own 404 is not an error of the mesh's.
    assert console("web", "metrics", http("web", "proxy", ST=404)) is None
    tcp_denied = tcp("kv", "mesh_in", ft="mesh_in~", b="mesh_in", s="<NOSRV>", Tw=-1, Tc=-1, Tt=20, U=0, B=0,
                     ts="PR", **{"ssl_c_s_dn(CN)": "web"})
    assert console("kv", "metrics", tcp_denied) == "kv/proxy | web → kv  tcp 0 B  denied  20 ms  mTLS"


def test_a_call_between_services_is_shown_once_as_its_callee_saw_it():
    outbound = {"ft": "mesh_out", "b": "to_api", "s": "api", "rc": 0, "var(txn.breaker_until)": "-"}
    assert console("web", "metrics", http("web", "mesh_out", **outbound), access=True) is None
    # The callee answered 5xx: its own line says so (only that one is shown).
    assert console("web", "metrics", http("web", "mesh_out", **{**outbound, "ST": 500})) is None
    assert console("api", "metrics", http("api", "mesh_in", ft="mesh_in~", ST=500, **{"ssl_c_s_dn(CN)": "web"})) \
        == "api/proxy | web → api  POST /orders  500  3.5 ms  mTLS"
    # The caller's proxy could not reach the callee (SC: the connection failed): only it knows.
    assert console("web", "metrics", http("web", "mesh_out", **{**outbound, "ST": 503, "tsc": "SC--"})) \
        == "web/proxy | web → api  POST /orders  503  3.5 ms"
    # A call leaving the mesh has no callee's proxy to log it.
    assert console("web", "metrics", http("web", "mesh_out", **{**outbound, "b": "passthrough", "s": "original"}),
                   access=True) == "web/proxy | web → outside  POST /orders  201  3.5 ms"
    tcp_out = tcp("web", "mesh_out_tcp", ft="mesh_out_tcp", b="to_kv", s="kv")
    assert console("web", "metrics", tcp_out, access=True) is None
    assert console("web", "metrics", tcp("web", "mesh_out_tcp", ft="mesh_out_tcp", b="to_kv", s="kv", ts="SC"))\
        == "web/proxy | web → kv  tcp 4216 B  failed  23000 ms"


def test_the_ui_prints_what_the_console_shows_and_tells_a_sidecars_line_that_matters_apart():
    ui = Ui(progress="plain")
    buffer = io.StringIO()
    ui.out = Console(file=buffer, width=200, color_system=None)
    denied = http("api", "mesh_in", ft="mesh_in~", ST=403, tsc="PR--", **{"ssl_c_s_dn(CN)": "intruder"})
    for event in (LogLine("api", "app", "api: listening on 8080"), LogLine("api", "proxy", STARTUP[0]),
                  LogLine("api", "metrics", STARTUP[-1]), LogLine("api", "metrics", denied),
                  LogLine("api", "metrics", http("api", "proxy"))):
        ui(event)
    assert buffer.getvalue().splitlines() == [
        "api/app | api: listening on 8080",         # the prefix widens as longer ones come
        "api/proxy | intruder → api  POST /orders  403 denied  3.5 ms  mTLS"]
    ui.verbose = True
    ui(LogLine("api", "proxy", STARTUP[0]))
    assert buffer.getvalue().splitlines()[-1] == f"api/proxy | {STARTUP[0]}"


def test_logs_shows_what_up_shows_and_every_line_with_verbose_or_a_role(tmp_path, monkeypatch):
    engine = use_on_the_cli(tmp_path, monkeypatch)
    error = http("web", "proxy", ft="proxy~", ST=502, r="GET /visits HTTP/1.1")
    engine.log_lines.update({"shop-web-app": ["web: listening on 8080"], "shop-web-proxy": STARTUP[:3],
                             "shop-web-metrics": [STARTUP[-1], http("web", "proxy"), error]})
    meshctl("up", "-d", str(tmp_path), check=True)
    for follow in ([], ["-f"]):
        default = meshctl("logs", "-p", "shop", *follow, check=True).stdout
        assert "web: listening on 8080" in default and "host → web  GET /visits  502  3.5 ms" in default
        assert not any(line in default for line in STARTUP) and "POST /orders" not in default
        assert "host → web  POST /orders  201  3.5 ms" in meshctl("logs", "-p", "shop", "--access", *follow).stdout
        verbose = meshctl("logs", "-p", "shop", "-v", *follow).stdout
        assert all(line in verbose for line in [*STARTUP[:3], STARTUP[-1], error, "web: listening on 8080"])
        proxy = meshctl("logs", "-p", "shop", "web", "--role", "proxy", *follow).stdout.splitlines()
        assert proxy == [f"web/proxy | {line}" for line in STARTUP[:3]]
    assert meshctl("logs", "-p", "shop", "--role", "nothing").exit_code == 2
