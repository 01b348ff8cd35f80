"""A service's `sidecars:`: settings for meshctl's own (proxy, tls, metrics; false drops one, and
`sidecars: false` drops them all), and any other name declares a sidecar of the user's."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from .fields import keys
from .spec import SIDECAR_SETTINGS, MetricsSettings, ProxySettings, ReadySpec, TlsSettings, UserSidecar
from .values import (
    NAME_RE, build_or_image, command_field, duration_field, env_settings, kind_of, port_field, reject_unknown,
)
from .yamlpos import Where

# Names a user sidecar may not take: the pod's own roles, and what the holder and installs use.
RESERVED_SIDECAR_NAMES = ("pod", "app", "install", "deps")
_USER_SIDECAR_KEYS = keys("user_sidecar")
_USER_SIDECAR_EXAMPLE = ("sidecars:\n  cache: {image: redis:7, ready: {tcp: 6379}}\n"
                         "  notes: {build: ./notes, command: [python3, notes.py], ready: {http: /ready, port: 9000}}")
_READY_KINDS = ("tcp", "http", "exec")
_READY_HINT = "ready: {tcp: 6379}   or   ready: {http: /ready, port: 9000}   or   ready: {exec: [redis-cli, ping]}"


def parse_sidecars(raw: Any, path: tuple, where: Where, root: Path) -> dict[str, Any]:
    """ServiceSpec's tls, proxy, metrics and user_sidecars fields."""
    settings: dict[str, Any] = {"tls": TlsSettings(), "proxy": ProxySettings(), "metrics": MetricsSettings(),
                                "user_sidecars": ()}
    if raw is None:
        return settings
    if raw is False:           # a stock image (a database) as it is: no sidecars at all
        return {**settings, "tls": None, "proxy": None, "metrics": None}
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a mapping of sidecar names, found {kind_of(raw)}",
                          hint="sidecars: {proxy: {timeout: 15s}, tls: {}, metrics: {}, cache: {image: redis:7}}")
    settings["user_sidecars"] = tuple(_parse_user_sidecar(str(name), value, path + (name,), where, root)
                                      for name, value in raw.items() if name not in SIDECAR_SETTINGS)
    for role in SIDECAR_SETTINGS:
        if role in raw:
            settings[role] = _parse_own_sidecar(role, raw[role], path + (role,), where)
    return settings


