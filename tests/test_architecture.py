"""Imports go one way (DESIGN.md): a package only imports the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> workbench/metastore packages it must never import (at module level or in functions)
FORBIDDEN = {
    "workbench.space": [
        "workbench.nn",
        "workbench.morph",
        "workbench.strategy",
        "workbench.evaluate",
        "workbench.transfer",
        "workbench.execute",
        "workbench.search",
        "workbench.cli",
        "metastore",
    ],
    "workbench.nn": [
        "workbench.oneshot",
        "workbench.morph",
        "workbench.strategy",
        "workbench.evaluate",
        "workbench.transfer",
        "workbench.execute",
        "workbench.search",
        "workbench.cli",
        "metastore",
    ],
    "workbench.morph": [
        "workbench.strategy",
        "workbench.evaluate",
        "workbench.transfer",
        "workbench.execute",
        "workbench.search",
        "workbench.cli",
        "metastore",
    ],
    "workbench.strategy": [
        "workbench.nn",
        "workbench.oneshot",
        "workbench.evaluate",
        "workbench.execute",
        "workbench.search",
        "workbench.transfer",
        "workbench.cli",
        "metastore",
    ],
    "workbench.transfer": [
        "workbench.nn",
        "workbench.evaluate",
        "workbench.execute",
        "workbench.search",
        "workbench.cli",
    ],
    "workbench.evaluate": [
        "workbench.oneshot",
        "workbench.strategy",
        "workbench.transfer",
        "workbench.execute",
        "workbench.search",
        "workbench.cli",
        "metastore",
    ],
    "workbench.execute": ["workbench.strategy", "workbench.transfer", "workbench.search", "workbench.cli"],
    "workbench.data": [
        "workbench.space",
        "workbench.nn",
        "workbench.strategy",
        "workbench.evaluate",
        "workbench.search",
        "workbench.cli",
        "metastore",
    ],
    # the one-shot layer (supernet training, one-shot estimates) sits with evaluate: below the
    # execution, search and store layers, and strategies never reach it (they get OpWeights)
    "workbench.oneshot": [
        "workbench.strategy",
        "workbench.transfer",
        "workbench.execute",
        "workbench.search",
        "workbench.cli",
        "metastore",
    ],
    "workbench.search": ["workbench.cli"],
    "metastore": ["workbench"],
}
# the store's schema (names and parsers) and its errors are pure: every layer may read them
EVERYWHERE = ("metastore.schema", "metastore.errors")
# third-party libraries confined to one place
CONFINED = {"mlflow": "metastore", "botorch": "workbench.strategy.bo", "gpytorch": "workbench.strategy.bo"}
# modules stay small enough to read in one sitting
MAX_LINES = 600


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
            bad = sorted(i for i in found for b in banned if (i == b or i.startswith(b + ".")) and i not in EVERYWHERE)
            assert not bad, f"{module} imports {bad}"
    for lib, home in CONFINED.items():
        uses = [i for i in found if i == lib or i.startswith(lib + ".")]
        if uses:
            assert module == home or module.startswith(home + "."), f"{module} imports {lib}; only {home} may"


def _module_level_imports(path: Path, module: str) -> set[str]:
    """Workbench / metastore modules imported at module level (what an import cycle needs);
    relative imports resolved."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {i for i in out if i.split(".")[0] in ("workbench", "metastore")}


def test_no_import_cycles():
    """Module-level imports between the project's modules form no cycle."""
    graph: dict[str, set[str]] = {}
    names = dict(modules())
    for module, path in names.items():
        graph[module] = {i for i in _module_level_imports(path, module) if i in names and i != module}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("module, path", list(modules()), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_modules_stay_small(module, path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by concept (at most {MAX_LINES})"


def _calls_and_name_branches(path: Path, names: set[str]):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            called = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if called in ("getattr", "hasattr", "signature"):
                yield "probe", node.lineno, called
        if isinstance(node, ast.Compare):
            consts = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
            consts += [
                e.value
                for c in node.comparators
                if isinstance(c, (ast.Tuple, ast.List, ast.Set))
                for e in c.elts
                if isinstance(e, ast.Constant)
            ]
            hit = sorted({c for c in consts if isinstance(c, str) and c in names})
            if hit:
                yield "branch", node.lineno, hit


def test_no_strategy_name_branch_outside_strategy():
    """Only strategies know strategies: elsewhere nothing compares with a strategy's name."""
    from workbench.strategy.registry import strategy_names

    names = set(strategy_names())
    for module, path in modules():
        if module.startswith("workbench.strategy"):
            continue
        bad = [(line, what) for kind, line, what in _calls_and_name_branches(path, names) if kind == "branch"]
        assert not bad, f"{module} branches on strategy names at {bad}"


def test_the_search_probes_no_capability():
    """The search and the warm-start plan reach strategies and evaluators through declared hooks
    and records (Strategy hooks, EvaluatorTraits): no getattr / hasattr / inspect probe."""
    files = sorted((ROOT / "workbench" / "search").rglob("*.py")) + sorted(
        (ROOT / "workbench" / "transfer").rglob("*.py")
    )
    for path in files:
        bad = [(line, what) for kind, line, what in _calls_and_name_branches(path, set()) if kind == "probe"]
        assert not bad, f"{path.relative_to(ROOT)} probes at {bad}"
