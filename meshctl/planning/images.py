"""Image names: content-hash tags for sidecar images (a changed folder is rebuilt, an unchanged
one never), app image references, their labels, and the build network. Pure but for reading the
sidecar folders to hash them; plan.py decides what to build, apply.py builds it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..config import BuildOptions, ServiceSpec
from ..sidecars import CAPTURE, KINDS, SidecarKind, data_dir

BASE_IMAGE = "debian:bookworm-slim"


def build_network() -> str | None:
    """MESHCTL_BUILD_NETWORK: the network mode of image builds (`host` where the default
    bridge has no DNS, as on the CI machines); unset means Docker's default."""
    return os.environ.get("MESHCTL_BUILD_NETWORK") or None


def folder_hash(folder: Path) -> str:
    """A hash of every file's relative path and content: the sidecar image's tag."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def sidecar_image_ref(name: str) -> str:
    return f"meshctl-{name}:{folder_hash(data_dir('sidecars') / name)}"


def sidecar_refs(roles: tuple[str, ...]) -> dict[str, str]:
    """role → image reference, for the roles given."""
    refs = sidecar_images({KINDS[r].image for r in roles})
    return {role: refs[KINDS[role].image] for role in roles}


def sidecar_images(folders: set[str] | None = None) -> dict[str, str]:
    """Image folder under sidecars/ → its reference (every sidecar image, unless told which)."""
    every = {k.image for k in KINDS.values()} | {CAPTURE}
    return {name: sidecar_image_ref(name) for name in sorted(folders or every)}


def user_sidecar_image_ref(project: str, service: str, kind: SidecarKind) -> str:
    """A user sidecar's image: theirs, or built from their folder and tagged by its content hash
    (a changed folder is rebuilt, an unchanged one never)."""
    if kind.user_build is not None:
        tag = folder_hash(kind.user_build)
        if kind.user_build_options != BuildOptions():     # other args or target: another image
            tag = hashlib.sha256(f"{tag}{kind.user_build_options!r}".encode()).hexdigest()[:12]
        return f"meshctl-{project}-{service}-{kind.role}:{tag}"
    assert kind.user_image is not None
    return kind.user_image


def kind_image(project: str, service: str, kind: SidecarKind, sidecar_images: dict[str, str]) -> str:
    """The image a sidecar kind runs: meshctl's by folder, a user's own by reference or build."""
    return user_sidecar_image_ref(project, service, kind) if kind.user else sidecar_images[kind.image]


def runtime_image_ref(runtime: str) -> str:
    """A runtime image (runtimes/NAME, built from the base image), tagged by a hash of its folder."""
    return f"meshctl-runtime-{runtime}:{folder_hash(data_dir('runtimes') / runtime)}"


def app_image_ref(project: str, service: ServiceSpec) -> str:
    if service.runtime is not None:
        return runtime_image_ref(service.runtime)
    return service.image or f"meshctl-{project}-{service.name}:dev"


