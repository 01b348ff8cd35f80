"""The command line: app.py (the typer app and its one error funnel, the only place a MeshctlError
becomes a red message and an exit code), commands/ (one module per command group), common.py (what
the commands share) and ui.py (the one module that prints). May import everything in meshctl."""

from .app import main

__all__ = ["main"]
