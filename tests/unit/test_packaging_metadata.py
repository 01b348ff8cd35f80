"""What a built wheel says about meshctl: one version (meshctl/__init__.py's), its licence file and
SPDX expression, classifiers and project URLs; and that no other file writes the version."""

from __future__ import annotations

import ast
import email
import importlib.util
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import meshctl

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]


def _wheel_metadata(tmp_path: Path) -> tuple[set[str], email.message.Message]:
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", *isolation, "-q", "-w",
                    str(tmp_path)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("meshctl-*.whl")
    archive = zipfile.ZipFile(wheel)
    [metadata] = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
    return set(archive.namelist()), email.message_from_bytes(archive.read(metadata))


def test_the_wheel_carries_the_one_version_the_licence_classifiers_and_urls(tmp_path):
    names, metadata = _wheel_metadata(tmp_path)
    assert metadata["Version"] == meshctl.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    classifiers = metadata.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers and "Environment :: Console" in classifiers
    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


def test_the_licence_is_the_apache_2_text_pyproject_names():
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0, January 2004" in (ROOT / "LICENSE").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]


def test_the_version_is_written_once_in_a_module_without_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "meshctl/__init__.py"
    module = ast.parse((ROOT / "meshctl" / "__init__.py").read_text())
    assert not [node for node in ast.walk(module) if isinstance(node, (ast.Import, ast.ImportFrom))]
    # No other source file spells the version out: they import it.
    literal = re.compile(rf"""(version_*\s*[=:]\s*['"]{re.escape(meshctl.__version__)}['"])""", re.IGNORECASE)
    writers = [path.relative_to(ROOT).as_posix()
               for folder in ("meshctl", "sidecars", "runtimes", "templates", "bench", ".ci", "docs")
               for path in (ROOT / folder).rglob("*") if path.is_file() and "__pycache__" not in path.parts
               and literal.search(path.read_text(errors="replace"))]
    assert writers == ["meshctl/__init__.py"]
    assert not literal.search((ROOT / "pyproject.toml").read_text())
