"""``smac``: Bayesian optimisation with a random-forest surrogate (SMAC, Hutter, Hoos & Leyton-Brown 2011).

The surrogate is a scikit-learn forest (``RandomForestRegressor``, or ``ExtraTreesRegressor`` with
``forest="et"``) on the space's numeric encodings; its prediction at a candidate is the mean of
the trees' predictions and its uncertainty their variance (SMAC's empirical estimate), and
candidates are scored by expected improvement. Candidates are a tabular space's whole pool
(NAS-Bench-Graph: every architecture not yet evaluated or pending), and for other spaces
SMAC's acquisition optimiser: a local search (best-improvement hill climbing over ``mutate``
neighbours, by EI) from the best observations, plus random samples.

This module also holds the surrogates evolution's ``prescreen`` option ranks children with
(:func:`make_surrogate`): the forest, and the project's GP (``workbench.strategy.bo.model``,
imported only when asked for).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workbench.errors import UserError
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.strategy.base import (
    PRIOR_SIZE,
    Observation,
    Proposal,
    Strategy,
    WarmStart,
    highest_fidelity,
)

FORESTS = ("rf", "et")
SURROGATES = ("rf", "gp")
#: Upper bounds of the options (a search with more is not a NAS budget, or an ask of minutes):
#: random initial proposals, trees, smallest leaf, EI margin (standardised units), candidates
#: scored per ask (random samples plus local-search neighbours), local searches, neighbours, steps.
MAX_INIT = 10_000
MAX_TREES = 1000
MAX_LEAF = 10_000
MAX_XI = 10.0
MAX_SAMPLES = 100_000
MAX_LOCAL_STARTS = 100
MAX_LOCAL_NEIGHBOURS = 1000
MAX_LOCAL_STEPS = 100


def check_int(owner: str, label: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (``high`` None: no upper bound), else a
    :class:`UserError` naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise UserError(f"{owner} {label} must be an integer {bounds}; got {value!r}")
    if high is not None and value > high:
        raise UserError(f"{owner} {label} must be an integer in [{low}, {high}]; got {value!r}")
    return int(value)


def check_float(owner: str, label: str, value: Any, low: float, high: float) -> float:
    """``value`` as a float in ``[low, high]``, else a :class:`UserError` naming the option."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if not ok or not math.isfinite(float(value)) or not low <= float(value) <= high:
        raise UserError(f"{owner} {label} must be a number in [{low:g}, {high:g}]; got {value!r}")
    return float(value)


def normal_scores(y: np.ndarray) -> np.ndarray:
    """Normal scores of the ranks of ``y`` (ties averaged), zero mean and unit variance: a copula
    transform, robust to degenerate architectures far below the rest."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=np.float64)
    if len(y) < 2:
        return np.zeros(len(y))
    z = ndtri((rankdata(y) - 0.5) / len(y))
    z = z - z.mean()
    sd = z.std()
    return z / sd if sd > 1e-12 else z


def expected_improvement(mean: np.ndarray, var: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    """EI of maximisation over ``best + xi`` under independent normal predictions."""
    from scipy.special import ndtr

    sd = np.sqrt(np.maximum(var, 1e-12))
    z = (mean - best - xi) / sd
    return sd * (z * ndtr(z) + np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))


class ForestSurrogate:
    """A scikit-learn forest whose trees' spread is the uncertainty (SMAC's estimate).

    Args:
        kind: ``"rf"`` (random forest, bootstrapped) or ``"et"`` (extremely randomised trees).
        n_trees: Number of trees.
        min_samples_leaf: Smallest leaf (1, as SMAC3: with a few dozen points every observation keeps its own leaf).
        max_features: Fraction of the columns each split considers.
        seed: The forest's random state.
    """

    def __init__(
        self, kind: str = "rf", n_trees: int = 32, min_samples_leaf: int = 1, max_features: float = 0.8, seed: int = 0
    ) -> None:
        from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

        cls = RandomForestRegressor if kind == "rf" else ExtraTreesRegressor
        self.model = cls(
            n_estimators=n_trees,
            min_samples_leaf=min_samples_leaf,
            max_features=max_features,
            bootstrap=True,
            random_state=seed,
            n_jobs=None,
        )

    def fit(self, x: np.ndarray, y: np.ndarray) -> ForestSurrogate:
        """Fit on features `n x d` and targets `n`."""
        self.model.fit(np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float64))
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance over the trees (`m` each); ``x`` as C-contiguous float32 is used as it is."""
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        if not len(x32):
            return np.zeros(0), np.zeros(0)
        # tree_.predict skips the per-call input checks of estimator.predict (a whole pool of
        # 26,206 rows: ~1.5 ms per tree instead of ~3)
        per_tree = np.stack([t.tree_.predict(x32).reshape(len(x32), -1)[:, 0] for t in self.model.estimators_])
        return per_tree.mean(0), per_tree.var(0)


