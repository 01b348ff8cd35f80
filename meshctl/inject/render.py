"""Writes a plan into the original text as a few edits, every other byte kept:

  the app      `network_mode: service:web-mesh-pod` as its first line, and its own keys that a
               container in another's namespace may not have (ports, networks, expose, hostname,
               dns, …) parked as `x-meshctl-ports:` etc., their values untouched (keys merged in
               from an anchor are overridden with an empty value instead: the anchor never changes)
  after it     web-mesh-pod (the holder: owns the namespace, publishes the ports, answers to the
               service's name on its networks), web-mesh-proxy, web-mesh-metrics
  the top      x-meshctl: what the generated services share, under anchors

Uninject (uninject.py) reverses each edit exactly, so the file comes back byte for byte."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from .. import __version__
from ..config import MetricsSettings, ProxySettings, ServiceSpec, TlsSettings
from ..model import labels
from ..sidecars import (CONFIG_MOUNT, KINDS, METRICS_PORT, PROXY_PORT, PROXY_STATS_PORT, READY_PATH,
                        SIDECAR_STOP_TIMEOUT, TLS_PORT, metrics_env, proxy_stats_url, render_proxy, render_tcp_proxy,
                        shell_http_check, shell_tls_chain_check)
from ..sidecars.faults import fault_files, seeded_files
from . import document as doc
from . import emit
from .document import Document
from .emit import Layout, Merge, Raw
from .names import (GENERATED_BY, MARK, PARKED, POD, ROLES, SIDECAR_OF, TERMINATES_TLS, holder_name, sidecar_name,
                    split_sidecar_name)
from .inject_plan import EMPTY, MOVED, Machine, ServicePlan
from .ports import as_written, new_entry, retargeted
from ..config.port_protocol import HTTP
import itertools

HEALTH_INTERVAL = "2s"
# The holder: a shell that waits, and exits at once on SIGTERM (PID 1 ignores signals it does not handle).
HOLDER_COMMAND = ["sh", "-c", "trap 'exit 0' TERM INT; sleep infinity & wait"]


@dataclass(frozen=True)
class Injected:
    service: str
    protocol: str                      # "http" or "tcp"
    why: str                           # why that port and protocol
    app_port: int
    files: dict[PurePath, str]         # rendered sidecar configs to write
    cert_dir: PurePath | None          # where to issue the TLS certificate (HTTP only)
    sans: tuple[str, ...]
    entry: str                         # where outside traffic now enters, for the summary
    metrics: str                       # where the metrics are published, for the summary
    others: tuple[str, ...] = ()       # the service's other published ports, as before
    # Sidecar services an earlier injection gave it and this one does not (web-mesh-tls, from before
    # the proxy terminated TLS). A container of theirs still running would keep taking connections
    # on the HTTPS port beside the proxy (HAProxy binds it with SO_REUSEPORT): compose must remove it.
    retired: tuple[str, ...] = ()
    retired_dirs: tuple[PurePath, ...] = ()   # their config folders (the old tls one holds a private key)

    @property
    def roles(self) -> tuple[str, ...]:
        return ROLES

    @property
    def summary(self) -> str:
        if self.protocol == HTTP:
            head = f"{self.service}: HTTPS on {self.entry} → proxy → app:{self.app_port} ({self.why})"
            override = "not HTTP? x-meshctl: {protocol: tcp}"
        else:
            head = f"{self.service}: TCP proxy on {self.entry} → app:{self.app_port} ({self.why})"
            override = "HTTP? x-meshctl: {protocol: http}"
        text = head + (f"; {', '.join(self.others)} published as before" if self.others else "")
        text += f"; {self.metrics}; {override}, another port: x-meshctl: {{port: N}}"
        if self.retired:
            text += (f"; {', '.join(self.retired)} is gone: `docker compose up -d --remove-orphans` removes its"
                     " container, which would keep taking connections")
        return text


@dataclass(frozen=True)
class InjectResult:
    text: str
    injected: tuple[Injected, ...] = ()
    skipped: tuple[Any, ...] = ()

    @property
    def roles(self) -> tuple[str, ...]:
        return ROLES if self.injected else ()


Edit = tuple[int, int, str]     # replace text[start:end] with this


def render(document: Document, services: doc.Mapping, plans: list[ServicePlan], machine: Machine,
           previous: dict[str, tuple[str, ...]]) -> tuple[str, list[Injected]]:
    """The injected text, and what the CLI writes beside it. `previous`: app → the generated
    services an earlier injection gave it (to say which are gone)."""
    layout = emit.guess_layout(document.text)
    defaults = _defaults(machine)
    edits: list[Edit] = []
    injected = []
    wrapped = {item.name for item in plans}
    for key, node in services.value:
        if isinstance(node, doc.Mapping) and str(key.value) not in wrapped:
            edits += _link_edits(document, node, wrapped)
    for item in plans:
        service_edits, generated, result = _service(document, item, machine, layout, defaults, previous, wrapped)
        edits += service_edits
        at = content_end(document, item.key, item.node)
        edits.append(_insert_lines(document, at, generated))
        injected.append(result)
    if plans:
        services_entry = doc.get(document.root, "services")
        assert services_entry is not None   # plans come from the services mapping
        services_key = services_entry[0]
        column = services_key.start_mark.column
        top = {"generated-by": GENERATED_BY, "version": __version__, **defaults}
        lines = [" " * column + f"{MARK}:",
                 *emit.mapping(top, column + layout.mapping, layout, anchors={r: f"meshctl-{r}" for r in defaults})]
        edits.append(_insert_lines(document, _top_position(document, services_key), lines))
    return apply(document.text, edits), injected


def _defaults(machine: Machine) -> dict[str, dict[str, Any]]:
    """What every generated service of a role shares; written once under the top-level x-meshctl."""
    hardening = {"user": machine.user, "read_only": True, "cap_drop": ["ALL"],
                 "security_opt": ["no-new-privileges:true"]}
    out: dict[str, dict[str, Any]] = {
        POD: {**_image(machine, "proxy"), "entrypoint": HOLDER_COMMAND, **hardening, "stop_grace_period": "1s"}}
    for role in ROLES:
        kind = KINDS[role]
        values: dict[str, Any] = _image(machine, role)
        if kind.command:
            values["command"] = list(kind.command)
        values.update({**hardening, "tmpfs": ["/tmp"], "stop_grace_period": f"{SIDECAR_STOP_TIMEOUT}s"})
        assert kind.compose_health is not None
        values["healthcheck"] = _healthcheck(kind.compose_health)
        out[role] = values
    return out


def _image(machine: Machine, role: str) -> dict[str, Any]:
    """The role's image; with a build context (--portable), how compose builds it when it is missing:
    never pulled (the content-hash tag exists in no registry), built on the network meshctl's own
    builds use (MESHCTL_BUILD_NETWORK, read by compose when it builds), labelled as meshctl's are."""
    context = machine.builds.get(role)
    if context is None:
        return {"image": machine.images[role]}
    build = {"context": context, "network": "${MESHCTL_BUILD_NETWORK:-default}",
             "labels": labels(None, sidecar=KINDS[role].image)}
    return {"image": machine.images[role], "build": build, "pull_policy": "never"}


