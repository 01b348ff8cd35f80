"""rich, imported where it is first used: a command that prints a plain line or JSON
(`version --short`, `ps -o json`, `validate -q`) never loads it."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any, cast

from .streams import PipeSafe

if TYPE_CHECKING:
    from rich.console import Console


def escape(text: str) -> str:
    """rich's markup escaped (rich is loaded by then: the text is about to be printed with it)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def styled(text: str = "", style: str = "") -> Any:
    from rich.text import Text

    return Text(text, style=style)


def console(stream: Any) -> Console:
    from rich.console import Console

    return Console(file=cast(IO[str], PipeSafe(stream)), highlight=False, soft_wrap=True)
