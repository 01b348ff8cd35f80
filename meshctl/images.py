"""Sidecar and app images: content-hash tags for sidecars (a changed folder is rebuilt, an
unchanged one never), app builds, and the base image check. Progress goes out as events."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from ._docker import Engine
from .config import ProjectSpec, ServiceSpec
from .errors import BuildError
from .sidecars import ROLE_IMAGES, data_dir

BASE_IMAGE = "debian:bookworm-slim"


@dataclass(frozen=True)
class BuildEvent:
    image: str
    phase: str            # "start", "step", "done", "cached"
    text: str = ""


OnBuild = Callable[[BuildEvent], None]


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
    refs = {name: sidecar_image_ref(name) for name in {ROLE_IMAGES[r] for r in roles}}
    return {role: refs[ROLE_IMAGES[role]] for role in roles}


def app_image_ref(project: str, service: ServiceSpec) -> str:
    return service.image or f"meshctl-{project}-{service.name}:dev"


def ensure_base_image(engine: Engine) -> None:
    if engine.image_exists(BASE_IMAGE):
        return
    try:
        engine.pull(BASE_IMAGE)
    except Exception as exc:  # any failure to pull means the same thing to the user
        raise BuildError(f"the base image {BASE_IMAGE} is not here and could not be pulled",
                         hint="with a registry: `docker pull debian:bookworm-slim`; without one, seed it "
                              "with debootstrap: `.ci/seed-base-image` in meshctl's source tree") from exc


def ensure_sidecar_images(engine: Engine, roles: tuple[str, ...], on_event: OnBuild) -> dict[str, str]:
    """Build the sidecar images the roles need, in parallel, only when their tag is missing."""
    refs = sidecar_refs(roles)
    missing = sorted({ref for ref in refs.values() if not engine.image_exists(ref)})
    if missing:
        ensure_base_image(engine)
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            futures = [pool.submit(_build_sidecar, engine, ref, on_event) for ref in missing]
            for future in futures:
                future.result()
    return refs


def _build_sidecar(engine: Engine, ref: str, on_event: OnBuild) -> None:
    name = ref.split(":")[0].removeprefix("meshctl-")
    on_event(BuildEvent(ref, "start"))
    engine.build(data_dir("sidecars") / name, ref, network_mode=build_network(),
                 labels={"meshctl.sidecar": name, "meshctl.version": __version__},
                 on_line=lambda line: on_event(BuildEvent(ref, "step", line)))
    on_event(BuildEvent(ref, "done"))


def ensure_app_images(engine: Engine, project: ProjectSpec, on_event: OnBuild,
                      services: list[ServiceSpec] | None = None) -> dict[str, str]:
    """Build (or pull, for `image:`) each service's app image; service name → image reference."""
    refs = {}
    for service in services or project.services:
        ref = app_image_ref(project.name, service)
        if service.build is None:
            if not engine.image_exists(ref):
                on_event(BuildEvent(ref, "start", "pulling"))
                try:
                    engine.pull(ref)
                except Exception as exc:
                    raise BuildError(f"image {ref} (services.{service.name}.image) is not here and could not be pulled: {exc}",
                                     hint=f"build or pull it first (docker pull {ref}), or fix the name") from exc
                on_event(BuildEvent(ref, "done"))
        else:
            build_app_image(engine, project.name, service, on_event)
        refs[service.name] = ref
    return refs


def build_app_image(engine: Engine, project: str, service: ServiceSpec, on_event: OnBuild) -> str:
    ref = app_image_ref(project, service)
    assert service.build is not None
    on_event(BuildEvent(ref, "start"))
    if _needs_base(service.build / "Dockerfile"):
        ensure_base_image(engine)
    engine.build(service.build, ref, network_mode=build_network(),
                 labels={"meshctl.project": project, "meshctl.service": service.name},
                 on_line=lambda line: on_event(BuildEvent(ref, "step", line)))
    on_event(BuildEvent(ref, "done"))
    return ref


def _needs_base(dockerfile: Path) -> bool:
    try:
        return BASE_IMAGE in dockerfile.read_text(encoding="utf-8")
    except OSError:
        return False
