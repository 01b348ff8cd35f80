"""What the exported objects must pass besides their schemas: strict validation (unknown fields are
errors) with kubernetes-validate against Kubernetes 1.33, custom resources against the CRD schemas
checked in under tests/schemas/, and the rules the API server applies that no schema says."""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parent / "schemas"
K8S_VERSION = "1.33.0"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")          # RFC 1123, ≤ 63
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")               # a Service's name
PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")  # IANA_SVC_NAME, ≤ 15, no "--"
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
CORE_GROUPS = ("v1", "apps/v1", "networking.k8s.io/v1")


def validate_all(objects: list[dict[str, Any]]) -> None:
    """Every object strictly against its schema, then the API server's own rules."""
    for obj in objects:
        validate_object(obj)
    api_server_rules(objects)


def validate_object(obj: dict[str, Any]) -> None:
    if obj["apiVersion"] in CORE_GROUPS:
        try:
            _core_validator(obj["apiVersion"], obj["kind"]).validate(obj)
        except jsonschema.ValidationError as exc:
            raise kubernetes_validate.ValidationError(exc, version=K8S_VERSION) from exc
        return
    _crd_validator(obj["apiVersion"], obj["kind"]).validate(obj)


@cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = crd_schema(api_version, kind)
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


@cache
def _core_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """kubernetes-validate's strict schema of the kind, built once: its validate() reads and parses
    the kind's schema and the 4 MB of definitions on every call (~10 ms each)."""
    utils = kubernetes_validate.utils
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(K8S_VERSION)][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group}.json", K8S_VERSION)
    definitions = utils.schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@cache
def _crds() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for file in sorted(SCHEMAS.rglob("*.yaml")):
        # Linkerd's CRDs are Helm templates: the templated lines are labels and annotations only.
        text = "\n".join(line for line in file.read_text().splitlines() if "{{" not in line)
        for doc in yaml.load_all(text, Loader=yaml.CSafeLoader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                found[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return found


def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The CRD's openAPIV3Schema made strict as the API server prunes: an object with properties
    takes no other field (unless the schema preserves unknown fields); apiVersion, kind and
    metadata are the API server's own."""
    schema = copy.deepcopy(_crds()[(api_version, kind)])
    _strict(schema)
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "pattern": DNS_LABEL.pattern, "maxLength": 63},
                       "namespace": {"type": "string", "pattern": DNS_LABEL.pattern},
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                       "annotations": {"type": "object", "additionalProperties": {"type": "string"}}},
        "additionalProperties": False}
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata"})
    return schema


def _strict(node: Any) -> None:
    if isinstance(node, dict):
        if (node.get("type") == "object" and "properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)


class RuleError(AssertionError):
    pass


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RuleError(message)


def api_server_rules(objects: list[dict[str, Any]]) -> None:
    """What the API server refuses that no OpenAPI schema says."""
    seen = set()
    for obj in objects:
        kind, meta = obj["kind"], obj["metadata"]
        name = meta["name"]
        key = (kind, meta.get("namespace"), name)
        _check(key not in seen, f"{kind} {name}: written twice")
        seen.add(key)
        pattern = DNS_1035 if kind == "Service" else DNS_LABEL
        _check(len(name) <= 63 and bool(pattern.match(name)), f"{kind} {name}: not a valid DNS label")
        if kind == "ConfigMap":
            for k in obj.get("data", {}):
                _check(bool(CONFIG_KEY.match(k)), f"ConfigMap {name}: key {k!r} is not a valid key")
        if kind == "Deployment":
            _deployment_rules(obj)
        if kind == "Service":
            _service_rules(obj, objects)


def _deployment_rules(obj: dict[str, Any]) -> None:
    name = obj["metadata"]["name"]
    template = obj["spec"]["template"]
    selector = obj["spec"]["selector"]["matchLabels"]
    labels = template["metadata"].get("labels", {})
    _check(all(labels.get(k) == v for k, v in selector.items()), f"Deployment {name}: selector does not match the template's labels")
    pod = template["spec"]
    init, containers = pod.get("initContainers", []), pod["containers"]
    names = [c["name"] for c in init + containers]
    _check(len(names) == len(set(names)), f"Deployment {name}: container names repeat: {names}")
    for c in init + containers:
        _check(bool(DNS_LABEL.match(c["name"])), f"Deployment {name}: container {c['name']}: not a DNS label")
    for c in containers:
        _check("restartPolicy" not in c, f"Deployment {name}: container {c['name']}: restartPolicy only on initContainers")
    for c in init:
        sidecar = c.get("restartPolicy") == "Always"
        _check(c.get("restartPolicy") in (None, "Always"), f"{name}/{c['name']}: an init container's restartPolicy is Always or unset")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            _check(sidecar or probe not in c, f"{name}/{c['name']}: {probe} only on a native sidecar (restartPolicy: Always)")
        _check(sidecar or "lifecycle" not in c, f"{name}/{c['name']}: lifecycle only on a native sidecar")
    ports = [p for c in init + containers for p in c.get("ports", [])]
    port_names = [p["name"] for p in ports if "name" in p]
    _check(len(port_names) == len(set(port_names)), f"Deployment {name}: port names repeat: {port_names}")
    numbers = [p["containerPort"] for p in ports]
    _check(len(numbers) == len(set(numbers)), f"Deployment {name}: container ports repeat: {numbers}")
    for port in port_names:
        _check(len(port) <= 15 and bool(PORT_NAME.match(port)) and "--" not in port, f"Deployment {name}: port name {port!r}")
    volumes = [v["name"] for v in pod.get("volumes", [])]
    _check(len(volumes) == len(set(volumes)), f"Deployment {name}: volume names repeat")
    for c in init + containers:
        for mount in c.get("volumeMounts", []):
            _check(mount["name"] in volumes, f"{name}/{c['name']}: mounts {mount['name']}, which is no volume")
        paths = [m["mountPath"] for m in c.get("volumeMounts", [])]
        _check(len(paths) == len(set(paths)), f"{name}/{c['name']}: two mounts at one path")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in c:
                handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in c[probe]]
                _check(len(handlers) == 1, f"{name}/{c['name']}: {probe} needs exactly one handler")
        context = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
        if context.get("runAsNonRoot"):
            _check(context.get("runAsUser", 1) != 0, f"{name}/{c['name']}: runAsNonRoot with runAsUser 0")


def _service_rules(obj: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    name = obj["metadata"]["name"]
    ports = obj["spec"]["ports"]
    names = [p.get("name") for p in ports]
    _check(len(ports) == 1 or all(names), f"Service {name}: with several ports every port needs a name")
    _check(len(names) == len(set(names)), f"Service {name}: port names repeat")
    selector = obj["spec"].get("selector", {})
    pods = [o for o in objects if o["kind"] == "Deployment"
            and all(o["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())]
    _check(len(pods) == 1, f"Service {name}: its selector matches {len(pods)} Deployments")
    pod = pods[0]["spec"]["template"]["spec"]
    served = {p["containerPort"] for c in pod.get("initContainers", []) + pod["containers"] for p in c.get("ports", [])}
    named = {p.get("name") for c in pod.get("initContainers", []) + pod["containers"] for p in c.get("ports", [])}
    for port in ports:
        target = port.get("targetPort", port["port"])
        _check(target in served or target in named, f"Service {name}: targetPort {target} is no container's port")
