"""`meshctl doctor` and `meshctl version`: whether this machine can run meshctl, and which one it is."""

from __future__ import annotations

import typer

from ... import __version__
from ...certs import CertificateAuthority
from ...runtime.doctor import diagnose
from ..common import engine, ui_of

commands = typer.Typer()


@commands.command()
def doctor(ctx: typer.Context) -> int:
    """Check the engine, the base image, the sidecar images, the default ports and the CA."""
    found = diagnose(engine(), CertificateAuthority())
    ui_of(ctx).doctor([(f.name, f.ok, f.detail) for f in found])
    return 0 if all(f.ok for f in found) else 1


@commands.command()
def version(ctx: typer.Context) -> None:
    """Print meshctl's version."""
    ui_of(ctx).plain(__version__)
