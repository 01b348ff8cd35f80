"""What an injected compose file mounts, on disk: each sidecar's rendered config written where it
differs, its certificate issued from meshctl's CA, and the folders of sidecars no longer injected
removed (no stale config, no unused private key). The inject package itself only edits text."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..certs import CertificateAuthority, atomic_write
from . import InjectResult


def write_sidecar_files(result: InjectResult, ca: CertificateAuthority) -> None:
    ca.ensure()
    for item in result.injected:
        for file_path, content in item.files.items():
            write_if_changed(Path(file_path), content)
        if item.cert_dir is not None:
            ca.issue(Path(item.cert_dir), item.sans, common_name=item.service)
        for retired in item.retired_dirs:
            shutil.rmtree(retired, ignore_errors=True)


def write_if_changed(path: Path, content: str) -> None:
    """Re-injecting rewrites nothing that is already right (and spares hundreds of fsyncs)."""
    try:
        if path.read_text(encoding="utf-8") == content:
            return
    except OSError:
        pass
    atomic_write(path, content.encode(), mode=0o644)
