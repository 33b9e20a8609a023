"""Source tasks for warm starts: read earlier searches, measure how related they are, weigh them.

A *source* is every finished full-fidelity trial of another task in the same search space,
as the metastore returns it (:meth:`metastore.Metastore.histories`). How much a source is
trusted comes from two signals:

* **meta-features** (before the target has data): tasks whose sizes, classes and input shapes
  are alike are more likely to share good architectures;
* **ranking agreement** (once the target has a few observations): a source model's predictions
  at the target's evaluated architectures are compared pairwise with the target's values, as in
  RGPE (Feurer et al. 2018). A source that ranks the target no better than chance gets weight 0,
  so unrelated tasks cannot mislead the search (negative transfer).

Nothing here imports torch or botorch; the BO strategy has its own multi-task models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from workbench.errors import InvalidGenotype, UserError
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.strategy.base import WarmSource

#: A task needs this many finished full-fidelity trials in the store to be a warm-start source.
MIN_SOURCE_TRIALS = 5


def sources_from_histories(
    histories: Mapping[str, Any], space: SearchSpace, min_trials: int = MIN_SOURCE_TRIALS
) -> list[WarmSource]:
    """Turn the metastore's task histories into validated sources (bad genotypes are skipped),
    each with weight 0 until :func:`weigh_sources` weighs them.

    Args:
        histories: ``task -> TaskHistory`` (``genotype_jsons``, ``values``, ``meta_features``).
        space: The target's search space; source genotypes must belong to it.
        min_trials: Sources with fewer usable trials are ignored.
    """
    out = []
    for task, h in sorted(histories.items()):
        gs, vs = [], []
        for text, v in zip(h.genotype_jsons, np.asarray(h.values, dtype=float)):
            if not math.isfinite(v):
                continue
            try:
                g = Genotype.from_json(text)
                space.validate(g)
            except InvalidGenotype:
                continue
            gs.append(g)
            vs.append(v)
        if len(gs) >= min_trials:
            out.append(WarmSource(task, tuple(gs), np.array(vs), meta_features=dict(h.meta_features or {})))
    return out


def parse_warm_start(value: str | None) -> tuple[str, list[str]]:
    """``none`` | ``auto`` | ``TASK[,TASK...]`` -> (mode, task names)."""
    text = (value or "none").strip()
    if text in ("none", ""):
        return "none", []
    if text == "auto":
        return "auto", []
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UserError(f"--warm-start expects none, auto or TASK[,TASK...], got {value!r}")
    return "tasks", names


def choose_sources(mode: str, names: Sequence[str], available: Sequence[WarmSource], target: str) -> list[WarmSource]:
    """The sources a warm start uses (``auto``: all; named: exactly those, each must exist)."""
    if mode == "none":
        return []
    pool = [s for s in available if s.task != target]
    if mode == "auto":
        return pool
    by_name = {s.task: s for s in pool}
    missing = [n for n in names if n not in by_name]
    if missing:
        have = sorted(by_name) or ["none"]
        raise UserError(f"--warm-start: no usable history for {missing} in this space; tasks with history: {have}")
    return [by_name[n] for n in names]


def meta_similarity(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Similarity in ``(0, 1]`` of two meta-feature sets (1 = identical on their shared keys).

    Counts and sizes are compared on a log scale; an empty overlap gives 0.5 (unknown).
    """
    keys = sorted(set(a) & set(b))
    if not keys:
        return 0.5
    d = 0.0
    for k in keys:
        x, y = float(a[k]), float(b[k])
        if x > 0 and y > 0:
            d += (math.log(x) - math.log(y)) ** 2
        else:
            d += (x - y) ** 2 / (1.0 + abs(x) + abs(y))
    return float(math.exp(-math.sqrt(d / len(keys))))


