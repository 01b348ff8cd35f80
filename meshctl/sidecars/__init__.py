"""The sidecars meshctl runs beside an app: one definition per kind (metrics, proxy, tls, and a
user's own), the containers' readiness as data, and every sidecar config rendered from templates/.
Pod building, planning, readiness, stop order, `ps` and inject all read these definitions.

  kinds.py      SidecarKind, KINDS, a user's kind, which kinds a service runs, start/stop order
  readiness.py  Readiness, the readiness of apps, proxies and user sidecars, the shell probes
  haproxy.py    every HAProxy config (proxy, mesh listeners, tls, inject's TCP proxy), the log formats
  capture.py    traffic capture: its rules in words and its script
  addresses.py  ports and paths inside a pod
  data.py       the sidecars/ and templates/ folders

May import: meshctl.config, meshctl.model, meshctl.errors."""

import lazy_loader

# The names and the modules they come from are in __init__.pyi; each loads on first use.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
