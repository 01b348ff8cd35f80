"""Columns aligned by padding, for the tables `stat` and `trace` print: rich's Table measures every
cell of every row (about 50 ms for a 20-span waterfall, a sixth of the 0.3 s these commands may
take), and these tables need nothing but padding, a bold header and a colour here and there."""

from __future__ import annotations

from collections.abc import Sequence

from .styled import escape

Cell = str | tuple[str, str]      # its text, or (text, rich style)


def aligned(header: Sequence[str], rows: Sequence[Sequence[Cell]], *, right: frozenset[int] = frozenset()) -> str:
    """The header and the rows as rich markup, a line each: every column as wide as its widest
    text, left-aligned (those in `right`: right-aligned), one space between columns."""
    cells = [[(text, "bold") for text in header], *[[_split(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i][0]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        out = []
        for i, (text, style) in enumerate(row):
            shown = f"[{style}]{escape(text)}[/]" if style and text else escape(text)
            pad = " " * (widths[i] - len(text))
            out.append(pad + shown if i in right else shown + pad)
        lines.append(" ".join(out).rstrip())
    return "\n".join(lines)


def _split(cell: Cell) -> tuple[str, str]:
    return (cell, "") if isinstance(cell, str) else cell
