"""Random search: the baseline every other strategy must beat."""

from __future__ import annotations

from collections.abc import Sequence

from workbench.space.genotype import Genotype
from workbench.strategy.base import Proposal, Strategy


class RandomSearch(Strategy):
    """Uniform samples from the space, never repeating an evaluated or pending genotype."""

    name = "random"

    def __init__(self, space, seed: int = 0, objectives=None) -> None:
        """Args: space, seed; ``objectives`` is accepted for multi-objective searches (the
        front is computed from the records; uniform sampling does not depend on it)."""
        super().__init__(space, seed)
        self.objectives = list(objectives) if objectives else []

    def ask(self, n: int = 1, *, pending: Sequence[Genotype] = ()) -> list[Proposal]:
        rng = self.rng_for(pending)
        taken = {g.key for g in pending}
        out: list[Proposal] = []
        for _ in range(n):
            g = self.fresh_sample(rng, taken)
            taken.add(g.key)
            out.append(Proposal(g))
        return out
