"""`meshctl export k8s` really runs: the shop's web and api pods, exported with `--certs local`, under
`podman kube play` (Debian's podman 4.3; .ci/setup-podman installs it). The test-only adaptation
is the only difference, because podman is not a cluster: the native sidecars become plain containers
(podman ignores an initContainer's restartPolicy), the pod restarts Never (init containers under
Always are flaky), Deployments become Pods named for their services (no Services, no cluster
DNS: the proxies' configs name the pods), and the certificates ride in ConfigMaps (podman does not
decode a Secret's data and has no projected volumes), and no containerPorts (podman 4.3 publishes
each on the host: the pods are reached at their own addresses). Then: HTTPS to web answers, verified against
meshctl's CA; web's plain call to http://api:8080 is captured, crosses both proxies with mutual
TLS, and api sees web's SPIFFE identity."""

from __future__ import annotations

import base64
import copy
import json
import socket
import ssl
import subprocess
from pathlib import Path

import docker
import pytest
import yaml

from meshctl.engine.docker import DockerEngine
from meshctl.model import labels
from meshctl.planning.images import build_network, sidecar_images
from meshctl.sidecars import data_dir
from tests.support import ca_path, copy_shop, eventually, run_meshctl, unique_project

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "localhost"          # podman load names an unqualified image localhost/NAME: the export says so too
SERVICES = ("web", "api")
PLAY_TIMEOUT = 180


def podman(*args: str, timeout: float = 60, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}: {result.stderr.decode()[-2000:]}")
    return result


def images_of(objects: list[dict]) -> set[str]:
    return {c["image"] for o in objects if o["kind"] == "Deployment"
            for c in o["spec"]["template"]["spec"].get("initContainers", []) + o["spec"]["template"]["spec"]["containers"]}


def build_images(project: Path, name: str, wanted: set[str]) -> None:
    """The app images as the export names them, meshctl's sidecar images by their content hash,
    built with meshctl's engine boundary when missing."""
    engine = DockerEngine()
    for folder, ref in sidecar_images().items():
        tagged = f"{REGISTRY}/{ref}"
        if tagged in wanted and engine.image_id(tagged) is None:
            if engine.image_id(ref) is None:
                engine.build(data_dir("sidecars") / folder, ref, labels=labels(None, sidecar=folder), network_mode=build_network())
            docker.from_env().images.get(ref).tag(tagged)
    for service in SERVICES:
        ref = next(i for i in wanted if i.startswith(f"{REGISTRY}/{name}-{service}:"))
        if engine.image_id(ref) is None:
            engine.build(project / service, ref, labels=labels(None), network_mode=build_network())


def load_into_podman(refs: set[str]) -> None:
    """docker save | podman load, through the Docker SDK's image save."""
    client = docker.from_env()
    for ref in sorted(refs):
        if podman("image", "exists", ref, check=False).returncode == 0:
            continue
        data = b"".join(client.images.get(ref).save(named=ref))     # this tag: the same image may have others
        podman("load", input=data, timeout=300)


def for_podman(objects: list[dict], secrets: list[dict], namespace: str) -> list[dict]:
    """The test-only adaptation (the module's docstring says why each)."""
    certs = {s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()} for s in secrets}
    maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    out = []
    for deployment in (o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] in SERVICES):
        name = deployment["metadata"]["name"]
        pod = copy.deepcopy(deployment["spec"]["template"])
        spec = pod["spec"]
        spec.pop("serviceAccountName", None)
        spec["restartPolicy"] = "Never"
        sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
        spec["initContainers"] = [c for c in spec.get("initContainers", []) if c not in sidecars]
        for container in sidecars:
            for key in ("restartPolicy", "startupProbe", "readinessProbe"):
                container.pop(key, None)
        for container in spec["containers"]:
            container.pop("startupProbe", None)
            container.pop("readinessProbe", None)
        spec["containers"] = sidecars + spec["containers"]
        for container in spec["containers"]:
            container.pop("ports", None)       # podman 4.3 publishes each containerPort on the host
        for volume in spec.get("volumes", []):
            if "projected" in volume:
                sources = volume.pop("projected")["sources"]
                config = copy.deepcopy(maps[sources[0]["configMap"]["name"]])
                for source in sources[1:]:
                    files = certs[source["secret"]["name"]]
                    config["data"].update({item["path"]: files[item["key"]] for item in source["secret"]["items"]})
                for text in config["data"].values():
                    assert isinstance(text, str)
                config["data"] = {k: v.replace(f".{namespace}.svc.cluster.local", "") for k, v in config["data"].items()}
                config["metadata"]["name"] += "-podman"
                out.append(config)
                volume["configMap"] = {"name": config["metadata"]["name"]}
            elif "secret" in volume:
                secret = volume.pop("secret")
                files = certs[secret["secretName"]]
                ca = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-ca-podman"},
                      "data": {item["path"]: files[item["key"]] for item in secret["items"]}}
                out.append(ca)
                volume["configMap"] = {"name": ca["metadata"]["name"]}
        out.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": pod["metadata"]["labels"]},
                    "spec": spec})
    return out


