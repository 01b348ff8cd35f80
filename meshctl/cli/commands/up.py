"""`meshctl up`, `down`, `ps` and `logs`: a stack's life on the engine. The layers below are imported
inside each command: `-h` and TAB load this module, and should not pay for the Docker SDK."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ...errors import UsageError
from ..common import (
    AccessOption,
    CommandAfterDashes,
    Format,
    FormatOption,
    JsonOption,
    PathArg,
    PlanFormatOption,
    Progress,
    ProgressOption,
    QuietOption,
    RuntimeOption,
    VerboseOption,
    app_command,
    output_format,
    ui_of,
)
from ..reads import engine, project_name

if TYPE_CHECKING:
    from ...config import ProjectSpec
    from ..ui import Ui

commands = typer.Typer()


@commands.command(cls=CommandAfterDashes)
def up(ctx: typer.Context, path: Path = PathArg,
       detach: bool = typer.Option(False, "--detach", "-d", help="Return once ready; leave the stack running."),
       wait: bool = typer.Option(True, "--wait/--no-wait",
                                 help="With -d: return only once every service serves through HTTPS → proxy → app "
                                      "(the default; non-zero if not in --timeout), or as soon as all is started."),
       image: str | None = typer.Option(None, help="Wrap an existing image instead of a folder; with -- CMD, "
                                           "run CMD in it with the folder mounted at /app."),
       runtime: str | None = RuntimeOption,
       port: int | None = typer.Option(None, help="The port the app listens on inside the pod (with -- CMD: 8080)."),
       name: str | None = typer.Option(None, "--project", "-p", help="Project name (default: mesh.yaml's name or the folder's)."),
       timeout: float = typer.Option(60.0, help="Seconds to wait for the stack to be ready."),
       no_watch: bool = typer.Option(False, "--no-watch", help="Do not reload on file changes."),
       dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (what would be built, created, "
                                    "replaced, reloaded or kept, and why) and change nothing."),
       output: Format = PlanFormatOption, as_json: bool = JsonOption,
       quiet: bool = QuietOption, progress: Progress = ProgressOption,
       verbose: bool = VerboseOption, access: bool = AccessOption,
       ) -> int:
    """Build and start the services with their sidecars; stream logs; Ctrl-C removes everything.
    `meshctl up [PATH] -- CMD` runs CMD with no Dockerfile, in the folder's runtime."""
    from ...config import load_project
    from ...runtime.stack import Stack, plan_offline

    ui = ui_of(ctx, quiet=quiet, progress=progress)
    ui.verbose, ui.access = verbose, access
    if not wait and not detach:
        raise UsageError("--no-wait only makes sense with -d", hint="meshctl up -d --no-wait")
    output = output_format(output, as_json)
    project = load_project(path, image=image, port=port, name=name, command=app_command(ctx), runtime=runtime)
    if dry_run:
        plan_offline(project)        # what needs no engine is checked (and said) before the engine is asked
        plan = Stack(engine(), project, on_event=ui, tied=not detach, wait_serving=wait).plan_up()
        ui.plan([plan], output=output)
        return 0
    return _run(ui, project, detach=detach, wait=wait, timeout=timeout, watch=not no_watch)


def _run(ui: Ui, project: ProjectSpec, *, detach: bool, wait: bool, timeout: float, watch: bool) -> int:
    from ...runtime.stack import Stack
    from ...runtime.supervise import Interrupts, Reloader, Tracker, supervise

    docker = engine()
    interrupts = Interrupts().install()
    tracker = Tracker(docker)
    stack = Stack(docker, project, on_event=ui, tied=not detach, watch=tracker, ready_timeout=timeout,
                  wait_serving=wait, cancel=interrupts.stop, force=interrupts.force)
    reloader = None if detach or not watch else Reloader(stack, interrupts.stop, tracker.queue.put).start()
    try:
        running = stack.up()
        ui.status_table(running, str(stack.ca.cert_path), detached=detach)
        if detach:
            return 0
        return supervise(stack, tracker, running, interrupts, ui, reloader=reloader)
    finally:
        interrupts.restore()


