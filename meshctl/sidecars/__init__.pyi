# What the package exports, for type checkers and readers. At run time __init__.py loads each
# name from its module on first use (lazy_loader reads this file), so a command that needs one
# module does not import them all.

from .addresses import (CERT_BUNDLE, CONFIG_MOUNT, EVENTS_PORT, MESH_FILE, MESH_GID, MESH_PORT, METRICS_PORT,
                        OBSERVE_KEY_ENV, OBSERVE_PORT, OBSERVE_READER, OTLP_PORT, OUTBOUND_PORT, OUTBOUND_TCP_PORT, PROXY_PORT,
                        PROXY_STATS_PORT, READY_PATH, TLS_PORT, Cluster,
                        app_otel_env, observe_key, proxy_stats_url, published_ports)
from .capture import CAPTURE, capture_rules, captures, render_capture
from .data import data_dir, template
from .haproxy import ACCESS_LOG_FORMAT, TCP_LOG_FORMAT, render_proxy, render_tcp_proxy, render_tls
from .kinds import (KINDS, SIDECAR_STOP_TIMEOUT, SidecarKind, chain_of, config_roles, kind_of, kinds_for,
                    metrics_env, render_configs, roles_of, start_rank, stop_group, tls_kind, user_kind)
from .readiness import Readiness, serving_readiness, shell_http_check, shell_tls_chain_check

__all__ = [
                        "ACCESS_LOG_FORMAT",
                        "CAPTURE",
                        "CERT_BUNDLE",
                        "CONFIG_MOUNT",
                        "EVENTS_PORT",
                        "KINDS",
                        "MESH_FILE",
                        "MESH_GID",
                        "MESH_PORT",
                        "METRICS_PORT",
                        "OBSERVE_KEY_ENV",
                        "OBSERVE_PORT",
                        "OBSERVE_READER",
                        "OTLP_PORT",
                        "OUTBOUND_PORT",
                        "OUTBOUND_TCP_PORT",
                        "PROXY_PORT",
                        "PROXY_STATS_PORT",
                        "READY_PATH",
                        "SIDECAR_STOP_TIMEOUT",
                        "TCP_LOG_FORMAT",
                        "TLS_PORT",
                        "Cluster",
                        "Readiness",
                        "SidecarKind",
                        "app_otel_env",
                        "capture_rules",
                        "captures",
                        "chain_of",
                        "config_roles",
                        "data_dir",
                        "kind_of",
                        "kinds_for",
                        "metrics_env",
                        "observe_key",
                        "proxy_stats_url",
                        "published_ports",
                        "render_capture",
                        "render_configs",
                        "render_proxy",
                        "render_tcp_proxy",
                        "render_tls",
                        "roles_of",
                        "serving_readiness",
                        "shell_http_check",
                        "shell_tls_chain_check",
                        "start_rank",
                        "stop_group",
                        "template",
                        "tls_kind",
                        "user_kind"
]