def pod_ip(name: str) -> str:
    infra = podman("pod", "inspect", name, "--format", "{{.InfraContainerID}}").stdout.decode().strip()
    return podman("inspect", infra, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}").stdout.decode().strip()


def https_get(ip: str, host: str, path: str) -> tuple[int, str]:
    """GET over HTTPS to a pod's address, verifying the certificate for `host` against meshctl's CA."""
    context = ssl.create_default_context(cafile=str(ca_path()))
    with socket.create_connection((ip, 15443), timeout=10) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def test_the_exported_shop_runs_under_podman_kube_play_with_mutual_tls(tmp_path):
    project = copy_shop(tmp_path / "shop")
    name = unique_project("k8s")
    text = (project / "mesh.yaml").read_text().replace("name: shop", f"name: {name}")
    (project / "mesh.yaml").write_text(text)
    out = tmp_path / "k8s"
    run_meshctl("export", "k8s", "--path", str(project), "-o", str(out), "--certs", "local", "--registry", REGISTRY,
                check=True)
    objects = [o for f in sorted(out.glob("0*.yaml")) for o in yaml.safe_load_all(f.read_text()) if o]
    secrets = [o for o in yaml.safe_load_all((out / "secrets.yaml").read_text()) if o]
    played = for_podman(objects, secrets, name)
    wanted = images_of([o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] in SERVICES])
    build_images(project, name, wanted)
    load_into_podman(wanted)
    manifest = tmp_path / "play.yaml"
    manifest.write_text(yaml.safe_dump_all(played, sort_keys=False))
    for pod in SERVICES:          # a run killed before its teardown left them
        podman("pod", "rm", "-f", pod, check=False)
    try:
        podman("kube", "play", str(manifest), timeout=PLAY_TIMEOUT)
        # web's app calls http://api:8080: the pods' network must resolve names (.ci/setup-podman).
        dns = podman("network", "inspect", "podman-default-kube-network", "--format", "{{.DNSEnabled}}")
        assert dns.stdout.decode().strip() == "true", "podman's kube network has no DNS: run .ci/setup-podman"
        web, api = pod_ip("web"), pod_ip("api")

        def web_answers() -> tuple[int, str] | None:
            try:
                return https_get(web, "web", "/healthz")
            except OSError:
                return None

        status, _ = eventually(web_answers, timeout=90, what="HTTPS to web's pod")
        assert status == 200

        def web_calls_api() -> dict | None:
            try:
                _, body = https_get(web, "web", "/call?url=http://api:8080/whoami")
            except OSError:
                return None
            answer = json.loads(body)
            return answer if answer["status"] == 200 else None

        answer = eventually(web_calls_api, timeout=90, what="web → api through both proxies")
        whoami = json.loads(answer["body"])
        assert whoami["caller"] == f"spiffe://meshctl.local/ns/{name}/sa/web", whoami
        assert f"By=spiffe://meshctl.local/ns/{name}/sa/api" in whoami["xfcc"]
        # Strict mTLS: api's app port refuses a plain connection from outside its pod.
        with pytest.raises(OSError):
            socket.create_connection((api, 8080), timeout=5).close()
    finally:
        logs = podman("pod", "logs", "api", check=False).stdout.decode()[-3000:]
        podman("kube", "down", str(manifest), check=False, timeout=PLAY_TIMEOUT)
        for pod in SERVICES:
            podman("pod", "rm", "-f", pod, check=False)
        for config in played:
            if config["kind"] == "ConfigMap":
                podman("volume", "rm", "-f", config["metadata"]["name"], check=False)
        apps = [ref for ref in wanted if ref.startswith(f"{REGISTRY}/{name}-")]
        podman("rmi", "-f", *apps, check=False)
        for ref in apps:
            docker.from_env().images.remove(ref, force=True)
        print(logs)
