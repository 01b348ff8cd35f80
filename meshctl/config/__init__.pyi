# What the package exports, for type checkers and readers. At run time __init__.py loads each
# name from its module on first use (lazy_loader reads this file), so a command that needs one
# module does not import them all.

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
