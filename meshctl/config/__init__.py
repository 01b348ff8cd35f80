"""What the user asked for, typed and checked: mesh.yaml, a bare Dockerfile or `--image`/`--port`
become one frozen ProjectSpec, and every mistake becomes a ConfigError naming file:line and field.

    spec.py              the dataclasses (no parsing, no I/O)
    load.py              the entry points: find_config, load_project, parse_project
    services.py          one service: build/image/run mode, port, protocol, health, env, host ports
    mesh.py              `mesh:` and `allow`, resolved into each proxy's MeshSettings
    traffic.py           a service's `traffic:` and `allow:` route rules, and their project-wide checks
    check_specs.py       a service's `checks:` (what `meshctl test` runs beside the built-in ones)
    sidecar_settings.py  a service's `sidecars:`: meshctl's own settings and the user's sidecars
    depends.py           `depends_on:` between services (names, conditions, no cycle)
    interpolate.py       ${VAR} from the shell and .env, as compose reads them
    run_mode.py          a command run in your folder with no Dockerfile; `watch:`
    values.py            small value parsers (durations, ports, commands, names, unknown fields)
    yamlpos.py           YAML with positions: field path → file:line
    port_protocol.py     the HTTP-or-TCP evidence shared with inject
    runtimes.py          which runtime (node, python, go) runs a command without a Dockerfile

May import: meshctl.errors, meshctl.model. Nothing above it."""

from .load import find_config, load_project, parse_project
from .services import dockerfile_exposed_port, inferred_protocol
from .spec import (
    CONFIG_NAMES, DEFAULT_HOST_PORTS, DEPENDENCY_CONDITIONS, MTLS_MODES, PORT_NAMES, RESERVED_POD_PORTS,
    SIDECAR_SETTINGS, AllowRule, BuildOptions, CheckSpec, CircuitBreaker, ExecCheck, Fault, HttpCheck, MeshSettings,
    MetricsSettings, ProjectSpec, ProxySettings, ReadySpec, RetryPolicy, ServiceSpec, TlsSettings, TracingSettings,
    TrafficPolicy, UserSidecar, WatchSettings,
)
from .values import parse_duration, sanitize_name

__all__ = [
    "CONFIG_NAMES", "DEFAULT_HOST_PORTS", "DEPENDENCY_CONDITIONS", "MTLS_MODES", "PORT_NAMES", "RESERVED_POD_PORTS",
    "SIDECAR_SETTINGS", "AllowRule", "BuildOptions", "CheckSpec", "CircuitBreaker", "ExecCheck", "Fault", "HttpCheck",
    "MeshSettings", "MetricsSettings", "ProjectSpec", "ProxySettings", "ReadySpec", "RetryPolicy", "ServiceSpec",
    "TlsSettings", "TracingSettings", "TrafficPolicy", "UserSidecar", "WatchSettings", "dockerfile_exposed_port",
    "find_config", "inferred_protocol", "load_project", "parse_duration", "parse_project", "sanitize_name",
]
