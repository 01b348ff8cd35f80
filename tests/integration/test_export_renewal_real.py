"""A renewed certificate reaches the exported proxy without a restart: kubelet swaps a renewed Secret's
files in place, and the proxy container of `meshctl export k8s` (its command as exported, meshctl's
HAProxy image, a read-only root, uid 10001) watches them and reloads HAProxy (SIGUSR2 to its
master: no connection dropped). Real engine: the served certificate changes, the container does not."""

from __future__ import annotations

import shutil
import socket
import ssl
from pathlib import Path

import docker
import pytest
from cryptography import x509

from meshctl.certs import CertificateAuthority
from meshctl.config import load_project
from meshctl.engine.docker import DockerEngine
from meshctl.export import ExportOptions, export_k8s
from meshctl.model import labels
from meshctl.planning.images import build_network, sidecar_image_ref
from meshctl.sidecars import data_dir
from tests.support import eventually, unique_project

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def served_serial(port: int) -> int:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw, server_hostname="hello") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def issue_into(ca: CertificateAuthority, scratch: Path, folder: Path) -> int:
    """A new certificate for hello, written over the mounted files as a Secret's renewal would be."""
    shutil.rmtree(scratch, ignore_errors=True)
    issued = ca.issue(scratch, ("hello", "localhost"), common_name="hello")
    for source, name in ((issued.cert_path, "bundle.pem"), (issued.key_path, "bundle.pem.key"), (issued.ca_path, "ca.pem")):
        (folder / f".{name}").write_bytes(source.read_bytes())
        (folder / f".{name}").chmod(0o644)
        (folder / f".{name}").replace(folder / name)
    return x509.load_pem_x509_certificate(issued.cert_path.read_bytes()).serial_number


def test_the_exported_proxy_reloads_a_renewed_certificate_without_a_restart(tmp_path):
    export = export_k8s(load_project(ROOT / "examples" / "hello"), ExportOptions(namespace="hello"))
    config = next(o for o in export.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "hello-proxy")
    deployment = next(o for o in export.objects if o["kind"] == "Deployment")
    proxy = next(c for c in deployment["spec"]["template"]["spec"]["initContainers"] if c["name"] == "proxy")
    folder = tmp_path / "etc"
    folder.mkdir()
    for name, text in config["data"].items():
        (folder / name).write_text(text)
    ca = CertificateAuthority(tmp_path / "home")
    ca.ensure()
    first = issue_into(ca, tmp_path / "first", folder)

    engine = DockerEngine()
    ref = sidecar_image_ref("haproxy")
    if engine.image_id(ref) is None:
        engine.build(data_dir("sidecars") / "haproxy", ref, labels=labels(None, sidecar="haproxy"), network_mode=build_network())
    assert proxy["image"] == ref
    client = docker.from_env()
    user = proxy["securityContext"]
    container = client.containers.run(
        ref, entrypoint=proxy["command"], command=proxy["args"], detach=True, name=unique_project("renewal"),
        user=f"{user['runAsUser']}:{user['runAsGroup']}", read_only=True, tmpfs={"/tmp": ""}, cap_drop=["ALL"],
        security_opt=["no-new-privileges"], labels=labels(unique_project("renewal")),
        volumes={str(folder): {"bind": "/etc/meshctl", "mode": "ro"}}, ports={"15443/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = int(container.ports["15443/tcp"][0]["HostPort"])
        assert eventually(lambda: served_serial(port) == first, timeout=30, what="the first certificate served")
        second = issue_into(ca, tmp_path / "second", folder)
        assert second != first
        eventually(lambda: served_serial(port) == second, timeout=40, what="the renewed certificate served",
                   detail=lambda: container.logs().decode()[-2000:])
        container.reload()
        assert container.status == "running" and container.attrs["RestartCount"] == 0
        assert "certificate renewed: reloading" in container.logs().decode()
    finally:
        container.remove(force=True)
