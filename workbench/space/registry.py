"""Name -> SearchSpace class registry (``chain-v1``, ``dag-v1``, ``cell-v1``, ``nbgraph-v1``, ...)."""

from __future__ import annotations

import importlib
from typing import Any

from workbench.errors import InvalidGenotype, NaswError, UserError
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype

# space kind used in task files -> "module:Class". Imported lazily so nothing heavy runs at import.
_SPACES: dict[str, str] = {
    "chain": "workbench.space.chain:ChainSpace",
    "nbgraph": "workbench.space.nbgraph:NBGraphSpace",
    "dag": "workbench.space.dag:DagSpace",
    "cell": "workbench.space.cell:CellSpace",
    "joint": "workbench.space.joint:JointSpace",
}
# versioned genotype space name -> kind
_BY_VERSIONED: dict[str, str] = {
    "chain-v1": "chain",
    "nbgraph-v1": "nbgraph",
    "dag-v1": "dag",
    "cell-v1": "cell",
    "joint-v1": "joint",
}


def space_kinds() -> list[str]:
    """Names accepted in a task file's ``[space] kind``."""
    return sorted(_SPACES)


def space_class(kind_or_name: str) -> type[SearchSpace]:
    """The class for a space kind (``chain``) or a versioned genotype space name (``chain-v1``)."""
    kind = _BY_VERSIONED.get(kind_or_name, kind_or_name)
    target = _SPACES.get(kind)
    if target is None:
        raise UserError(f"unknown search space {kind_or_name!r}; expected one of {space_kinds()}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def make_space(kind: str, **settings: Any) -> SearchSpace:
    """Build a space from its kind and settings; bad settings raise :class:`UserError`."""
    cls = space_class(kind)
    try:
        return cls(**settings)
    except (TypeError, ValueError, OverflowError) as exc:
        raise UserError(f"bad settings for space {kind!r}: {exc}") from None


def describe_json(text: str, limit: int = 120) -> str:
    """A one-line form of a stored genotype's JSON for people: its space's
    :meth:`~workbench.space.base.SearchSpace.describe`, cut to ``limit`` characters (``…`` marks a cut).

    Never raises, whatever a store holds: a genotype of an unknown space, or one its space cannot
    describe, shows as its spec's compact JSON; text that is no genotype shows as itself.
    """
    try:
        g = Genotype.from_json(text)
    except InvalidGenotype:
        return _cut(str(text), limit)
    try:
        summary = space_class(g.space).describe(g)
    except (NaswError, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
        summary = g.spec
    return _cut(summary, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def canonical_form(g: Genotype) -> str:
    """Canonical string of ``g`` according to its own space."""
    try:
        cls = space_class(g.space)
    except UserError:
        raise InvalidGenotype(f"unknown genotype space {g.space!r}") from None
    return cls.canonical(g)