def kernel_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_query: np.ndarray, lengthscale: float | None = None
) -> np.ndarray:
    """Nadaraya–Watson regression with an RBF kernel: a cheap, model-free source predictor."""
    x_train = np.asarray(x_train, float)
    x_query = np.asarray(x_query, float)
    d2 = ((x_query[:, None, :] - x_train[None, :, :]) ** 2).sum(-1)
    if lengthscale is None:
        nz = d2[d2 > 0]
        lengthscale = math.sqrt(float(np.median(nz)) / 2.0) if nz.size else 1.0
    w = np.exp(-d2 / (2.0 * lengthscale**2))
    w_sum = w.sum(1)
    pred = (w @ np.asarray(y_train, float)) / np.where(w_sum > 0, w_sum, 1.0)
    return np.where(w_sum > 0, pred, float(np.mean(y_train)))


def ranking_agreement(pred: np.ndarray, actual: np.ndarray) -> float:
    """Fraction of concordant pairs (ties count half); 0.5 = chance, 1 = same ranking."""
    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    n = len(actual)
    if n < 2:
        return 0.5
    dp = np.sign(pred[:, None] - pred[None, :])
    da = np.sign(actual[:, None] - actual[None, :])
    iu = np.triu_indices(n, 1)
    agree = dp[iu] * da[iu]
    relevant = da[iu] != 0
    if not relevant.any():
        return 0.5
    return float(((agree[relevant] > 0) + 0.5 * (agree[relevant] == 0)).mean())


@dataclass
class SourceWeights:
    """Trust in each source: from meta-features first, from ranking agreement once data arrives.

    Attributes:
        weights: ``task -> weight`` in ``[0, 1]``.
        how: ``task -> "meta"`` or ``"ranking"`` (what the current weight is based on).
    """

    weights: dict[str, float]
    how: dict[str, str]

    def to_json(self) -> str:
        return json.dumps({k: round(v, 4) for k, v in self.weights.items()}, sort_keys=True)


def weigh_sources(
    sources: Sequence[WarmSource],
    space: SearchSpace,
    target_meta: Mapping[str, float],
    target_genotypes: Sequence[Genotype] = (),
    target_values: Iterable[float] = (),
    min_target: int = 5,
    encoding: str = "onehot",
) -> SourceWeights:
    """Weigh every source for the target.

    With fewer than ``min_target`` target observations, the weight is the meta-feature
    similarity. Afterwards it is ``2 * (agreement - 0.5)`` clipped at 0: a source that ranks the
    target's observations no better than chance gets no weight.
    """
    values = np.asarray(list(target_values), float)
    weights: dict[str, float] = {}
    how: dict[str, str] = {}
    x_target = space.encode(list(target_genotypes), encoding) if len(values) >= min_target else None
    for s in sources:
        if x_target is None:
            weights[s.task] = meta_similarity(target_meta, s.meta_features)
            how[s.task] = "meta"
            continue
        pred = kernel_predict(space.encode(list(s.genotypes), encoding), s.standardized(), x_target)
        weights[s.task] = max(0.0, 2.0 * (ranking_agreement(pred, values) - 0.5))
        how[s.task] = "ranking"
    return SourceWeights(weights, how)


def weighed(sources: Sequence[WarmSource], weights: SourceWeights) -> list[WarmSource]:
    """The sources with their weights set."""
    return [replace(s, weight=float(weights.weights.get(s.task, 0.0))) for s in sources]


def warm_candidates(sources: Sequence[WarmSource], weights: Mapping[str, float], k: int) -> list[Genotype]:
    """Up to ``k`` distinct genotypes to evaluate first: the best of each source, by weight."""
    ranked = sorted(sources, key=lambda s: -weights.get(s.task, 0.0))
    per_source = [s.best(k) for s in ranked if weights.get(s.task, 0.0) > 0]
    out: list[Genotype] = []
    seen: set[str] = set()
    for depth in range(k):
        for best in per_source:
            if depth < len(best) and best[depth].key not in seen:
                seen.add(best[depth].key)
                out.append(best[depth])
                if len(out) >= k:
                    return out
    return out
