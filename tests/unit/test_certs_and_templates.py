import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from dataclasses import replace

from cryptography import x509

from meshctl import certs, home
from meshctl.certs import CertificateAuthority, default_sans
from meshctl.config import ProxySettings, ServiceSpec, load_project
from meshctl.planning.images import folder_hash
from meshctl.sidecars import data
from meshctl.sidecars import chain_of, data_dir, render_configs, render_proxy, render_tls, roles_of

ROOT = Path(__file__).resolve().parents[2]


def test_ca_and_leaf(tmp_path):
    ca = CertificateAuthority(tmp_path)
    ca_path = ca.ensure()
    assert stat.S_IMODE(os.stat(ca.key_path).st_mode) == 0o600
    issued = ca.issue(tmp_path / "leaf", default_sans("web"))
    assert issued.reissued
    for path in (issued.key_path, issued.bundle_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    leaf = x509.load_pem_x509_certificate(issued.cert_path.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
    leaf.verify_directly_issued_by(ca_cert)
    names = {str(n.value) for n in leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}
    assert names == {"localhost", "127.0.0.1", "::1", "web"}
    assert leaf.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) <= certs.LEAF_VALIDITY


def test_leaf_reissued_only_when_needed(tmp_path, monkeypatch):
    ca = CertificateAuthority(tmp_path)
    first = ca.issue(tmp_path / "leaf", default_sans("web"))
    again = ca.issue(tmp_path / "leaf", default_sans("web"))
    assert not again.reissued and again.not_after == first.not_after
    changed = ca.issue(tmp_path / "leaf", default_sans("web", ("web.local",)))
    assert changed.reissued
    # Near expiry: re-issued.
    monkeypatch.setattr(certs, "LEAF_RENEW_BEFORE", certs.LEAF_VALIDITY + dt.timedelta(days=1))
    assert ca.issue(tmp_path / "leaf", default_sans("web", ("web.local",))).reissued


def test_meshctl_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MESHCTL_HOME", str(tmp_path / "h"))
    assert home.meshctl_home() == tmp_path / "h"
    monkeypatch.delenv("MESHCTL_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert home.meshctl_home() == tmp_path / "xdg" / "meshctl"


def test_proxy_template_carries_the_settings():
    service = ServiceSpec(name="web", port=8081, proxy=ProxySettings(timeout=15, retries=3, connect_timeout=0.2))
    text = render_proxy("shop", service)
    assert "server app 127.0.0.1:8081" in text
    assert "timeout server 15000ms" in text and "retry-on conn-failure" in text
    assert "retries 75" in text  # requests wait out an app restart: 15 s / 200 ms
    # Access events reach the metrics sidecar through a ring forwarded over TCP, not stdout.
    assert "log ring@meshctl-events" in text and "server metrics 127.0.0.1:15514" in text
    assert "log stdout" not in text
    assert "log stdout" in render_proxy("shop", replace(service, metrics=None))
    assert "$" not in text


def test_the_proxy_terminates_tls_itself_and_no_tls_sidecar_runs():
    service = ServiceSpec(name="web", port=8081)
    assert service.tls_terminator == "proxy" and roles_of(service) == ("metrics", "proxy")
    assert chain_of(service) == "proxy (HTTPS) → app"
    assert [r.role for r in render_configs("shop", service)] == ["proxy"]
    text = render_proxy("shop", service)
    assert "bind :15443 ssl crt /etc/meshctl/bundle.pem alpn http/1.1" in text
    assert "ssl-min-ver TLSv1.2" in text
    with pytest.raises(AssertionError):
        render_tls("shop", service)


def test_without_tls_the_proxy_has_no_https_listener():
    service = ServiceSpec(name="web", port=8081, tls=None)
    assert service.tls_terminator is None and roles_of(service) == ("metrics", "proxy")
    assert chain_of(service) == "proxy → app"
    text = render_proxy("shop", service)
    assert "ssl" not in text and ":15443" not in text and "$" not in text


def test_configured_retries_are_a_floor():
    service = ServiceSpec(name="web", port=8081, proxy=ProxySettings(timeout=1, retries=20, connect_timeout=0.2))
    assert "retries 20" in render_proxy("shop", service)


def test_tls_sidecar_runs_only_without_a_proxy_and_goes_to_the_app():
    service = ServiceSpec(name="web", port=8081, proxy=None)
    assert service.tls_terminator == "tls" and roles_of(service) == ("metrics", "tls")
    assert chain_of(service) == "tls → app"
    assert [r.role for r in render_configs("shop", service)] == ["tls"]
    text = render_tls("shop", service)
    assert "server upstream 127.0.0.1:8081" in text and "bind :15443 ssl crt /etc/meshctl/bundle.pem" in text
    assert "$" not in text


def test_sidecar_hash_changes_with_content(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    before = folder_hash(tmp_path)
    assert folder_hash(tmp_path) == before
    (tmp_path / "Dockerfile").write_text("FROM y\n")
    assert folder_hash(tmp_path) != before
    assert (data_dir("sidecars") / "haproxy" / "Dockerfile").is_file()


def test_configs_go_to_the_tls_terminator_and_a_retired_tls_folder_goes(tmp_path):
    """A stack started before the proxy served HTTPS had a tls folder with a private key; the next
    `up` writes the certificate into the proxy's folder and removes the old one."""
    from meshctl.config import ProjectSpec
    from meshctl.planning.images import sidecar_images
    from meshctl.runtime.stack import Stack
    from tests.unit.fake_engine import FakeEngine, always_ready

    engine = FakeEngine(images=set(sidecar_images().values()) | {"web:1"})
    service = ServiceSpec(name="web", port=8081, image="web:1", ports=(("https", 0), ("http", 0), ("metrics", 0)))

    def up(service):
        stack = Stack(engine, ProjectSpec(name="shop", root=tmp_path, services=(service,)), on_event=lambda e: None,
                      tied=False, home=tmp_path / "home", prober=always_ready)
        stack.up()
        return {c.role for c in engine.containers({"meshctl.project": "shop"})}

    state = tmp_path / "home" / "projects" / "shop" / "web"
    (state / "tls").mkdir(parents=True)
    (state / "tls" / "key.pem").write_text("the old tls sidecar's key")
    assert up(service) == {"pod", "metrics", "proxy", "app"} and not (state / "tls").exists()
    assert stat.S_IMODE((state / "proxy" / "bundle.pem").stat().st_mode) == 0o600
    assert "bind :15443 ssl crt /etc/meshctl/bundle.pem" in (state / "proxy" / "haproxy.cfg").read_text()
    # Without a proxy the tls sidecar gets it, and the proxy folder goes.
    assert up(replace(service, proxy=None)) == {"pod", "metrics", "tls", "app"}
    assert not (state / "proxy").exists() and (state / "tls" / "bundle.pem").exists()


def test_a_file_of_parts_keeps_each_part_exactly_and_drops_the_notes(tmp_path, monkeypatch):
    (tmp_path / "parts.cfg").write_text("## what the file holds\n## part one\n\nfrontend ${name}\n## a note\n"
                                        "    bind :1\n## part two\n## part three\n    x\n")
    (tmp_path / "plain.cfg").write_text("## a note\nglobal\n    ## indented: written\n")
    monkeypatch.setattr(data, "data_dir", lambda kind: tmp_path)
    parts = data.template_parts("parts.cfg")
    assert {name: part.template for name, part in parts.items()} == {
        "": "", "one": "\nfrontend ${name}\n    bind :1\n", "two": "", "three": "    x\n"}
    assert data.template("plain.cfg").template == "global\n    ## indented: written\n"


@pytest.mark.parametrize("example", ["hello", "shop", "node"])
def test_rendered_configs_carry_no_template_note_or_unfilled_field(example):
    project = load_project(ROOT / "examples" / example)
    for service in project.services:
        for rendered in render_configs(project.name, service):
            for name, text in rendered.files.items():
                assert not name.endswith(".cfg") or "${" not in text      # a shell script has its own
                assert not any(line.startswith("##") for line in text.splitlines())
