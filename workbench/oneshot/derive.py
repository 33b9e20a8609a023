"""From op weights to architectures: the discrete cell DARTS derives (the most probable op per
edge, ``none`` excluded), as a valid genotype of the space, and the runners-up in order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from workbench.errors import UserError
from workbench.oneshot.train import softmax_weights
from workbench.space.cell import CELL_OPS, EDGES, CellSpace
from workbench.space.genotype import Genotype
from workbench.space.relaxation import OpWeights


def op_weights(alpha: torch.Tensor) -> OpWeights:
    """Op weights from op logits ``alpha`` (`6 x 5`, rows :data:`EDGES`, columns :data:`CELL_OPS`)."""
    if tuple(alpha.shape) != (len(EDGES), len(CELL_OPS)):
        raise UserError(f"op logits must be {len(EDGES)} x {len(CELL_OPS)}; got {tuple(alpha.shape)}")
    return softmax_weights(alpha)


def derive(space: CellSpace, weights: OpWeights, exclude: Sequence[str] = ("none",)) -> Genotype:
    """The derived cell as a genotype of ``space`` (validated; the space's skeleton)."""
    g = space.make(list(weights.derive(exclude)))
    space.validate(g)
    return g


def ranked(space: CellSpace, weights: OpWeights, exclude: Sequence[str] = ("none",)) -> Iterator[Genotype]:
    """Genotypes of ``space`` in decreasing probability under ``weights`` (the derived cell
    first; one per key)."""
    seen: set[str] = set()
    for ops in weights.ranked(exclude):
        g = space.make(list(ops))
        if g.key not in seen:
            seen.add(g.key)
            yield g
