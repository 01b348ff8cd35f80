"""meshctl inject: give services of a compose file a pod (a holder that owns the network namespace
and the published ports) with proxy and metrics sidecars, and take them out again.

Text in, text out, and nothing else: no Docker, no printing (files.py and portable.py write what
the CLI asks them to; the rest touches no file). The result is the original
text with a few edits (render.py); every other byte stays as it was. Injecting first takes out
anything injected before (uninject.py), so injecting twice changes nothing, and uninject gives back
the original bytes.

    names.py     the names written and read back (x-meshctl, NAME-mesh-ROLE, x-meshctl-KEY)
    document.py  the file as libyaml nodes with positions; values read as Compose reads them
    ports.py     the published-port grammar
    port_choice.py  which port to wrap, HTTP only on evidence (config/port_protocol.py), TCP otherwise
    inject_plan.py  which services, which port and protocol, what moves to the holder
    render.py    the plan written into the text
    uninject.py  every edit taken out again
    files.py     what the injected file mounts, written to disk (the CLI calls it)
    portable.py  --portable: .meshctl/ next to the file, relative paths, build contexts, .gitignore
    override.py  what to say about a compose.override.yaml beside the file
"""

from __future__ import annotations

import dataclasses
import difflib
import re

from ..errors import ConfigError
from . import document as doc
from .names import GENERATED_ROLES, MARK, ROLES, TERMINATES_TLS, holder_name, sidecar_name, sidecar_of
from .inject_plan import InjectOptions, Machine, Skipped, plan, services_of
from .render import InjectResult, Injected, render
from .uninject import UninjectResult, uninject

__all__ = [
    "GENERATED_ROLES",
    "MARK",
    "ROLES",
    "TERMINATES_TLS",
    "InjectOptions",
    "InjectResult",
    "Injected",
    "Machine",
    "Skipped",
    "UninjectResult",
    "holder_name",
    "inject_text",
    "sidecar_name",
    "sidecar_of",
    "uninject_text",
]


BOM = "\ufeff"     # kept where it was; libyaml's positions do not count it


def inject_text(text: str, options: InjectOptions, machine: Machine, source: str) -> InjectResult:
    """The text with the selected services injected (anything injected before taken out first)."""
    if text.startswith(BOM):
        result = inject_text(text[1:], options, machine, source)
        return dataclasses.replace(result, text=BOM + result.text)
    base = uninject(text, source)
    try:
        document = base.document if base.text == text and base.document else doc.parse(base.text, source)
        plans, skipped = plan(document, options)
    except ConfigError as exc:
        raise _on_original_lines(exc, base.text, text, source) from exc
    if not plans:
        return InjectResult(base.text, (), tuple(skipped))
    rendered, injected = render(document, services_of(document), plans, machine, base.generated)
    return InjectResult(rendered, tuple(injected), tuple(skipped))


def uninject_text(text: str, source: str) -> UninjectResult:
    if text.startswith(BOM):
        result = uninject(text[1:], source)
        return dataclasses.replace(result, text=BOM + result.text)
    return uninject(text, source)


def _on_original_lines(error: ConfigError, base: str, text: str, source: str) -> ConfigError:
    """An error found in the text without meshctl's parts, with the line it has in the file."""
    match = re.match(rf"^{re.escape(source)}:(\d+):", error.message)
    if base == text or match is None:
        return error
    line = int(match.group(1)) - 1
    matcher = difflib.SequenceMatcher(None, base.splitlines(), text.splitlines(), autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        if a <= line < a + size:
            message = f"{source}:{b + line - a + 1}:" + error.message[match.end():]
            return ConfigError(message, hint=error.hint)
    return error
