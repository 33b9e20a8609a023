"""Random search: the baseline every other strategy must beat."""

from __future__ import annotations

from collections.abc import Sequence

from workbench.space.genotype import Genotype
from workbench.strategy.base import Proposal, Strategy


class RandomSearch(Strategy):
    """Uniform samples from the space, never repeating an evaluated or pending genotype."""

    name = "random"

    def ask(self, n: int = 1, *, pending: Sequence[Genotype] = ()) -> list[Proposal]:
        rng = self.rng_for(pending)
        taken = {g.key for g in pending}
        out: list[Proposal] = []
        for _ in range(n):
            g = self.fresh_sample(rng, taken)
            taken.add(g.key)
            out.append(Proposal(g))
        return out
