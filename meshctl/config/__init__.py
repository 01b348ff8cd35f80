"""What the user asked for, typed and checked: mesh.yaml, a bare Dockerfile or `--image`/`--port`
become one frozen ProjectSpec, and every mistake becomes a ConfigError naming file:line and field.

spec.py holds the dataclasses (no parsing, no I/O); load.py reads and validates; port_protocol.py is the
HTTP-or-TCP evidence shared with inject; runtimes.py says which runtime (node, python, go) runs a
command without a Dockerfile. May import: meshctl.errors, meshctl.model. Nothing above it."""

from .load import (
    dockerfile_exposed_port, find_config, inferred_protocol, load_project, parse_duration, parse_project,
)
from .spec import (
    CONFIG_NAMES, DEFAULT_HOST_PORTS, MTLS_MODES, PORT_NAMES, RESERVED_POD_PORTS, SIDECAR_SETTINGS, CheckSpec,
    ExecCheck, HttpCheck, MeshSettings, MetricsSettings, ProjectSpec, ProxySettings, ReadySpec, ServiceSpec,
    TlsSettings, UserSidecar, WatchSettings,
)

__all__ = [
    "CONFIG_NAMES", "DEFAULT_HOST_PORTS", "MTLS_MODES", "PORT_NAMES", "RESERVED_POD_PORTS", "SIDECAR_SETTINGS",
    "CheckSpec", "ExecCheck", "HttpCheck", "MeshSettings", "MetricsSettings", "ProjectSpec", "ProxySettings",
    "ReadySpec", "ServiceSpec", "TlsSettings", "UserSidecar", "WatchSettings", "dockerfile_exposed_port",
    "find_config", "inferred_protocol", "load_project", "parse_duration", "parse_project",
]
