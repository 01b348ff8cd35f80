"""`meshctl inject` and `meshctl uninject`: sidecars into a compose file and out again, from a file,
a folder or stdin, to stdout, a file or the file itself. The layers below are imported inside the
commands: `-h` and TAB load this module."""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ...errors import EngineError, UsageError
from ..common import COMPOSE_NAMES, QuietOption, compose_file, ui_of
from ..reads import engine

if TYPE_CHECKING:
    from ...certs import CertificateAuthority
    from ...inject import InjectResult, Machine
    from ..ui import Ui

commands = typer.Typer()

ComposeFileArg = typer.Argument(None, help="The compose file, or a folder with one; - reads stdin (default: "
                                           "compose.yaml or docker-compose.yml in this folder).")
OutputOption = typer.Option(None, "--output", "-o", help="Write the result here instead of stdout.")
InPlaceOption = typer.Option(False, "--in-place", "-i", help="Rewrite FILE atomically, keeping the old one as FILE.bak.")


@commands.command()
def inject(ctx: typer.Context, file: str | None = ComposeFileArg,
           output: Path | None = OutputOption,
           in_place: bool = InPlaceOption,
           service: list[str] = typer.Option(
               [], "--service", "-s",
               help="Inject only this service (repeatable; default: every service that publishes a port)."),
           keep_plain: bool = typer.Option(
               False, "--keep-plain", help="Keep the app's plain published ports; HTTPS gets a port of its own."),
           tcp: str = typer.Option(
               "proxy", "--tcp", help="Services that do not speak HTTP: proxy (TCP proxy with connection metrics) or skip."),
           project: str | None = typer.Option(
               None, "--project", "-p", help="Compose project name (default: the file's name: or its folder's)."),
           no_build: bool = typer.Option(
               False, "--no-build", help="Do not build the sidecar images now (`docker compose up` needs them)."),
           portable: bool = typer.Option(
               False, "--portable", help="Configs, certificates and image build contexts in .meshctl/ next to the "
                                         "file, named by relative paths (keys gitignored): commit the pair, share it."),
           undo: bool = typer.Option(
               False, "--uninject", help="Take the sidecars out instead: the same as `meshctl uninject`."),
           quiet: bool = QuietOption) -> None:
    """Give services of a docker-compose file a pod: a holder owning the namespace and ports, a proxy
    (HTTPS, or TCP for what does not speak HTTP) and metrics (idempotent; uninject gives the bytes back)."""
    from ...home import meshctl_home
    from ...inject import InjectOptions, inject_text

    ui = ui_of(ctx, quiet=quiet)
    if undo:
        return _uninject(ui, file, output, in_place)
    text, source, path = _read_compose(file, output, in_place)
    folder = (path.parent if path else Path.cwd()).resolve()
    # Where the written file will live (--portable's paths are relative to it): -o's folder, else the input's.
    base = output.parent.resolve() if output is not None else folder
    home = meshctl_home()
    machine = _machine(project or _compose_project_name(text, folder), folder, home, portable=portable)
    options = InjectOptions(services=tuple(service), keep_plain=keep_plain, tcp=tcp)
    result = inject_text(text, options, machine, source)
    if result.injected:
        ca = _sidecars_ready(ui, result, home, base, build=not no_build, portable=portable)
    _write_compose(ui, result.text, text, path, output, in_place)
    for line in [*(i.summary for i in result.injected), *(s.summary for s in result.skipped),
                 *_override_notes(path, result, in_place=in_place)]:
        ui.note(line)
    if result.injected:
        ui.note(f"trust the CA for HTTPS: {ca.cert_path}")
    elif not result.skipped:
        ui.note(f"{source}: nothing was injected: it has no services")
    else:
        ui.note(f"{source}: nothing was injected" + (" (--service chooses which)" if not service else ""))


def _machine(name: str, folder: Path, home: Path, *, portable: bool) -> Machine:
    """What the output depends on besides the file. The sidecars' files go to .meshctl/ beside the
    file (--portable), else to one folder per compose file's location: two checkouts never share configs."""
    from ...inject import ROLES, Machine
    from ...inject.portable import build_contexts, state_dir
    from ...planning.images import sidecar_refs

    return Machine(project=name, images=sidecar_refs(ROLES), user=f"{os.getuid()}:{os.getgid()}",
                   state_dir=state_dir() if portable else home / "compose" / f"{name}-{_short_hash(str(folder))}",
                   builds=build_contexts(ROLES) if portable else {})


def _override_notes(path: Path | None, result: InjectResult, *, in_place: bool) -> list[str]:
    """compose.override.yaml beside a file `docker compose` finds by itself: said, not read."""
    from ...inject.override import override_notes

    if path is None or path.name not in COMPOSE_NAMES:
        return []
    return override_notes(path, {item.service for item in result.injected}, in_place=in_place)


