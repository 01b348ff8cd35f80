"""meshctl's data folders, sidecars/ (the images' build contexts) and templates/ (every config a
sidecar mounts), found in an installed wheel or in the source tree, and a template read from them."""

from __future__ import annotations

import string
from importlib import resources
from pathlib import Path

from ..errors import MeshctlError


def data_dir(kind: str) -> Path:
    """sidecars/ or templates/: inside an installed wheel (meshctl/_data), else the source tree."""
    packaged = resources.files("meshctl") / "_data" / kind
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parents[2] / kind   # the repo: meshctl/sidecars/data.py → ../../
    if source.is_dir():
        return source
    raise MeshctlError(f"meshctl's {kind}/ folder is missing from this installation",
                       hint="reinstall meshctl (pip install --force-reinstall meshctl)")


def template(name: str) -> string.Template:
    return string.Template((data_dir("templates") / name).read_text(encoding="utf-8"))
