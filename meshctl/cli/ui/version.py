"""The line `meshctl --version` prints: answered before typer (or anything else) loads."""

from __future__ import annotations

import sys

from ... import __version__


def print_version_line() -> None:
    sys.stdout.write(f"meshctl {__version__}\n")
