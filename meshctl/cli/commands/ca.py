"""`meshctl certs ca`: meshctl's local certificate authority."""

from __future__ import annotations

import typer

from ..common import ui_of

commands = typer.Typer(no_args_is_help=True, help="meshctl's local certificate authority.")


@commands.command("ca")
def certs_ca(ctx: typer.Context) -> None:
    """Print the path of the CA certificate to trust, creating the CA on first use."""
    from ...certs import CertificateAuthority

    ui_of(ctx).plain(str(CertificateAuthority().ensure()))
