"""docs/ARCHITECTURE.md's module tree names every module of the package, and no other (a
folder's ``__init__.py`` goes with its folder's line)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
# An entry of the tree: indentation, then a folder ("media/") or a module ("decoder.py").
ENTRY = re.compile(r"^(?P<indent> *)(?P<name>[\w.]+(?:/|\.py))(?:\s|$)")


def documented_modules(text: str) -> set[str]:
    """The module paths of the first code block's tree (``avatar_rtc/`` at its root)."""
    block = text.split("```", 2)[1]
    stack: list[tuple[int, str]] = []  # (indent, folder) of the folders we are in
    modules: set[str] = set()
    for line in block.splitlines():
        entry = ENTRY.match(line)
        if entry is None:
            continue  # the block's language tag, or a description running on
        indent, name = len(entry["indent"]), entry["name"]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if name.endswith("/"):
            stack.append((indent, name))
        else:
            modules.add("".join(folder for _, folder in stack) + name)
    return modules


def test_the_tree_parser_follows_the_indentation() -> None:
    text = "```\npkg/\n  a.py   one\n         more words.py of it\n  sub/\n    b.py\n  c.py\n```"
    assert documented_modules(text) == {"pkg/a.py", "pkg/sub/b.py", "pkg/c.py"}


def test_every_module_is_in_the_architecture_tree() -> None:
    package = ROOT / "avatar_rtc"
    actual = {
        str(p.relative_to(ROOT))
        for p in package.rglob("*.py")
        if p.name != "__init__.py" or p.parent == package
    }
    documented = documented_modules(DOC.read_text())
    assert sorted(actual - documented) == [], "modules missing from docs/ARCHITECTURE.md"
    assert sorted(documented - actual) == [], "docs/ARCHITECTURE.md names modules that are gone"