@commands.command()
def down(ctx: typer.Context, path: Path = PathArg,
         all_: bool = typer.Option(False, "--all", help="Remove every meshctl stack on this engine."),
         name: str | None = typer.Option(None, "--project", "-p", help="Project name instead of PATH."),
         force: bool = typer.Option(False, "--force", help="Kill at once instead of stopping gracefully."),
         dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be removed, and remove nothing."),
         output: Format = PlanFormatOption, as_json: bool = JsonOption, quiet: bool = QuietOption,
         volumes: bool = typer.Option(False, "--volumes", "-v", help="Also remove the dependency caches "
                                      "(`up -- CMD` keeps them between runs)."),
         ) -> None:
    """Stop and remove a stack (idempotent). Dependency caches stay unless --volumes."""
    from ...runtime.stack import down_all, down_project, plan_down_project
    from ...runtime.status import project_names

    ui = ui_of(ctx, quiet=quiet)
    output = output_format(output, as_json)
    docker = engine()
    if dry_run:
        names = project_names(docker) if all_ else [name or project_name(path)]
        ui.plan([plan_down_project(docker, n, force=force, volumes=volumes) for n in names], output=output)
        return
    if all_:
        removed = {project: r for project, r in down_all(docker, force=force, volumes=volumes).items() if r}
        for project, what in removed.items():
            ui.note(f"{project}: {what.summary()}")
        ui.success(f"removed {sum(r.containers for r in removed.values())} containers of {len(removed)} projects"
                   if removed else "no meshctl stacks were running")
        return
    project = name or project_name(path)
    ui.success(f"{project}: {down_project(docker, project, force=force, volumes=volumes).summary()}")


@commands.command()
def ps(ctx: typer.Context, output: Format = FormatOption, as_json: bool = JsonOption,
       name: str | None = typer.Option(None, "--project", "-p", help="Only this project.")) -> None:
    """Projects, services, containers, their state and URLs."""
    from ...home import meshctl_home
    from ...runtime.status import status

    output = output_format(output, as_json)
    ui_of(ctx).ps(status(engine(), name, home=meshctl_home()), output=output)


@commands.command()
def logs(ctx: typer.Context, service: str | None = typer.Argument(None, help="Only this service."),
         path: Path = typer.Option(Path("."), "--path", help="The project's folder."),
         name: str | None = typer.Option(None, "--project", "-p", help="Project name instead of --path."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming new lines."),
         tail: int = typer.Option(100, help="Lines from the end of each container's log."),
         role: str | None = typer.Option(None, "--role", help="Only this container of each pod (app, proxy, "
                                         "metrics, …), every line as written (the access log: metrics)."),
         verbose: bool = VerboseOption, access: bool = AccessOption) -> None:
    """Logs of a stack's containers, prefixed by service and role: what `meshctl up` shows (the
    apps' lines, sidecars' only when they matter); -v or --role for every line as written."""
    from ...events import LogLine
    from ...model import HOLDER, selector
    from ...runtime.supervise import follow_logs

    ui = ui_of(ctx)
    ui.verbose, ui.access = verbose or role is not None, access
    docker = engine()
    project = name or project_name(path, running_fallback=docker)
    wanted = selector(project, service=service) if service else selector(project)
    containers = [c for c in docker.containers(wanted, all=False)
                  if c.role != HOLDER and (role is None or c.role == role)]
    if not containers:
        raise UsageError(f"no running containers for {project}" + (f"/{service}" if service else "")
                         + (f" with the role {role}" if role else ""), hint="`meshctl ps` lists what runs")
    if not follow:
        for c in containers:
            for line in docker.logs(c.id, follow=False, tail=tail):
                ui.container_line(LogLine(c.service, c.role, line))
        return
    for event in follow_logs(docker, containers, tail=tail):
        ui.container_line(event)
