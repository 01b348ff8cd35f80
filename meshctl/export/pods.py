"""`--mesh meshctl`: the pods as `meshctl up` runs them, as Kubernetes runs them. The containers come
from planning/pod.py's build_pod (the same users, commands, environment, capabilities and read-only
roots as locally), their probes from the sidecar kinds' Readiness, their configs from
render_configs for the cluster's names; this module only translates: a ContainerSpec into a
container, the proxy and metrics sidecars into native sidecars (initContainers with
restartPolicy: Always, Kubernetes 1.29+), the capture step into an init container holding
NET_ADMIN only, the config folders into ConfigMaps, and `allow:` into a NetworkPolicy."""

from __future__ import annotations

import posixpath
from dataclasses import replace
from pathlib import Path, PurePosixPath

from ..config import ProjectSpec, ServiceSpec
from ..model import APP, ContainerSpec, labels
from ..planning.steps import BuildImage
from ..planning.images import sidecar_images, user_sidecar_image_ref
from ..planning.pod import APP_CA_BUNDLE, Pod, build_pod
from ..sidecars import (CAPTURE, MESH_PORT, METRICS_PORT, PROXY_PORT, TLS_PORT, Readiness,
                        captures, kind_of, kinds_for, render_configs, serving_readiness, tls_kind)
from ..sidecars.data import data_dir
from ..sidecars.faults import seeded_files
from ..sidecars.otlp import OTLP_FORWARD
from .objects import (Export, ExportOptions, Obj, app_image, app_labels, certificate, cluster_of, metadata,
                      object_labels, registry_ref, secret_name, service_account, service_object)

# The uid:gid every container runs as unless meshctl's pod says otherwise (the capture step: root).
POD_USER = "10001:10001"
STATE = Path("/meshctl-export")        # build_pod's config folders live here: each becomes a volume
# From the soak (docs/soak.md): the proxy holds 7.4–8.5 MiB, the metrics sidecar 14.7 MiB over an
# hour; requests at about twice that, limits with room for a burst of connections and spans.
RESOURCES = {
    "proxy": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    "tls": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    "metrics": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "96Mi"}},
    CAPTURE: {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}},
}
# The proxy reloads (SIGUSR2 to HAProxy's master, no connection dropped) when cert-manager renews
# the mounted certificate: kubelet swaps the files in place, HAProxy reads them only at a (re)load.
RENEWAL_WATCH = """haproxy -W -db "$@" & pid=$!
trap 'kill -TERM $pid' TERM INT
sum() { cat /etc/meshctl/bundle.pem /etc/meshctl/bundle.pem.key /etc/meshctl/ca.pem 2>/dev/null | cksum; }
seen=$(sum)
while kill -0 $pid 2>/dev/null; do
  sleep 10 & wait $!
  now=$(sum); [ "$now" = "$seen" ] || { seen=$now; echo "certificate renewed: reloading"; kill -USR2 $pid; }
done
wait $pid"""


def export_meshctl(project: ProjectSpec, options: ExportOptions, out: Export) -> None:
    images = {folder: registry_ref(options, ref) for folder, ref in sidecar_images().items()}
    for service in project.services:
        _unmapped(project, service, out)
        pod = _pod(project, service, options, images, out.builds)
        out.objects.append(service_account(project, service, options))
        out.objects.extend(_config_maps(project, service, options))
        if tls_kind(service) is not None and options.certs == "cert-manager":
            out.objects.append(certificate(project, service, options))
        out.objects.append(_deployment(project, pod, options))
        out.objects.append(service_object(project, service, options, sidecars=True))
        if service.mesh is not None:
            out.objects.append(network_policy(project, service, options))


def export_plain(project: ProjectSpec, options: ExportOptions, out: Export) -> None:
    """For Istio and Linkerd: each pod without meshctl's sidecars (their proxy replaces them), the
    app and the user's own sidecars as `up` runs them, its probes straight to the app's port."""
    images = {folder: registry_ref(options, ref) for folder, ref in sidecar_images().items()}
    for original in project.services:
        _unmapped(project, original, out)
        service = replace(original, proxy=None, tls=None, metrics=None, mesh=None, tracing=None)
        pod = _pod(project, service, options, images, out.builds)
        out.objects.append(service_account(project, original, options))
        out.objects.append(_deployment(project, pod, options))
        out.objects.append(service_object(project, original, options, sidecars=False))