def _healthcheck(script: str) -> dict[str, Any]:
    # bash's /dev/tcp: the images have no curl. Failures in the first 120 s do not count.
    return {"test": ["CMD", "bash", "-c", script], "interval": HEALTH_INTERVAL, "timeout": "3s",
            "retries": 3, "start_period": "120s"}


def _service(document: Document, item: ServicePlan, machine: Machine, layout: Layout,
             defaults: dict[str, dict[str, Any]], previous: dict[str, tuple[str, ...]], pods: set[str]
             ) -> tuple[list[Edit], list[str], Injected]:
    """The app's edits, the generated services' lines, and what the CLI writes beside them."""
    name, settings = item.name, item.settings
    spec = ServiceSpec(name=name, port=item.app_port, metrics_path=settings.get("metrics_path"),
                       proxy=ProxySettings(timeout=settings.get("timeout", ProxySettings.timeout)),
                       tls=TlsSettings(hosts=item.sans), metrics=MetricsSettings())
    folder = machine.state_dir / name
    files = {folder / "proxy" / "haproxy.cfg": render_proxy(machine.project, spec) if item.protocol == HTTP
             else render_tcp_proxy(machine.project, spec, item.why)}
    if item.protocol == HTTP:
        # The HTTP proxy's config loads the fault action and maps (empty here: inject declares no faults).
        files.update({folder / "proxy" / name: text for name, text in {**fault_files(spec), **seeded_files()}.items()})
    follow: dict[str, Any] = {}
    if item.data.get("profiles"):
        follow["profiles"] = [str(p) for p in item.data["profiles"]]     # started and stopped with the app
    if item.data.get("restart") is not None:
        follow["restart"] = str(item.data["restart"])                   # back after a reboot when the app is
    pod, entry_text, others = _holder(document, item, pods)
    bodies = {POD: {**pod, **follow}, **{role: {**_sidecar(role, item, spec, folder), **follow} for role in ROLES}}
    column = item.key.start_mark.column
    lines: list[str] = []
    for role, body in bodies.items():
        body["labels"] = labels(machine.project, name, role, source="compose")
        body[MARK] = {SIDECAR_OF: name, **({TERMINATES_TLS: True} if role == "proxy" and item.protocol == HTTP else {})}
        lines.append(" " * column + f"{emit.scalar(sidecar_name(name, role))}:")
        lines += emit.mapping(body, column + layout.mapping, layout, merge=Merge(f"meshctl-{role}", defaults[role]))
    retired = tuple(s for s in previous.get(name, ()) if s not in {sidecar_name(name, r) for r in bodies})
    result = Injected(
        service=name, protocol=item.protocol, why=item.why, app_port=item.app_port, files=files,
        cert_dir=folder / "proxy" if item.protocol == HTTP else None, sans=item.sans, entry=entry_text,
        metrics=f"metrics on 127.0.0.1:{settings.get('metrics_port') or '(free port)'}"
                f" (`docker compose port {holder_name(name)} {METRICS_PORT}`)",
        others=others, retired=retired,
        retired_dirs=tuple(folder / split[1] for s in retired if (split := split_sidecar_name(s))))
    return _app_edits(document, item), lines, result


