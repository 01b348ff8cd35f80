"""Everything meshctl shows a person: build progress, the status table, interleaved logs, check
results, errors. The only package that prints: terminal.py (Ui, which renders the domain's events
and the commands' results), checks.py (meshctl test's live table), streams.py (stdout and stderr
that a closed pipe cannot break), version.py (the line `meshctl --version` prints before typer
loads: so this package imports its modules when they are first asked for). May import everything
in meshctl below the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .streams import PipeSafe
    from .terminal import Ui

__all__ = ["PipeSafe", "Ui"]


def __getattr__(name: str) -> Any:
    if name == "Ui":
        from .terminal import Ui

        return Ui
    if name == "PipeSafe":
        from .streams import PipeSafe

        return PipeSafe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
