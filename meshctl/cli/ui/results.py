"""What the commands hand the ui to show: the status table, ps, dry-run plans, doctor's findings,
versions, and the same as JSON or YAML for scripts (-o). A part of Ui (terminal.py)."""

from __future__ import annotations

import functools
import json
import sys
from typing import TYPE_CHECKING, Any

from .styled import console, escape, styled

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from ...planning.steps import Plan
    from ...runtime.doctor import Finding
    from ...runtime.faults import ServiceFaults
    from ...runtime.stack import RunningPod
    from ...runtime.status import ServiceStatus


class Results:
    """Ui's results: stdout for what a command answers, stderr for notes."""

    quiet: bool

    @functools.cached_property
    def out(self) -> Console:
        return console(sys.stdout)

    @functools.cached_property
    def err(self) -> Console:
        return console(sys.stderr)

    def note(self, text: str, *, style: str = "") -> None:
        """A line for the person, on stderr (not with -q)."""
        if not self.quiet:
            self.err.print(styled(text, style=style))

    def notice(self, text: str) -> None:
        """A line the person must see, even with -q."""
        self.err.print(styled(text))

    def success(self, text: str) -> None:
        if not self.quiet:
            self.err.print(f"[green]✓[/] {escape(text)}")

    # -- results ---------------------------------------------------------------------------------

    def status_table(self, running: list[RunningPod], ca_path: str, *, detached: bool) -> None:
        self.out.print(self._urls_table("meshctl: ready", [(p.service, p.urls) for p in running]))
        self.out.print(f"[dim]trust the CA: {escape(ca_path)}   (curl --cacert {escape(ca_path)} …)[/]")
        if detached:
            self.out.print("[dim]running in the background; `meshctl down` removes it[/]")
        else:
            self.out.print("[dim]Ctrl-C stops and removes everything[/]")

    def ps(self, statuses: list[ServiceStatus], *, output: str = "text") -> None:
        if output != "text":
            self.data([s.as_json() for s in statuses], output)
            return
        if not statuses:
            self.out.print("no meshctl stacks are running")
            return
        groups = []
        for s in statuses:
            state = s.state if s.state == "running" else f"{s.state}: " + ", ".join(
                f"{c['role']} {c['state']}" for c in s.containers)
            groups.append((f"{s.project}/{s.service} ({state})", s.urls))
        self.out.print(self._urls_table(None, groups))
        for s in statuses:
            self._mesh_line(s)
            if s.faults:
                self.out.print(f"{escape(s.project)}/{escape(s.service)}: faults: {escape(s.faults)}")

    def fault_set(self, faults: ServiceFaults) -> None:
        self.out.print(f"{escape(faults.project)}/{escape(faults.service)}: {escape(_faults_text(faults))}")

    def fault_list(self, services: list[ServiceFaults], *, output: str = "text") -> None:
        if output != "text":
            self.data([s.as_json() for s in services], output)
            return
        for s in services:
            self.fault_set(s)

    def _mesh_line(self, s: ServiceStatus) -> None:
        """Where a service stands in the mesh: its identity, mTLS and callers, or outside it."""
        if not s.mesh:
            return
        if s.mesh.get("outside"):
            self.out.print(f"{escape(s.project)}/{escape(s.service)}: outside the mesh (no sidecars): reached "
                           "by name in plain TCP, without mTLS or identity")
            return
        allow = s.mesh.get("allow")
        callers = "every service of the project" if allow is None else ", ".join(allow) or "no one"
        tcp = " (TCP)" if s.mesh.get("protocol") == "tcp" else ""
        self.out.print(f"{escape(s.project)}/{escape(s.service)}: {escape(s.mesh.get('identity') or '')}, "
                       f"mTLS {escape(s.mesh.get('mtls') or '')}{tcp}, callers: {escape(callers)}")

    @staticmethod
    def _urls_table(title: str | None, groups: list[tuple[str, dict[str, str]]]) -> Table:
        """One row per URL, grouped under its service: narrow enough for any terminal."""
        from rich.table import Table

        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for column in ("service", "endpoint", "url"):
            table.add_column(column, no_wrap=True, overflow="ignore")
        for label, urls in groups:
            kinds: list[str] = [k for k in ("https", "http", "metrics") if k in urls] or ["–"]
            for index, kind in enumerate(kinds):
                table.add_row(label if index == 0 else "", kind, urls.get(kind, "–"))
        return table

    def plan(self, plans: list[Plan], *, output: str = "text") -> None:
        """`--dry-run`: each step, what it acts on, and why; nothing was changed."""
        if output != "text":
            self.data([p.as_json() for p in plans], output)
            self.note("dry run: nothing was built, created or changed")
            return
        from ...planning.steps import describe

        for plan in plans:
            steps = plan.all_steps()
            self.out.print(f"[bold]plan for {escape(plan.project)}[/]"
                           + ("" if plan.changes else " [dim](no changes)[/]"))
            if not steps:
                self.out.print("  [dim]nothing to do[/]")
            for service, step in steps:
                row = describe(step)
                target = row["target"] if isinstance(row["target"], str) else ", ".join(row["target"])
                where = f"{service}: " if service else ""
                style = "dim" if row["step"] in ("Keep", "Announce", "WaitReady", "AwaitServices") else ""
                line = styled(f"  {where}{row['step']} ", style=style)
                line.append(target, style=style if style else "bold")
                line.append(f"  ({row['why']})", style="dim")
                self.out.print(line)
        self.note("dry run: nothing was built, created or changed", style="dim")

    def plain(self, text: str) -> None:
        print(text)

    def data(self, value: Any, output: str) -> None:
        """A result for scripts on stdout: JSON (-o json) or YAML (-o yaml)."""
        self.document(dumps(value, output))

    def document(self, text: str) -> None:
        """A whole file on stdout, byte for byte (inject's output, for a pipe or a redirect)."""
        sys.stdout.write(text)
        sys.stdout.flush()

    def validated(self, source: str, project: str, services: list[str], output: str = "text") -> None:
        """`meshctl validate` on a valid file (quiet with -q: a hook's success says nothing)."""
        if output != "text":
            self.data({"valid": True, "file": source, "project": project, "services": services}, output)
            return
        self.success(f"{source}: valid (project {project}: {', '.join(services)})")

    def doctor(self, findings: list[Finding], output: str = "text") -> None:
        if output != "text":
            self.data([f.as_json() for f in findings], output)
            return
        for f in findings:
            mark = "[green]✓[/]" if f.ok else "[red]✗[/]"
            self.out.print(f"{mark} {escape(f.name)}: {escape(f.detail)}")

    def versions(self, found: dict[str, Any], output: str = "text") -> None:
        """`meshctl version`: meshctl's, the engine's, the sidecar images' tags."""
        if output != "text":
            self.data(found, output)
            return
        engine = found["engine"]
        reached = f"{engine['version']} (API {engine['api_version']})" if "error" not in engine else engine["error"]
        lines = [f"meshctl {found['meshctl']}", f"engine: {reached}", "sidecar images:"]
        for image in found["sidecar_images"].values():
            built = {True: "", False: " (not built yet)", None: ""}[image["built"]]
            lines.append(f"  {image['image']}{built}")
        self.plain("\n".join(lines))


def dumps(value: Any, output: str) -> str:
    """JSON or YAML text of a result, ending in a newline."""
    if output == "yaml":
        import yaml

        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
    return json.dumps(value, indent=2) + "\n"


def _faults_text(faults: ServiceFaults) -> str:
    """What applies now, and where it comes from."""
    from ...sidecars.faults import describe as describe_fault

    active = "; ".join(describe_fault(f) for f in faults.active) or "no faults"
    return active + (" (live, `meshctl fault --clear` ends it)" if faults.live is not None
                     else " (mesh.yaml)" if faults.declared else "")
