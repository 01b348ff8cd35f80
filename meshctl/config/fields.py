"""The one definition of mesh.yaml's fields: per section, each key with its type and help text.
The parsers take their allowed keys from it (`keys(section)`: an unknown key is refused with
"did you mean"), and schema.py turns it into the JSON Schema editors read. A new field goes here
first; the schema follows, and tests/unit/test_schema.py checks the parser and the schema agree.

A type is a JSON Schema fragment built by the helpers below. Where mesh.yaml wants a number, a
boolean or one of a few words, a `${VAR}` is allowed too (interpolate.py substitutes it before
the value is read)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Schema = dict[str, Any]

NAME_PATTERN = "^[a-z0-9][a-z0-9_.-]*$"
VARIABLE = {"type": "string", "pattern": r"\$"}       # a value some ${VAR} gives
# Durations as Go writes them (time.ParseDuration, as compose reads them), or a bare number of seconds.
DURATION_UNITS = ("ns", "us", "µs", "μs", "ms", "s", "m", "h")     # ms before m: the pattern tries in order
NUMBER = r"(\d+(\.\d*)?|\.\d+)"
DURATION_PATTERN = rf"^\s*({NUMBER}\s*|({NUMBER}\s*({'|'.join(DURATION_UNITS)})\s*)+)$"


def ref(section: str) -> Schema:
    return {"$ref": f"#/definitions/{section}"}


def string(**more: Any) -> Schema:
    return {"type": "string", **more}


def words(*values: Any) -> Schema:
    return {"anyOf": [{"enum": list(values)}, VARIABLE]}


def any_case(*values: str) -> Schema:
    """One of these words in any case (JSON Schema's patterns have no flag for it)."""
    spelled = ["".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in value) for value in values]
    return {"anyOf": [string(pattern=f"^({'|'.join(spelled)})$"), VARIABLE]}


def integer(low: int | None = None, high: int | None = None) -> Schema:
    bounds = {k: v for k, v in (("minimum", low), ("maximum", high)) if v is not None}
    return {"anyOf": [{"type": "integer", **bounds}, VARIABLE]}


def number(low: float, high: float) -> Schema:
    return {"anyOf": [{"type": "number", "minimum": low, "maximum": high}, VARIABLE]}


def boolean() -> Schema:
    return {"anyOf": [{"type": "boolean"}, VARIABLE]}


def one_of(*types: Schema) -> Schema:
    return {"anyOf": list(types)}


def list_of(item: Schema, **more: Any) -> Schema:
    return {"type": "array", "items": item, **more}


def map_of(value: Schema, **more: Any) -> Schema:
    return {"type": "object", "additionalProperties": value, **more}


def port(low: int = 1) -> Schema:
    return integer(low, 65535)


def http_path() -> Schema:
    return string(pattern="^/")


def duration() -> Schema:
    return {"anyOf": [{"type": "number", "minimum": 0}, string(pattern=DURATION_PATTERN)]}


def command() -> Schema:
    return one_of(string(), list_of({"type": ["string", "number"]}))


def env() -> Schema:
    """A mapping of names to plain values, or compose's list of NAME=VALUE (or NAME)."""
    return one_of(map_of({"type": ["string", "number", "boolean", "null"]}),
                  list_of(string(pattern=r"^[^=\s][^=]*(=.*)?$")), {"type": "null"})


def names() -> Schema:
    return list_of(string())


@dataclass(frozen=True)
class Field:
    name: str
    type: Schema
    help: str


@dataclass(frozen=True)
class Section:
    help: str
    fields: tuple[Field, ...]
    exactly_one: tuple[str, ...] = ()       # exactly one of these keys is given
    others: Schema | None = None            # the schema of keys not listed (None: none allowed)
    key_pattern: str | None = None          # what every key must look like
    required: tuple[str, ...] = ()


def keys(section: str) -> tuple[str, ...]:
    """The keys a section allows, in the table's order."""
    return tuple(f.name for f in SECTIONS[section].fields)


def field(section: str, name: str) -> Field:
    return next(f for f in SECTIONS[section].fields if f.name == name)


