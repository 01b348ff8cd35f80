"""meshctl's own folder ($MESHCTL_HOME) and what it keeps there besides the CA: files written whole
(atomic_write), meshctl's secret and the keys derived from it for each project (the key the
proxies let meshctl's own probes past faults with, the key the metrics sidecars serve spans to).
No cryptography here: `stat` and `trace` read the secret without loading the CA's code.

May import: meshctl.errors."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .errors import MeshctlError


def meshctl_home() -> Path:
    """$MESHCTL_HOME, else $XDG_DATA_HOME/meshctl, else ~/.local/share/meshctl."""
    if home := os.environ.get("MESHCTL_HOME"):
        return Path(home).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "meshctl"


def unwritable(path: Path, exc: OSError) -> MeshctlError:
    """A folder meshctl must write to (its home, a rendered config's) refused: say which and why."""
    return MeshctlError(f"cannot write to {path}: {exc.strerror or exc}",
                        hint="meshctl keeps its CA and rendered configs in $MESHCTL_HOME (now "
                             f"{meshctl_home()}); make that folder writable, or set MESHCTL_HOME to one that is")


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write to a temp file in the same folder, fsync, rename: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)  # umask must not widen or narrow it
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise unwritable(path.parent, exc) from exc


def probe_secret(home: Path, *, create: bool = False) -> str:
    """meshctl's own secret (MESHCTL_HOME/probe.secret, 0600), made by the first `up` ("" before,
    unless `create`): each project's keys are derived from it (derived_key), so only meshctl and
    the sidecar each key is given to know them."""
    path = home / "probe.secret"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if not create:
            return ""
        home.mkdir(parents=True, exist_ok=True)
        atomic_write(path, secrets.token_hex(32).encode(), mode=0o600)
        return path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise unwritable(home, exc) from exc


def derived_key(secret: str, purpose: str, project: str) -> str:
    """One project's key for one purpose ("probe", "observe"), from meshctl's secret: the sidecar that
    checks it gets it in its environment; meshctl derives it again; an app sees neither."""
    return hmac.new(secret.encode(), f"{purpose}:{project}".encode(), hashlib.sha256).hexdigest()[:40]
