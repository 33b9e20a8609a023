"""``tpe``: the tree-structured Parzen estimator (Bergstra et al. 2011), written for nasw.

Written, not wrapped: Optuna is only a benchmark extra, and its sampler keeps its state in a study
(and draws from its own generator on every call), whereas a nasw strategy must be a pure function
of its seed and its tells, never repeat a told or pending architecture, and see a space through its
decisions. The algorithm is Optuna's default TPE (univariate, ``gamma(n) = min(ceil(0.1 n), 25)``,
24 candidates from the good density, prior weight 1), on the space's
:class:`~workbench.space.decisions.DecisionView`:

* The observations are split into the best ``gamma(n)`` ("good") and the rest ("bad"). For each
  decision, two densities are estimated from the observations in which the decision is active
  (TPE's tree: a DAG node's inputs only count where the node exists):
  categorical decisions get smoothed choice frequencies (``prior_weight`` spread uniformly plus one
  per observation), continuous ones a mixture of Gaussians in log space, one per observation (its
  bandwidth the larger gap to its sorted neighbours, clipped to ``[range / min(100, n + 1), range]``)
  plus a prior component over the whole range, truncated to the range.
* A proposal draws ``n_candidates`` genotypes from the good densities (decision by decision,
  repaired by the view) and takes the one with the largest ``sum log l(x) - log g(x)`` over the
  decisions active in it.

Warm starts take both forms the issue names: the sources' best architectures are the initial design
(evaluated first, instead of random ones), and every source's observations, split into good and bad
by the same rule, enter the densities with weight ``source_weight`` each (a target observation
weighs 1), so the prior fades as the target's own observations accumulate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

from workbench.errors import UserError
from workbench.space.base import SearchSpace
from workbench.space.decisions import Decision, DecisionView
from workbench.space.genotype import Genotype
from workbench.strategy.base import (
    ORIGIN_TRANSFER,
    PRIOR_SIZE,
    Observation,
    Proposal,
    Strategy,
    WarmSource,
    WarmStart,
    highest_fidelity,
)
from workbench.strategy.smac import check_float, check_int

#: Upper bounds: random initial proposals, "good" observations, draws per proposal (each scored
#: decision by decision), the weights of the uniform prior and of a source observation.
MAX_INIT = 100_000
MAX_GOOD = 10_000
MAX_CANDIDATES = 10_000
MAX_WEIGHT = 1000.0


def n_good(n: int, gamma: float, cap: int) -> int:
    """How many of ``n`` observations are "good": ``min(ceil(gamma n), cap)``, at least 1."""
    return max(1, min(math.ceil(gamma * n), cap))


@dataclass
class Parzen:
    """The density of one decision in one group (good or bad).

    Categorical: ``probs`` over the choices. Continuous: a truncated Gaussian mixture in log space
    (``mus``, ``sigmas``, ``weights``, on ``[lo, hi]``).
    """

    probs: np.ndarray | None = None
    mus: np.ndarray | None = None
    sigmas: np.ndarray | None = None
    weights: np.ndarray | None = None
    lo: float = 0.0
    hi: float = 0.0

    @classmethod
    def fit(cls, decision: Decision, values: Sequence[float], weights: Sequence[float], prior_weight: float) -> Parzen:
        w = np.asarray(weights, dtype=np.float64)
        if decision.categorical:
            counts = np.full(decision.size, prior_weight / decision.size)
            np.add.at(counts, np.asarray(values, dtype=np.int64), w)
            return cls(probs=counts / counts.sum())
        lo, hi = math.log(decision.low), math.log(decision.high)
        if hi <= lo:  # a fixed value
            return cls(mus=np.array([lo]), sigmas=np.array([1.0]), weights=np.array([1.0]), lo=lo, hi=lo)
        span = hi - lo
        xs = np.log(np.asarray(values, dtype=np.float64))
        mus = np.concatenate([xs, [0.5 * (lo + hi)]])
        order = np.argsort(mus, kind="stable")
        s = mus[order]
        left = np.diff(np.concatenate([[lo], s]))
        right = np.diff(np.concatenate([s, [hi]]))
        sig_sorted = np.maximum(left, right)
        sigmas = np.empty_like(mus)
        sigmas[order] = sig_sorted
        sigmas = np.clip(sigmas, span / min(100.0, len(xs) + 1.0), span)
        sigmas[-1] = span  # the prior component
        weights_all = np.concatenate([w, [prior_weight]])
        return cls(mus=mus, sigmas=sigmas, weights=weights_all / weights_all.sum(), lo=lo, hi=hi)

    def sample(self, decision: Decision, rng: np.random.Generator) -> int | float:
        if self.probs is not None:
            return int(rng.choice(len(self.probs), p=self.probs))
        if self.hi <= self.lo:
            return float(math.exp(self.lo))
        j = int(rng.choice(len(self.mus), p=self.weights))
        for _ in range(100):
            x = rng.normal(self.mus[j], self.sigmas[j])
            if self.lo <= x <= self.hi:
                return float(math.exp(x))
        return float(math.exp(min(max(self.mus[j], self.lo), self.hi)))

    def log_pdf(self, value: int | float) -> float:
        if self.probs is not None:
            return float(math.log(self.probs[int(value)]))
        if self.hi <= self.lo:
            return 0.0
        x = math.log(float(value))
        z = (x - self.mus) / self.sigmas
        mass = ndtr((self.hi - self.mus) / self.sigmas) - ndtr((self.lo - self.mus) / self.sigmas)
        dens = np.exp(-0.5 * z * z) / (self.sigmas * math.sqrt(2 * math.pi) * np.maximum(mass, 1e-12))
        return float(math.log(max(float(np.dot(self.weights, dens)), 1e-300)))


class TreeParzen(Strategy):
    """TPE over the decisions of the space: good and bad densities per decision.

    Args:
        space: The search space (one with a decision view; otherwise the strategy samples uniformly).
        seed: Seed of every random choice.
        n_init: Random proposals before the densities are used (the warm start's prior replaces them).
        gamma: Fraction of the observations that are "good".
        max_good: Most "good" observations.
        n_candidates: Draws from the good densities per proposal.
        prior_weight: Weight of the uniform prior in every density.
        prior: Genotypes to evaluate first (the initial design of a warm start).
        sources: Other tasks' observations in this space (a warm start), added to the densities.
        source_weight: Weight of one source observation (a target observation weighs 1).
    """

    name = "tpe"

    @classmethod
    def warm_prior_size(cls, options: Mapping[str, Any]) -> int:
        """The initial design of a warm start: the sources' ``PRIOR_SIZE`` best architectures."""
        return PRIOR_SIZE

    @classmethod
    def warm_start_options(cls, warm: WarmStart, options: Mapping[str, Any]) -> dict[str, Any]:
        """The sources' best as the initial design (``prior``), their observations in the densities."""
        return {"prior": list(warm.prior), "sources": list(warm.sources)}

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        n_init: int = 10,
        gamma: float = 0.1,
        max_good: int = 25,
        n_candidates: int = 24,
        prior_weight: float = 1.0,
        prior: Sequence[Genotype] = (),
        sources: Sequence[WarmSource] = (),
        source_weight: float = 0.5,
    ) -> None:
        super().__init__(space, seed)
        self.n_init = check_int("tpe", "n_init", n_init, 0, MAX_INIT)
        self.gamma = check_float("tpe", "gamma", gamma, 1e-9, 1.0)
        self.max_good = check_int("tpe", "max_good", max_good, 1, MAX_GOOD)
        self.n_candidates = check_int("tpe", "n_candidates", n_candidates, 1, MAX_CANDIDATES)
        self.prior_weight = check_float("tpe", "prior_weight", prior_weight, 1e-9, MAX_WEIGHT)
        self.source_weight = check_float("tpe", "source_weight", source_weight, 0.0, MAX_WEIGHT)
        bad = [type(s).__name__ for s in sources if not isinstance(s, WarmSource)]
        if bad:
            raise UserError(f"tpe sources must be WarmSource records; got {bad[0]}")
        self.view: DecisionView | None = space.decision_view()
        self.prior = [g for g in prior if space.contains(g)]
        # source observations as (decision values, good?) rows, fixed for the search
        self._source_rows: list[tuple[list[Any], bool]] = []
        if self.view is not None:
            for source in sources:
                self._source_rows += self._split(
                    [g for g in source.genotypes], [float(v) for v in np.asarray(source.values)]
                )
        self._densities: tuple[int, list[Parzen], list[Parzen]] | None = None

    def _split(self, genotypes: Sequence[Genotype], values: Sequence[float]) -> list[tuple[list[Any], bool]]:
        """Decision values of the members among ``genotypes``, each marked good or bad."""
        rows = [
            (self.view.values(g), v) for g, v in zip(genotypes, values) if math.isfinite(v) and self.space.contains(g)
        ]
        if not rows:
            return []
        k = n_good(len(rows), self.gamma, self.max_good)
        order = sorted(range(len(rows)), key=lambda i: -rows[i][1])
        good = set(order[:k])
        return [(rows[i][0], i in good) for i in range(len(rows))]

    def _usable(self) -> list[Observation]:
        return [o for o in highest_fidelity(self.history, max(3, self.n_init)) if o.ok]

    def densities(self) -> tuple[list[Parzen], list[Parzen]]:
        """The good and bad density of every decision, from the usable history and the sources."""
        if self._densities is not None and self._densities[0] == len(self.history):
            return self._densities[1], self._densities[2]
        used = self._usable()
        target = self._split([o.genotype for o in used], [float(o.value) for o in used])
        rows = [(v, good, 1.0) for v, good in target] + [(v, good, self.source_weight) for v, good in self._source_rows]
        good_d, bad_d = [], []
        for i, d in enumerate(self.view.decisions):
            for group, out in ((True, good_d), (False, bad_d)):
                vals = [(r[0][i], r[2]) for r in rows if r[1] is group and r[0][i] is not None]
                out.append(Parzen.fit(d, [v for v, _ in vals], [w for _, w in vals], self.prior_weight))
        self._densities = (len(self.history), good_d, bad_d)
        return good_d, bad_d

    def score(self, g: Genotype) -> float:
        """``sum log l(x) - log g(x)`` over the decisions active in ``g``."""
        good_d, bad_d = self.densities()
        return float(
            sum(lg.log_pdf(v) - bg.log_pdf(v) for v, lg, bg in zip(self.view.values(g), good_d, bad_d) if v is not None)
        )

    def ask(self, n: int = 1, *, pending: Sequence[Genotype] = ()) -> list[Proposal]:
        rng = self.rng_for(pending)
        taken = {g.key for g in pending}
        out = self.prior_proposals(self.prior, n, taken)
        while len(out) < n:
            started = len(self.history) + len(pending) + len(out)
            if self.view is None or (not self._source_rows and (started < self.n_init or len(self._usable()) < 2)):
                out.append(Proposal(self.fresh_sample(rng, taken), origin="random"))
            else:
                # with sources, the proposals a cold TPE would have drawn at random are the sources' doing
                origin = ORIGIN_TRANSFER if self._source_rows and started < self.n_init else "model"
                out.append(Proposal(self._propose(rng, taken), origin=origin))
            taken.add(out[-1].genotype.key)
        return out

    def _propose(self, rng: np.random.Generator, taken: set[str], rounds: int = 10) -> Genotype:
        good_d, _ = self.densities()
        for _ in range(rounds):
            cands: dict[str, Genotype] = {}
            for _ in range(self.n_candidates):
                g = self.view.build([p.sample(d, rng) for d, p in zip(self.view.decisions, good_d)])
                if self.is_new(g, taken):
                    cands.setdefault(g.key, g)
            if cands:
                keys = list(cands)
                scores = [self.score(cands[k]) for k in keys]
                return cands[keys[int(np.argmax(scores))]]
        return self.fresh_sample(rng, taken)  # the good density keeps drawing seen architectures
