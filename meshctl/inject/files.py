"""What an injected compose file mounts, on disk: each sidecar's rendered config written where it
differs, its certificate issued from meshctl's CA, and the folders of sidecars no longer injected
removed (no stale config, no unused private key). The inject package itself only edits text."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePath

from ..certs import CertificateAuthority
from ..home import atomic_write
from . import InjectResult


def write_sidecar_files(result: InjectResult, ca: CertificateAuthority, base: Path) -> None:
    """`base`: the compose file's folder, which relative paths (--portable) are relative to."""
    ca.ensure()
    for item in result.injected:
        for file_path, content in item.files.items():
            write_if_changed(on_disk(file_path, base), content)
        if item.cert_dir is not None:
            ca.issue(on_disk(item.cert_dir, base), item.sans, common_name=item.service)
        for retired in item.retired_dirs:
            shutil.rmtree(on_disk(retired, base), ignore_errors=True)


def on_disk(path: PurePath, base: Path) -> Path:
    """A path the result names: relative ones (--portable) are relative to the compose file's folder."""
    return Path(path) if path.is_absolute() else base / path


def write_if_changed(path: Path, content: str) -> None:
    """Re-injecting rewrites nothing that is already right (and spares hundreds of fsyncs)."""
    try:
        if path.read_text(encoding="utf-8") == content:
            return
    except OSError:
        pass
    atomic_write(path, content.encode(), mode=0o644)
