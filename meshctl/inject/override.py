"""compose.override.yaml beside the injected file: inject reads only the file it is given, and says
so. `docker compose up` without -f merges the override over the compose file it finds: over an
injected compose.yaml (--in-place) it would add its ports or networks to an app that now lives in
its holder's namespace; a compose.mesh.yaml run with -f reads no override at all. Merging the pair
first (`docker compose config`) and injecting that is how the override's settings get wrapped too."""

from __future__ import annotations

from pathlib import Path

import yaml

# compose-go's default names, in its order: the first one found is merged over the default file.
OVERRIDE_NAMES = ("compose.override.yml", "compose.override.yaml", "docker-compose.override.yml",
                  "docker-compose.override.yaml")


def override_notes(path: Path, injected: set[str], *, in_place: bool) -> list[str]:
    """What to tell the user about an override file beside `path`, a compose file `docker compose`
    finds by itself (nothing when there is none)."""
    found = [path.with_name(name) for name in OVERRIDE_NAMES if path.with_name(name).is_file()]
    if not found:
        return []
    override = found[0]
    merge = (f"to inject what `docker compose up` runs, merge them first: `docker compose -f {path.name} "
             f"-f {override.name} config > compose.merged.yaml`, then `meshctl inject compose.merged.yaml`")
    if in_place:
        where = (f"`docker compose up` without -f will merge it over the injected {path.name}")
        touched = sorted(injected & _services(override))
        if touched:
            where += (f", and it sets {', '.join(touched)}, which inject wrapped: ports or networks it gives "
                      "them clash with their pod's network_mode, and nothing it adds is wrapped")
    else:
        where = "the injected output, run with -f, does not read it either"
    return [f"{override} was not read: inject reads only {path.name}; {where}; {merge}"]


def _services(override: Path) -> set[str]:
    try:
        data = yaml.safe_load(override.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return set()
    services = data.get("services") if isinstance(data, dict) else None
    return {str(name) for name in services} if isinstance(services, dict) else set()
