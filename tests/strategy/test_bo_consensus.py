"""The sources' consensus (:mod:`workbench.strategy.bo.consensus`): the zero-shot order of a warm
BO search, by the sum of each source model's ranks."""

from __future__ import annotations

import numpy as np
import torch

from workbench.strategy.bo.consensus import SourceConsensus, source_gps
from workbench.strategy.bo.model import DTYPE, FitSettings, KernelLayout
from workbench.strategy.bo.pool_kernel import Candidates
from workbench.strategy.bo.sources import PreparedSource

LAYOUT = KernelLayout(groups=((0, 1),), block_of=(0,), prior_lengthscale=(1.0,))


def _source(task: str, f, rng: np.random.Generator, n: int = 40) -> PreparedSource:
    x = rng.uniform(-1, 1, size=(n, 2))
    return PreparedSource(task, torch.as_tensor(x, dtype=DTYPE), torch.as_tensor(f(x), dtype=DTYPE), 1.0)


def _grid() -> Candidates:
    g = np.linspace(-1, 1, 21)
    return Candidates(np.array([(a, b) for a in g for b in g]), LAYOUT, structured=False)


def test_the_point_every_source_ranks_high_comes_first():
    rng = np.random.default_rng(0)
    peak = np.array([0.5, -0.5])
    sources = [
        _source("a", lambda x: -((x - peak) ** 2).sum(1), rng),
        _source("b", lambda x: -((x - peak) ** 2).sum(1) + 0.2 * x[:, 0], rng),
    ]
    cands = _grid()
    order = SourceConsensus(source_gps(sources, LAYOUT, FitSettings())).order(cands, np.arange(len(cands)))
    assert np.linalg.norm(cands.x[order[0]].numpy() - peak) < 0.25


def test_ranks_not_scales_decide_so_one_source_with_large_values_does_not_outvote_the_others():
    rng = np.random.default_rng(1)
    left, right = np.array([-0.6, 0.0]), np.array([0.6, 0.0])
    near = lambda c: lambda x: -((x - c) ** 2).sum(1)  # noqa: E731
    loud = lambda x: 1000.0 * near(right)(x)  # noqa: E731
    sources = [_source("a", near(left), rng), _source("b", near(left), rng), _source("loud", loud, rng)]
    gps = source_gps(sources, LAYOUT, FitSettings())
    cands = _grid()
    best = cands.x[SourceConsensus(gps).order(cands, np.arange(len(cands)))[0]].numpy()
    assert best[0] < 0  # two sources of three agree on the left
    mean = sum(gp.predict_mean(cands.x).numpy() for gp in gps)  # what a sum of predictions picks
    assert cands.x[int(np.argmax(mean))].numpy()[0] > 0


def test_the_order_covers_exactly_the_rows_asked_for_and_is_cached():
    rng = np.random.default_rng(2)
    sources = [_source("a", lambda x: x[:, 0], rng)]
    cands = _grid()
    consensus = SourceConsensus(source_gps(sources, LAYOUT, FitSettings()))
    rows = np.array([5, 100, 50, 300])  # grid columns 0, 4, 2, 14
    order = consensus.order(cands, rows)
    assert sorted(order.tolist()) == sorted(rows.tolist())
    assert order.tolist() == sorted(rows.tolist(), key=lambda r: -float(cands.x[r, 0]))  # highest x first
    assert len(cands.cache) == 2 and consensus.order(cands, rows).tolist() == order.tolist()  # mean + ranks, once