def _app_edits(document: Document, item: ServicePlan) -> list[Edit]:
    """The app joins its holder's namespace (its first line), and the keys the holder now has are
    parked under x-meshctl-KEY (those merged in from an anchor are overridden instead)."""
    node = item.node
    first = [f"network_mode: {emit.scalar('service:' + holder_name(item.name))}",
             *(f"{key}: {EMPTY.get(key, '[]')}" for key in item.inherited)]
    if node.flow_style:
        at = node.start_mark.index + 1
        edits = [(at, at, "".join(f"{line}, " for line in first))]
    else:
        column = node.value[0][0].start_mark.column
        at = document.line_end(item.key.end_mark.index)
        edits = [(at, at, "".join(" " * column + line + document.newline for line in first))]
    for key in item.parked:
        at = key.start_mark.index + (1 if key.style in ("'", '"') else 0)
        edits.append((at, at, PARKED))
    return edits


def _holder(document: Document, item: ServicePlan, pods: set[str]) -> tuple[dict[str, Any], str, tuple[str, ...]]:
    """The holder's own settings: the published ports (the wrapped ones now reaching the proxy),
    the networks with the service's name as an alias, and the rest of what was parked; with where
    outside traffic now enters, and the ports published as before (for the summary)."""
    settings = item.settings
    pod_port = TLS_PORT if item.protocol == HTTP else PROXY_PORT
    ports: list[Raw] = []
    rewired = set(map(id, item.wrapped))
    others = []
    for entry in item.entries:
        if id(entry) in rewired:
            ports.append(Raw(retargeted(entry, pod_port, document)))
        else:
            ports.append(Raw(as_written(entry, document)))
            others.append(entry.describe())
    if item.wrapped:
        first = item.wrapped[0]
        entry_text = "host " + (f"{first.host_ip}:" if first.host_ip else "") + (first.published or "(free port)")
    else:
        # --keep-plain, or the app port only in a range: the entry point gets a host port of its own.
        first_app = next((e for e in item.entries if e.target == item.app_port), None)
        ports.append(Raw(new_entry(first_app.host_ip if first_app else "127.0.0.1", settings.get("tls_port"), pod_port)))
        entry_text = f"host {settings.get('tls_port') or '(free port)'}"
    ports.append(Raw(new_entry("127.0.0.1", settings.get("metrics_port"), METRICS_PORT)))
    pod: dict[str, Any] = {"ports": ports, "networks": _networks(item.data, item.name)}
    for key in MOVED:
        if key not in pod and item.data.get(key) not in (None, "", []):
            pod[key] = item.data[key]
    if isinstance(pod.get("links"), list):
        pod["links"] = [linked(str(link), pods) for link in pod["links"]]
    return pod, entry_text, tuple(others)


def _sidecar(role: str, item: ServicePlan, spec: ServiceSpec, folder: PurePath) -> dict[str, Any]:
    own: dict[str, Any] = {"network_mode": f"service:{holder_name(item.name)}"}
    if role == "proxy":
        source = folder / role       # relative (--portable): to the compose file's folder, as compose reads it
        own["volumes"] = [{"type": "bind", "source": str(source) if source.is_absolute() else f"./{source}",
                           "target": CONFIG_MOUNT, "read_only": True}]
        if item.protocol != HTTP:
            # HAProxy answers on its stats port, and the app accepts connections.
            own["healthcheck"] = _healthcheck(shell_http_check(PROXY_STATS_PORT, READY_PATH, '[ "$$code" = 200 ]')
                                              + f" && exec 4<>/dev/tcp/127.0.0.1/{item.app_port}")
        elif "health" in item.settings:
            own["healthcheck"] = _healthcheck(shell_tls_chain_check(item.settings["health"], strict=True))
    else:
        env = metrics_env(spec)
        if item.protocol != HTTP:
            env["MESHCTL_APP_METRICS"] = proxy_stats_url()
        own["environment"] = {k: v for k, v in env.items() if v}
    return own


