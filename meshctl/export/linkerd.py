"""`--mesh linkerd`: the same mesh handed to Linkerd. Plain Deployments (the namespace carries the
inject annotation), a ServiceAccount per service (the identity); from `allow:` a Server on the
app's port, a MeshTLSAuthentication naming the callers' ServiceAccounts and an AuthorizationPolicy
(a rule with methods or paths: an HTTPRoute of its own, authorized alone); `traffic:`'s timeout,
retries and breaker as the Service's annotations, a split as an HTTPRoute with weighted backends.
Linkerd has no fault injection: each fault is one line on stderr."""

from __future__ import annotations

from ..config import AllowRule, ProjectSpec, ServiceSpec
from .objects import Export, ExportOptions, Obj, app_labels, metadata, object_labels, seconds
from .pods import export_plain

POLICY = "policy.linkerd.io"


def export_linkerd(project: ProjectSpec, options: ExportOptions, out: Export) -> None:
    export_plain(project, options, out)
    for service in project.services:
        where = f"services.{service.name}"
        for fault in service.faults:
            out.unmapped.append(f"{where}.faults: {fault.kind}: Linkerd has no fault injection")
        if service.mesh is not None and service.mesh.allow is not None:
            out.objects.extend(_authorization(project, service, options))
        if service.traffic is not None:
            _traffic(project, service, options, out)
    meshed = [s for s in project.services if s.mesh is not None]
    if meshed and meshed[0].mesh and meshed[0].mesh.mtls == "strict":
        namespace = next(o for o in out.objects if o["kind"] == "Namespace")
        namespace["metadata"]["annotations"]["config.linkerd.io/default-inbound-policy"] = "all-authenticated"


def _ref(kind: str, name: str) -> Obj:
    return {"group": POLICY, "kind": kind, "name": name}


def _authorization(project: ProjectSpec, service: ServiceSpec, options: ExportOptions) -> list[Obj]:
    """A Server on the app's port (with a Server, what is not authorized is refused: `allow: []`
    is a Server alone), and per rule who may call (and on which routes)."""
    assert service.mesh is not None and service.mesh.allow is not None
    labels = object_labels(project, service)
    server = {"apiVersion": f"{POLICY}/v1beta3", "kind": "Server",
              "metadata": metadata(service.name, options, labels),
              "spec": {"podSelector": {"matchLabels": app_labels(project, service)}, "port": "app",
                       "proxyProtocol": "opaque" if service.protocol == "tcp" else "HTTP/1", "accessPolicy": "deny"}}
    objects = [server]
    everyone = sorted(s.name for s in project.services if s.mesh is not None)
    for index, rule in enumerate(service.mesh.allow):
        name = f"{service.name}-allow-{index}"
        callers = rule.callers if rule.callers is not None else everyone
        objects.append({"apiVersion": f"{POLICY}/v1alpha1", "kind": "MeshTLSAuthentication",
                        "metadata": metadata(name, options, labels),
                        "spec": {"identityRefs": [{"kind": "ServiceAccount", "name": c} for c in callers]}})
        target = _ref("Server", service.name)
        if rule.methods or rule.paths:
            objects.append(_route(name, service, rule, options, labels))
            target = _ref("HTTPRoute", name)
        objects.append({"apiVersion": f"{POLICY}/v1alpha1", "kind": "AuthorizationPolicy",
                        "metadata": metadata(name, options, labels),
                        "spec": {"targetRef": target, "requiredAuthenticationRefs": [_ref("MeshTLSAuthentication", name)]}})
    return objects


def _route(name: str, service: ServiceSpec, rule: AllowRule, options: ExportOptions, labels: dict[str, str]) -> Obj:
    matches = []
    for path in rule.paths or ("*",):
        match: Obj = {}
        if path != "*":
            if path.endswith("*"):
                match["path"] = {"type": "PathPrefix", "value": path[:-1].rstrip("/") or "/"}
            elif path.startswith("*"):
                match["path"] = {"type": "RegularExpression", "value": ".*" + path[1:].replace(".", "\\.")}
            else:
                match["path"] = {"type": "Exact", "value": path}
        for method in rule.methods or (None,):
            matches.append({**match, **({"method": method} if method else {})})
    return {"apiVersion": f"{POLICY}/v1beta3", "kind": "HTTPRoute", "metadata": metadata(name, options, labels),
            "spec": {"parentRefs": [_ref("Server", service.name)], "rules": [{"matches": matches}]}}


def _traffic(project: ProjectSpec, service: ServiceSpec, options: ExportOptions, out: Export) -> None:
    policy = service.traffic
    assert policy is not None
    where = f"services.{service.name}.traffic"
    annotations: dict[str, str] = {}
    if policy.timeout:
        annotations["timeout.linkerd.io/request"] = seconds(policy.timeout)
    if policy.retries:
        codes = [c for c in policy.retries.on if c in ("5xx", "gateway-error")]
        if codes:
            annotations["retry.linkerd.io/http"] = ",".join(codes)
        annotations["retry.linkerd.io/limit"] = str(policy.retries.attempts)
        annotations["retry.linkerd.io/timeout"] = seconds(policy.retries.per_try_timeout)
        for other in (c for c in policy.retries.on if c not in codes):
            out.unmapped.append(f"{where}.retries.on: {other}: Linkerd retries on HTTP statuses only")
    breaker = policy.circuit_breaker
    if breaker is not None and breaker.consecutive_errors is not None:
        annotations["balancer.linkerd.io/failure-accrual"] = "consecutive"
        annotations["balancer.linkerd.io/failure-accrual-consecutive-max-failures"] = str(breaker.consecutive_errors)
        annotations["balancer.linkerd.io/failure-accrual-consecutive-min-penalty"] = seconds(breaker.open_for)
    if breaker is not None and (breaker.max_connections is not None or breaker.max_pending is not None):
        out.unmapped.append(f"{where}.circuit_breaker: max_connections and max_pending have no Linkerd equivalent")
    if annotations:
        svc = next(o for o in out.objects if o["kind"] == "Service" and o["metadata"]["name"] == service.name)
        svc["metadata"]["annotations"] = annotations
    if policy.split:
        out.objects.append({
            "apiVersion": f"{POLICY}/v1beta3", "kind": "HTTPRoute",
            "metadata": metadata(f"{service.name}-split", options, object_labels(project, service)),
            "spec": {"parentRefs": [{"group": "core", "kind": "Service", "name": service.name, "port": service.port}],
                     "rules": [{"backendRefs": [{"name": target, "port": _port_of(project, target), "weight": weight}
                                                for target, weight in policy.split]}]}})


def _port_of(project: ProjectSpec, name: str) -> int:
    return project.service(name).port
