"""Warm-start sources made ready for the multi-task models: features, transformed values, thinning.

A :class:`~workbench.strategy.base.WarmSource` is another task's history in the same space, as
the warm-start plan offers it (genotypes, raw values, the plan's initial trust). The models of
:mod:`.rgpe` and :mod:`.mtgp` need it as numbers: :func:`prepare_sources` encodes the genotypes
with the strategy's features, drops what does not encode or is not finite, keeps at most a few
hundred observations per source (:func:`thin`) and transforms the values per task (the
strategy's ``transform``), giving one :class:`PreparedSource` each. Sources never change during
a search, so this happens once, on the first ask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from workbench.errors import InvalidGenotype, UserError
from workbench.space.genotype import Genotype
from workbench.strategy.base import WarmSource
from workbench.strategy.bo.model import DTYPE

__all__ = ["PreparedSource", "prepare_sources", "prior_weights", "thin"]


@dataclass
class PreparedSource:
    """One source task as model data.

    Attributes:
        task: Task name.
        x: `n x d` features.
        y: `n` transformed (per-task standardised) values.
        prior_weight: Trust before the target has data (meta-features), at least 0.
        genotypes: The `n` genotypes (for candidates in spaces without a pool).
    """

    task: str
    x: Tensor
    y: Tensor
    prior_weight: float
    genotypes: list[Genotype] = field(default_factory=list)


def thin(values: np.ndarray, cap: int) -> np.ndarray:
    """Indices of at most ``cap`` observations: the best third of the cap and an even spread of
    the rest (deterministic), in their original order."""
    n = len(values)
    if n <= cap:
        return np.arange(n)
    order = np.argsort(-values, kind="stable")
    top = order[: cap // 3]
    rest = order[cap // 3 :]
    spread = rest[np.unique(np.linspace(0, len(rest) - 1, cap - len(top)).round().astype(int))]
    return np.sort(np.concatenate([top, spread]))


def prepare_sources(
    sources: Sequence[WarmSource],
    features: Callable[[Sequence[Genotype]], np.ndarray],
    transform: Callable[[np.ndarray], np.ndarray],
    max_points: int = 300,
    min_points: int = 3,
) -> list[PreparedSource]:
    """The sources as model data, in order (sources left with too few observations left out).

    Genotypes that do not encode (not in the space) and non-finite values are dropped, repeats of
    a genotype within a source keep their first value, each source keeps at most ``max_points``
    observations (:func:`thin`) and sources with fewer than ``min_points`` are left out.

    Args:
        sources: The warm start's sources.
        features: ``genotypes -> `n x d` array`` (the strategy's features).
        transform: ``values -> transformed values`` (per task).
        max_points: Most observations kept per source.
        min_points: Fewest usable observations of a kept source.

    Raises:
        UserError: A source with different numbers of genotypes and values.
    """
    out: list[PreparedSource] = []
    for source in sources:
        task, genotypes = source.task, source.genotypes
        values = np.asarray(source.values, dtype=np.float64)
        if len(genotypes) != len(values):
            raise UserError(f"source {task!r}: {len(genotypes)} genotypes but {len(values)} values")
        keep_g: list[Genotype] = []
        keep_v: list[float] = []
        rows: list[np.ndarray] = []
        seen: set[str] = set()
        candidates = []
        for g, v in zip(genotypes, values):
            if math.isfinite(v) and g.key not in seen:
                seen.add(g.key)
                candidates.append((g, float(v)))
        try:  # all at once; one by one only when some genotype does not encode
            encoded = list(np.asarray(features([g for g, _ in candidates]), dtype=np.float64)) if candidates else []
        except (InvalidGenotype, KeyError, ValueError, IndexError):
            encoded = []
            for g, _ in candidates:
                try:
                    encoded.append(np.asarray(features([g]), dtype=np.float64)[0])
                except (InvalidGenotype, KeyError, ValueError, IndexError):
                    encoded.append(None)
        for (g, v), row in zip(candidates, encoded):
            if row is not None:
                keep_g.append(g)
                keep_v.append(v)
                rows.append(row)
        if len(keep_v) < min_points:
            continue
        v = np.asarray(keep_v)
        idx = thin(v, max_points)
        y = np.asarray(transform(v[idx]), dtype=np.float64)
        out.append(
            PreparedSource(
                str(task),
                torch.as_tensor(np.stack([rows[i] for i in idx]), dtype=DTYPE),
                torch.as_tensor(y, dtype=DTYPE),
                float(max(source.weight, 0.0)),
                [keep_g[i] for i in idx],
            )
        )
    return out


def prior_weights(sources: Sequence[PreparedSource]) -> np.ndarray:
    """The sources' prior (meta-feature) weights, normalised (equal when all are 0)."""
    w = np.array([max(s.prior_weight, 0.0) for s in sources], dtype=np.float64)
    return w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / max(len(w), 1))
