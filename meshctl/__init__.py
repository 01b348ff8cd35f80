"""meshctl: wrap a local service in TLS, proxy and metrics sidecars that share its network namespace."""

__version__ = "0.1.0"
