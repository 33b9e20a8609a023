"""Imports go one way (DESIGN.md): a package only imports the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> workbench/metastore packages it must never import (at module level or in functions)
FORBIDDEN = {
    "workbench.space": ["workbench.nn", "workbench.morph", "workbench.strategy", "workbench.evaluate",
                        "workbench.transfer", "workbench.execute", "workbench.loop", "workbench.cli", "metastore"],
    "workbench.nn": ["workbench.morph", "workbench.strategy", "workbench.evaluate", "workbench.transfer",
                     "workbench.execute", "workbench.loop", "workbench.cli", "metastore"],
    "workbench.morph": ["workbench.strategy", "workbench.evaluate", "workbench.transfer", "workbench.execute",
                        "workbench.loop", "workbench.cli", "metastore"],
    "workbench.strategy": ["workbench.nn", "workbench.evaluate", "workbench.execute", "workbench.loop",
                           "workbench.cli", "metastore"],
    "workbench.transfer": ["workbench.nn", "workbench.evaluate", "workbench.execute", "workbench.loop", "workbench.cli"],
    "workbench.evaluate": ["workbench.strategy", "workbench.transfer", "workbench.execute", "workbench.loop",
                           "workbench.cli", "metastore"],
    "workbench.data": ["workbench.space", "workbench.nn", "workbench.strategy", "workbench.evaluate",
                       "workbench.loop", "workbench.cli", "metastore"],
    "metastore": ["workbench.space", "workbench.nn", "workbench.strategy", "workbench.evaluate",
                  "workbench.transfer", "workbench.loop", "workbench.cli", "workbench.morph"],
}
# third-party libraries confined to one place
CONFINED = {"mlflow": "metastore", "botorch": "workbench.strategy.bo", "gpytorch": "workbench.strategy.bo"}


def modules():
    for base in ("workbench", "metastore"):
        for path in sorted((ROOT / base).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("module, path", list(modules()), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_imports_go_one_way(module, path):
    found = imports_of(path)
    for package, banned in FORBIDDEN.items():
        if module == package or module.startswith(package + "."):
            bad = sorted(i for i in found for b in banned if i == b or i.startswith(b + "."))
            assert not bad, f"{module} imports {bad}"
    for lib, home in CONFINED.items():
        uses = [i for i in found if i == lib or i.startswith(lib + ".")]
        if uses:
            assert module == home or module.startswith(home + "."), f"{module} imports {lib}; only {home} may"
