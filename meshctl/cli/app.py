"""The command line. Each command parses its options, calls one function, renders the result;
MeshctlError is turned into a red message and an exit code here and nowhere else."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
import typer.core

from .. import __version__
from ..engine.docker import DockerEngine
from ..certs import CertificateAuthority, atomic_write, meshctl_home
from ..config import runtimes
from ..config import CONFIG_NAMES, find_config, load_project, sanitize_name
from ..errors import Cancelled, MeshctlError, UsageError
from ..model import HOLDER, selector
from ..planning.images import sidecar_refs
from ..sidecars import data_dir
from ..runtime.stack import Stack, down_all, down_project, ensure_sidecar_images, plan_down_project
from ..runtime.status import project_names, status
from ..runtime.supervise import Interrupts, Reloader, Tracker, follow_logs, supervise
from .ui import Ui

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_show_locals=False,
                  help="Run a local service the way it runs in a service mesh: TLS, proxy and metrics "
                       "sidecars in one network namespace, living and dying with this command.")
certs_app = typer.Typer(no_args_is_help=True, help="meshctl's local certificate authority.")
app.add_typer(certs_app, name="certs")

PathArg = typer.Argument(Path("."), help="A folder with mesh.yaml (or a Dockerfile, or just your code and "
                                          "`-- CMD`), or a mesh.yaml file.")
RuntimeOption = typer.Option(None, "--runtime", help="With -- CMD: the runtime to run it in (node, python, go; "
                             "default: picked from the folder's package.json, pyproject.toml, requirements.txt, go.mod).")


class _CommandAfterDashes(typer.core.TyperCommand):
    """`meshctl up [OPTIONS] [PATH] -- CMD ARGS…`: everything after `--` is the app's command
    (Dapr's `dapr run -- node app.js`), kept apart from PATH, in ctx.meta["app_command"]."""

    def parse_args(self, ctx, args):
        if "--" in args:
            at = args.index("--")
            ctx.meta["app_command"] = tuple(args[at + 1:])
            args = args[:at]
        return super().parse_args(ctx, args)


def _app_command(ctx: typer.Context) -> tuple[str, ...] | None:
    command = ctx.meta.get("app_command")
    if command is not None and not command:
        raise UsageError("nothing after `--`: give the command that runs your app",
                         hint="meshctl up -- node server.js")
    return command


def main() -> None:
    try:
        app()
    except MeshctlError as exc:  # raised outside a command body (rare)
        Ui().error(exc)
        sys.exit(exc.exit_code)


def _run(ui: Ui, body) -> None:
    try:
        code = body()
    except Cancelled:
        ui.stop_progress()
        ui.note("interrupted: everything meshctl started was removed")
        raise typer.Exit(130)
    except MeshctlError as exc:
        ui.error(exc)
        raise typer.Exit(exc.exit_code)
    except KeyboardInterrupt:
        ui.stop_progress()
        ui.note("interrupted: everything meshctl started was removed")
        raise typer.Exit(130)
    raise typer.Exit(code or 0)


@app.command(cls=_CommandAfterDashes)
def up(ctx: typer.Context, path: Path = PathArg,
       detach: bool = typer.Option(False, "--detach", "-d", help="Return once ready; leave the stack running."),
       wait: bool = typer.Option(True, "--wait/--no-wait",
                                 help="With -d: return only once every service serves through HTTPS → proxy → app "
                                      "(the default; non-zero if not in --timeout), or as soon as all is started."),
       image: Optional[str] = typer.Option(None, help="Wrap an existing image instead of a folder; with -- CMD, "
                                           "run CMD in it with the folder mounted at /app."),
       runtime: Optional[str] = RuntimeOption,
       port: Optional[int] = typer.Option(None, help="The port the app listens on inside the pod (with -- CMD: 8080)."),
       name: Optional[str] = typer.Option(None, "--project", "-p", help="Project name (default: mesh.yaml's name or the folder's)."),
       timeout: float = typer.Option(60.0, help="Seconds to wait for the stack to be ready."),
       no_watch: bool = typer.Option(False, "--no-watch", help="Do not reload on file changes."),
       dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (what would be built, created, "
                                    "replaced, reloaded or kept, and why) and change nothing."),
       as_json: bool = typer.Option(False, "--json", help="With --dry-run: print the plan as JSON."),
       ) -> None:
    """Build and start the services with their sidecars; stream logs; Ctrl-C removes everything.
    `meshctl up [PATH] -- CMD` runs CMD with no Dockerfile, in the folder's runtime."""
    ui = Ui()

    def body() -> int:
        if not wait and not detach:
            raise UsageError("--no-wait only makes sense with -d", hint="meshctl up -d --no-wait")
        project = load_project(path, image=image, port=port, name=name, command=_app_command(ctx), runtime=runtime)
        engine = DockerEngine()
        if dry_run:
            plan = Stack(engine, project, on_event=ui, tied=not detach, wait_serving=wait).plan_up()
            ui.plan([plan], as_json=as_json)
            return 0
        interrupts = Interrupts().install()
        tracker = Tracker(engine)
        stack = Stack(engine, project, on_event=ui, tied=not detach, watch=tracker, ready_timeout=timeout,
                      wait_serving=wait, cancel=interrupts.stop, force=interrupts.force)
        reloader = None if detach or no_watch else Reloader(stack, interrupts.stop, tracker.queue.put).start()
        try:
            running = stack.up()
            ui.status_table(running, str(stack.ca.cert_path), detached=detach)
            if detach:
                return 0
            return supervise(stack, tracker, running, interrupts, ui, reloader=reloader)
        finally:
            interrupts.restore()

    _run(ui, body)


@app.command("test", cls=_CommandAfterDashes)
def test_(ctx: typer.Context, path: Path = PathArg,
          junit: Optional[Path] = typer.Option(None, "--junit", help="Write a JUnit XML report to this file."),
          as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
          timeout: float = typer.Option(180.0, help="Seconds the stack may take to get ready (after builds)."),
          compose: Optional[Path] = typer.Option(None, "--compose", help="Check a stack made by `meshctl inject` "
                                                 "from this compose file instead of PATH's mesh.yaml."),
          name: Optional[str] = typer.Option(None, "--project", "-p", help="Project name (default: mesh.yaml's name + '-test')."),
          image: Optional[str] = typer.Option(None, help="With -- CMD: run CMD in this image, the folder at /app."),
          runtime: Optional[str] = RuntimeOption,
          port: Optional[int] = typer.Option(None, help="The port the app listens on inside the pod (with -- CMD: 8080)."),
          ) -> None:
    """Bring the stack up, run the built-in and mesh.yaml checks, write the report, tear it all down.
    Exit 0: all passed; 1: a check failed; 2: bad configuration or usage; 3: the stack could not start."""
    from ..testing import session as smoke
    from ..testing.junit import render_junit

    ui = Ui()
    if as_json:
        ui.results = ui.err

    def body() -> int:
        if junit is not None:
            _writable(junit, "--junit")
        interrupts = Interrupts().install()
        try:
            if compose is not None:
                report = _compose_test(compose, interrupts, ui, timeout)
            else:
                command = _app_command(ctx)
                if image is not None and command is None:
                    raise UsageError("meshctl test --image needs the command to run in it after --",
                                     hint=f"meshctl test --image {image} -- CMD")
                project = smoke.isolated(load_project(path, name=name, image=image, port=port, command=command,
                                                      runtime=runtime), rename=name is None)
                report = smoke.run_smoke_test(DockerEngine(), project, interrupts=interrupts, on_event=ui,
                                              ready_timeout=timeout)
        finally:
            interrupts.restore()
        if junit is not None:
            atomic_write(junit, render_junit(report).encode(), mode=0o644)
            ui.report_written("JUnit", str(junit))
        ui.test_report(report, as_json=as_json)
        if report.error is not None:
            if any(s.logs for s in report.services):
                report.error.details = None   # its lines are among the logs just shown
            raise report.error
        return report.exit_code

    _run(ui, body)


def _writable(target: Path, option: str) -> None:
    """Fail before starting anything when a report could not be written."""
    if target.is_dir():
        raise UsageError(f"{option} {target}: is a folder", hint=f"give a file name, e.g. {option} report.xml")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {target}: cannot create its folder: {exc.strerror}") from exc


def _compose_test(compose: Path, interrupts: Interrupts, ui: Ui, timeout: float):
    from ..testing.compose_mode import run_compose_test

    return run_compose_test(DockerEngine(), _compose_file(compose), interrupts=interrupts, on_event=ui,
                            ready_timeout=timeout)


@app.command()
def down(path: Path = PathArg,
         all_: bool = typer.Option(False, "--all", help="Remove every meshctl stack on this engine."),
         name: Optional[str] = typer.Option(None, "--project", "-p", help="Project name instead of PATH."),
         force: bool = typer.Option(False, "--force", help="Kill at once instead of stopping gracefully."),
         dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be removed, and remove nothing."),
         as_json: bool = typer.Option(False, "--json", help="With --dry-run: print the plan as JSON."),
         volumes: bool = typer.Option(False, "--volumes", "-v", help="Also remove the dependency caches "
                                      "(`up -- CMD` keeps them between runs)."),
         ) -> None:
    """Stop and remove a stack (idempotent). Dependency caches stay unless --volumes."""
    ui = Ui()

    def body() -> int:
        engine = DockerEngine()
        if dry_run:
            names = project_names(engine) if all_ else [name or _project_name(path)]
            ui.plan([plan_down_project(engine, n, force=force, volumes=volumes) for n in names], as_json=as_json)
            return 0
        if all_:
            removed = {project: r for project, r in down_all(engine, force=force, volumes=volumes).items() if r}
            for project, what in removed.items():
                ui.note(f"{project}: {what.summary()}")
            ui.success(f"removed {sum(r.containers for r in removed.values())} containers of {len(removed)} projects"
                       if removed else "no meshctl stacks were running")
            return 0
        project = name or _project_name(path)
        ui.success(f"{project}: {down_project(engine, project, force=force, volumes=volumes).summary()}")
        return 0

    _run(ui, body)


@app.command()
def ps(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
       name: Optional[str] = typer.Option(None, "--project", "-p", help="Only this project.")) -> None:
    """Projects, services, containers, their state and URLs."""
    ui = Ui()
    _run(ui, lambda: ui.ps(status(DockerEngine(), name, home=meshctl_home()), as_json=as_json))


@app.command()
def logs(service: Optional[str] = typer.Argument(None, help="Only this service."),
         path: Path = typer.Option(Path("."), "--path", help="The project's folder."),
         name: Optional[str] = typer.Option(None, "--project", "-p", help="Project name instead of --path."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming new lines."),
         tail: int = typer.Option(100, help="Lines from the end of each container's log.")) -> None:
    """Logs of a stack's containers, prefixed by service and role."""
    from ..events import LogLine

    ui = Ui()

    def body() -> int:
        engine = DockerEngine()
        project = name or _project_name(path, running_fallback=engine)
        wanted = selector(project, service=service) if service else selector(project)
        containers = [c for c in engine.containers(wanted, all=False) if c.role != HOLDER]
        if not containers:
            raise UsageError(f"no running containers for {project}" + (f"/{service}" if service else ""),
                             hint="`meshctl ps` lists what runs")
        if not follow:
            for c in containers:
                for line in engine.logs(c.id, follow=False, tail=tail):
                    ui.log_line(LogLine(c.service, c.role, line))
            return 0
        for line in follow_logs(engine, containers, tail=tail):
            ui.log_line(line)
        return 0

    _run(ui, body)


@certs_app.command("ca")
def certs_ca() -> None:
    """Print the path of the CA certificate to trust, creating the CA on first use."""
    ui = Ui()
    _run(ui, lambda: ui.plain(str(CertificateAuthority().ensure())))


@app.command()
def init(path: Path = typer.Argument(Path("."), help="The folder to write mesh.yaml in."),
         force: bool = typer.Option(False, help="Overwrite an existing mesh.yaml.")) -> None:
    """Write a commented mesh.yaml."""
    ui = Ui()

    def body() -> int:
        target = path / "mesh.yaml"
        if target.exists() and not force:
            raise UsageError(f"{target} already exists", hint="pass --force to overwrite it")
        from ..config import dockerfile_exposed_port
        dockerfile = path / "Dockerfile"
        port = dockerfile_exposed_port(dockerfile.read_text()) if dockerfile.is_file() else None
        name = sanitize_name(path.resolve().name) or "app"
        text = (data_dir("templates") / "mesh.yaml").read_text().replace("{name}", name).replace(
            "{port}", str(port or 8080))
        atomic_write(target, text.encode())
        ui.success(f"wrote {target}; now run `meshctl up {path}`")
        return 0

    _run(ui, body)


@app.command()
def doctor() -> None:
    """Check the engine, the base image, the sidecar images, the default ports and the CA."""
    ui = Ui()

    def body() -> int:
        from ..runtime.doctor import diagnose

        found = diagnose(DockerEngine(), CertificateAuthority())
        ui.doctor([(f.name, f.ok, f.detail) for f in found])
        return 0 if all(f.ok for f in found) else 1

    _run(ui, body)


@app.command()
def version() -> None:
    """Print meshctl's version."""
    print(__version__)


COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
ComposeFileArg = typer.Argument(None, help="The compose file, or a folder with one; - reads stdin (default: "
                                           "compose.yaml or docker-compose.yml in this folder).")
OutputOption = typer.Option(None, "--output", "-o", help="Write the result here instead of stdout.")
InPlaceOption = typer.Option(False, "--in-place", "-i", help="Rewrite FILE atomically, keeping the old one as FILE.bak.")


@app.command()
def inject(file: Optional[str] = ComposeFileArg,
           output: Optional[Path] = OutputOption,
           in_place: bool = InPlaceOption,
           service: list[str] = typer.Option([], "--service", "-s",
                                             help="Inject only this service (repeatable; default: every service that publishes a port)."),
           keep_plain: bool = typer.Option(False, "--keep-plain", help="Keep the app's plain published ports; HTTPS gets a port of its own."),
           tcp: str = typer.Option("proxy", "--tcp", help="Services that do not speak HTTP: proxy (TCP proxy with connection metrics) or skip."),
           project: Optional[str] = typer.Option(None, "--project", "-p", help="Compose project name (default: the file's name: or its folder's)."),
           no_build: bool = typer.Option(False, "--no-build", help="Do not build the sidecar images now (`docker compose up` needs them)."),
           undo: bool = typer.Option(False, "--uninject", help="Take the sidecars out instead: the same as `meshctl uninject`."),
           ) -> None:
    """Give services of a docker-compose file a pod: a holder owning the namespace and ports, a proxy
    (HTTPS, or TCP for what does not speak HTTP) and metrics (idempotent; uninject gives the bytes back)."""
    ui = Ui()

    def body() -> int:
        import os

        from ..errors import EngineError
        from ..inject import ROLES, InjectOptions, Machine, inject_text
        from ..inject.files import write_sidecar_files

        if undo:
            return _uninject(ui, file, output, in_place)
        text, source, path = _read_compose(file, output, in_place)
        folder = (path.parent if path else Path.cwd()).resolve()
        name = project or _compose_project_name(text, folder)
        home = meshctl_home()
        machine = Machine(project=name, images=sidecar_refs(ROLES), user=f"{os.getuid()}:{os.getgid()}",
                          # One folder per compose file's location: two checkouts never share configs.
                          state_dir=home / "compose" / f"{name}-{_short_hash(str(folder))}")
        options = InjectOptions(services=tuple(service), keep_plain=keep_plain, tcp=tcp)
        result = inject_text(text, options, machine, source)
        if result.injected:
            if not no_build:
                try:
                    ensure_sidecar_images(DockerEngine(), result.roles, ui)
                except EngineError as exc:
                    raise EngineError(exc.message, hint=f"{exc.hint or 'start Docker'}; or pass --no-build to "
                                                        "write the file now and build the images later") from exc
            ca = CertificateAuthority(home)
            write_sidecar_files(result, ca)
        _write_compose(ui, result.text, text, path, output, in_place)
        for line in [*(i.summary for i in result.injected), *(s.summary for s in result.skipped)]:
            ui.note(line)
        if result.injected:
            ui.note(f"trust the CA for HTTPS: {ca.cert_path}")
        elif not result.skipped:
            ui.note(f"{source}: nothing was injected: it has no services")
        else:
            ui.note(f"{source}: nothing was injected" + (" (--service chooses which)" if not service else ""))
        return 0

    _run(ui, body)


@app.command()
def uninject(file: Optional[str] = ComposeFileArg, output: Optional[Path] = OutputOption,
             in_place: bool = InPlaceOption) -> None:
    """Take out everything `meshctl inject` added: the original services and ports come back."""
    ui = Ui()
    _run(ui, lambda: _uninject(ui, file, output, in_place))


def _uninject(ui: Ui, file: Optional[str], output: Optional[Path], in_place: bool) -> int:
    from ..inject import uninject_text

    text, source, path = _read_compose(file, output, in_place)
    result = uninject_text(text, source)
    _write_compose(ui, result.text, text, path, output, in_place)
    if result.restored or result.removed:
        ui.note(f"removed {len(result.removed)} generated services; gave back "
                + (", ".join(result.restored) or "no service") + " what inject changed")
    else:
        ui.note(f"{source}: nothing meshctl injected")
    return 0


def _read_compose(file: Optional[str], output: Optional[Path], in_place: bool) -> tuple[str, str, Optional[Path]]:
    """The compose text, a name for messages, and its path (None for stdin)."""
    import os
    import stat

    if in_place and output is not None:
        raise UsageError("--in-place and --output both say where to write", hint="pass one of them")
    if file == "-":
        if in_place:
            raise UsageError("--in-place needs a file, not stdin", hint="pass the file's path, or -o FILE")
        return sys.stdin.read(), "<stdin>", None
    path = _compose_file(Path(file) if file is not None else None)
    if output is None and not in_place:
        # `meshctl inject compose.yaml > compose.yaml`: the shell empties the file before we run.
        try:
            out_stat, in_stat = os.fstat(sys.stdout.fileno()), path.stat()
            if stat.S_ISREG(out_stat.st_mode) and (out_stat.st_dev, out_stat.st_ino) == (in_stat.st_dev, in_stat.st_ino):
                raise UsageError(f"stdout is {path} itself: the shell emptied it before meshctl could read it",
                                 hint=f"restore {path} (git checkout, or {path.name}.bak) and use --in-place "
                                      "or -o OTHER_FILE")
        except (OSError, ValueError, AttributeError):
            pass
    try:
        return path.read_bytes().decode("utf-8"), str(path), path
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text, so not a compose file", hint="pass the compose file") from exc


def _compose_file(given: Optional[Path]) -> Path:
    """The file itself, or the compose file in a folder (no FILE: this folder), found the way
    `docker compose` finds it."""
    folder = Path(".") if given is None else given
    if given is not None and not given.is_dir():
        if given.is_file():
            return given
        raise UsageError(f"{given}: no such file", hint="pass the compose file's path, or - to read stdin")
    found = next((folder / n for n in COMPOSE_NAMES if (folder / n).is_file()), None)
    if found is not None:
        return found
    where = "this folder" if given is None else f"{given} is a folder, and it"
    yamls = sorted(p.name for p in folder.iterdir() if p.suffix in (".yaml", ".yml")) if folder.is_dir() else []
    raise UsageError(f"{where} has no compose file ({', '.join(COMPOSE_NAMES)})",
                     hint=(f"its YAML files: {', '.join(yamls)}; pass one of them" if yamls
                           else "pass the compose file's path, or - to read stdin"))


def _write_compose(ui: Ui, text: str, original: str, path: Optional[Path], output: Optional[Path],
                   in_place: bool) -> None:
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
        sys.stdout.write(text)
        sys.stdout.flush()


def _compose_project_name(text: str, folder: Path) -> str:
    """What docker compose would call the project: `name:`, else the folder's name, normalized."""
    import re

    declared = re.search(r"^name:[ \t]*['\"]?([^'\"#\s]+)", text, re.M)
    raw = declared.group(1) if declared and "$" not in declared.group(1) else folder.name
    return re.sub(r"[^a-z0-9_-]", "", raw.lower()).lstrip("_-") or "default"


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _project_name(path: Path, running_fallback: DockerEngine | None = None) -> str:
    """The project a PATH names, without building anything."""
    if find_config(path) is not None or (path / "Dockerfile").is_file():
        return load_project(path).name
    if path.is_dir() and runtimes.detect(path.resolve(), None) is not None:
        return sanitize_name(path.resolve().name) or "app"     # what `up -- CMD` named it
    if running_fallback is not None:
        names = project_names(running_fallback)
        if len(names) == 1:
            return names[0]
    raise UsageError(f"{path.resolve()}: no {CONFIG_NAMES[0]} or Dockerfile, so no project name",
                     hint="pass the project's folder, or --project NAME (`meshctl ps` lists them)")


if __name__ == "__main__":
    main()
