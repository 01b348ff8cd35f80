"""What a person sees of a pod's output in `meshctl up` and `meshctl logs`: each line a container
prints is classified by the container's role and what the line says (`classify`, pure), and
`shown` says what the console prints for it, if anything.

    app      the app's lines, and a sidecar of the user's own: always, as written
    access   a request (or TCP connection) of the proxy's access log (ACCESS_LOG_FORMAT,
             TCP_LOG_FORMAT; the metrics sidecar prints them, the proxy itself without one):
             by default only those that matter, a 5xx, a call the mesh's rules denied, a connection
             the proxy could not make, as one line a person reads
             (`web → api  GET /hello  200  3.1 ms  mTLS`); every request with `access=True`
    notice   a meshctl sidecar's line that matters: an error, something unexpected: always
    chatter  HAProxy's start-up and server-state messages (a peer's address resolved, a server up
             or down while its app starts), the agent's banner, the access log's sampling notes:
             only with `verbose=True`

`verbose=True` shows every line of every container as it was written (what `meshctl logs --role`
shows too). A call between two services of the mesh is logged by both proxies; the console shows
it once, as its callee's proxy saw it (it knows the caller's identity and whether mutual TLS was
used), unless the caller's own proxy failed it (then the callee never saw it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

from ..events import LogLine
from .haproxy import ACCESS_LOG_FORMAT, TCP_LOG_FORMAT

APP_LINE, ACCESS, NOTICE, CHATTER = "app", "access", "notice", "chatter"
ACCESS_ROLE = "proxy"     # a human access line is the proxy's, whichever container printed it
# The roles of meshctl's own containers, whose output is classified (a user's sidecar's is not).
MESHCTL_ROLES = frozenset({"proxy", "metrics", "tls", "capture", "otlp-forward", "pod", "install"})

# HAProxy's log-format: %var, %{flags}var (+Q: quoted), %[sample fetch].
_FIELD = re.compile(r"%(?:\{(?P<flags>[^}]*)\})?(?P<var>[A-Za-z]+)|%\[(?P<sample>[^\]]+)\]")

# HAProxy's own messages that are no news on a developer's console: what its start, its reloads and
# its peers' start-up make it say (on stderr as `[LEVEL] (pid) : text`, into the log as the text).
_CHATTER = re.compile("|".join((
    r"changed its IP from", r"administratively (READY|MAINT)", r"is going DOWN for maintenance",
    r"^Server \S+ (\('[^']*'\) )?(is|was) (UP|DOWN)", r"has no server available", r"^Health check for ",
    r"^(Proxy|Frontend|Backend) \S+ (started|stopped|paused|resumed)", r"^(Stopping|Pausing|Resuming) ",
    r"^(New|Current|Former) worker", r"^Loading success", r"^haproxy version is", r"^path to executable is",
    r"^(Reexecuting|Exiting) Master process", r"^All workers exited",
    # meshctl's sidecars saying what they set up (a failure says otherwise, and is shown), and the
    # access log's sampling note (the counts in /metrics include every request).
    r"^metrics: serving ", r"^metrics: exporting spans to ", r"^metrics: access log: \d+ more requests",
    r"^otlp-forward: \S+ → ", r"^capture: (calls from|strict:|permissive:)",
)))
_LEVEL = re.compile(r"^\[(NOTICE|WARNING|ALERT|DEBUG|INFO)\] +\(\d+\) : ?")
# A worker that exited by itself with an error is news; one replaced on a reload says code 0 or 143.
_WORKER_ERROR = re.compile(r"worker \(?\d+\)? exited with code (?!0\b|143\b)\d+")


@dataclass(frozen=True)
class Access:
    """One request (kind http) or TCP connection (kind tcp) as a proxy logged it."""
    kind: str
    direction: str          # inbound (to this service) or outbound (its call to another)
    source: str             # the caller: a service, `host` (from outside the mesh)
    destination: str        # the callee: a service, or `outside` (a call leaving the mesh)
    method: str
    path: str
    status: int             # HTTP status; 0 for TCP
    latency_ms: float | None    # until the answer left the proxy, µs (the span's times), else %Ta in whole ms
    bytes: int
    mtls: bool
    denied: bool            # refused by the mesh's rules (403 / a closed connection)
    failed: bool            # the proxy itself ended it: it could not reach the app or the callee

    @property
    def matters(self) -> bool:
        """Shown by default: an error, a denied call, a connection that failed."""
        return self.denied or self.failed or self.status >= 500

    @property
    def callee_logs_it(self) -> bool:
        """An outbound call the callee's proxy logs too (so the console shows that line only)."""
        return self.direction == "outbound" and self.destination != "outside" and not self.failed

    def text(self) -> str:
        return access_text({"kind": self.kind, "source": self.source, "destination": self.destination,
                            "method": self.method, "path": self.path, "status": self.status,
                            "latency_ms": self.latency_ms, "bytes": self.bytes, "mtls": self.mtls,
                            "denied": self.denied, "failed": self.failed})


def access_text(event: dict) -> str:
    """A request as a person reads it: `web → api  GET /hello  200  3.1 ms  mTLS` (also `meshctl tap`'s)."""
    latency = event.get("latency_ms")
    took = "-" if latency is None else f"{latency:.1f} ms" if isinstance(latency, float) else f"{latency} ms"
    if event.get("kind", "http") == "http":
        what = f"{event['method']} {event['path']}"
        status = f"{event['status']} denied" if event.get("denied") else str(event["status"])
    else:
        what = f"tcp {event['bytes']} B"
        status = "denied" if event.get("denied") else "failed" if event.get("failed") else "closed"
    return f"{event['source']} → {event['destination']}  {what}  {status}  {took}" + ("  mTLS" if event.get("mtls") else "")


