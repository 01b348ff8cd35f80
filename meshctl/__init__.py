"""meshctl: wrap a local service in TLS, proxy and metrics sidecars that share its network namespace."""

# The one place the version is written: pyproject.toml reads it (tool.hatch.version), the labels and
# `meshctl --version` import it. Keep this module free of imports so reading it costs nothing.
__version__ = "0.1.0"
