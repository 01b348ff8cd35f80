"""The suite's own layout: pytest (rootdir import mode, no __init__.py) imports every test module
by its basename, so two files of one name in tests/unit and tests/integration stop the whole run at
collection ("import file mismatch") while each tier alone passes."""

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_name_of_its_own():
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        by_name[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not clashes, f"rename one of each (e.g. *_real.py for the real-engine tier): {clashes}"