def _parse_own_sidecar(role: str, value: Any, rpath: tuple, where: Where) -> Any:
    """The settings of one of meshctl's own sidecars, or None for `role: false`."""
    if value is False:
        return None
    if value is None or value is True:
        value = {}
    if not isinstance(value, dict):
        raise where.error(rpath, f"expected a mapping of settings, or false to drop it, found {kind_of(value)}")
    if role == "proxy":
        reject_unknown(value, keys("proxy"), rpath, where)
        retries = value.get("retries", 2)
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 100:
            raise where.error(rpath + ("retries",), "expected a whole number from 0 to 100")
        return ProxySettings(
            timeout=duration_field(value.get("timeout", 15), rpath + ("timeout",), where),
            retries=retries,
            connect_timeout=duration_field(value.get("connect_timeout", 0.2), rpath + ("connect_timeout",), where))
    if role == "tls":
        reject_unknown(value, keys("tls"), rpath, where)
        hosts = value.get("hosts", [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            raise where.error(rpath + ("hosts",), "expected a list of host names")
        return TlsSettings(hosts=tuple(hosts))
    reject_unknown(value, keys("metrics"), rpath, where)
    return MetricsSettings()


def _parse_user_sidecar(name: str, raw: Any, path: tuple, where: Where, root: Path) -> UserSidecar:
    """Any name under `sidecars:` other than meshctl's own declares a sidecar of the user's."""
    _check_user_sidecar_shape(name, raw, path, where)
    reject_unknown(raw, _USER_SIDECAR_KEYS, path, where)
    build, build_options, image = build_or_image(raw, path, where, root, "redis:7")
    user = raw.get("user")
    if user is not None and (isinstance(user, bool) or not isinstance(user, (str, int)) or not str(user).strip()):
        raise where.error(path + ("user",), "expected a user name or uid[:gid]", hint="user: \"0\" runs it as root")
    read_only = raw.get("read_only", True)
    if not isinstance(read_only, bool):
        raise where.error(path + ("read_only",), "expected true or false")
    cap_add = raw.get("cap_add") or []
    if not isinstance(cap_add, list) or not all(isinstance(c, str) and re.fullmatch(r"[A-Za-z_]+", c) for c in cap_add):
        raise where.error(path + ("cap_add",), "expected a list of Linux capabilities", hint="cap_add: [NET_BIND_SERVICE]")
    return UserSidecar(
        name=name, image=image, build=build, build_options=build_options,
        command=command_field(raw.get("command"), path + ("command",), where),
        entrypoint=command_field(raw.get("entrypoint"), path + ("entrypoint",), where),
        env=env_settings(raw, path, where),
        ready=_parse_ready(raw.get("ready"), path + ("ready",), where), user=None if user is None else str(user),
        read_only=read_only, cap_add=tuple(c.upper().removeprefix("CAP_") for c in cap_add),
        stop_grace_period=duration_field(raw.get("stop_grace_period", 5), path + ("stop_grace_period",), where))


def _check_user_sidecar_shape(name: str, raw: Any, path: tuple, where: Where) -> None:
    """A name of its own, and exactly one of image or build (a typo of `proxy` lands here too)."""
    if name in RESERVED_SIDECAR_NAMES or not NAME_RE.match(name):
        problem = (f"{name!r} is a name meshctl uses in every pod" if name in RESERVED_SIDECAR_NAMES
                   else f"sidecar name {name!r} is not valid")
        raise where.error(path, problem, hint="name your sidecar for what it does (lower-case letters, digits, "
                          "'-', '_' or '.'); meshctl's own are " + ", ".join(SIDECAR_SETTINGS))
    close = difflib.get_close_matches(name, SIDECAR_SETTINGS, n=1)
    if not isinstance(raw, dict) or ("image" in raw) == ("build" in raw):
        what = "needs exactly one of `image` or `build`" if isinstance(raw, dict) else \
            f"expected a mapping with `image` or `build`, found {kind_of(raw)}"
        raise where.error(path, f"sidecar {name!r} {what}",
                          hint=(f"did you mean {close[0]!r}? " if close else "")
                          + "meshctl's own sidecars are: " + ", ".join(SIDECAR_SETTINGS)
                          + "; a sidecar of yours needs an image or a build folder:\n" + _USER_SIDECAR_EXAMPLE)


def _parse_ready(raw: Any, path: tuple, where: Where) -> ReadySpec | None:
    if raw is None:
        return None
    hint = _READY_HINT
    if not isinstance(raw, dict):
        raise where.error(path, f"expected a mapping, found {kind_of(raw)}", hint=hint)
    kinds = [k for k in raw if k in _READY_KINDS]
    unknown = [k for k in raw if k not in keys("ready")]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), _READY_KINDS, n=1)
        raise where.error(path + (unknown[0],), f"unknown ready kind {unknown[0]!r}",
                          hint=(f"did you mean {close[0]!r}? " if close else "") + hint)
    if len(kinds) != 1:
        raise where.error(path, "set exactly one of tcp, http or exec", hint=hint)
    if "port" in raw and kinds[0] != "http":
        raise where.error(path + ("port",), "`port` goes with `http` only", hint=hint)
    if kinds[0] == "tcp":
        return ReadySpec(tcp=port_field(raw["tcp"], "tcp", where, path + ("tcp",)))
    if kinds[0] == "http":
        http = raw["http"]
        if not isinstance(http, str) or not http.startswith("/"):
            raise where.error(path + ("http",), "expected an HTTP path starting with /", hint=hint)
        if "port" not in raw:
            raise where.error(path + ("port",), "missing: the port the sidecar answers on inside the pod", hint=hint)
        return ReadySpec(http=http, port=port_field(raw["port"], "port", where, path + ("port",)))
    command = command_field(raw["exec"], path + ("exec",), where)
    if not command:
        raise where.error(path + ("exec",), "expected a command", hint=hint)
    return ReadySpec(exec=command)
