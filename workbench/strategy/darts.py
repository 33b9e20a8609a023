"""Gradient-based search: DARTS and GDAS over a cell space's continuous relaxation.

The strategy never trains a network (strategies do not import torch networks): through
:meth:`Strategy.relaxation` it asks the search for a pre-search phase that learns op weights on
the space's weight-sharing supernet (:mod:`workbench.oneshot.train`; recorded as the search's
supernet run, resumable), and receives them through :meth:`Strategy.set_op_weights`. Its
proposals are then the derived cell (the most probable op per edge, ``none`` excluded as in
DARTS) and, for a budget above one, the next most probable cells (product of the per-edge
probabilities), each retrained from scratch as an ordinary trial.

Options (``--option KEY=VALUE``): ``epochs``, ``batch_size``, ``w_lr`` and ``w_wd`` (shared
weights; default: the task's ``[training]``), ``alpha_lr``, ``alpha_wd`` (op logits),
``order`` (DARTS: 1 or 2), ``warmup_epochs``, ``grad_clip``; GDAS adds ``tau_max`` and
``tau_min``. The one-shot layer checks them before the search starts.

Before op weights arrive (e.g. in unit tests that drive the strategy alone) the ranking uses
DARTS' initial logits (``1e-3 * N(0, 1)`` from the seed); on a space without a relaxation the
strategy samples at random (the search refuses such a space before it starts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from workbench.space.base import SearchSpace
from workbench.space.cell import CELL_OPS, EDGES, CellSpace
from workbench.space.genotype import Genotype
from workbench.space.relaxation import OpWeights, Relaxation
from workbench.strategy.base import Proposal, Strategy


class Darts(Strategy):
    """DARTS (Liu et al. 2019): softmax relaxation, bilevel, first order by default."""

    name: ClassVar[str] = "darts"
    method: ClassVar[str] = "darts"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        epochs: int | None = None,
        batch_size: int | None = None,
        w_lr: float | None = None,
        w_wd: float | None = None,
        alpha_lr: float | None = None,
        alpha_wd: float | None = None,
        order: int | None = None,
        warmup_epochs: int | None = None,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__(space, seed)
        given = {
            "epochs": epochs,
            "batch_size": batch_size,
            "w_lr": w_lr,
            "w_wd": w_wd,
            "alpha_lr": alpha_lr,
            "alpha_wd": alpha_wd,
            "order": order,
            "warmup_epochs": warmup_epochs,
            "grad_clip": grad_clip,
        }
        self.settings = {k: v for k, v in given.items() if v is not None}
        self.weights: OpWeights | None = None
        self._ranking: list[Genotype] | None = None

    # -- the hooks ----------------------------------------------------------------------------
    def relaxation(self) -> Relaxation:
        """Op weights to learn on the supernet before the first ask."""
        return Relaxation(self.method, dict(self.settings))

    def set_op_weights(self, weights: OpWeights) -> None:
        """The learnt op weights: proposals follow their ranking from now on."""
        self.weights = weights
        self._ranking = None

    # -- proposals ----------------------------------------------------------------------------
    def initial_weights(self) -> OpWeights:
        """DARTS' initial op weights: softmax of ``1e-3 * N(0, 1)`` logits drawn from the seed."""
        logits = 1e-3 * np.random.default_rng([self.seed, 7]).standard_normal((len(EDGES), len(CELL_OPS)))
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return OpWeights.from_array(EDGES, CELL_OPS, probs)

    def ranking(self) -> list[Genotype]:
        """Cells of the space, most probable first under the op weights (``none`` excluded)."""
        if self._ranking is None:
            space = self.space
            assert isinstance(space, CellSpace)
            weights = self.weights if self.weights is not None else self.initial_weights()
            self._ranking = [space.make(list(ops)) for ops in weights.ranked()]
        return self._ranking

    def ask(self, n: int = 1, *, pending: Sequence[Genotype] = ()) -> list[Proposal]:
        taken = {g.key for g in pending}
        out = []
        for _ in range(n):
            g = self._next(taken, len(out))
            taken.add(g.key)
            out.append(Proposal(g))
        return out

    def _next(self, taken: set[str], salt: int) -> Genotype:
        if isinstance(self.space, CellSpace):
            for g in self.ranking():
                if self.is_new(g, taken):
                    return g
        return self.fresh_sample(self.rng_for(sorted(taken), salt), taken)


class Gdas(Darts):
    """GDAS (Dong & Yang 2019): one op per edge sampled by hard Gumbel-softmax (straight-through),
    temperature annealed from ``tau_max`` to ``tau_min``; resists DARTS' collapse to
    parameter-free ops (see :mod:`workbench.oneshot.train`)."""

    name: ClassVar[str] = "gdas"
    method: ClassVar[str] = "gdas"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        tau_max: float | None = None,
        tau_min: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(space, seed, **options)
        self.settings.update({k: v for k, v in (("tau_max", tau_max), ("tau_min", tau_min)) if v is not None})