class GPSurrogate:
    """The project's exact GP (:mod:`workbench.strategy.bo.model`: one RBF block per encoding,
    a Hamming kernel on one-hot columns, MAP hyperparameters), imported only when used.

    Args:
        widths: Columns of each encoding block of the features.
        n_hyper: Trailing continuous hyperparameter columns (joint spaces).
    """

    def __init__(self, widths: Sequence[int], n_hyper: int = 0) -> None:
        from workbench.strategy.bo.model import KernelLayout

        blocks: list[list[list[int]]] = []
        start = 0
        for w in widths:
            blocks.append([list(range(start, start + w))])
            start += w
        prior = [[float(np.sqrt(w))] for w in widths]
        for c in range(start, start + n_hyper):  # one lengthscale each, in the first block
            blocks[0].append([c])
            prior[0].append(0.5)
        self.layout = KernelLayout.from_blocks(blocks, prior)
        self.model: Any = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> GPSurrogate:
        import torch

        from workbench.strategy.bo.model import DTYPE, GPModel

        self.model = GPModel.fit(torch.as_tensor(x, dtype=DTYPE), torch.as_tensor(y, dtype=DTYPE), self.layout)
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, var = self.model.predict(np.asarray(x, dtype=np.float64))
        return mean.numpy(), var.numpy()


class Features:
    """Feature rows of genotypes: a tabular space's cached pool encoding (by index), else the
    space's encodings side by side (:class:`~workbench.strategy.bo.pool.Featurizer`)."""

    def __init__(self, space: SearchSpace, encoding: str | Sequence[str]) -> None:
        from workbench.strategy.bo.pool import Featurizer, FullPool

        if isinstance(encoding, str):
            encoding = [e.strip() for e in encoding.split("+") if e.strip()]
        self.featurizer = Featurizer(space, list(encoding))  # checks the names
        self.pool = FullPool(space, self.featurizer.encodings) if FullPool.supports(space) else None
        if self.pool is None:  # widths are known once a row was encoded
            self.featurizer([space.sample(np.random.default_rng(0))])
        self._pool32: np.ndarray | None = None

    def pool32(self) -> np.ndarray:
        """The whole pool's features as C-contiguous float32 (what the trees read), cached."""
        if self._pool32 is None:
            self._pool32 = np.ascontiguousarray(self.pool.features(), dtype=np.float32)
        return self._pool32

    @property
    def widths(self) -> tuple[int, ...]:
        return self.pool.widths() if self.pool is not None else self.featurizer.widths

    @property
    def n_hyper(self) -> int:
        return self.featurizer.n_hyper

    def __call__(self, gs: Sequence[Genotype]) -> np.ndarray:
        if not gs:
            return np.zeros((0, sum(self.widths) + self.n_hyper))
        if self.pool is not None:
            idx = [self.pool.index_of(g) for g in gs]
            if all(i is not None for i in idx):
                return self.pool.features()[idx]
        return self.featurizer.cached(gs)


def make_surrogate(kind: str, features: Features, seed: int, **forest: Any) -> ForestSurrogate | GPSurrogate:
    """A fresh surrogate: ``"rf"`` (a random forest) or ``"gp"`` (the project's GP)."""
    if kind == "rf":
        return ForestSurrogate(seed=seed, **forest)
    if kind == "gp":
        return GPSurrogate(features.widths, features.n_hyper)
    raise UserError(f"surrogate must be one of {list(SURROGATES)}; got {kind!r}")


