"""meshctl export: a project's mesh.yaml as what another platform runs. `k8s` writes Kubernetes
objects: meshctl's own pods (native sidecars, capture, configs for cluster names, NetworkPolicy,
cert-manager Certificates), or the same mesh handed to Istio or Linkerd. Pure: objects out, no
cluster, no Docker, no printing (the CLI writes the files and says what did not map).

    objects.py  options, the result, names, labels, ServiceAccount, Service, Certificate, Secret
    pods.py     --mesh meshctl: planning's pods translated, ConfigMaps, probes, NetworkPolicy
    istio.py    --mesh istio
    linkerd.py  --mesh linkerd
    k8s.py      the flavour chosen, apply order, the header, the YAML stream or files by kind

May import: meshctl.planning and everything below it."""

from .k8s import dump, export_k8s, files_by_kind, secrets_text, stream
from .objects import CERTS, MESHES, SECRETS_FILE, Export, ExportOptions

__all__ = ["CERTS", "MESHES", "SECRETS_FILE", "Export", "ExportOptions", "dump", "export_k8s", "files_by_kind",
           "secrets_text", "stream"]
