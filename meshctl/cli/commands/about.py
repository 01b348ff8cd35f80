"""`meshctl doctor`, `meshctl version` and `meshctl completion`: whether this machine can run
meshctl, which one it is, and TAB in a shell. The layers below are imported inside the commands:
`-h` and TAB load this module."""

from __future__ import annotations

from enum import Enum

import typer

from ..common import Format, FormatOption, JsonOption, output_format, ui_of
from ..reads import engine

commands = typer.Typer()


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@commands.command()
def doctor(ctx: typer.Context, output: Format = FormatOption, as_json: bool = JsonOption) -> int:
    """Check the engine, the base image, the sidecar images, the default ports and the CA; change nothing.
    Exit 0: all is ready; 1: something is missing (each line says what to do)."""
    from ...certs import CertificateAuthority
    from ...runtime.doctor import diagnose

    found = diagnose(engine(), CertificateAuthority())
    ui_of(ctx).doctor(found, output_format(output, as_json))
    return 0 if all(f.ok for f in found) else 1


@commands.command()
def version(ctx: typer.Context,
            short: bool = typer.Option(False, "--short", help="Only meshctl's version number (asks no engine)."),
            output: Format = FormatOption) -> None:
    """meshctl's version, the engine's (when it can be reached) and the sidecar images' tags."""
    from ... import __version__

    if short:
        ui_of(ctx).plain(__version__)
        return
    from ...runtime.doctor import versions

    ui_of(ctx).versions(versions(engine()), output)


@commands.command()
def completion(ctx: typer.Context, shell: Shell = typer.Argument(..., help="The shell to complete in.")) -> None:
    """Print the shell completion script. bash: `source <(meshctl completion bash)` in ~/.bashrc;
    zsh: the same in ~/.zshrc; fish: `meshctl completion fish > ~/.config/fish/completions/meshctl.fish`."""
    from typer.completion import get_completion_script

    ui_of(ctx).document(get_completion_script(prog_name="meshctl", complete_var="_MESHCTL_COMPLETE",
                                              shell=shell.value) + "\n")