@dataclass(frozen=True)
class Classified:
    kind: str                       # APP_LINE, ACCESS, NOTICE, CHATTER
    access: Access | None = None


def classify(service: str, role: str, line: str) -> Classified:
    """What a line a container of `service` printed is (the module's docstring says how each is shown)."""
    if role not in MESHCTL_ROLES:
        return Classified(APP_LINE)
    if role in ("proxy", "metrics", "tls"):
        access = parse_access(service, line)
        if access is not None:
            return Classified(ACCESS, access)
    message = _LEVEL.sub("", line.strip())
    if not message or (_CHATTER.search(message) and not _WORKER_ERROR.search(message)):
        return Classified(CHATTER)
    if role == "proxy" and line.startswith("[NOTICE]"):
        return Classified(CHATTER)
    return Classified(NOTICE)


class Shown(NamedTuple):
    line: LogLine
    matters: bool           # a sidecar's line shown because it matters (an error, a denied call)


def shown(event: LogLine, *, verbose: bool = False, access: bool = False) -> Shown | None:
    """What the console prints for a container's line: the line as written, a request as a person
    reads it (as the proxy's line), or nothing."""
    if verbose:
        return Shown(event, False)
    what = classify(event.service, event.role, event.line)
    if what.kind in (APP_LINE, NOTICE):
        return Shown(event, what.kind == NOTICE)
    if what.kind == CHATTER or what.access is None:
        return None
    if what.access.callee_logs_it or not (access or what.access.matters):
        return None
    return Shown(LogLine(event.service, ACCESS_ROLE, what.access.text()), what.access.matters)


@cache
def _pattern(log_format: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """A regular expression reading a line `log_format` writes, and the variable each group holds;
    what the mesh listeners log after the format (the caller, retries) is the group `tail`."""
    parts: list[str] = []
    names: list[str] = []
    at = 0
    for match in _FIELD.finditer(log_format):
        parts.append(re.escape(log_format[at:match.start()]))
        quoted = "+Q" in (match["flags"] or "")
        parts.append(f'"(?P<f{len(names)}>.*)"' if quoted else f"(?P<f{len(names)}>[^ ]*)")
        names.append(match["sample"] or match["var"])
        at = match.end()
    parts.append(re.escape(log_format[at:]))
    return re.compile("".join(parts) + r"(?: (?P<tail>.*))?\Z"), tuple(names)


def _fields(log_format: str, line: str) -> dict[str, str] | None:
    pattern, names = _pattern(log_format)
    match = pattern.match(line)
    if match is None:
        return None
    values = {name: match[f"f{i}"] for i, name in enumerate(names)}
    values["tail"] = match["tail"] or ""
    return values


def parse_access(service: str, line: str) -> Access | None:
    """A line of the proxy's access log (either format, any listener) read, or None."""
    fields = _fields(TCP_LOG_FORMAT, line) if " tcp " in line and '"' not in line else None
    if fields is not None and fields["ts"] and fields["U"].isdigit():
        return _tcp(service, fields)
    fields = _fields(ACCESS_LOG_FORMAT, line)
    if fields is None or not fields["ST"].lstrip("-").isdigit():
        return None
    return _http(service, fields)


def _edge(service: str, frontend: str, backend: str, tail: str) -> tuple[str, str, str, bool]:
    """(direction, source, destination, mtls) from the listener that took the request (the same
    reading as the metrics agent's): mesh_out/mesh_out_tcp are the app's calls (the backend names
    the callee: to_NAME, or passthrough), mesh_in a mesh caller (its certificate's name ends the
    line), anything else a client from outside the mesh."""
    name = frontend.rstrip("~")
    if name in ("mesh_out", "mesh_out_tcp"):
        return "outbound", service, backend[3:] if backend.startswith("to_") else "outside", False
    if name == "mesh_in":
        caller = tail.split(" ")[-1] if tail else ""
        return "inbound", caller if caller and caller != "-" else "unknown", service, frontend.endswith("~")
    return "inbound", "host", service, False


def _http(service: str, f: dict[str, str]) -> Access:
    backend = f["b"]
    direction, source, destination, mtls = _edge(service, f["ft"], backend, f["tail"])
    request = f["r"].split(" ")
    method, path = (request[0], request[1]) if len(request) > 1 else (request[0] or "-", "")
    status, state = int(f["ST"]), f["tsc"]
    start, end = f.get("var(txn.trace_start)", ""), f.get("var(txn.trace_end)", "")
    latency = (int(end) - int(start)) / 1000 if start.isdigit() and end.isdigit() and int(end) >= int(start) \
        else (int(f["Ta"]) if f["Ta"].isdigit() else None)
    # PR: refused by a rule before the request went anywhere. A 5xx with a state that does not start
    # with `-`: the proxy ended it itself (the app or the callee could not be reached in time).
    denied = source not in ("host", service) and status == 403 and state.startswith("PR")
    failed = status >= 500 and not state.startswith("-")
    return Access("http", direction, source, destination, method, path, status, latency, _int(f["B"]), mtls,
                  denied, failed)


def _tcp(service: str, f: dict[str, str]) -> Access:
    direction, source, destination, mtls = _edge(service, f["ft"], f["b"], f["tail"])
    state = f["ts"]
    # --: closed normally; PR: refused by a rule; ?C: the connection to the server never happened.
    denied = state.startswith("PR")
    failed = len(state) > 1 and state[1] == "C" and state[0] in "sS"
    total = f["Tt"].lstrip("+")
    return Access("tcp", direction, source, destination, "", "", 0, int(total) if total.isdigit() else None,
                  _int(f["U"]) + _int(f["B"]), mtls, denied, failed)


def _int(text: str) -> int:
    text = text.lstrip("+")
    return int(text) if text.isdigit() else 0
