"""The command line: app.py (the typer app and its one error funnel, the only place a MeshctlError
becomes a red message and an exit code), commands/ (one module per command group), common.py (what
the commands share) and ui/ (the only code that prints). May import everything in meshctl.

Nothing is imported here at module level: `meshctl --version` answers before typer loads, and
every other command imports only what it uses (bench/startup.py times it)."""

from __future__ import annotations

import sys


def main() -> None:
    """The console entry point (and `python -m meshctl`)."""
    if sys.argv[1:] == ["--version"]:
        from .ui.version import print_version_line

        print_version_line()
        return
    if sys.argv[1:2] in (["stat"], ["trace"]):
        from .reads import main as read

        read(sys.argv[1:])       # exits when it answered
    from .app import app_for

    app_for(sys.argv[1:])(prog_name="meshctl")