def _unmapped(project: ProjectSpec, service: ServiceSpec, out: Export) -> None:
    where = f"services.{service.name}"
    if service.source is not None:
        out.unmapped.append(f"{where}.source: run mode mounts a local folder; the export names an image built "
                            "from it instead")
    if service.tracing is not None and kind_of(service, OTLP_FORWARD) is not None:
        out.unmapped.append(f"{where}: mesh.tracing's collector on the host's loopback is not reachable in a "
                            "cluster (no loopback forwarder); set a cluster address")
    if service.depends_on:
        out.unmapped.append(f"{where}.depends_on: pods start independently in a cluster (readiness gates traffic)")


def _builds(project: ProjectSpec, service: ServiceSpec, options: ExportOptions, refs: dict[str, str],
            builds: list[BuildImage]) -> None:
    """What `--push` builds: the app from its folder, the user's sidecars built from theirs, meshctl's
    sidecar images from sidecars/ (each tagged as the export names it)."""
    wanted = []
    if service.build is not None and not service.image:
        wanted.append(BuildImage(app_image(project, service, options), service.build,
                                 labels(project.name, service.name, version=False), f"services.{service.name}.build",
                                 service.name, service.build_options))
    for kind in kinds_for(service):
        if kind.user and kind.user_build is not None:
            wanted.append(BuildImage(refs[kind.role], kind.user_build,
                                     labels(project.name, service.name, version=False, sidecar=kind.role),
                                     f"services.{service.name}.sidecars.{kind.role}.build", service.name,
                                     kind.user_build_options))
    for role, ref in refs.items():
        own = kind_of(service, role)
        folder = own.image if own is not None and not own.user else CAPTURE if role == CAPTURE else None
        if folder:
            wanted.append(BuildImage(ref, data_dir("sidecars") / folder, labels(None, sidecar=folder),
                                     f"meshctl's {folder} sidecar image"))
    for build in wanted:
        if all(b.ref != build.ref for b in builds):
            builds.append(build)


def _pod(project: ProjectSpec, service: ServiceSpec, options: ExportOptions, images: dict[str, str],
         builds: list[BuildImage]) -> Pod:
    refs = {kind.role: (registry_ref(options, user_sidecar_image_ref(project.name, service.name, kind))
                        if kind.user_build is not None else user_sidecar_image_ref(project.name, service.name, kind))
            if kind.user else images[kind.image] for kind in kinds_for(service)}
    if captures(service):
        refs[CAPTURE] = images[CAPTURE]
    serving = tls_kind(service)
    _builds(project, service, options, refs, builds)
    return build_pod(project, service, app_image=app_image(project, service, options), sidecar_images=refs,
                     state_dir=STATE, tied=False, user=POD_USER,
                     ca_bundle=Path("/ca.crt") if serving is not None else None)


def _ids(user: str | None) -> Obj:
    if not user:
        return {}
    uid, _, gid = user.partition(":")
    out = {"runAsUser": int(uid)}
    if gid:
        out["runAsGroup"] = int(gid)
    if int(uid) == 0:
        out["runAsNonRoot"] = False
    return out


def _security(spec: ContainerSpec) -> Obj:
    caps: Obj = {"drop": ["ALL"]}
    if spec.cap_add:
        caps["add"] = sorted(spec.cap_add)
    return {**_ids(spec.user), "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": spec.read_only,
            "capabilities": caps}


def _volume_name(host: str) -> str:
    """A host folder of build_pod's → its volume: STATE/ROLE → ROLE-config."""
    path = PurePosixPath(host)
    if path.parent == PurePosixPath(STATE):
        return f"{path.name}-config"
    return "mesh-ca"


