"""`meshctl doctor` through the fake engine: what is missing says what to do."""

from __future__ import annotations

import socket

from meshctl.certs import CertificateAuthority
from meshctl.runtime.doctor import diagnose, port_free
from meshctl.planning.images import BASE_IMAGE, sidecar_refs
from tests.unit.fake_engine import FakeEngine


def by_name(findings):
    return {f.name: f for f in findings}


def test_a_ready_machine_passes_and_doctor_changes_nothing(tmp_path):
    engine = FakeEngine(images={BASE_IMAGE, *sidecar_refs(("proxy", "metrics", "tls")).values()})
    ca = CertificateAuthority(tmp_path / "home")
    found = by_name(diagnose(engine, ca))
    assert found["docker engine"].ok and "API 1.41" in found["docker engine"].detail
    assert found["base image"].ok and found["proxy sidecar image"].ok
    assert "not built yet" not in found["metrics sidecar image"].detail
    # No CA yet: said, not made (the first `meshctl up` makes it).
    assert found["CA"].ok and found["CA"].detail.startswith("not created yet: the first `meshctl up` creates it")
    assert list(tmp_path.iterdir()) == [] and not any(c[0] in ("create", "build", "pull") for c in engine.calls)
    ca.ensure()
    found = by_name(diagnose(engine, ca))
    assert found["CA"].ok and found["CA"].detail == f"{ca.cert_path} (key 0o600)"
    ca.key_path.chmod(0o644)
    found = by_name(diagnose(engine, ca))
    assert not found["CA"].ok and f"chmod 600 {ca.key_path}" in found["CA"].detail


def test_a_home_that_cannot_hold_the_ca_is_reported_not_created(tmp_path):
    (tmp_path / "home").write_text("a file where MESHCTL_HOME points")
    found = by_name(diagnose(FakeEngine(), CertificateAuthority(tmp_path / "home")))
    assert not found["CA"].ok and f"{tmp_path / 'home'} is a file, not a folder" in found["CA"].detail
    assert (tmp_path / "home").read_text() == "a file where MESHCTL_HOME points"


def test_a_missing_base_image_and_an_unreachable_engine_say_what_to_do(tmp_path):
    found = by_name(diagnose(FakeEngine(), CertificateAuthority(tmp_path)))
    assert not found["base image"].ok and ".ci/seed-base-image" in found["base image"].detail
    assert "not built yet" in found["proxy sidecar image"].detail
    found = by_name(diagnose(FakeEngine(unreachable=True), CertificateAuthority(tmp_path)))
    assert not found["docker engine"].ok and "start Docker" in found["docker engine"].detail
    assert "base image" not in found       # nothing more is asked of an engine that is not there


def test_a_port_in_use_is_reported():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert not port_free(port)
    assert port_free(port)
