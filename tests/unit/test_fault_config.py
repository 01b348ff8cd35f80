"""mesh.yaml `faults:`: parsing, every mistake as one file:line error, the maps of faults by caller
and the proxy's rules rendered from templates/."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl.config import Fault, parse_project
from meshctl.errors import ConfigError
from meshctl.sidecars.faults import (DECLARED_MAP, LIVE_MAP, LUA_FILE, PROBE_HEADER, encode, fault_entries,
                                     probe_key, seeded_files)
from meshctl.sidecars.haproxy import proxy_files, render_tcp_proxy

SHOP = """\
name: shop
services:
  web: {image: web, port: 8080}
  api:
    image: api
    port: 8080
    faults:
      - {abort: 503, percent: 20}                # HTTP: answer this status instead of calling the app
      - {delay: 300ms, percent: 50, from: [web]}
  kv:
    image: kv
    port: 7000
    protocol: tcp
    faults: [{delay: 200ms}, {reset: true, percent: 10}]
"""


def parse(tmp_path: Path, text: str):
    source = tmp_path / "mesh.yaml"
    source.write_text(text)
    return parse_project(text, source=source, root=tmp_path)


def service(project, name):
    return next(s for s in project.services if s.name == name)


def test_the_issues_faults_parse_with_their_defaults(tmp_path):
    project = parse(tmp_path, SHOP)
    assert service(project, "api").faults == (Fault("abort", 20.0, status=503),
                                              Fault("delay", 50.0, delay=0.3, callers=("web",)))
    assert service(project, "kv").faults == (Fault("delay", 100.0, delay=0.2), Fault("reset", 10.0))
    assert service(project, "web").faults == ()


def test_a_fractional_percent_and_a_lone_mapping(tmp_path):
    project = parse(tmp_path, SHOP.replace("faults: [{delay: 200ms}, {reset: true, percent: 10}]",
                                           "faults: {reset: true, percent: 0.5}"))
    assert service(project, "kv").faults == (Fault("reset", 0.5),)


@pytest.mark.parametrize(("old", "new", "line", "words"), [
    ("{abort: 503, percent: 20}", "{abort: 503, percnt: 20}", 8, "unknown field 'percnt'"),
    ("{abort: 503, percent: 20}", "{abort: 503, percent: 120}", 8, "not a percentage"),
    ("{abort: 503, percent: 20}", "{abort: 503, percent: -1}", 8, "not a percentage"),
    ("{abort: 503, percent: 20}", "{abort: 99}", 8, "not an HTTP status"),
    ("{delay: 300ms, percent: 50, from: [web]}", "{delay: 3 parsecs}", 9, "not a delay"),
    ("{delay: 300ms, percent: 50, from: [web]}", "{delay: 300ms, from: [wbe]}", 9, "no service named 'wbe'"),
    ("{abort: 503, percent: 20}", "{abort: 503, delay: 1s}", 8, "exactly one of abort, delay or reset"),
    ("{reset: true, percent: 10}", "{abort: 503}", 14, "abort on a protocol: tcp service"),
    ("{abort: 503, percent: 20}", "{reset: true}", 8, "reset is a TCP fault"),
])
def test_every_mistake_is_one_error_at_its_line(tmp_path, old, new, line, words):
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, SHOP.replace(old, new))
    assert f"mesh.yaml:{line}: services." in caught.value.message and words in caught.value.message


def test_from_needs_callers_that_carry_an_identity(tmp_path):
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, "mesh: {mtls: off}\n" + SHOP)
    assert "cannot be matched: mesh.mtls is off" in caught.value.message


def test_the_map_puts_aborts_first_and_from_only_on_its_caller():
    faults = (Fault("delay", 50.0, delay=0.3, callers=("web",)), Fault("abort", 20.0, status=503),
              Fault("delay", 12.5, delay=1.0))
    assert fault_entries(faults, ("web", "admin")) == {
        "-": "abort:503:20,delay:1000:12.5",                 # host ports: no identity, no `from` fault
        "web": "abort:503:20,delay:300:50,delay:1000:12.5",
        "admin": "abort:503:20,delay:1000:12.5"}
    assert fault_entries((Fault("abort", 100.0, status=503, callers=("web",)),), ("web", "admin")) == {
        "web": "abort:503:100"}
    assert encode(Fault("reset", 0.001)) == "reset:0:0.001"


def test_the_proxy_renders_the_rules_on_both_listeners_and_ships_the_lua_and_maps(tmp_path):
    project = parse(tmp_path, SHOP)
    files = proxy_files("shop", service(project, "api"))
    cfg = files["haproxy.cfg"]
    assert "lua-load /etc/meshctl/faults.lua" in cfg
    # The published ports (no identity) and the mesh listener (the certificate's name).
    assert "str(-),map_str(/etc/meshctl/faults-live.map)" in cfg
    assert "ssl_c_s_dn(CN),map_str(/etc/meshctl/faults-live.map)" in cfg
    assert cfg.count("http-request lua.meshctl_fault") == 2 and cfg.count(f"del-header {PROBE_HEADER}") == 2
    assert "web abort:503:20,delay:300:50" in files[DECLARED_MAP].splitlines()
    assert "core.register_action(\"meshctl_fault\"" in files[LUA_FILE]
    assert LIVE_MAP not in files and seeded_files()[LIVE_MAP].startswith("#")
    kv = proxy_files("shop", service(project, "kv"))["haproxy.cfg"]
    assert "tcp-request inspect-delay 60000ms" in kv and kv.count("tcp-request content lua.meshctl_tcp_fault") == 2
    assert "tcp-request content silent-drop if { var(txn.meshctl_fault) -m str reset }" in kv


def test_injects_proxy_has_no_fault_rules(tmp_path):
    project = parse(tmp_path, SHOP)
    text = render_tcp_proxy("shop", service(project, "kv"), "a database port")
    assert "lua" not in text and "meshctl_fault" not in text


def test_the_probe_key_is_the_projects_own():
    assert probe_key("s" * 64, "shop") != probe_key("s" * 64, "other") != probe_key("t" * 64, "other")
    assert len(probe_key("s" * 64, "shop")) == 40