def _container(spec: ContainerSpec, name: str, service: ServiceSpec) -> Obj:
    out: Obj = {"name": name, "image": spec.image}
    if spec.entrypoint:
        out["command"] = list(spec.entrypoint)
    if spec.command:
        out["args"] = list(spec.command)
    if spec.env:
        out["env"] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    mounts = [{"name": _volume_name(host), "mountPath": posixpath.dirname(target) if target == APP_CA_BUNDLE else target,
               "readOnly": True}
              for host, target, _ in spec.mounts if _mapped_mount(host, service)]
    mounts += [{"name": f"{name}-{PurePosixPath(path).name}", "mountPath": path, "readOnly": False} for path in spec.tmpfs]
    if mounts:
        out["volumeMounts"] = mounts
    out["securityContext"] = _security(spec)
    return out


def _mapped_mount(host: str, service: ServiceSpec) -> bool:
    """build_pod's config folders and the CA bundle; watch.sync's local folders do not map."""
    return PurePosixPath(host).parent == PurePosixPath(STATE) or host == "/ca.crt"


def probe(readiness: Readiness, service: ServiceSpec) -> Obj:
    """A Readiness (sidecars/readiness.py) as kubelet runs it. HTTPS is not verified by kubelet;
    an exec check runs in the container itself (the pod's loopback is its own)."""
    if readiness.exec is not None:
        return {"exec": {"command": list(readiness.exec)}}
    port = {"https": TLS_PORT, "metrics": METRICS_PORT,
            "http": PROXY_PORT if service.proxy else service.port}[readiness.port]
    if readiness.path is None:
        return {"tcpSocket": {"port": port}}
    get: Obj = {"path": readiness.path, "port": port, "scheme": "HTTPS" if readiness.tls else "HTTP"}
    if readiness.headers:
        get["httpHeaders"] = [{"name": k, "value": v} for k, v in readiness.headers]
    return {"httpGet": get}


def _probes(readiness: Readiness | None, service: ServiceSpec) -> Obj:
    if readiness is None:
        return {}
    check = probe(readiness, service)
    return {"startupProbe": {**check, "periodSeconds": 1, "failureThreshold": 120, "timeoutSeconds": 3},
            "readinessProbe": {**check, "periodSeconds": 5, "failureThreshold": 3, "timeoutSeconds": 3}}


def _ports(role: str, service: ServiceSpec) -> list[Obj]:
    if role == "metrics":
        return [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
    if role not in ("proxy", "tls"):
        return []
    ports = []
    serving = tls_kind(service)
    if serving is not None and serving.role == role:
        ports.append({"name": "https", "containerPort": TLS_PORT, "protocol": "TCP"})
    if role == "proxy" and service.mesh is not None:
        ports.append({"name": "mesh", "containerPort": MESH_PORT, "protocol": "TCP"})
    return ports


def _sidecar(spec: ContainerSpec, service: ServiceSpec) -> Obj:
    kind = kind_of(service, spec.role)
    assert kind is not None
    out = _container(spec, spec.role, service)
    serving = tls_kind(service)
    if serving is not None and serving.role == spec.role:
        out["command"] = ["sh", "-c", RENEWAL_WATCH, "haproxy"]
    out["restartPolicy"] = "Always"
    if ports := _ports(spec.role, service):
        out["ports"] = ports
    out.update(_probes(kind.ready(service), service))
    if spec.role in RESOURCES:
        out["resources"] = RESOURCES[spec.role]
    return out


def _app(pod: Pod) -> Obj:
    service = pod.service
    out = _container(pod.app, APP, service)
    out["ports"] = [{"name": "app", "containerPort": service.port, "protocol": "TCP"}]
    out.update(_probes(serving_readiness(service), service))
    return out


def _volumes(pod: Pod, containers: list[Obj]) -> list[Obj]:
    service = pod.service
    serving = tls_kind(service)
    volumes: dict[str, Obj] = {}
    for role in pod.config_dirs:
        if role == OTLP_FORWARD:
            continue
        sources: list[Obj] = [{"configMap": {"name": f"{service.name}-{role}"}}]
        if serving is not None and serving.role == role:
            sources.append({"secret": {"name": secret_name(service), "items": [
                {"key": "tls.crt", "path": "bundle.pem"}, {"key": "tls.key", "path": "bundle.pem.key"},
                {"key": "ca.crt", "path": "ca.pem"}]}})
        volumes[f"{role}-config"] = {"name": f"{role}-config", "projected": {"sources": sources, "defaultMode": 0o440}}
    if serving is not None:
        volumes["mesh-ca"] = {"name": "mesh-ca", "secret": {"secretName": secret_name(service), "defaultMode": 0o444,
                                                            "items": [{"key": "ca.crt", "path": "ca-bundle.pem"}]}}
    for container in containers:
        for mount in container.get("volumeMounts", ()):
            if not mount["readOnly"]:
                volumes[mount["name"]] = {"name": mount["name"], "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}
    used = {m["name"] for c in containers for m in c.get("volumeMounts", ())}
    return [v for name, v in sorted(volumes.items()) if name in used]


def _deployment(project: ProjectSpec, pod: Pod, options: ExportOptions) -> Obj:
    service = pod.service
    init = []
    if pod.capture is not None:
        capture = _container(pod.capture, CAPTURE, service)
        capture["resources"] = RESOURCES[CAPTURE]
        init.append(capture)
    init += [_sidecar(spec, service) for spec in pod.sidecars if spec.role != OTLP_FORWARD]
    containers = [_app(pod)]
    uid, _, gid = POD_USER.partition(":")
    spec: Obj = {
        "serviceAccountName": service.name, "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": max(round(service.stop_grace_period), 1),
        "securityContext": {"runAsNonRoot": True, "runAsUser": int(uid), "runAsGroup": int(gid), "fsGroup": int(gid),
                            "seccompProfile": {"type": "RuntimeDefault"}},
        **({"initContainers": init} if init else {}),
        "containers": containers,
    }
    if volumes := _volumes(pod, init + containers):
        spec["volumes"] = volumes
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
                   "prometheus.io/path": "/metrics"} if service.metrics is not None else {}
    template: Obj = {"metadata": {"labels": {**object_labels(project, service), **app_labels(project, service)}},
                     "spec": spec}
    if annotations:
        template["metadata"]["annotations"] = annotations
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": metadata(service.name, options, object_labels(project, service)),
            "spec": {"replicas": 1, "selector": {"matchLabels": app_labels(project, service)}, "template": template}}