class RandomForestBO(Strategy):
    """SMAC-style BO: a random-forest surrogate, expected improvement, local search + random candidates.

    Targets are the normal scores of the observations' ranks (a monotone transform the forest's
    splits are insensitive to, which keeps EI's scale fixed). The forest is refitted whenever
    the data changed, with a random state drawn from the seed and the number of observations,
    so replaying a search refits the same trees.

    Several proposals, or pending points: the next best by EI, distinct (SMAC's own parallel
    mode relies on its random interleaving for diversity; ``random_fraction`` sets it).

    Args:
        space: The search space.
        seed: Seed of every random choice.
        n_init: Random proposals before the forest is used (at least 2 successes are needed).
        forest: ``"rf"`` (random forest, SMAC's) or ``"et"`` (extra trees).
        n_trees: Trees in the forest.
        min_samples_leaf: Smallest leaf.
        max_features: Fraction of the encoding's columns a split considers.
        encoding: Encodings the forest reads (``"onehot"``, ``"onehot+path"``, ...).
        xi: EI's margin over the incumbent (in standardised units).
        random_fraction: Probability that a proposal is a random sample instead (SMAC's
            interleaving; 0 = never).
        n_samples: Random candidates per ask (spaces without a pool).
        local_starts: Local searches per ask, from the best observations (spaces without a pool).
        local_neighbours: Mutations scored per local-search step.
        local_steps: Most steps of a local search.
        prior: Genotypes to evaluate first (the initial design of a warm start).
    """

    name = "smac"

    @classmethod
    def warm_prior_size(cls, options: Mapping[str, Any]) -> int:
        """The initial design: as many of the sources' best as ``n_init`` random points."""
        return check_int("smac", "n_init", options.get("n_init", PRIOR_SIZE), 0, MAX_INIT)

    @classmethod
    def warm_start_options(cls, warm: WarmStart, options: Mapping[str, Any]) -> dict[str, Any]:
        """The sources' best architectures are the initial design (``prior``)."""
        return {"prior": list(warm.prior)}

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        n_init: int = 5,
        forest: str = "rf",
        n_trees: int = 32,
        min_samples_leaf: int = 1,
        max_features: float = 0.8,
        encoding: str | Sequence[str] = "onehot",
        xi: float = 0.0,
        random_fraction: float = 0.0,
        n_samples: int = 200,
        local_starts: int = 5,
        local_neighbours: int = 12,
        local_steps: int = 5,
        prior: Sequence[Genotype] = (),
    ) -> None:
        super().__init__(space, seed)
        if forest not in FORESTS:
            raise UserError(f"smac forest must be one of {list(FORESTS)}; got {forest!r}")
        self.forest = forest
        self.n_init = check_int("smac", "n_init", n_init, 0, MAX_INIT)
        self.n_trees = check_int("smac", "n_trees", n_trees, 1, MAX_TREES)
        self.min_samples_leaf = check_int("smac", "min_samples_leaf", min_samples_leaf, 1, MAX_LEAF)
        self.max_features = check_float("smac", "max_features", max_features, 1e-9, 1.0)
        self.xi = check_float("smac", "xi", xi, 0.0, MAX_XI)
        self.random_fraction = check_float("smac", "random_fraction", random_fraction, 0.0, 1.0)
        self.n_samples = check_int("smac", "n_samples", n_samples, 0, MAX_SAMPLES)
        self.local_starts = check_int("smac", "local_starts", local_starts, 0, MAX_LOCAL_STARTS)
        self.local_neighbours = check_int("smac", "local_neighbours", local_neighbours, 1, MAX_LOCAL_NEIGHBOURS)
        self.local_steps = check_int("smac", "local_steps", local_steps, 0, MAX_LOCAL_STEPS)
        if self.n_samples == 0 and self.local_starts == 0:
            raise UserError("smac needs candidates: n_samples or local_starts must be positive")
        local = self.local_starts * self.local_neighbours * max(1, self.local_steps)
        if self.n_samples + local > MAX_SAMPLES:
            raise UserError(
                f"smac scores at most {MAX_SAMPLES} candidates per ask: n_samples + local_starts x local_neighbours"
                f" x local_steps is {self.n_samples + local}"
            )
        try:
            self.features = Features(space, encoding)
        except UserError as exc:
            raise UserError(str(exc).replace("bo encoding", "smac encoding")) from None
        self.prior = list(prior)
        self._fitted: tuple[int, ForestSurrogate, list[Observation], np.ndarray] | None = None
        #: Timings of the last model-based ask (seconds), for benchmarks.
        self.last_ask: dict[str, Any] = {}

    # -- the model ---------------------------------------------------------------------------

    def _usable(self) -> list[Observation]:
        return [o for o in highest_fidelity(self.history, max(3, self.n_init)) if o.ok]

    def _model(self) -> tuple[ForestSurrogate, list[Observation], np.ndarray]:
        """The forest on the usable history (refitted only when it changed) and its targets."""
        if self._fitted is not None and self._fitted[0] == len(self.history):
            return self._fitted[1], self._fitted[2], self._fitted[3]
        used = self._usable()
        y = normal_scores(np.array([float(o.value) for o in used]))
        state = int(np.random.default_rng([self.seed, len(self.history), 7]).integers(2**31 - 1))
        model = ForestSurrogate(self.forest, self.n_trees, self.min_samples_leaf, self.max_features, state)
        model.fit(self.features([o.genotype for o in used]), y)
        self._fitted = (len(self.history), model, used, y)
        return model, used, y

    # -- asking ------------------------------------------------------------------------------

    def ask(self, n: int = 1, *, pending: Sequence[Genotype] = ()) -> list[Proposal]:
        rng = self.rng_for(pending)
        taken = {g.key for g in pending}
        out = self.prior_proposals(self.prior, n, taken)
        while len(out) < n:
            started = len(self.history) + len(pending) + len(out)
            explore = self.random_fraction > 0 and rng.random() < self.random_fraction
            if started < self.n_init or len(self._usable()) < 2 or explore:
                g = self.fresh_sample(rng, taken)
                out.append(Proposal(g, origin="random"))
                taken.add(g.key)
                continue
            picked = self._model_proposals(n - len(out), taken, rng)
            for g in picked:
                taken.add(g.key)
            out += [Proposal(g, origin="model") for g in picked]
        return out

    def _model_proposals(self, k: int, taken: set[str], rng: np.random.Generator) -> list[Genotype]:
        t0 = time.perf_counter()
        model, used, y = self._model()
        t_fit = time.perf_counter() - t0
        best = float(y.max())
        pool = self.features.pool
        if pool is not None:
            rows = pool.available([o.genotype for o in self.history])
            mean, var = model.predict(self.features.pool32())  # the whole pool: no copy of its rows
            mean, var = mean[rows], var[rows]
            order = rows[np.argsort(-expected_improvement(mean, var, best, self.xi), kind="stable")]
            members = pool.members()
            picks: list[Genotype] = []
            for i in order:
                g = members[int(i)]
                if g.key not in taken:  # pending, or picked in this ask
                    picks.append(g)
                    if len(picks) == k:
                        break
            n_cand = len(rows)
        else:
            cands, ei = self._local_candidates(model, used, y, best, self._seen | taken, rng)
            order = np.argsort(-ei, kind="stable")
            picks = [cands[int(i)] for i in order[:k]]
            n_cand = len(cands)
        while len(picks) < k:  # the candidates ran out
            g = self.fresh_sample(rng, taken | {p.key for p in picks})
            picks.append(g)
        self.last_ask = {"fit_s": t_fit, "total_s": time.perf_counter() - t0, "candidates": n_cand}
        return picks

    def _local_candidates(
        self,
        model: ForestSurrogate,
        used: list[Observation],
        y: np.ndarray,
        best: float,
        excluded: set[str],
        rng: np.random.Generator,
    ) -> tuple[list[Genotype], np.ndarray]:
        """Unseen candidates and their EI: random samples, and every point a local search from
        the best observations visited (best-improvement steps over ``mutate`` neighbours)."""
        found: dict[str, Genotype] = {}
        scores: dict[str, float] = {}

        def score(gs: list[Genotype]) -> np.ndarray:
            mean, var = model.predict(self.features(gs))
            ei = expected_improvement(mean, var, best, self.xi)
            for g, e in zip(gs, ei):
                if g.key not in excluded:
                    found.setdefault(g.key, g)
                    scores[g.key] = float(e)
            return ei

        samples = [self.space.sample(rng) for _ in range(self.n_samples)]
        if samples:
            score(samples)
        order = np.argsort(-y, kind="stable")
        starts = list({used[int(i)].genotype.key: used[int(i)].genotype for i in order}.values())
        for start in starts[: self.local_starts]:
            current, current_ei = start, float(score([start])[0])
            for _ in range(self.local_steps):
                neighbours = [self.space.mutate(current, rng) for _ in range(self.local_neighbours)]
                ei = score(neighbours)
                j = int(np.argmax(ei))
                if ei[j] <= current_ei:
                    break
                current, current_ei = neighbours[j], float(ei[j])
        keys = list(found)
        return [found[k] for k in keys], np.array([scores[k] for k in keys])
