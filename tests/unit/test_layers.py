"""The package's layers: the shared contract (modules at the top of ``classifier``) imports no
concern, and inference and serving never import training, so neither cycles back into it."""

from __future__ import annotations

import ast

import pytest

from tests.helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "container" / "classifier"
CONCERNS = ("training", "debugging", "inference", "serving", "watching")
# What each layer may not import, statically or inside a function.
FORBIDDEN = {
    "shared": CONCERNS,
    "inference": ("training", "serving", "debugging", "watching"),
    "serving": ("training", "debugging", "watching"),
}


def _layer(path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "shared"


def _imported_concerns(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "classifier" and len(parts) > 1 and parts[1] in CONCERNS:
                found.add(parts[1])
    return found


# The image's entry point dispatches to every program: it sits above all layers.
ENTRY_POINT = PACKAGE / "entrypoints.py"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _layer(p) in FORBIDDEN and p != ENTRY_POINT)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_no_concern_above_its_layer(path):
    layer = _layer(path)
    crossing = _imported_concerns(path) & set(FORBIDDEN[layer])
    assert not crossing, f"{path.relative_to(PACKAGE)} ({layer}) imports classifier.{sorted(crossing)}"
