"""The command line: typer commands (app.py) and the one module that prints (ui.py). Only here
are MeshctlErrors turned into a red message and an exit code. May import everything in meshctl."""

from .app import main

__all__ = ["main"]
