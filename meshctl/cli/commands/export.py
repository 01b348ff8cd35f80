"""`meshctl export k8s`: the project as Kubernetes objects (meshctl's own sidecars, or the mesh
handed to Istio or Linkerd). The layers below are imported inside the command: `-h` and TAB load
this module."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ...errors import UsageError
from ..common import QuietOption, ui_of
from ..reads import engine

commands = typer.Typer(no_args_is_help=True, help="The project as another platform runs it.")


PathOption = typer.Option(Path("."), "--path", help="A mesh.yaml, or a folder with one (default: this folder).")
OutputOption = typer.Option("-", "--output", "-o", help="A folder (one file per kind), or - for one YAML stream on stdout.")
NamespaceOption = typer.Option(None, "--namespace", help="The namespace (default: the project's name).")
RegistryOption = typer.Option("", "--registry", help="Where images built from folders go: REG/<project>-<service>:<hash>.")
MeshOption = typer.Option("meshctl", "--mesh", help="meshctl (its own sidecars, as native sidecars), istio or linkerd.")
CertsOption = typer.Option("cert-manager", "--certs", help="cert-manager: Certificate objects, no key in the output; "
                                                           "local: Secrets from meshctl's CA in a separate 0600 file.")
PushOption = typer.Option(False, "--push", help="Build the images built from folders and push them to --registry.")
IssuerOption = typer.Option("meshctl-ca", "--issuer", help="cert-manager's issuer: NAME (an Issuer) or ClusterIssuer/NAME.")


@commands.command("k8s")
def export_k8s(ctx: typer.Context, path: Path = PathOption, output: str = OutputOption, namespace: str | None = NamespaceOption,
               registry: str = RegistryOption, mesh: str = MeshOption, certs: str = CertsOption, issuer: str = IssuerOption,
               push: bool = PushOption, quiet: bool = QuietOption) -> None:
    """Write the project as Kubernetes objects: per service a ServiceAccount, Deployment and Service,
    its sidecars' configs, certificates and policies. Deterministic; what does not map is one line on stderr."""
    from ...config import find_config, load_project
    from ...export import SECRETS_FILE, ExportOptions, export_k8s as build, files_by_kind, secrets_text, stream

    ui = ui_of(ctx, quiet=quiet)
    project = load_project(path)
    source = find_config(path)
    options = ExportOptions(namespace=namespace or project.name, registry=registry, mesh=mesh, certs=certs,
                            issuer=issuer, source=str(source or path))
    if certs == "local" and output == "-" and mesh == "meshctl":
        raise UsageError("--certs local writes private keys to a file of their own, not to stdout",
                         hint="give a folder: -o DIR (the Secrets go to DIR/secrets.yaml, mode 0600)")
    if push and not registry:
        raise UsageError("--push needs a registry to push to", hint="add --registry REG (say registry.example.com/team)")
    export = build(project, options, issue=_local_issuer())
    if push:
        from ...runtime.push import push_images

        for ref in push_images(engine(), export.builds, on_event=ui):
            ui.note(f"pushed {ref}")
    for line in export.unmapped:
        ui.notice(f"not exported: {line}")
    if output == "-":
        ui.document(stream(export))
        return
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files_by_kind(export).items():
        (folder / name).write_text(text, encoding="utf-8")
    if export.secrets:
        secrets = folder / SECRETS_FILE
        fd = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets_text(export))
        ui.notice(f"warning: {secrets} holds private keys of meshctl's local CA (mode 0600): for a throwaway "
                   "development cluster only; keep it out of git")
    ui.note(f"wrote {folder}/ ({len(export.objects)} objects)")


def _local_issuer():
    """--certs local: each certificate issued by meshctl's local CA in a folder that is removed at once."""
    import tempfile     # here: ~4 ms, and every other command imports this module

    from ...certs import CertificateAuthority

    def issue(sans: tuple[str, ...], common_name: str, unit: str | None) -> tuple[bytes, bytes, bytes]:
        ca = CertificateAuthority()
        ca.ensure()
        with tempfile.TemporaryDirectory(prefix="meshctl-export-") as folder:
            issued = ca.issue(Path(folder), sans, common_name=common_name, unit=unit)
            return issued.cert_path.read_bytes(), issued.key_path.read_bytes(), issued.ca_path.read_bytes()

    return issue