def _sidecars_ready(ui: Ui, result: InjectResult, home: Path, base: Path, *, build: bool,
                    portable: bool) -> CertificateAuthority:
    """The sidecar images built (unless --no-build) and their configs and certificates written
    (relative paths: to `base`, the written file's folder; --portable adds .meshctl/'s own files)."""
    from ...certs import CertificateAuthority
    from ...inject.files import write_sidecar_files
    from ...inject.portable import write_portable_files
    from ...runtime.stack import ensure_sidecar_images

    if build:
        try:
            ensure_sidecar_images(engine(), result.roles, ui)
        except EngineError as exc:
            raise EngineError(exc.message, hint=f"{exc.hint or 'start Docker'}; or pass --no-build to "
                                                "write the file now and build the images later") from exc
    ca = CertificateAuthority(home)
    write_sidecar_files(result, ca, base)
    if portable:
        write_portable_files(base, result.roles)
    return ca


@commands.command()
def uninject(ctx: typer.Context, file: str | None = ComposeFileArg, output: Path | None = OutputOption,
             in_place: bool = InPlaceOption, quiet: bool = QuietOption) -> None:
    """Take out everything `meshctl inject` added: the original services and ports come back."""
    _uninject(ui_of(ctx, quiet=quiet), file, output, in_place)


def _uninject(ui: Ui, file: str | None, output: Path | None, in_place: bool) -> None:
    from ...inject import uninject_text

    text, source, path = _read_compose(file, output, in_place)
    result = uninject_text(text, source)
    _write_compose(ui, result.text, text, path, output, in_place)
    if result.restored or result.removed:
        ui.note(f"removed {len(result.removed)} generated services; gave back "
                + (", ".join(result.restored) or "no service") + " what inject changed")
    else:
        ui.note(f"{source}: nothing meshctl injected")


def _read_compose(file: str | None, output: Path | None, in_place: bool) -> tuple[str, str, Path | None]:
    """The compose text, a name for messages, and its path (None for stdin)."""
    if in_place and output is not None:
        raise UsageError("--in-place and --output both say where to write", hint="pass one of them")
    if file == "-":
        if in_place:
            raise UsageError("--in-place needs a file, not stdin", hint="pass the file's path, or -o FILE")
        return sys.stdin.read(), "<stdin>", None
    path = compose_file(Path(file) if file is not None else None)
    if output is None and not in_place:
        _refuse_stdout_into(path)
    try:
        return path.read_bytes().decode("utf-8"), str(path), path
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text, so not a compose file", hint="pass the compose file") from exc


def _refuse_stdout_into(path: Path) -> None:
    """`meshctl inject compose.yaml > compose.yaml`: the shell emptied the file before we ran."""
    try:
        out_stat, in_stat = os.fstat(sys.stdout.fileno()), path.stat()
    except (OSError, ValueError, AttributeError):
        return      # stdout is no file (a pipe, a test's capture)
    if stat.S_ISREG(out_stat.st_mode) and (out_stat.st_dev, out_stat.st_ino) == (in_stat.st_dev, in_stat.st_ino):
        raise UsageError(f"stdout is {path} itself: the shell emptied it before meshctl could read it",
                         hint=f"restore {path} (git checkout, or {path.name}.bak) and use --in-place "
                              "or -o OTHER_FILE")


def _write_compose(ui: Ui, text: str, original: str, path: Path | None, output: Path | None,
                   in_place: bool) -> None:
    from ...home import atomic_write

    if in_place and path is not None:
        if text == original:
            ui.note(f"{path}: unchanged")
            return
        mode = path.stat().st_mode & 0o777
        atomic_write(path.with_name(path.name + ".bak"), original.encode(), mode=mode)
        atomic_write(path, text.encode(), mode=mode)
        ui.success(f"wrote {path} (the previous version is {path.name}.bak)")
    elif output is not None:
        atomic_write(output, text.encode(), mode=0o644)
        ui.success(f"wrote {output}")
    else:
        ui.document(text)


def _compose_project_name(text: str, folder: Path) -> str:
    """What docker compose would call the project: `name:`, else the folder's name, normalized."""
    declared = re.search(r"^name:[ \t]*['\"]?([^'\"#\s]+)", text, re.MULTILINE)
    raw = declared.group(1) if declared and "$" not in declared.group(1) else folder.name
    return re.sub(r"[^a-z0-9_-]", "", raw.lower()).lstrip("_-") or "default"


def _short_hash(text: str) -> str:
    import hashlib     # here: ~6 ms, and every other command imports this module

    return hashlib.sha256(text.encode()).hexdigest()[:8]
