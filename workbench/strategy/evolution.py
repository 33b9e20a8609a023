"""Regularized (aging) evolution, Real et al. 2019."""

from __future__ import annotations

from collections.abc import Sequence

from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.strategy.base import Observation, Proposal, Strategy


class RegularizedEvolution(Strategy):
    """Aging evolution: tournament selection over the youngest ``population`` members.

    The population is the last ``population`` told observations (failed ones count as members
    that never win a tournament), so the state is a pure function of the history and replay is
    exact. Until the population is full, candidates are random samples (or ``prior`` genotypes,
    e.g. the best architectures of related tasks, first).

    Args:
        space: The search space.
        seed: Seed of every random choice.
        population: Number of youngest members kept alive.
        sample_size: Tournament size.
        prior: Genotypes to evaluate first (warm start).
    """

    name = "evolution"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        population: int = 10,
        sample_size: int = 3,
        prior: Sequence[Genotype] = (),
    ) -> None:
        super().__init__(space, seed)
        if population < 2 or not 1 <= sample_size <= population:
            raise ValueError("need population >= 2 and 1 <= sample_size <= population")
        self.population = population
        self.sample_size = sample_size
        self.prior = list(prior)

    def _alive(self) -> list[Observation]:
        return self.history[-self.population :]

    def ask(self, n: int = 1, *, pending: Sequence[Genotype] = ()) -> list[Proposal]:
        rng = self.rng_for(pending)
        taken = {g.key for g in pending}
        out: list[Proposal] = []
        queued_prior = [g for g in self.prior if self.is_new(g, taken)]
        for _ in range(n):
            started = len(self.history) + len(pending) + len(out)
            if queued_prior and started < self.population:
                g = queued_prior.pop(0)
            elif started < self.population or not any(o.ok for o in self._alive()):
                g = self.fresh_sample(rng, taken)
            else:
                g = self._child(rng, taken)
            taken.add(g.key)
            out.append(Proposal(g))
        return out

    def _child(self, rng, taken: set[str]) -> Genotype:
        alive = self._alive()
        idx = rng.choice(len(alive), size=min(self.sample_size, len(alive)), replace=False)
        contenders = [alive[i] for i in idx]
        parent = max(contenders, key=lambda o: o.value if o.ok else float("-inf"))
        if not parent.ok:
            parent = max((o for o in alive if o.ok), key=lambda o: o.value)
        child = self.space.mutate(parent.genotype, rng)
        for _ in range(50):
            if self.is_new(child, taken):
                break
            child = self.space.mutate(parent.genotype if rng.random() < 0.5 else child, rng)
        else:
            child = self.fresh_sample(rng, taken)
        return child