def linked(link: str, wrapped: set[str]) -> str:
    """A `links:` entry (SERVICE[:ALIAS]) to a wrapped service, now to its holder: a link names a
    container, and the app's container has no address of its own on the network any more."""
    service, colon, alias = link.partition(":")
    return f"{holder_name(service)}:{alias if colon else service}" if service in wrapped else link


def _link_edits(document: Document, node: doc.Mapping, wrapped: set[str]) -> list[Edit]:
    """Another service's links to wrapped services, edited inside each entry (uninject.py
    takes the holder's name out again)."""
    found = doc.get(node, "links")
    if found is None or not isinstance(found[1], doc.Sequence):
        return []
    edits = []
    for entry in found[1].value:
        if not isinstance(entry, doc.Scalar) or found[1].start_mark.index > entry.start_mark.index:
            continue
        service, colon, _ = str(entry.value).partition(":")
        if service in wrapped:
            at = entry.start_mark.index + (1 if entry.style in ("'", '"') else 0) + len(service)
            edits.append((at, at, holder_name(service)[len(service):] + ("" if colon else f":{service}")))
    return edits


def _networks(data: dict[str, Any], name: str) -> dict[str, Any]:
    """The app's networks for the holder, each answering to the service's name (and its
    container_name: Docker resolves that too)."""
    networks = data.get("networks")
    if isinstance(networks, list):
        networks = {str(n): None for n in networks}
    if not isinstance(networks, dict) or not networks:
        networks = {"default": None}
    extra = [data["container_name"]] if isinstance(data.get("container_name"), str) else []
    out = {}
    for network, written in networks.items():
        settings = dict(written) if isinstance(written, dict) else {}
        own = [str(a) for a in settings.get("aliases") or []]
        settings["aliases"] = list(dict.fromkeys([name, *extra, *own]))
        out[str(network)] = settings
    return out


# ---------------------------------------------------------------------------------------------
# Positions


def content_end(document: Document, key: doc.Node, node: doc.Node, *, comments: bool = True) -> int:
    """Where a mapping entry's text ends: after the line of its last value, and (`comments`) after
    comment lines indented under it that follow (they belong to it, not to the next entry)."""
    index = doc.last_index(node) if not getattr(node, "flow_style", False) else node.end_mark.index
    text = document.text
    end = index if index > 0 and text[index - 1] == "\n" and index > key.end_mark.index else document.line_end(index)
    column = key.start_mark.column
    while comments and end < len(text):
        line_end = document.line_end(end)
        line = text[end:line_end]
        stripped = line.lstrip(" ")
        if not stripped.startswith("#") or len(line) - len(stripped) <= column:
            break
        end = line_end
    return end


def _top_position(document: Document, services_key: doc.Node) -> int:
    """Before `services:` and the comments right above it (unless they open the file)."""
    at = document.line_start(services_key.start_mark.index)
    text = document.text
    while at > 0:
        previous = document.line_start(at - 1)
        if text[previous:at].strip() and not text[previous:at].lstrip().startswith("#"):
            return at
        at = previous
    return document.line_start(services_key.start_mark.index)


def _insert_lines(document: Document, at: int, lines: list[str]) -> Edit:
    """Whole lines inserted at a line start; at the end of a file without a final line break,
    the break goes first (uninject takes it out with the lines)."""
    newline = document.newline
    if at == len(document.text) and document.text and not document.text.endswith("\n"):
        return at, at, newline + newline.join(lines)
    return at, at, "".join(line + newline for line in lines)


def apply(text: str, edits: list[Edit]) -> str:
    """Apply edits from the bottom up; insertions at one place keep the order they were made in."""
    ordered = sorted(enumerate(edits), key=lambda pair: (pair[1][0], pair[0]))
    for (_, (_, end, _)), (_, (next_start, _, _)) in itertools.pairwise(ordered):
        if end > next_start:
            raise AssertionError("overlapping edits")
    out = []
    position = 0
    for _, (start, end, new) in ordered:
        out.append(text[position:start])
        out.append(new)
        position = end
    out.append(text[position:])
    return "".join(out)
