"""`meshctl doctor`: what this machine has and lacks for meshctl, each with what to do. Reads the
engine, the default host ports and the CA; changes nothing but creating the CA on first use."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ..certs import CertificateAuthority
from ..config import DEFAULT_HOST_PORTS
from ..engine.base import Engine
from ..errors import MeshctlError
from ..planning.images import BASE_IMAGE, sidecar_refs
from ..sidecars import KINDS
from .status import orphan_networks


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str


def diagnose(engine: Engine, ca: CertificateAuthority) -> list[Finding]:
    found = []
    try:
        version = engine.version()
        found.append(Finding("docker engine", True, f"{version.get('Version')} (API {version.get('ApiVersion')})"))
        engine_ok = True
    except MeshctlError as exc:
        found.append(Finding("docker engine", False, f"{exc.message}; {exc.hint}"))
        engine_ok = False
    if engine_ok:
        have_base = engine.image_id(BASE_IMAGE) is not None
        found.append(Finding("base image", have_base, BASE_IMAGE if have_base else
                             f"{BASE_IMAGE} missing: `docker pull {BASE_IMAGE}`, or without a registry "
                             "`.ci/seed-base-image` from meshctl's source tree"))
        orphans = orphan_networks(engine)
        found.append(Finding("meshctl networks", not orphans, "no orphans" if not orphans else
                             f"{len(orphans)} with no containers left ({', '.join(orphans)}): "
                             "`meshctl down --all` removes them"))
        for role, ref in sorted(sidecar_refs(tuple(KINDS)).items()):
            built = engine.image_id(ref) is not None
            found.append(Finding(f"{role} sidecar image", True,
                                 ref + ("" if built else " (not built yet: the first `meshctl up` builds it)")))
    for port in DEFAULT_HOST_PORTS.values():
        free = port_free(port)
        found.append(Finding(f"port {port}", free, "free" if free else
                             "in use: set `ports:` in mesh.yaml to another port (0 = a free one)"))
    try:
        path = ca.ensure()
        mode = oct(ca.key_path.stat().st_mode & 0o777)
        found.append(Finding("CA", mode == "0o600", f"{path} (key {mode})"))
    except (MeshctlError, OSError) as exc:
        found.append(Finding("CA", False, f"{exc}; check that {ca.dir} is writable"))
    return found


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
