"""The test suite's own rules: a test module takes what it shares from tests/support, never
from another test module or from conftest (importing a test module runs its fixtures'
and tests' definitions a second time, and ties one file's helpers to another's tests)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imported(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def test_no_test_module_imports_another_or_conftest() -> None:
    wrong = [
        f"{path.name}: {module}"
        for path in sorted(TESTS.glob("*.py"))
        for module in _imported(path)
        if module.startswith("tests.test_") or module == "tests.conftest"
    ]
    assert wrong == []
