"""The pure layers stay pure (DESIGN.md): no I/O, clock or randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PURE = ("sip", "core", "routing")
FORBIDDEN = {"asyncio", "socket", "time", "random", "threading", "os", "uvloop", "subprocess", "selectors"}
ROOT = Path(__file__).resolve().parent.parent / "sipfork"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(p for layer in PURE for p in (ROOT / layer).rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_layer_imports_no_io(path: Path) -> None:
    assert imported_modules(path) & FORBIDDEN == set()


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os.path\nfrom time import monotonic\n")
    assert imported_modules(sample) & FORBIDDEN == {"os", "time"}
