"""``eda``: an estimation-of-distribution algorithm (PBIL, Baluja 1994) over the space's decisions.

No crossover, no mutation: a probability model of good architectures is learned and sampled. The
model is a product of independent categorical distributions, one per decision of the space's
:class:`~workbench.space.decisions.DecisionView` (a continuous decision, such as a joint space's
learning rate, is split into ``bins`` equal bins of its log range and sampled log-uniformly inside
the drawn bin). Samples are repaired into valid genotypes by the view.

Variant: PBIL rather than UMDA. Both re-estimate the marginals from the selected best of each
generation; UMDA replaces them (``learning_rate=1``), PBIL moves them part of the way
(``p <- (1 - learning_rate) p + learning_rate * f_selected``). With the few dozen evaluations of a
NAS budget, a generation selects a handful of architectures, and UMDA then gives every choice they
lack probability zero after one generation; PBIL's learning rate keeps the model's memory across
generations (and is UMDA at 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workbench.errors import InvalidGenotype
from workbench.space.base import SearchSpace
from workbench.space.decisions import Decision, DecisionView
from workbench.space.genotype import Genotype
from workbench.strategy.base import ORIGIN_TRANSFER, Observation, Proposal, Strategy, WarmStart
from workbench.strategy.smac import check_float, check_int

#: Upper bounds: observations per generation (a warm start offers one generation), bins of a
#: continuous decision.
MAX_POPULATION = 10_000
MAX_BINS = 1000


def decision_probabilities(view: DecisionView, bins: int) -> list[np.ndarray]:
    """Uniform marginals: one array per decision (its choices, or ``bins`` for a continuous one)."""
    return [
        np.full(d.size if d.categorical else bins, 1.0 / (d.size if d.categorical else bins)) for d in view.decisions
    ]


def frequencies(view: DecisionView, genotypes: Sequence[Genotype], bins: int) -> list[np.ndarray | None]:
    """Per decision, the frequency of each choice (or bin) among ``genotypes`` where it is
    active; None where it is active in none of them."""
    counts = [np.zeros(d.size if d.categorical else bins) for d in view.decisions]
    for g in genotypes:
        for c, d, v in zip(counts, view.decisions, view.values(g)):
            if v is not None:
                c[int(v) if d.categorical else d.bin_of(float(v), bins)] += 1.0
    return [c / c.sum() if c.sum() > 0 else None for c in counts]


def draw(decision: Decision, p: np.ndarray, bins: int, rng: np.random.Generator) -> int | float:
    """A value of ``decision`` from the marginal ``p``."""
    i = int(rng.choice(len(p), p=p))
    return i if decision.categorical else decision.from_bin(i, bins, rng)


class EstimationOfDistribution(Strategy):
    """PBIL over the decisions of the space.

    The history is cut into generations of ``population`` consecutive observations (in the order
    they were told, so the model is a pure function of the tells and replay is exact). After each
    complete generation its best ``selection`` fraction (successful trials only) moves every
    marginal towards their choices by ``learning_rate``. Proposals are drawn from the current
    marginals mixed with ``mutation`` of the uniform distribution (so no choice ever has
    probability zero), repaired into a genotype, and redrawn while they repeat a told or
    pending architecture.

    Args:
        space: The search space (one with a decision view; otherwise the strategy samples uniformly).
        seed: Seed of every random choice.
        population: Observations per generation.
        selection: Fraction of a generation that the model learns from (at least one).
        learning_rate: PBIL's step towards the selected (1 = UMDA).
        mutation: Weight of the uniform distribution in each draw.
        bins: Bins of a continuous decision's log range.
        prior: Good architectures of related tasks (a warm start): the initial marginals are
            ``prior_weight`` of their frequencies and the rest uniform.
        prior_weight: See ``prior``.

    Defaults: small generations (5, the best 2 selected) so that the model starts learning after
    5 evaluations and takes 19 steps in a budget of 100. Chosen on NAS-Bench-Graph (8 datasets,
    20 seeds, 100 evaluations): median evaluations to the top 1%, averaged over the datasets,
    33 with these settings, 44 with generations of 10 and 3 selected, 43 with 20 and 4 (learning
    rate 0.7), against 69 for random search; see ``benchmarks/results/strategies.md`` for held-out seeds.
    """

    name = "eda"

    @classmethod
    def warm_prior_size(cls, options: Mapping[str, Any]) -> int:
        """A generation's worth of the sources' best architectures."""
        return check_int("eda", "population", options.get("population", 5), 2, MAX_POPULATION)

    @classmethod
    def warm_start_options(cls, warm: WarmStart, options: Mapping[str, Any]) -> dict[str, Any]:
        """The sources' best architectures shape the initial distribution (``prior``)."""
        return {"prior": list(warm.prior)}

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        population: int = 5,
        selection: float = 0.4,
        learning_rate: float = 0.5,
        mutation: float = 0.1,
        bins: int = 8,
        prior: Sequence[Genotype] = (),
        prior_weight: float = 0.5,
    ) -> None:
        super().__init__(space, seed)
        self.population = check_int("eda", "population", population, 2, MAX_POPULATION)
        self.selection = check_float("eda", "selection", selection, 1e-9, 1.0)
        self.learning_rate = check_float("eda", "learning_rate", learning_rate, 1e-9, 1.0)
        self.mutation = check_float("eda", "mutation", mutation, 0.0, 1.0)
        self.bins = check_int("eda", "bins", bins, 1, MAX_BINS)
        self.prior_weight = check_float("eda", "prior_weight", prior_weight, 0.0, 1.0)
        self.view = space.decision_view()
        self.prior = [g for g in prior if space.contains(g)]
        self._initial: list[np.ndarray] | None = None
        self._model: tuple[int, list[np.ndarray]] | None = None

    # -- the model ---------------------------------------------------------------------------

    def initial_probabilities(self) -> list[np.ndarray]:
        """The marginals before any generation: uniform, or shaped by the warm-start ``prior``."""
        if self._initial is None:
            probs = decision_probabilities(self.view, self.bins)
            if self.prior and self.prior_weight > 0:
                for i, f in enumerate(frequencies(self.view, self.prior, self.bins)):
                    if f is not None:
                        probs[i] = (1 - self.prior_weight) * probs[i] + self.prior_weight * f
            self._initial = probs
        return [p.copy() for p in self._initial]

    def probabilities(self) -> list[np.ndarray]:
        """The current marginals (one array per decision), after every complete generation
        (none for a space without a decision view)."""
        if self.view is None:
            return []
        generations = len(self.history) // self.population
        if self._model is not None and self._model[0] == generations:
            return self._model[1]
        start, probs = (0, self.initial_probabilities())
        if self._model is not None and self._model[0] < generations:  # continue where it was
            start, probs = self._model[0], [p.copy() for p in self._model[1]]
        for gen in range(start, generations):
            chunk = self.history[gen * self.population : (gen + 1) * self.population]
            probs = self._update(probs, chunk)
        self._model = (generations, probs)
        return probs

    def _update(self, probs: list[np.ndarray], chunk: Sequence[Observation]) -> list[np.ndarray]:
        ok = [o for o in chunk if o.ok]
        if not ok:
            return probs
        k = max(1, math.ceil(self.selection * len(chunk)))
        order = sorted(range(len(ok)), key=lambda i: -float(ok[i].value))  # stable: earlier first on ties
        selected = [ok[i].genotype for i in order[:k]]
        lr = self.learning_rate
        freq = frequencies(self.view, [g for g in selected if self.space.contains(g)], self.bins)
        return [p if f is None else (1 - lr) * p + lr * f for p, f in zip(probs, freq)]

    # -- asking ------------------------------------------------------------------------------

    def sample_model(self, rng: np.random.Generator) -> Genotype:
        """One draw from the current marginals (mixed with ``mutation`` of uniform), repaired."""
        values = []
        for d, p in zip(self.view.decisions, self.probabilities()):
            q = (1 - self.mutation) * p + self.mutation / len(p)
            values.append(draw(d, q / q.sum(), self.bins, rng))
        return self.view.build(values)

    def ask(self, n: int = 1, *, pending: Sequence[Genotype] = ()) -> list[Proposal]:
        rng = self.rng_for(pending)
        taken = {g.key for g in pending}
        out: list[Proposal] = []
        # before the first generation is complete, a warm start's prior is what shapes the draws
        origin = "model" if len(self.history) >= self.population else (ORIGIN_TRANSFER if self.prior else "random")
        for _ in range(n):
            g = self._fresh(rng, taken)
            taken.add(g.key)
            out.append(Proposal(g, origin=origin if self.view is not None else "random"))
        return out

    def _fresh(self, rng: np.random.Generator, taken: set[str], tries: int = 200) -> Genotype:
        if self.view is None:
            return self.fresh_sample(rng, taken)
        for _ in range(tries):
            try:
                g = self.sample_model(rng)
            except InvalidGenotype:  # pragma: no cover - views repair every draw
                continue
            if self.is_new(g, taken):
                return g
        return self.fresh_sample(rng, taken)  # the model has converged on seen architectures

    def entropy(self) -> float:
        """Mean entropy of the marginals (nats): how far the model has converged."""
        ps = self.probabilities()
        return float(np.mean([-(p[p > 0] * np.log(p[p > 0])).sum() for p in ps])) if ps else 0.0
