"""Everything meshctl shows a person: build progress, the status table, interleaved logs, check
results, errors. The only package that prints: terminal.py (Ui, which renders the domain's events
and the commands' results), checks.py (meshctl test's live table), streams.py (stdout and stderr
that a closed pipe cannot break). May import everything in meshctl below the CLI."""

from .streams import PipeSafe
from .terminal import Ui

__all__ = ["PipeSafe", "Ui"]
