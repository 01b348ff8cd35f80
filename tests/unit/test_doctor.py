"""`meshctl doctor` through the fake engine: what is missing says what to do."""

from __future__ import annotations

import socket
import stat

from meshctl.certs import CertificateAuthority
from meshctl.runtime.doctor import diagnose, port_free
from meshctl.planning.images import BASE_IMAGE, sidecar_refs
from tests.unit.fake_engine import FakeEngine


def by_name(findings):
    return {f.name: f for f in findings}


def test_a_ready_machine_passes_and_the_ca_key_is_private(tmp_path):
    engine = FakeEngine(images={BASE_IMAGE, *sidecar_refs(("proxy", "metrics", "tls")).values()})
    ca = CertificateAuthority(tmp_path)
    found = by_name(diagnose(engine, ca))
    assert found["docker engine"].ok and "API 1.41" in found["docker engine"].detail
    assert found["base image"].ok and found["proxy sidecar image"].ok
    assert "not built yet" not in found["metrics sidecar image"].detail
    assert found["CA"].ok and stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600


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
