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

import lazy_loader

# The names and the modules they come from are in __init__.pyi; each loads on first use.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
