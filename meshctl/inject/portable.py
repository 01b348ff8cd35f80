"""`meshctl inject --portable`: everything the injected file mounts or builds sits next to it, in a
`.meshctl/` folder it names by relative paths, so the compose file and `.meshctl/` can be committed
and used from any checkout. The private keys, and the certificates this machine's CA issued, stay
out of git (a written `.meshctl/.gitignore`): each machine issues its own with `meshctl inject
--portable`, which changes no byte of the file. The sidecar images are built by compose itself when
missing, from their build contexts copied into `.meshctl/images/` (`build:` beside the content-hash
tag meshctl builds too, `pull_policy: never`: no registry is asked for a tag that exists nowhere)."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePath

from ..sidecars import KINDS, data_dir
from .files import write_if_changed

FOLDER = ".meshctl"
IMAGES = "images"
# What must never be committed: keys, certificates (each machine's CA issues its own), temp files.
GITIGNORE = """\
# Written by `meshctl inject --portable`. Private keys and the certificates this machine's CA issued
# stay out of git: on each machine, `meshctl inject --portable` issues its own (the compose file and
# the rest of this folder are the same everywhere and can be committed).
*.pem
.*.tmp
"""


def state_dir() -> PurePath:
    """Where the sidecars' configs and certificates go, relative to the compose file's folder."""
    return PurePath(FOLDER)


def build_contexts(roles: tuple[str, ...]) -> dict[str, str]:
    """role → its image's build context as the compose file names it (relative to the file)."""
    return {role: f"./{FOLDER}/{IMAGES}/{KINDS[role].image}" for role in roles}


def write_portable_files(base: Path, roles: tuple[str, ...]) -> None:
    """`.meshctl/.gitignore`, and the sidecar images' build contexts (exact copies of meshctl's
    sidecars/ folders: the same content hash, so the same tag)."""
    folder = base / FOLDER
    write_if_changed(folder / ".gitignore", GITIGNORE)
    for name in sorted({KINDS[role].image for role in roles}):
        source, target = data_dir("sidecars") / name, folder / IMAGES / name
        wanted = {p.relative_to(source) for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
        for stale in (p for p in target.rglob("*") if p.is_file() and p.relative_to(target) not in wanted):
            stale.unlink()
        for relative in sorted(wanted):
            write_if_changed(target / relative, (source / relative).read_text(encoding="utf-8"))
            shutil.copymode(source / relative, target / relative)

