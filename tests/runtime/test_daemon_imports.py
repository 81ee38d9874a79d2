"""The service runtime stays at the edge: it never imports the cycle's side of the bridge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "bridge" / "runtime"
MODULES = ["daemon", "signals", "sdnotify", "logging", "metrics", "progress"]
FORBIDDEN = (
    "bridge.service",
    "bridge.onec",
    "bridge.site",
    "bridge.notify",
    "bridge.store",
    "bridge.simulator",
)


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("name", MODULES)
def test_no_import_of_the_service_or_an_adapter(name: str) -> None:
    path = RUNTIME / f"{name}.py"
    bad = {m for m in imports(path) if m.startswith(FORBIDDEN)}
    assert not bad, f"{path.name} imports {bad}"
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{path.name} has no docstring"
    assert len(path.read_text(encoding="utf-8").splitlines()) < 400


@pytest.mark.parametrize("name", ["signals", "sdnotify", "logging", "progress"])
def test_leaf_modules_import_nothing_of_the_bridge(name: str) -> None:
    assert not {m for m in imports(RUNTIME / f"{name}.py") if m.split(".")[0] == "bridge"}
