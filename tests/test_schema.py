"""The on-disk schema has one home: every ``nasw.*`` name is spelled in ``metastore/schema.py`` only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from metastore import schema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "metastore" / "schema.py"


def sources() -> list[Path]:
    return [p for base in ("workbench", "metastore") for p in sorted((ROOT / base).rglob("*.py")) if p != SCHEMA]


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module and of its classes and functions."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                out.add(id(first.value))
    return out


def schema_literals(path: Path) -> list[str]:
    """``line: text`` of every string constant (f-string parts included, docstrings not) that
    starts with ``nasw.``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = docstrings(tree)
    return [
        f"{node.lineno}: {node.value[:60]!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skip
        and node.value.startswith(schema.PREFIX)
    ]


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_schema_name_is_spelled_outside_the_schema(path):
    found = schema_literals(path)
    assert not found, (
        f"{path.relative_to(ROOT)} spells tag names of its own; use (or add) a constant in metastore/schema.py: {found}"
    )


def test_the_scan_sees_literals_and_f_string_parts_but_not_docstrings(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Module doc naming nasw.kind."""\n'
        'def f(rule):\n    """nasw.note.x in a docstring."""\n'
        '    return {"nasw.state": 1, f"nasw.{rule}.decision": 2, "other": "nasw"}\n'
    )
    assert [line.split(": ", 1)[1] for line in schema_literals(sample)] == ["'nasw.state'", "'nasw.'"]


def test_the_metastore_imports_nothing_from_the_workbench():
    for path in sorted((ROOT / "metastore").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            bad = [n for n in names if n == "workbench" or n.startswith("workbench.")]
            assert not bad, f"{path.relative_to(ROOT)}:{node.lineno} imports {bad}"


def test_tag_names_are_distinct_and_prefixed():
    tags = {k: v for k, v in vars(schema).items() if k.startswith("TAG_")}
    assert len(set(tags.values())) == len(tags), "two tag constants share a name"
    unprefixed = sorted(k for k, v in tags.items() if not v.startswith(schema.PREFIX))
    assert unprefixed == ["TAG_SOURCE_WEIGHTS"]  # "source_weights", as searches have always written it
    assert schema.note_tag(schema.NOTE_WEIGHTS) == "nasw.note.weights"
    assert schema.rule_tag("lc", schema.RULE_DECISION) == "nasw.lc.decision"
    assert schema.RESERVED_TAGS <= set(tags.values())


def test_the_fidelity_params_use_the_schemas_prefix():
    from workbench.evaluate.fidelity import PARAM_PREFIX, Fidelity

    assert PARAM_PREFIX == schema.FIDELITY_PARAM_PREFIX  # evaluate/ may not import metastore
    assert all(k.startswith(schema.FIDELITY_PARAM_PREFIX) for k in Fidelity(epochs=3).params())


@pytest.mark.parametrize(
    "text, record, full",
    [
        (None, {}, True),
        ("", {}, True),
        ("{not json", {}, True),
        ("[1, 2]", {}, True),
        ('{"epochs": 3, "full": false}', {"epochs": 3, "full": False}, False),
        ('{"epochs": 9, "full": true}', {"epochs": 9, "full": True}, True),
        ('{"epochs": 9}', {"epochs": 9}, True),
    ],
)
def test_fidelity_records_parse_leniently(text, record, full):
    assert schema.fidelity_record(text) == record
    assert schema.is_full_fidelity(text) is full