def _config_maps(project: ProjectSpec, service: ServiceSpec, options: ExportOptions) -> list[Obj]:
    out = []
    for rendered in render_configs(project.name, service, cluster_of(options)):
        if rendered.role == OTLP_FORWARD:
            continue
        files = dict(rendered.files)
        if rendered.role == "proxy":
            files.update(seeded_files())
        out.append({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": metadata(f"{service.name}-{rendered.role}", options, object_labels(project, service)),
                    "data": dict(sorted(files.items()))})
    return out


def callers_of(project: ProjectSpec, service: ServiceSpec) -> list[str] | None:
    """The services whose pods may reach this one's mesh port: None for any of the project's."""
    mesh = service.mesh
    assert mesh is not None
    if mesh.allow is None or any(rule.callers is None for rule in mesh.allow):
        return None
    return sorted({c for rule in mesh.allow for c in rule.callers or ()})


def network_policy(project: ProjectSpec, service: ServiceSpec, options: ExportOptions) -> Obj:
    """Defence in depth under the mesh listener's own gate: only the allowed callers' pods reach the
    mesh port; HTTPS and metrics stay open (clients, kubelet, Prometheus); with `mtls: permissive`
    the project's pods may also call the app's port in plain text."""
    mesh = service.mesh
    assert mesh is not None
    project_pods = [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": project.name}}}]
    callers = callers_of(project, service)
    ingress: list[Obj] = []
    if callers is None or callers:
        sources = project_pods if callers is None else [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": c, "app.kubernetes.io/part-of": project.name}}}
            for c in callers]
        ingress.append({"from": sources, "ports": [{"protocol": "TCP", "port": MESH_PORT}]})
    open_ports = ([TLS_PORT] if tls_kind(service) is not None else []) + ([METRICS_PORT] if service.metrics else [])
    if open_ports:
        ingress.append({"ports": [{"protocol": "TCP", "port": p} for p in open_ports]})
    if mesh.mtls == "permissive":
        ingress.append({"from": project_pods, "ports": [{"protocol": "TCP", "port": service.port}]})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(service.name, options, object_labels(project, service)),
            "spec": {"podSelector": {"matchLabels": app_labels(project, service)}, "policyTypes": ["Ingress"],
                     "ingress": ingress}}