_RUNTIMES = ("node", "python", "go")
_HTTP_METHODS = any_case("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
_BUILD_HELP = "a folder with a Dockerfile, relative to mesh.yaml; or {context, dockerfile, args, target}"

SECTIONS: dict[str, Section] = {
    "project": Section("mesh.yaml: what `meshctl up` runs", (
        Field("name", one_of(string(pattern=NAME_PATTERN), VARIABLE), "the project's name; default: the folder's name"),
        Field("mesh", ref("mesh"), "the mesh between the services: mTLS mode and traffic capture"),
        Field("services", map_of(ref("service"), minProperties=1, propertyNames={"pattern": NAME_PATTERN}),
              "the services, by name; each gets a pod"),
    ), required=("services",)),
    "mesh": Section("the mesh between a project's services", (
        Field("mtls", {"anyOf": [{"enum": ["strict", "permissive", "off", False]}, VARIABLE]},
              "strict (the default): mTLS between pods; permissive: plaintext too; off: no mesh"),
        Field("capture", boolean(), "redirect an app's calls to other services through its proxy (default true)"),
        Field("tracing", ref("tracing"), "where spans are exported (OTLP/HTTP), and which share of traces"),
    )),
    "tracing": Section("span export to an OpenTelemetry collector (docs/observability.md)", (
        Field("otlp", string(pattern="^(https?://|\\$)"),
              "the collector's OTLP/HTTP base URL, e.g. http://localhost:4318 (default: OTEL_EXPORTER_OTLP_ENDPOINT)"),
        Field("sample", number(0, 1), "the share of new traces exported, 0.0 to 1.0 (default 1.0)"),
    )),
    "service": Section("one service: its app and its sidecars", (
        Field("build", one_of(string(), ref("build")), _BUILD_HELP),
        Field("image", string(minLength=1), "an image to run as it is, e.g. nginx:1.25"),
        Field("runtime", words(*_RUNTIMES), "run `command` with no Dockerfile in this runtime"),
        Field("source", string(), "run mode: the folder mounted at /app (default: mesh.yaml's)"),
        Field("port", port(), "the port the app listens on inside the pod (default: the Dockerfile's EXPOSE)"),
        Field("protocol", any_case("http", "tcp"), "http (the default) or tcp: a TCP proxy"),
        Field("health", one_of(http_path(), ref("health")),
              "ready when this path answers through HTTPS → proxy → app; a TCP service: {tcp: true} or {exec: [...]}"),
        Field("env", env(), "the app's environment: a mapping, or a list of NAME=VALUE"),
        Field("environment", env(), "compose's name for env"),
        Field("command", command(), "the app's command (the image's CMD replaced); a string runs in sh -c"),
        Field("metrics_path", http_path(), "the app's own Prometheus endpoint, merged into the metrics sidecar's"),
        Field("sidecars", one_of({"const": False}, ref("sidecars"), {"type": "null"}),
              "settings of meshctl's sidecars and sidecars of your own; false: none at all"),
        Field("ports", ref("ports"), "host ports on 127.0.0.1; 0 asks for a free one"),
        Field("stop_grace_period", duration(), "SIGTERM, then this long, then SIGKILL (default 10s)"),
        Field("watch", ref("watch"), "hot reload: what a change to a file does"),
        Field("checks", one_of(list_of(ref("check")), {"type": "null"}), "what `meshctl test` checks beside the built-in checks"),
        Field("allow", list_of(one_of(string(), ref("allow_rule"))),
              "who may call this service, and how: names, or rules {from, methods, paths} (default: every service)"),
        Field("traffic", ref("traffic"), "how every caller's proxy calls it: timeout, retries, circuit breaker, split"),
        Field("faults", one_of(list_of(ref("fault")), ref("fault"), {"type": "null"}),
              "faults its proxy injects on calls into it"),
        Field("depends_on", one_of(names(), map_of(one_of(ref("dependency"), {"type": "null"})), {"type": "null"}),
              "services whose readiness the app waits for before it starts"),
    )),
    "build": Section("compose's build mapping", (
        Field("context", string(minLength=1), "the folder sent to the build, relative to mesh.yaml (default .)"),
        Field("dockerfile", string(minLength=1), "the Dockerfile, relative to the context (default Dockerfile)"),
        Field("args", env(), "build arguments (ARG), a mapping or a list of NAME=VALUE"),
        Field("target", string(minLength=1), "the stage of a multi-stage Dockerfile to build"),
    )),
    "health": Section("a TCP service's readiness", (
        Field("tcp", {"const": True}, "ready on a TCP connect through its chain"),
        Field("exec", command(), "ready when this command, run in the app's container, exits 0"),
    ), exactly_one=("tcp", "exec")),
    "sidecars": Section("meshctl's sidecars (false drops one) and sidecars of your own (any other name)", (
        Field("proxy", one_of({"const": False}, {"const": True}, {"type": "null"}, ref("proxy")), "the proxy sidecar"),
        Field("tls", one_of({"const": False}, {"const": True}, {"type": "null"}, ref("tls")),
              "HTTPS in front of the app (served by the proxy)"),
        Field("metrics", one_of({"const": False}, {"const": True}, {"type": "null"}, ref("metrics")),
              "the metrics sidecar"),
    ), others=ref("user_sidecar"), key_pattern=NAME_PATTERN),
    "proxy": Section("the proxy sidecar", (
        Field("timeout", duration(), "how long the proxy waits for the app's answer (default 15s)"),
        Field("retries", integer(0, 100), "retries when the app refuses the connection (default 2)"),
        Field("connect_timeout", duration(), "per connection attempt (default 200ms)"),
    )),
    "tls": Section("the certificate", (
        Field("hosts", names(), "extra names in the certificate"),
    )),
    "metrics": Section("the metrics sidecar", ()),
    "user_sidecar": Section("a sidecar of your own: joins the pod, ready before the app starts", (
        Field("image", string(minLength=1), "its image, e.g. redis:7"),
        Field("build", one_of(string(), ref("build")), _BUILD_HELP),
        Field("command", command(), "the image's CMD, replaced"),
        Field("entrypoint", command(), "the image's ENTRYPOINT, replaced"),
        Field("env", env(), "its environment"),
        Field("environment", env(), "compose's name for env"),
        Field("ready", ref("ready"), "when it is ready: {tcp: PORT}, {http: PATH, port: PORT} or {exec: [...]}"),
        Field("user", one_of(string(minLength=1), {"type": "integer"}), "user name or uid[:gid] (default: yours)"),
        Field("read_only", boolean(), "a read-only root filesystem (default true)"),
        Field("cap_add", list_of(string(pattern="^[A-Za-z_]+$")), "Linux capabilities, after cap_drop ALL"),
        Field("stop_grace_period", duration(), "SIGTERM, then this long (default 5s)"),
    ), exactly_one=("image", "build")),
    "ready": Section("a user sidecar's readiness", (
        Field("tcp", port(), "a TCP port that accepts connections"),
        Field("http", http_path(), "an HTTP path that answers 2xx (with port)"),
        Field("port", port(), "the port of `http`"),
        Field("exec", command(), "a command that exits 0"),
    ), exactly_one=("tcp", "http", "exec")),
    "ports": Section("host ports on 127.0.0.1; 0 asks for a free one", (
        Field("https", port(0), "HTTPS through the proxy (default 8443 for the first service)"),
        Field("http", port(0), "plain HTTP through the proxy (default 8080 for the first service)"),
        Field("metrics", port(0), "the metrics sidecar (default 9090 for the first service)"),
    )),
    "watch": Section("hot reload", (
        Field("sync", map_of(string(pattern="^/")), "local folder → container path: mounted, a save restarts the app"),
        Field("rebuild", names(), "globs that need a rebuild even in sync mode"),
        Field("ignore", names(), "globs never watched"),
    )),
    "check": Section("a check `meshctl test` runs: an HTTP request or a command", (
        Field("name", string(minLength=1), "names the test case in the report"),
        Field("request", one_of(string(), ref("request")), "an HTTP request: \"GET /path\" or {method, path, headers, body}"),
        Field("exec", command(), "a command run in the app's container"),
        Field("via", words("https", "http"), "the endpoint a request goes to (default https)"),
        Field("expect", one_of(ref("http_expect"), ref("exec_expect"), {"type": "null"}), "what the answer must show"),
        Field("timeout", duration(), "how long the check may take"),
        Field("faults", map_of(one_of(list_of(ref("fault")), ref("fault"))),
              "service → faults its proxy injects while this check runs (a resilience check)"),
    ), exactly_one=("request", "exec")),
    "request": Section("an HTTP check's request", (
        Field("method", any_case("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
              "the HTTP method (default GET)"),
        Field("path", http_path(), "the path (default /)"),
        Field("headers", map_of({"type": ["string", "number", "boolean", "null"]}), "request headers"),
        Field("body", {}, "the body; a mapping or list is sent as JSON"),
    )),
    "http_expect": Section("what an HTTP check's answer must show", (
        Field("status", one_of(integer(100, 599), list_of(integer(100, 599))), "a status or a list of them"),
        Field("body_contains", string(), "text the body contains"),
        Field("body_matches", string(), "a regular expression the body matches"),
        Field("json", {"type": ["object", "null"]}, "dotted field path → expected value"),
        Field("max_latency", duration(), "the slowest answer allowed"),
    )),
    "exec_expect": Section("what a command check must end with", (
        Field("exit_code", integer(0, 255), "the exit code (default 0)"),
        Field("output_contains", string(), "text its output contains"),
    )),
    "fault": Section("a fault the service's proxy injects", (
        Field("abort", integer(200, 599), "answer with this HTTP status instead of the app"),
        Field("delay", duration(), "delay the call this long (at most 60s)"),
        Field("reset", {"const": True}, "a TCP service: reset the connection"),
        Field("percent", number(0, 100), "the share of calls it hits (default 100)"),
        Field("from", one_of(string(), names()), "only calls from these services"),
    ), exactly_one=("abort", "delay", "reset")),
    "allow_rule": Section("a route rule: who may call, with which methods, on which paths", (
        Field("from", one_of(string(), names()), "the callers (default: every service)"),
        Field("methods", list_of(_HTTP_METHODS), "the methods allowed (default: any)"),
        Field("paths", list_of(string(pattern=r"^[/*]")), "exact paths, prefixes ending in *, suffixes starting with *"),
    )),
    "traffic": Section("how every caller's proxy calls this service (docs/traffic.md)", (
        Field("timeout", duration(), "the caller's whole wait, retries included; then 504"),
        Field("retries", ref("retries"), "what is retried, how often"),
        Field("circuit_breaker", ref("circuit_breaker"), "stop calling a failing service for a while"),
        Field("split", map_of(integer(0, 100)), "service → percentage of the calls (summing to 100)"),
    )),
    "retries": Section("retries of a caller's proxy", (
        Field("attempts", integer(0), "retries after the first try (default 2)"),
        Field("on", list_of(one_of({"enum": ["5xx", "gateway-error", "reset", "connect-failure"]},
                                   {"enum": [401, 403, 404, 408, 425, 500, 501, 502, 503, 504]})),
              "what is retried (default [connect-failure, reset, 5xx])"),
        Field("per_try_timeout", duration(), "one try's wait (default timeout / (attempts + 1))"),
        Field("methods", list_of(_HTTP_METHODS), "the methods that may be replayed"),
    )),
    "circuit_breaker": Section("a caller's circuit breaker and connection pool", (
        Field("consecutive_errors", integer(1), "failed calls in a row that open the breaker"),
        Field("open_for", duration(), "how long it stays open (default 30s)"),
        Field("max_connections", integer(1), "connections at most"),
        Field("max_pending", integer(1), "calls waiting at most; more get 503"),
    )),
    "dependency": Section("one entry of depends_on's mapping form", (
        Field("condition", words("ready", "started", "service_healthy", "service_started"),
              "ready (the default; compose's service_healthy) or started (service_started)"),
    )),
}
