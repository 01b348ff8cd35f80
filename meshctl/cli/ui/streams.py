"""stdout and stderr for the ui's consoles."""

from __future__ import annotations

import io
import os
from typing import Any


class PipeSafe(io.TextIOBase):
    """stdout or stderr that a closed pipe cannot break. `meshctl up | tee log` and Ctrl-C: the
    signal reaches tee too, and every later write fails with EPIPE; a print must never stop the
    teardown that follows. After the first EPIPE, output goes to /dev/null (also what the
    interpreter flushes at exit, so it does not complain either)."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.broken = False

    def _lost(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.stream.write(text)
            except (BrokenPipeError, ValueError):     # ValueError: the stream was closed
                self._lost()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                self._lost()

    def isatty(self) -> bool:
        try:
            return not self.broken and self.stream.isatty()
        except ValueError:
            return False

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", None) or "utf-8"
