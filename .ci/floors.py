"""Print meshctl's dependency floors pinned exactly (`name>=X[,<Y]` → `name==X`), one a line, read from
pyproject.toml so the lowest-deps run cannot drift from what is declared. A dependency without a
`>=` floor is an error: every floor must be one that is tested."""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip carries the same parser
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

# `name>=X`, or `name>=X,<Y` where a newer release is kept out on purpose (pyproject says why).
FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*>=\s*([0-9][^,;\s]*)\s*(,\s*<\s*[0-9][^,;\s]*)?\s*$")


def pins(pyproject: Path) -> list[str]:
    declared = project(pyproject)["dependencies"]
    out = []
    for requirement in declared:
        match = FLOOR.match(requirement)
        if match is None:
            sys.exit(f"{pyproject}: dependency {requirement!r} has no plain `>=` floor to pin")
        out.append(f"{match.group(1)}=={match.group(2)}")
    return out


def project(pyproject: Path) -> dict:
    return tomllib.loads(pyproject.read_text())["project"]


if __name__ == "__main__":
    # `--key`: what the cached venv depends on besides the pins (the test extras, the Python).
    path = Path(next((arg for arg in sys.argv[1:] if not arg.startswith("--")), "pyproject.toml"))
    lines = pins(path)
    if "--key" in sys.argv:
        lines += project(path)["optional-dependencies"]["test"] + [sys.version]
    print("\n".join(lines))
