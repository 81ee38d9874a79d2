"""``bridge/domain`` stays pure: no I/O, no clock, no database, no network, no logging.

Walks every module's imports (the AST, so a lazy import inside a function is caught too) and its
calls, and fails on anything outside the standard library's pure modules and bridge.domain.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "bridge" / "domain"
ALLOWED = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "fractions",
    "hashlib",
    "functools",
    "itertools",
    "math",
    "operator",
    "re",
    "typing",
    "abc",
    "bridge",
}
FORBIDDEN_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
}


def modules() -> list[Path]:
    return sorted(DOMAIN.glob("*.py"))


def imported_names(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_domain_module_imports_nothing_impure(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for name in imported_names(tree):
        top = name.split(".")[0]
        assert top in ALLOWED, f"{path.name} imports {name}: bridge/domain must stay pure"
        if top == "bridge":
            assert name.startswith("bridge.domain"), f"{path.name} imports {name}: domain imports only itself"


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_domain_module_never_reads_the_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            base = target.id if isinstance(target, ast.Name) else getattr(target, "attr", "")
            assert (base, node.func.attr) not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} reads the clock"
        if isinstance(node, ast.Name):
            assert node.id not in {"open", "print", "input"}, f"{path.name}:{node.lineno} uses {node.id}()"


def test_the_purity_check_would_catch_an_impure_module(tmp_path: Path) -> None:
    bad = ast.parse("import sqlalchemy\nfrom datetime import datetime\nx = datetime.now()\n")
    assert "sqlalchemy" in imported_names(bad)
    calls = [n for n in ast.walk(bad) if isinstance(n, ast.Call)]
    assert calls and calls[0].func.attr == "now"  # type: ignore[attr-defined]
