"""The sidecars meshctl runs beside an app: one definition per kind (metrics, proxy, tls, and a
user's own), the containers' readiness as data, and every sidecar config rendered from templates/.
Pod building, planning, readiness, stop order, `ps` and inject all read these definitions.
May import: meshctl.config, meshctl.model, meshctl.errors."""

from .kinds import (
    ACCESS_LOG_FORMAT, CAPTURE, CERT_BUNDLE, CONFIG_MOUNT, EVENTS_PORT, KINDS, MESH_FILE, MESH_GID,
    MESH_PORT, METRICS_PORT, OUTBOUND_PORT, OUTBOUND_TCP_PORT, PROXY_PORT, PROXY_STATS_PORT, READY_PATH,
    Readiness, SIDECAR_STOP_TIMEOUT, SidecarKind, TCP_LOG_FORMAT, TLS_PORT, capture_rules, captures,
    chain_of, config_roles, data_dir, kind_of, kinds_for, metrics_env, proxy_stats_url, published_ports,
    render_capture, render_configs, render_proxy, render_tcp_proxy, render_tls, roles_of, serving_readiness,
    shell_http_check, shell_tls_chain_check, start_rank, stop_group, template, tls_kind, user_kind
)

__all__ = [
    "ACCESS_LOG_FORMAT", "CAPTURE", "CERT_BUNDLE", "CONFIG_MOUNT", "EVENTS_PORT", "KINDS", "MESH_FILE",
    "MESH_GID", "MESH_PORT", "METRICS_PORT", "OUTBOUND_PORT", "OUTBOUND_TCP_PORT", "PROXY_PORT",
    "PROXY_STATS_PORT", "READY_PATH", "Readiness", "SIDECAR_STOP_TIMEOUT", "SidecarKind", "TCP_LOG_FORMAT",
    "TLS_PORT", "capture_rules", "captures", "chain_of", "config_roles", "data_dir", "kind_of", "kinds_for",
    "metrics_env", "proxy_stats_url", "published_ports", "render_capture", "render_configs", "render_proxy",
    "render_tcp_proxy", "render_tls", "roles_of", "serving_readiness", "shell_http_check",
    "shell_tls_chain_check", "start_rank", "stop_group", "template", "tls_kind", "user_kind"
]
