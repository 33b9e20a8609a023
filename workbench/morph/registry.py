"""(operator, space) -> Morphism registry."""

from __future__ import annotations

from workbench.errors import InvalidGenotype
from workbench.morph.base import Morphism
from workbench.morph.chain import ChainDeepen, ChainEnlargeKernel, ChainWiden
from workbench.morph.dag import DagDeepen, DagEnlargeKernel, DagSkip, DagWiden
from workbench.space.edits import MorphismStep
from workbench.space.genotype import Genotype

_MORPHISMS: dict[tuple[str, str], Morphism] = {
    (m.op, m.space_name): m
    for m in (ChainDeepen(), ChainWiden(), ChainEnlargeKernel(), DagDeepen(), DagSkip(), DagEnlargeKernel(), DagWiden())
}


def morphism_ops(space_name: str) -> list[str]:
    """Operator names with a weight transfer for ``space_name``."""
    return sorted(op for op, s in _MORPHISMS if s == space_name)


def morphism(op: str, space_name: str) -> Morphism:
    """The morphism ``op`` of ``space_name``; unknown pairs raise :class:`InvalidGenotype`."""
    try:
        return _MORPHISMS[(op, space_name)]
    except KeyError:
        raise InvalidGenotype(
            f"no morphism {op!r} for space {space_name!r}; expected one of {morphism_ops(space_name)}"
        ) from None


def morphism_for(g: Genotype, step: MorphismStep) -> Morphism:
    """The morphism that applies ``step`` to ``g``."""
    return morphism(step.op, g.space)
