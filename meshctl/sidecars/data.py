"""meshctl's data folders, sidecars/ (the images' build contexts) and templates/ (every config a
sidecar mounts), found in an installed wheel or in the source tree, and the templates read from them.

A template is string.Template text. A line starting with `##` is a note for whoever edits the
template, never written. A file of parts holds several templates, each from its `## part NAME` line
to the next, written exactly as they stand (blank lines included)."""

from __future__ import annotations

import functools
import string
from importlib import resources
from pathlib import Path

from ..errors import MeshctlError

NOTE = "##"
PART = "## part "


@functools.cache
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
    return template_parts(name)[""]


def template_parts(name: str) -> dict[str, string.Template]:
    """The parts of a template file, by name; "" is what comes before the first `## part` line
    (a whole plain template). Read again only when the file changes: a config renders from dozens."""
    path = data_dir("templates") / name
    return _parts(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _parts(path: Path, mtime_ns: int) -> dict[str, string.Template]:
    parts: dict[str, list[str]] = {"": []}
    current = parts[""]
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith(PART):
            current = parts.setdefault(line[len(PART):].strip(), [])
        elif not line.startswith(NOTE):
            current.append(line)
    return {part: string.Template("".join(lines)) for part, lines in parts.items()}
