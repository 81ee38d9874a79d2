"""``bridge/notify`` is an edge: it never imports the other adapters, the store or the service
(the service wires them together). Walks the AST, so a lazy import inside a function is caught too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

NOTIFY = Path(__file__).resolve().parents[2] / "bridge" / "notify"
FORBIDDEN = ("bridge.onec", "bridge.site", "bridge.store", "bridge.service", "bridge.simulator", "bridge.cli")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(NOTIFY.glob("*.py")), ids=lambda p: p.name)
def test_notify_imports_no_other_adapter(path: Path) -> None:
    bad = sorted(n for n in imported(path) if n.startswith(FORBIDDEN))
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", sorted(NOTIFY.glob("*.py")), ids=lambda p: p.name)
def test_every_module_says_what_it_owns_and_must_not_import(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert doc and "Must not import" in doc
    assert len(path.read_text(encoding="utf-8").splitlines()) < 400
