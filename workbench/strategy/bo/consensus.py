"""The sources' consensus: candidates ranked by how high every source's model ranks them.

A warm search's first picks are made before the target has data that could weight the sources
(zero-shot). :class:`SourceConsensus` ranks candidates by the *sum of their ranks* under each
source's GP mean (one exact GP per source, :class:`~workbench.strategy.bo.model.GPModel`), best
first: an architecture that every source's model puts near the top comes first.

Why ranks and not values: the sources' transformed values are standardised per task, but their
GPs' predictions are not on a common scale (a source with a long tail of poor architectures
stretches its predictions), and a weighted mean of values lets one such source decide. On
NAS-Bench-Graph (seed 0-9 sources of ``benchmarks/transfer.py``, regime A) following the rank
sum reached the target's top 1% in a median 3.5 evaluations on citeseer and physics and 4.5 on
computers (cold BO: 22.5, 35, 14), the mean of standardised predictions in 6.5, 24 and 15.

The means over a tabular space's whole pool are computed once per source and cached on the
:class:`~workbench.strategy.bo.pool_kernel.Candidates` (shared with RGPE, which fits the same
source GPs: :func:`source_gps`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.strategy.bo.model import FitSettings, GPModel, KernelLayout
from workbench.strategy.bo.pool_kernel import Candidates, gp_pool_mean
from workbench.strategy.bo.sources import PreparedSource

__all__ = ["SourceConsensus", "source_gps", "source_pool_mean"]


def source_gps(sources: Sequence[PreparedSource], layout: KernelLayout, settings: FitSettings) -> list[GPModel]:
    """One exact GP per source, fitted on its transformed values (once per search)."""
    return [GPModel.fit(s.x, s.y, layout, settings) for s in sources]


def source_pool_mean(cands: Candidates, gp: GPModel) -> np.ndarray:
    """A source GP's mean at every candidate, cached on ``cands`` (sources never change)."""
    key = ("source-mean", id(gp))
    if key not in cands.cache:
        cands.cache[key] = gp_pool_mean(gp, cands)
    return cands.cache[key]


def _ranks(values: np.ndarray) -> np.ndarray:
    """0 for the highest value, 1 for the next, ... (ties broken by position)."""
    out = np.empty(len(values), dtype=np.float64)
    out[np.argsort(-values, kind="stable")] = np.arange(len(values))
    return out


class SourceConsensus:
    """The rank-sum order of candidates under the sources' GP means.

    Args:
        gps: One fitted GP per source (:func:`source_gps`).
    """

    def __init__(self, gps: Sequence[GPModel]) -> None:
        self.gps = list(gps)

    def rank_sums(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """Sum over the sources of each row's rank among all candidates (lower is better;
        computed once per candidate set)."""
        key = ("consensus", tuple(id(gp) for gp in self.gps))
        if key not in cands.cache:
            total = np.zeros(len(cands))
            for gp in self.gps:
                total += _ranks(source_pool_mean(cands, gp))
            cands.cache[key] = total
        return cands.cache[key][np.asarray(rows, dtype=np.int64)]

    def order(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """``rows`` best first by the sources' consensus (ties: the earlier row first)."""
        rows = np.asarray(rows, dtype=np.int64)
        return rows[np.argsort(self.rank_sums(cands, rows), kind="stable")]
