"""`meshctl doctor` and `meshctl version`: what this machine has and lacks for meshctl, each with
what to do, and which meshctl, engine and sidecar images these are. Reads the engine, the default
host ports and the CA; changes nothing (the CA is created by the first command that needs it)."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from typing import Any

from .. import __version__

from ..certs import CertificateAuthority
from ..config import DEFAULT_HOST_PORTS
from ..engine.base import Engine
from ..errors import MeshctlError
from ..planning.images import BASE_IMAGE, sidecar_images, sidecar_refs
from ..sidecars import KINDS
from .status import orphan_networks


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


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
    found.append(ca_finding(ca))
    return found


def ca_finding(ca: CertificateAuthority) -> Finding:
    """Whether the CA exists with a private key, or can be made where it will be: never creates it."""
    if ca.cert_path.exists() and ca.key_path.exists():
        mode = ca.key_path.stat().st_mode & 0o777
        return Finding("CA", mode == 0o600, f"{ca.cert_path} (key {oct(mode)})" + (
            "" if mode == 0o600 else f": only you should read the key: `chmod 600 {ca.key_path}`"))
    existing = next(p for p in (ca.dir, *ca.dir.parents) if p.exists())
    if not existing.is_dir():
        return Finding("CA", False, f"not created yet, and {existing} is a file, not a folder: "
                                    "set MESHCTL_HOME to a folder you own")
    if not os.access(existing, os.W_OK | os.X_OK):
        return Finding("CA", False, f"not created yet, and {existing} is not writable: make it writable, "
                                    "or set MESHCTL_HOME to a folder you own")
    return Finding("CA", True, f"not created yet: the first `meshctl up` creates it in {ca.dir}")


def versions(engine: Engine) -> dict[str, Any]:
    """meshctl's version; the engine's, or why it could not be reached; each sidecar image's tag,
    and whether the engine has it (None when the engine could not be asked)."""
    try:
        answer = engine.version()
        reached: dict[str, Any] = {"version": answer.get("Version"), "api_version": answer.get("ApiVersion")}
    except MeshctlError as exc:
        reached = {"error": exc.message}
    images = {folder: {"image": ref, "built": None if "error" in reached else engine.image_id(ref) is not None}
              for folder, ref in sidecar_images().items()}
    return {"meshctl": __version__, "engine": reached, "sidecar_images": images}


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
