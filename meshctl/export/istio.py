"""`--mesh istio`: the same mesh handed to Istio. Plain Deployments (Istio injects its proxy: the
namespace carries `istio-injection: enabled`), a ServiceAccount per service (the identity),
PeerAuthentication from `mesh.mtls`, an AuthorizationPolicy per service from `allow:`, and a
VirtualService and DestinationRule per service from `traffic:` and `faults:`."""

from __future__ import annotations

from ..config import Fault, ProjectSpec, ServiceSpec, TrafficPolicy
from .objects import Export, ExportOptions, Obj, app_labels, metadata, object_labels, principal, seconds
from .pods import export_plain

# mesh.yaml's retry conditions → Envoy's retryOn (meshctl's meanings are Envoy's).
RETRY_ON = {"5xx": "5xx", "gateway-error": "gateway-error", "reset": "reset", "connect-failure": "connect-failure"}


def export_istio(project: ProjectSpec, options: ExportOptions, out: Export) -> None:
    export_plain(project, options, out)
    meshed = [s for s in project.services if s.mesh is not None]
    if meshed:
        mode = "STRICT" if meshed[0].mesh and meshed[0].mesh.mtls == "strict" else "PERMISSIVE"
        out.objects.append({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                            "metadata": metadata("default", options, object_labels(project)),
                            "spec": {"mtls": {"mode": mode}}})
    for service in meshed:
        assert service.mesh is not None
        if service.mesh.allow is not None:
            out.objects.append(authorization_policy(project, service, options))
    for service in project.services:
        policy = service.traffic
        if policy is not None and (policy.circuit_breaker is not None):
            out.objects.append(destination_rule(project, service, options, policy))
        if (policy is not None and (policy.timeout or policy.retries or policy.split)) or service.faults:
            out.objects.append(virtual_service(project, service, options, policy, out))


def authorization_policy(project: ProjectSpec, service: ServiceSpec, options: ExportOptions) -> Obj:
    """ALLOW with one rule per `allow:` rule; `allow: []` is an ALLOW policy with no rule: nobody."""
    assert service.mesh is not None and service.mesh.allow is not None
    everyone = sorted(s.name for s in project.services if s.mesh is not None)
    rules = []
    for rule in service.mesh.allow:
        callers = rule.callers if rule.callers is not None else everyone
        body: Obj = {"from": [{"source": {"principals": [principal(options, c) for c in callers]}}]}
        operation: Obj = {}
        if rule.methods:
            operation["methods"] = list(rule.methods)
        if rule.paths:
            operation["paths"] = list(rule.paths)
        if operation:
            body["to"] = [{"operation": operation}]
        rules.append(body)
    spec: Obj = {"selector": {"matchLabels": app_labels(project, service)}, "action": "ALLOW"}
    if rules:
        spec["rules"] = rules
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": metadata(service.name, options, object_labels(project, service)), "spec": spec}


def destination_rule(project: ProjectSpec, service: ServiceSpec, options: ExportOptions, policy: TrafficPolicy) -> Obj:
    """The circuit breaker: outlierDetection (consecutive errors, ejection time) and the connection pool."""
    breaker = policy.circuit_breaker
    assert breaker is not None
    traffic: Obj = {}
    if breaker.max_connections is not None or breaker.max_pending is not None:
        pool: Obj = {}
        if breaker.max_connections is not None:
            pool["tcp"] = {"maxConnections": breaker.max_connections}
        if breaker.max_pending is not None:
            pool["http"] = {"http1MaxPendingRequests": breaker.max_pending}
        traffic["connectionPool"] = pool
    if breaker.consecutive_errors is not None:
        traffic["outlierDetection"] = {"consecutive5xxErrors": breaker.consecutive_errors, "interval": "1s",
                                       "baseEjectionTime": seconds(breaker.open_for), "maxEjectionPercent": 100}
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": metadata(service.name, options, object_labels(project, service)),
            "spec": {"host": service.name, "trafficPolicy": traffic}}


def virtual_service(project: ProjectSpec, service: ServiceSpec, options: ExportOptions, policy: TrafficPolicy | None,
                    out: Export) -> Obj:
    """Timeout, retries and a split as the route; faults as Istio's fault injection, one route per
    caller a fault names (matched by the caller's pod labels) before the route for everyone."""
    where = f"services.{service.name}"
    route: Obj = {}
    split = policy.split if policy and policy.split else ((service.name, 100),)
    route["route"] = [{"destination": {"host": target}, **({"weight": weight} if len(split) > 1 else {})}
                      for target, weight in split]
    if policy and policy.timeout:
        route["timeout"] = seconds(policy.timeout)
    if policy and policy.retries:
        retries = policy.retries
        route["retries"] = {"attempts": retries.attempts, "perTryTimeout": seconds(retries.per_try_timeout),
                            "retryOn": ",".join(RETRY_ON.get(c, c) for c in retries.on)}
        out.unmapped.append(f"{where}.traffic.retries.methods: Istio retries every method, not only "
                            f"{', '.join(retries.methods)}")
    faults = [f for f in service.faults if _maps(f, where, service, out)]
    everyone = [f for f in faults if not f.callers]
    routes = []
    for caller in sorted({c for f in faults for c in f.callers}):
        fault = _fault([f for f in faults if caller in f.callers or not f.callers], where, out)
        routes.append({"match": [{"sourceLabels": {"app.kubernetes.io/name": caller}}], **route, "fault": fault})
    routes.append({**route, **({"fault": _fault(everyone, where, out)} if everyone else {})})
    if service.protocol == "tcp":
        out.unmapped.append(f"{where}.traffic: Istio's timeouts, retries and faults are HTTP only")
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": metadata(service.name, options, object_labels(project, service)),
            "spec": {"hosts": [service.name], "http": routes}}


def _maps(fault: Fault, where: str, service: ServiceSpec, out: Export) -> bool:
    if fault.kind == "reset" or service.protocol == "tcp":
        out.unmapped.append(f"{where}.faults: a TCP {fault.kind} has no Istio equivalent (HTTP faults only)")
        return False
    return True


def _fault(faults: list[Fault], where: str, out: Export) -> Obj:
    """Istio takes one delay and one abort per route: the first of each applies (meshctl's order)."""
    found: Obj = {}
    for fault in faults:
        percentage = {"value": fault.percent}
        if fault.kind == "delay" and "delay" not in found:
            found["delay"] = {"percentage": percentage, "fixedDelay": seconds(fault.delay)}
        elif fault.kind == "abort" and "abort" not in found:
            found["abort"] = {"percentage": percentage, "httpStatus": fault.status}
        else:
            out.unmapped.append(f"{where}.faults: a second {fault.kind} for the same callers (Istio takes one per route)")
    return found
