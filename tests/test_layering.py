"""ragflow never imports a concrete connector or indexer (docs: DESIGN.md): it finds them by entry point
name through ``ragflow.plugins``, which is also how a third party adds its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGES = ("ragflow.connectors", "ragflow.indexers")


def _imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, relative imports resolved against its package."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return found


@pytest.mark.parametrize(
    "path", sorted((ROOT / "ragflow").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_ragflow_imports_no_concrete_connector_or_indexer(path: Path) -> None:
    concrete = [
        module
        for module in _imported_modules(path)
        if any(module == p or module.startswith(p + ".") for p in PLUGIN_PACKAGES)
    ]
    assert not concrete, f"{path.relative_to(ROOT)} imports {concrete}: load it with ragflow.plugins instead"
