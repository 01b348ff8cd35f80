"""The `meshctl` app: the command groups of cli/commands merged into one typer app, and the one
error funnel. A command raises a MeshctlError (or is interrupted); the funnel turns it into a red
message and the error's exit code, so a user never sees a traceback for an expected failure.
typer's own usage errors (an unknown option, a missing argument: exit 2) pass through untouched."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
import typer.core
from typer.completion import completion_init

from .reads import exit_code_of
from .commands import about, ca, dashboard, export, fault, init, inject, observe, test, trace, up, validate


class _Funnel(typer.core.TyperGroup):
    """The `meshctl` group. Its invoke runs the chosen command (nested groups too, such as certs),
    so it is the one place an error becomes what the user sees: in CliRunner as in a shell. The
    command's Ui is made here (commands find it with common.ui_of), so the error is shown on it
    and any progress display it runs is stopped first."""

    def invoke(self, ctx: Any) -> Any:     # click's Context, or the one typer vendors (by its version)
        from .ui import Ui       # here: -h and TAB never reach invoke, and need no ui

        ui = ctx.ensure_object(Ui)
        code = exit_code_of(ui, lambda: super(_Funnel, self).invoke(ctx))
        if code:       # a command returns its exit code: doctor's failed checks, test's failed checks
            raise typer.Exit(code)
        return code


def _version(ctx: typer.Context, value: bool) -> None:
    """`meshctl --version` in-process (a shell's is answered before typer loads: cli/__init__.py)."""
    if value and not ctx.resilient_parsing:
        from .ui.version import print_version_line

        print_version_line()
        raise typer.Exit()


def _make_app(groups: tuple[Any, ...], named: tuple[tuple[str, Any], ...]) -> typer.Typer:
    made = typer.Typer(cls=_Funnel, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                       pretty_exceptions_show_locals=False,
                       context_settings={"help_option_names": ["-h", "--help"]},
                       help="Run a local service the way it runs in a service mesh: TLS, proxy and metrics "
                            "sidecars in one network namespace, living and dying with this command.")
    made.callback()(_root)
    for group in groups:
        made.add_typer(group.commands)
    for name, group in named:
        made.add_typer(group.commands, name=name)
    return made


def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print meshctl's version and exit.")) -> None:
    pass


# TAB: typer's completion answers what the script `meshctl completion SHELL` prints asks (as
# kubectl and gh do it). typer's own --install-completion/--show-completion stay out: one way to
# get the script, and two options fewer that every command would parse.
completion_init()

GROUPS = (up, observe, test, fault, trace, dashboard, validate, init, about, inject)
NAMED = (("certs", ca), ("export", export))
app = _make_app(GROUPS, NAMED)


def app_for(args: list[str]) -> typer.Typer:
    """The app to run `meshctl ARGS` with: one holding only the named command's group where ARGS
    name one (typer turns every command into click's at each run, ~40 ms for all of them: a tenth
    of `meshctl stat`), the whole app for help, TAB, --version or a name it does not know."""
    first = args[0] if args else ""
    if first.startswith("-") or "_MESHCTL_COMPLETE" in os.environ:
        return app
    for name, group in NAMED:
        if first == name:
            return _make_app((), ((name, group),))
    for group in GROUPS:
        if first in {(info.name or info.callback.__name__).replace("_", "-")
                     for info in group.commands.registered_commands if info.callback is not None}:
            return _make_app((group,), ())
    return app


def main() -> None:
    app_for(sys.argv[1:])(prog_name="meshctl")
