"""The README and docs/ hold together: every relative link reaches a file (and its heading), the
README stays a newcomer's page, and its quickstart names what CI really runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 15 * 1024   # bytes: a topic's detail goes into docs/<topic>.md, not here

LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The page without code: indented blocks, fenced blocks and inline code hold no links."""
    text = FENCE.sub("", text)
    lines = [line for line in text.splitlines() if not line.startswith("    ")]
    return INLINE_CODE.sub("", "\n".join(lines))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces become hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text()))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]   # http:, https:, mailto:


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: {dest.name} has no heading with that anchor")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_heading(page):
    assert broken_links(page) == []


def test_the_readme_links_into_every_page_of_docs():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links(ROOT / "README.md")}
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert unlinked == [], "each docs/ page needs a paragraph and a link in README.md"


def test_the_readme_stays_a_newcomers_page():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, (
        f"README.md is {size} bytes, over {README_LIMIT}: move the detail into docs/<topic>.md "
        "and keep a paragraph and a link in the README")


def test_the_quickstart_names_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("#")[0].strip() for line in quickstart.splitlines() if line.startswith("    .ci/")]
    assert commands[:2] == [".ci/meshctl up examples/hello", ".ci/test"]
    assert (ROOT / "examples/hello/mesh.yaml").is_file()
    assert "exec bash .ci/test" in (ROOT / ".ci/run").read_text()


def test_the_link_check_sees_a_broken_link_and_anchor(tmp_path):
    (tmp_path / "there.md").write_text("# A heading: with `code` → arrows\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a-heading-with-code--arrows) [gone](nowhere.md) "
                    "[bad](there.md#nope) `[code](ignored.md)` [web](https://example.com)\n\n"
                    "    [indented](ignored.md)\n")
    assert broken_links(page) == ["nowhere.md: no such file",
                                  "there.md#nope: there.md has no heading with that anchor"]


def tree_entries(readme: str) -> dict[str, str]:
    """The README's package tree: each top-level entry (`cli/`, `model.py`) and the text that
    describes it (its line and the continuation lines under it)."""
    section = readme.split("## Architecture", 1)[1]
    lines = section.split("    meshctl/\n", 1)[1].split("\n\n", 1)[0].splitlines()
    entries: dict[str, str] = {}
    current = ""
    for line in lines:
        head = line[6:] if line.startswith("      ") and not line.startswith("       ") else ""
        if head:
            names = re.findall(r"\b([a-z_]+(?:/|\.py))", head.split("  ")[0])
            for name in names:
                entries[name] = head
            current = names[-1]
        else:
            entries[current] += " " + line.strip()
    return entries


def unnamed_modules(root: Path, entries: dict[str, str]) -> list[str]:
    """Modules the tree does not name: a package's modules (its subpackages' too) must be words of
    its entry; a command module is covered by `commands/: one module per group`."""
    missing = []
    for path in sorted((root / "meshctl").rglob("*.py")):
        rel = path.relative_to(root / "meshctl")
        if path.name in ("__init__.py", "__main__.py") or rel.parts[:2] == ("cli", "commands"):
            continue
        if len(rel.parts) == 1:
            if rel.name not in entries:
                missing.append(str(rel))
            continue
        text = entries.get(rel.parts[0] + "/", "")
        if not re.search(rf"\b{re.escape(path.stem)}\b", text):
            missing.append(str(rel))
    return missing


def test_the_readme_tree_names_every_module():
    entries = tree_entries((ROOT / "README.md").read_text())
    assert unnamed_modules(ROOT, entries) == [], (
        "README.md's architecture tree must name these modules (team rule: keep it true)")


def test_the_tree_check_sees_a_module_it_does_not_name(tmp_path):
    for rel in ("model.py", "config/spec.py", "config/fresh.py", "cli/commands/up.py", "cli/ui/terminal.py"):
        (tmp_path / "meshctl" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "meshctl" / rel).write_text("")
    readme = ("## Architecture\n\n    meshctl/\n      cli/        the commands (commands/),\n"
              "                  ui/ (terminal)\n      config/     spec\n      model.py  names\n\nafter\n")
    assert unnamed_modules(tmp_path, tree_entries(readme)) == ["config/fresh.py"]


def test_the_command_table_has_a_row_for_every_command():
    import typer.main

    from meshctl.cli.app import app
    commands = sorted(typer.main.get_command(app).commands)
    table = (ROOT / "README.md").read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    first_cells = " ".join(row.split(" | ")[0] for row in table.splitlines() if row.startswith("| `meshctl"))
    unlisted = [name for name in commands if f"`meshctl {name}" not in first_cells]
    assert unlisted == [], "README.md's command table needs a row for these commands"
