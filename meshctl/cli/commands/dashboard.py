"""`meshctl dashboard`: the running stack as a local web page (runtime/dashboard/). The layers
below are imported inside the command: `-h` and TAB load this module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from ..common import PathArg, ui_of
from ..reads import engine, project_name

commands = typer.Typer()


def has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@commands.command()
def dashboard(ctx: typer.Context, path: Path = PathArg,
              port: int = typer.Option(0, "--port", min=0, max=65535, help="The port on 127.0.0.1 (0: a free one)."),
              no_open: bool = typer.Option(False, "--no-open", help="Do not open a browser."),
              name: str | None = typer.Option(None, "--project", "-p", help="Project name instead of PATH.")) -> int:
    """Serve the running stack as a web page on 127.0.0.1 (graph, services and logs, live requests,
    traces, faults, charts) until Ctrl-C; prints its URL with an access token."""
    from ...home import meshctl_home
    from ...config import find_config, load_project
    from ...runtime.dashboard import Board, DashboardServer

    ui = ui_of(ctx)
    docker = engine()
    spec = load_project(path) if name is None and find_config(path) is not None else None
    project = name or (spec.name if spec is not None else project_name(path, running_fallback=docker))
    board = Board(docker, project, meshctl_home(), spec).start()
    server = DashboardServer(board, port)
    ui.notice(f"meshctl dashboard of {project}: {server.url}")
    ui.note("Ctrl-C stops it")
    if not no_open and has_display():
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
        server.server_close()
    return 0
