"""Transfer benchmark: warm-started BO on a held-out NAS-Bench-Graph dataset, in three source regimes.

For each target dataset (the 8 large ones by default), each seed and each *regime* (``--regime``,
or several with ``--regimes A,B,C``), the *sources* are searches on other datasets,
``--source-trials`` (150) trials each, seeded by the seed, run on the tables:

* **A**, leave one dataset out, evolution: ``--source-strategy`` (``evolution``) on each of the
  other seven datasets (the benchmark as it was before the regimes);
* **B**, leave one dataset out, random search: random search on each of the other seven (what a
  user's earlier exploratory searches look like);
* **C**, a single unrelated source: ``--source-strategy`` on the one dataset whose validation
  accuracy has the lowest Spearman rank correlation with the target's (:func:`correlations`).

The target search then runs with:

* ``rgpe``: BO warm-started through the real warm-start plumbing, with ``BayesianOptimization``'s
  own defaults (whatever warm-start algorithm they select; the page names the model in use):
  :func:`workbench.transfer.plan.plan_warm_start` with ``--warm-start auto`` on the sources as
  the metastore's ``histories()`` returns them, the options completed as ``nasw search`` does
  (``prepare_options`` with the budget and the warm start on offer, then
  ``warm_start_options``). ``--hedge N`` passes ``hedge=N`` when BO still takes that option;
* ``mtgp``: the same with ``transfer="mtgp"``;
* ``copula``: the same with ``transfer="copula"`` (BO's own CTS-like model,
  :mod:`workbench.strategy.bo.copula`, in BO's warm-start schedule);
* ``cold``: BO without sources, with its defaults; it does not depend on the regime, so it runs
  once per (target, seed) and every regime is compared with the same cold searches (paired on
  the seeds);
* ``random``: uniform sampling without repeats (shared by the regimes like ``cold``);
* ``naive``: the sources' best architectures first (one per source, most trusted source first,
  :func:`workbench.transfer.sources.warm_candidates`), then random;
* ``cts``: the quantile-based transfer of Salinas et al. 2020, written here (:class:`CopulaTS`):
  each source's values through a Gaussian copula (rank -> normal quantile), a random forest
  (scikit-learn, 100 trees) of the copula values over the architectures' one-hot encodings fitted
  on all sources; the first 5 proposals are Thompson samples (a normal draw from the forest's mean
  and its spread across trees, per pool member, the argmax), after that the CGP variant: a target
  GP (scikit-learn, RBF + white noise, fitted by marginal likelihood) on the residuals of the
  target's own copula values from the forest's mean, and expected improvement over the pool of
  the forest's mean plus the GP's posterior;
* ``box``: search-space pruning of Perrone et al. 2019, written here (:func:`box_order`): the box
  is, per categorical decision (the canonical link pattern and the op of each of the 4 nodes,
  the blocks of the ``onehot`` encoding), the set of values that the best architecture of each
  source takes; random search in the pool members whose every decision lies in its set, then in
  the rest of the pool.

Where the searches run. The bulk runs in memory (strategies asked and told directly from the
tables, as ``benchmarks/strategies.py``). ``--store-check`` exercises the store path once per
regime: the seed-0 sources of the first target are recorded by ``nasw search --strategy ...``
into a temporary SQLite store, read back with ``Metastore.histories()`` and compared with the
in-memory sources, then ``nasw search --task nbgraph-TARGET --strategy bo --warm-start auto``
runs on that store and its proposals (the sequence of architectures) are compared with the
in-memory warm run of seed 0.

Reported per regime and target (``benchmarks/results/transfer.md``): the median number of
evaluations to reach the top 1% by validation accuracy (ties within 1e-9 count; a search that
never gets there in ``--max-evals`` counts as ``max-evals + 1``) with a bootstrap standard error
over seeds; the mean test accuracy (± standard error) of the best-by-validation architecture
after 5, 10, 20 and 50 evaluations; the sources' final trust. A verdict table per regime checks
the tests of issue 19: (a) never worse than cold BO by a one-sided paired test at 2 bootstrap
standard errors (with the test's false-alarm rate of cold BO against itself, ``--cold-seeds``);
(b) the geometric mean over the targets of warm / cold median evaluations (A <= 0.70, B <= 0.85);
(c) <= 0.5 wherever a source's whole-table ordering reaches the target's top 1% in under half
of cold BO's evaluations (:func:`source_orderings`); (d) anytime: the test accuracy after 5 and
10 evaluations at least cold BO's (A and B); (e) fewer evaluations than CTS and the bounding box
on at least 7 of 8 targets (A and B); (f) fit + one ask <= 1 s with the regime's sources and 50
target observations. Plots: ``transfer_<target>.png`` (median regret per evaluation) and
``transfer_summary.png`` for regime A, ``transfer_<regime>_<target>.png`` and
``transfer_<regime>_summary.png`` for the others.

Usage::

    python benchmarks/transfer.py --quick --regimes A,B,C           # smoke test: minutes, to a temp dir
    python benchmarks/transfer.py --regimes A,B,C --seeds 40 --jobs 2 --cold-seeds 80 --store-check
    python benchmarks/transfer.py --regime C --targets photo,cora --methods rgpe,cold --seeds 20
    python benchmarks/transfer.py --strategies rl,hillclimb --seeds 20 --max-evals 150 --jobs 1

``--strategies evolution,rl,hillclimb`` runs another mode instead: each named strategy warm-started
(``--warm-start auto`` on the regime's sources, built as ``nasw search`` builds it, with
``--max-evals`` as its budget) against the same strategy cold, on the same seeds, stopped at the
top 1%; per target the paired medians, the one-sided 2-SE test of (a) and the geometric mean
(``transfer_strategies.md`` and ``transfer_strategies_raw.json``; issue 19: "a warm start that is
not helping must not cost more than a few evaluations against the cold strategy").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _jobs import in_order  # benchmarks/_jobs.py

LARGE = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv")
METHODS = (
    "rgpe",
    "mtgp",
    "copula",
    "design",
    "cold",
    "random",
    "naive",
    "cts",
    "box",
)
DEFAULT_METHODS = ("rgpe", "cold", "random", "naive", "cts", "box")
#: Methods without sources: run once per (target, seed) and shared by every regime.
SHARED = ("cold", "random")
#: BO warm-started by the workbench (the methods the issue's tests are about).
WARM = ("rgpe", "mtgp", "copula", "design")
#: Methods compared with cold BO seed by seed.
COMPARED = ("rgpe", "mtgp", "copula", "naive", "cts", "box")
REGIMES = {
    "A": "leave one dataset out, evolution sources",
    "B": "leave one dataset out, random-search sources",
    "C": "a single unrelated source, the one with the lowest validation rank correlation",
}
#: (b): the largest geometric mean of warm / cold evaluations per regime.
GEOMEAN_TARGET = {"A": 0.70, "B": 0.85}
#: (d) and (e) apply to these regimes.
RELATED_REGIMES = ("A", "B")
CHECKPOINTS = (5, 10, 20, 50)
#: (a): warm is worse when its median exceeds cold BO's by more than this many paired bootstrap SEs.
SE_FACTOR = 2.0
#: (f): target observations of the timed fit + ask, and its limit in seconds.
SPEED_OBS = 50
SPEED_LIMIT_S = 1.0
#: CTS proposes by Thompson sampling until the target has this many observations, then CGP.
CTS_THOMPSON = 5
QUICK = {"seeds": 4, "targets": "cora,physics", "max_evals": 40, "min_evals": 10, "cold_seeds": 8}
RESULTS = Path(__file__).resolve().parent / "results"
_SOURCES: dict[tuple, tuple[list[int], list[float]]] = {}
_CORR: dict[str, dict[str, float]] = {}


# -- building strategies as `nasw search` does ---------------------------------------------------


def build_strategy(name: str, space, seed: int, budget: int, options: dict | None = None, offer=None):
    """A strategy built as ``nasw search`` builds it (``workbench/search/assemble.py``): the
    options checked against the constructor, completed by the strategy's ``prepare_options`` for
    the budget and the warm start on offer, plus the warm start's constructor arguments."""
    from workbench.strategy.base import StrategySetup
    from workbench.strategy.registry import check_options, make_strategy, strategy_class

    cls = strategy_class(name)
    opts = check_options(name, dict(options or {}))
    opts = cls.prepare_options(opts, StrategySetup(budget=budget, warm=offer))
    warm = cls.warm_start_options(offer, opts) if offer is not None else {}
    return make_strategy(name, space, seed=seed, **opts, **warm)


def bo_options(method: str, hedge: int | None = None) -> dict:
    """BO's options for a method ``MODEL`` or ``MODEL-SCHEDULE``: none but what the method names
    (BO's defaults otherwise)."""
    opts: dict = {}
    model, _, schedule = method.partition("-")
    if model in ("mtgp", "copula", "design"):
        opts["transfer"] = model
    if schedule:
        opts["schedule"] = schedule
    if hedge is not None and method in WARM:
        opts["hedge"] = hedge
    return opts


# -- sources ----------------------------------------------------------------------------------------


def regime_strategy(regime: str, source_strategy: str = "evolution") -> str:
    """The strategy of a regime's source searches."""
    return "random" if regime == "B" else source_strategy


def regime_sources(regime: str, target: str, corr: dict | None = None) -> tuple[str, ...]:
    """The source datasets of ``target`` in a regime: the other seven (A, B) or the one with the
    lowest validation rank correlation to it (C)."""
    if regime in ("A", "B"):
        return tuple(d for d in LARGE if d != target)
    c = (corr or correlations())[target]
    return (min(c, key=c.get),)


def source_search(dataset: str, seed: int, n_trials: int, strategy: str = "evolution") -> tuple[list[int], list[float]]:
    """One source search on a table, in memory: pool indices and validation accuracies, in order.

    The same strategy, seed and observations as ``nasw search --task nbgraph-DATASET --strategy
    STRATEGY --seed SEED --budget N_TRIALS`` (checked by ``--store-check``).
    """
    key = (dataset, seed, n_trials, strategy)
    if key not in _SOURCES:
        from workbench.evaluate.tabular import table_arrays
        from workbench.space.nbgraph import NBGraphSpace
        from workbench.strategy.base import Observation

        space = NBGraphSpace(dataset)
        vals = table_arrays(dataset).val_accuracy
        strat = build_strategy(strategy, space, seed, n_trials)
        seq: list[int] = []
        for _ in range(n_trials):
            (p,) = strat.ask(1)
            i = space.index_of(p.genotype)
            seq.append(i)
            strat.tell([Observation(p.genotype, float(vals[i]))])
        _SOURCES[key] = (seq, [float(vals[i]) for i in seq])
    return _SOURCES[key]


def histories_for(target: str, seed: int, n_trials: int, strategy: str, datasets=None) -> dict:
    """The source searches (default: the other seven datasets) as ``Metastore.histories()`` returns them."""
    from metastore import TaskHistory
    from workbench.space.nbgraph import NBGraphSpace
    from workbench.task import load_task

    out = {}
    for ds in datasets or [d for d in LARGE if d != target]:
        seq, values = source_search(ds, seed, n_trials, strategy)
        pool = NBGraphSpace(ds).pool()
        task = load_task(f"nbgraph-{ds}")
        out[task.name] = TaskHistory(
            task.name, [pool[i].to_json() for i in seq], np.asarray(values), dict(task.meta_features)
        )
    return out


def warm_plan(target: str, seed: int, n_trials: int, strategy: str, options: dict | None = None, datasets=None):
    """The warm-start plan of ``--warm-start auto`` for a BO search on ``target`` with ``options``."""
    from workbench.space.nbgraph import NBGraphSpace
    from workbench.strategy.registry import check_options, strategy_class
    from workbench.task import load_task
    from workbench.transfer.plan import plan_warm_start

    task = load_task(f"nbgraph-{target}")
    return plan_warm_start(
        "auto",
        histories_for(target, seed, n_trials, strategy, datasets),
        NBGraphSpace(target),
        task.name,
        dict(task.meta_features),
        strategy_class("bo"),
        check_options("bo", dict(options or {})),
    )


def source_points(space, seed: int, n_trials: int, strategy: str, datasets) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each source search as ``(dataset, indices into the target's pool, validation accuracies)``."""
    from workbench.space.nbgraph import NBGraphSpace

    out = []
    for ds in datasets:
        seq, values = source_search(ds, seed, n_trials, strategy)
        src_pool = NBGraphSpace(ds).pool()
        idx = np.array([space.index_of(src_pool[i]) for i in seq], dtype=np.int64)
        out.append((ds, idx, np.asarray(values, dtype=float)))
    return out


# -- the literature's baselines (benchmark-only) -----------------------------------------------------


def copula(values: np.ndarray) -> np.ndarray:
    """Gaussian-copula transform of one task's values: rank (ties averaged) -> normal quantile,
    ``Phi^-1((rank - 1/2) / n)``; higher is better."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    values = np.asarray(values, dtype=float)
    return ndtri((rankdata(values) - 0.5) / len(values))


def _log_ei(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """log expected improvement over ``best`` of normal predictions, stable far below it."""
    from scipy.special import ndtr

    u = (mean - best) / sd
    h = u * ndtr(u) + np.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)
    tail = -0.5 * u**2 - 0.5 * math.log(2 * math.pi) - 2.0 * np.log(np.maximum(np.abs(u), 1e-12))
    with np.errstate(divide="ignore"):
        out = np.where(h > 1e-12, np.log(np.maximum(h, 1e-300)), tail)
    return np.log(sd) + out


class CopulaTS:
    """CTS / CGP of Salinas et al. 2020 ("A quantile-based approach for hyperparameter transfer
    learning") over a NAS-Bench-Graph pool.

    The prior: every source's values through :func:`copula`, a scikit-learn
    ``RandomForestRegressor`` (100 trees, ``min_samples_leaf=3``, ``max_features=0.5``) of the
    copula values over the one-hot encodings of all sources' architectures; its mean and spread
    (standard deviation across trees) at every pool member stand in for the paper's parametric
    (MLP) mean and standard deviation. Proposals: until the target has ``thompson`` observations,
    Thompson sampling (``mean + spread * N(0, 1)`` per pool member, the best unevaluated one);
    afterwards CGP: a GP (constant x RBF + white noise, marginal-likelihood fit) on the residuals
    of the target's own copula values from the prior mean, and log expected improvement of
    ``prior mean + GP mean`` with the GP's standard deviation over the unevaluated pool.
    """

    def __init__(self, space, sources, seed: int, thompson: int = CTS_THOMPSON, trees: int = 100) -> None:
        from sklearn.ensemble import RandomForestRegressor

        self.x = np.asarray(space.pool_encoding("onehot"), dtype=float)
        xs = np.concatenate([self.x[idx] for _, idx, _ in sources])
        zs = np.concatenate([copula(v) for _, _, v in sources])
        forest = RandomForestRegressor(
            n_estimators=trees, min_samples_leaf=3, max_features=0.5, random_state=seed, n_jobs=1
        ).fit(xs, zs)
        per_tree = np.stack([t.predict(self.x) for t in forest.estimators_])
        self.mean = per_tree.mean(0)
        self.spread = np.maximum(per_tree.std(0), 1e-3)
        self.thompson = thompson
        self.seed = seed

    def ask(self, seen: list[int], values: list[float], rng: np.random.Generator) -> int:
        """The next pool index, given the target's evaluated indices and their values."""
        if len(seen) < self.thompson:
            score = self.mean + self.spread * rng.standard_normal(len(self.mean))
        else:
            score = self._cgp(seen, values)
        score = np.array(score, dtype=float)
        score[seen] = -np.inf
        return int(np.argmax(score))

    def _cgp(self, seen: list[int], values: list[float]) -> np.ndarray:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        z = copula(np.asarray(values, dtype=float))
        resid = z - self.mean[seen]
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * RBF(2.0, (0.3, 30.0)) + WhiteKernel(1e-2, (1e-6, 1.0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gp = GaussianProcessRegressor(kernel, random_state=self.seed).fit(self.x[seen], resid)
            m, s = gp.predict(self.x, return_std=True)
        return _log_ei(self.mean + m, np.maximum(s, 1e-9), float(z.max()))


def decisions(space) -> np.ndarray:
    """Each pool member's 5 categorical decisions (`n x 5`): its canonical link pattern and the op
    of each of its 4 nodes, read off the blocks of the ``onehot`` encoding (9 link patterns, then
    9 ops per node)."""
    from workbench.space.nbgraph import LINK_PATTERNS, OPS

    enc = np.asarray(space.pool_encoding("onehot"))
    widths = [len(LINK_PATTERNS)] + [len(OPS)] * 4
    starts = np.cumsum([0] + widths[:-1])
    return np.stack([enc[:, s : s + w].argmax(1) for s, w in zip(starts, widths)], axis=1)


def box_order(space, sources, rng: np.random.Generator) -> tuple[list[int], int]:
    """Bounding-box pruning (Perrone et al. 2019, "Learning search spaces for Bayesian
    optimization") for categorical decisions: the box holds, per decision, the values that the
    best architecture of each source takes; pool members inside the box (every decision in its
    set) come first in random order, then the rest of the pool in random order.

    Returns the order and the number of pool members inside the box.
    """
    dec = decisions(space)
    best = [int(idx[int(np.argmax(vals))]) for _, idx, vals in sources]
    inside = np.ones(len(dec), dtype=bool)
    for j in range(dec.shape[1]):
        inside &= np.isin(dec[:, j], np.unique(dec[best, j]))
    first, rest = np.flatnonzero(inside), np.flatnonzero(~inside)
    order = [int(i) for i in rng.permutation(first)] + [int(i) for i in rng.permutation(rest)]
    return order, int(inside.sum())


# -- one target search ----------------------------------------------------------------------------


def run_one(
    target: str,
    method: str,
    seed: int,
    max_evals: int,
    min_evals: int,
    n_trials: int,
    source_strategy: str = "evolution",
    hedge: int | None = None,
    datasets: tuple[str, ...] | None = None,
    regime: str = "",
) -> dict:
    """One search on ``target``: the pool indices, validation / test accuracy per evaluation,
    seconds per ask. ``datasets``: the source datasets (default: the other seven)."""
    import torch

    torch.set_num_threads(1)
    from workbench.evaluate.tabular import table_arrays
    from workbench.space.nbgraph import NBGraphSpace
    from workbench.strategy.base import Observation

    space = NBGraphSpace(target)
    pool = space.pool()
    arrays = table_arrays(target)
    vals, tests = arrays.val_accuracy, arrays.test_accuracy
    threshold = float(np.quantile(vals, 0.99))
    datasets = tuple(datasets) if datasets else tuple(d for d in LARGE if d != target)
    shared = method in SHARED
    seq: list[int] = []
    origins: list[str] = []
    weights: list[dict] = []
    ask_s: list[float] = []
    extra: dict = {}
    strat = None
    cts = None
    order: list[int] = []
    setup_s = 0.0
    if method in WARM:
        options = bo_options(method, hedge)
        plan = warm_plan(target, seed, n_trials, source_strategy, options, datasets)
        strat = build_strategy("bo", space, seed, max_evals, options, plan.offer)
        extra["transfer_model"] = str(getattr(strat, "transfer_model", method) or method)
    elif method == "cold":
        strat = build_strategy("bo", space, seed, max_evals)
    elif method == "naive":
        from workbench.transfer.sources import warm_candidates

        plan = warm_plan(target, seed, n_trials, source_strategy, None, datasets)
        order = [space.index_of(g) for g in warm_candidates(plan.sources, plan.weights.weights, len(plan.sources))]
    elif method in ("cts", "box"):
        src = source_points(space, seed, n_trials, source_strategy, datasets)
        t_setup = time.perf_counter()  # the one-off source work counts in the first ask, as BO's source fits do
        if method == "cts":
            cts = CopulaTS(space, src, seed)
        else:
            order, extra["box_size"] = box_order(space, src, np.random.default_rng([seed, 0xB0C5]))
        setup_s = time.perf_counter() - t_setup
    rng = np.random.default_rng([seed, 0xBE7C])
    cts_rng = np.random.default_rng([seed, 0xC75])
    perm = [int(i) for i in rng.permutation(len(pool))]
    hit = None
    while len(seq) < max_evals and (hit is None or len(seq) < min_evals):
        t0 = time.perf_counter()
        if strat is not None:
            (p,) = strat.ask(1)
            i = space.index_of(p.genotype)
            origins.append(str(getattr(p, "origin", "") or ""))
        elif cts is not None:
            i = cts.ask(seq, [float(vals[j]) for j in seq], cts_rng)
        else:
            done = set(seq)
            i = next(j for j in order + perm if j not in done)
        ask_s.append(time.perf_counter() - t0 + (setup_s if not seq else 0.0))
        seq.append(i)
        if strat is not None:
            strat.tell([Observation(pool[i], float(vals[i]))])
            if method in WARM and len(seq) in CHECKPOINTS:
                weights.append({"n": len(seq), **strat.source_weights()})
        if hit is None and vals[i] >= threshold - 1e-9:
            hit = len(seq)
    return {
        "target": target,
        "method": method,
        "seed": seed,
        "regime": "" if shared else regime,
        "sources": [] if shared else list(datasets),
        "hit": hit,
        "seq": seq,
        "val": [float(vals[i]) for i in seq],
        "test": [float(tests[i]) for i in seq],
        "ask_s": float(np.mean(ask_s)),
        "first_ask_s": ask_s[0],
        "weights": weights,
        "origins": origins if any(origins) else [],
        **extra,
    }


#: Strategies besides BO whose warm start ``--strategies`` compares with their own cold start.
STRATEGY_PAIRS = ("evolution", "rl", "hillclimb")


def run_strategy(
    target: str,
    strategy: str,
    warm: bool,
    seed: int,
    max_evals: int,
    n_trials: int,
    source_strategy: str = "evolution",
    datasets: tuple[str, ...] | None = None,
    regime: str = "",
) -> dict:
    """One search of ``strategy`` on ``target``, warm (``--warm-start auto`` on the source
    searches of ``datasets``) or cold, built as ``nasw search --budget MAX_EVALS`` builds it and
    stopped at the top 1% by validation accuracy (``hit``: evaluations to it, None if not reached)."""
    import torch

    torch.set_num_threads(1)
    from workbench.evaluate.tabular import table_arrays
    from workbench.space.nbgraph import NBGraphSpace
    from workbench.strategy.base import SOURCE_ORIGINS, Observation
    from workbench.strategy.registry import strategy_class
    from workbench.task import load_task
    from workbench.transfer.plan import plan_warm_start

    t0 = time.perf_counter()
    space = NBGraphSpace(target)
    pool = space.pool()
    vals = table_arrays(target).val_accuracy
    threshold = float(np.quantile(vals, 0.99))
    datasets = tuple(datasets) if datasets else tuple(d for d in LARGE if d != target)
    offer = None
    if warm:
        task = load_task(f"nbgraph-{target}")
        histories = histories_for(target, seed, n_trials, source_strategy, datasets)
        plan = plan_warm_start(
            "auto", histories, space, task.name, dict(task.meta_features), strategy_class(strategy), {}
        )
        offer = plan.offer
    strat = build_strategy(strategy, space, seed, max_evals, None, offer)
    hit = None
    origins: list[str] = []
    n = 0
    while n < max_evals and hit is None:
        (p,) = strat.ask(1)
        i = space.index_of(p.genotype)
        origins.append(str(getattr(p, "origin", "") or ""))
        strat.tell([Observation(pool[i], float(vals[i]))])
        n += 1
        if vals[i] >= threshold - 1e-9:
            hit = n
    return {
        "target": target,
        "strategy": strategy,
        "warm": warm,
        "seed": seed,
        "regime": regime,
        "hit": hit,
        "evals": n,
        "source_asks": sum(o in SOURCE_ORIGINS for o in origins),
        "seconds": time.perf_counter() - t0,
    }


def render_strategies(results: list[dict], max_evals: int, regimes: list[str]) -> str:
    """Per regime and strategy: warm vs cold evaluations to the top 1% per target, paired on the
    seeds that have both, with test (a) and the geometric mean of warm / cold medians."""
    rng = np.random.default_rng(0)
    text = ""
    for regime in regimes:
        for strategy in STRATEGY_PAIRS:
            mine = [r for r in results if r["regime"] == regime and r["strategy"] == strategy]
            if not mine:
                continue
            text += (
                f"\n**{strategy}: warm (`--warm-start auto`) vs cold, regime {regime}** "
                f"(evaluations to the top 1%, median over seeds; {max_evals + 1} = not reached in {max_evals})\n\n"
                "| target | seeds | warm | cold | warm - cold | 2 SE | worse? |\n|---|---|---|---|---|---|---|\n"
            )
            ratios, flagged = [], 0
            for t in LARGE:
                w = {r["seed"]: r for r in mine if r["target"] == t and r["warm"]}
                c = {r["seed"]: r for r in mine if r["target"] == t and not r["warm"]}
                seeds = sorted(set(w) & set(c))
                if not seeds:
                    continue
                a = _hits([w[s] for s in seeds], max_evals)
                b = _hits([c[s] for s in seeds], max_evals)
                diff = float(np.median(a) - np.median(b))
                se2 = SE_FACTOR * _paired_diff_se(a, b, rng)
                worse = diff > se2
                flagged += worse
                ratios.append(np.median(a) / np.median(b))
                text += (
                    f"| {t} | {len(seeds)} | {np.median(a):.1f} | {np.median(b):.1f} | {diff:+.1f} | {se2:.1f} | "
                    f"{'**yes**' if worse else 'no'} |\n"
                )
            geo = float(np.exp(np.mean(np.log(ratios)))) if ratios else float("nan")
            text += (
                f"\nGeometric mean of warm / cold medians: {geo:.2f}; targets where warm is worse by more than "
                f"{SE_FACTOR:g} SE: {flagged} of {len(ratios)}.\n"
            )
    return text


def speed_check(
    target: str,
    datasets: tuple[str, ...],
    strategy: str,
    n_trials: int,
    hedge: int | None = None,
    method: str = "rgpe",
    n_obs: int = SPEED_OBS,
    budget: int = 100,
) -> dict:
    """(f): a warm BO with the regime's seed-0 sources told ``n_obs`` random target
    architectures; ``first_ask_s`` is its first ask (with the one-off source work: the source
    GPs, the consensus over the pool), ``fit_ask_s`` the slower of the next two asks, each
    after one more observation (refit + ask: what every ask of a search costs): one of the
    sources' model (its proposer asked directly, since after 50 random values the schedule gives
    cold BO the turn) and one of the strategy itself."""
    import torch

    torch.set_num_threads(1)
    from workbench.evaluate.tabular import table_arrays
    from workbench.space.nbgraph import NBGraphSpace
    from workbench.strategy.base import Observation

    space = NBGraphSpace(target)
    pool = space.pool()
    vals = table_arrays(target).val_accuracy
    options = bo_options(method, hedge)
    plan = warm_plan(target, 0, n_trials, strategy, options, datasets)
    strat = build_strategy("bo", space, 0, budget, options, plan.offer)
    idx = np.random.default_rng([0, 0x5EED]).choice(len(pool), n_obs, replace=False)
    strat.tell([Observation(pool[int(i)], float(vals[int(i)])) for i in idx])
    t0 = time.perf_counter()
    (p,) = strat.ask(1)
    first = time.perf_counter() - t0
    later = []
    g = p.genotype
    for turn in ("transfer", "cold"):  # one ask of each proposer, each after one more observation
        strat.tell([Observation(g, float(vals[space.index_of(g)]))])
        t0 = time.perf_counter()
        if turn == "transfer":  # the sources' model refitted on the target's data + LogEI
            (g,), _ = strat._transfer.propose(1, [], set(), np.random.default_rng(0))  # noqa: SLF001
        else:  # whatever the schedule gives (with 50 random values told: cold BO)
            (q,) = strat.ask(1)
            g = q.genotype
        later.append({"s": time.perf_counter() - t0, "origin": turn})
    return {
        "target": target,
        "method": method,
        "sources": len(datasets),
        "source_obs": sum(len(s.values) for s in plan.sources),
        "obs": n_obs,
        "first_ask_s": first,
        "fit_ask_s": max(a["s"] for a in later),
        "asks": later,
    }


# -- summaries ------------------------------------------------------------------------------------


def correlations() -> dict[str, dict[str, float]]:
    """Spearman rank correlation of validation accuracy between every two large datasets."""
    if not _CORR:
        from scipy.stats import spearmanr

        from workbench.evaluate.tabular import table_arrays

        v = {d: table_arrays(d).val_accuracy for d in LARGE}
        _CORR.update({a: {b: float(spearmanr(v[a], v[b]).statistic) for b in LARGE if b != a} for a in LARGE})
    return {a: dict(c) for a, c in _CORR.items()}


def source_orderings() -> dict[str, dict[str, dict[str, int]]]:
    """How much each source's *whole table* says about each target's top 1% (no search involved).

    ``out[target][source]``: ``first`` = evaluations until the target's top 1% is reached when the
    pool is evaluated in the order of the source's validation accuracy (best first, ties by pool
    position: naive transfer with the source known perfectly, not just 150 of its trials), and
    ``overlap`` = how many of the target's top-1% architectures are also in the source's top 1%.
    """
    from workbench.evaluate.tabular import table_arrays

    v = {d: table_arrays(d).val_accuracy for d in LARGE}
    out: dict = {}
    for t in LARGE:
        top = v[t] >= float(np.quantile(v[t], 0.99)) - 1e-9
        out[t] = {}
        for s in LARGE:
            if s == t:
                continue
            order = np.lexsort((np.arange(len(v[s])), -v[s]))
            src_top = v[s] >= float(np.quantile(v[s], 0.99)) - 1e-9
            out[t][s] = {
                "first": int(np.argmax(top[order])) + 1,
                "overlap": int(np.sum(top & src_top)),
                "top": int(top.sum()),
            }
    return out


def _hits(runs: list[dict], max_evals: int) -> np.ndarray:
    return np.array([r["hit"] if r["hit"] is not None else max_evals + 1 for r in runs], dtype=float)


def _boot_median_se(x: np.ndarray, rng: np.random.Generator, n: int = 2000) -> float:
    idx = rng.integers(0, len(x), size=(n, len(x)))
    return float(np.std(np.median(x[idx], axis=1)))


def _paired_diff_se(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n: int = 2000) -> float:
    """Bootstrap SE of ``median(a) - median(b)``, resampling the pairs ``(a[i], b[i])`` together."""
    idx = rng.integers(0, len(a), size=(n, len(a)))
    return float(np.std(np.median(a[idx], 1) - np.median(b[idx], 1)))


def _source_share(runs: list[dict]) -> float | None:
    """Mean share of a warm search's proposals that came from the sources (their best
    architectures or the transfer model), where the strategy says where each came from."""
    from workbench.strategy import base

    mine = frozenset(getattr(base, "SOURCE_ORIGINS", ("prior", "transfer")))
    shares = [sum(o in mine for o in r["origins"]) / len(r["origins"]) for r in runs if r.get("origins")]
    return float(np.mean(shares)) if shares else None


def summarize(results: list[dict], max_evals: int) -> dict:
    """Per target and method (one regime's results plus the shared ones): evaluations to the top
    1%, test accuracy at the checkpoints, paired differences from cold BO."""
    from workbench.evaluate.tabular import table_arrays

    rng = np.random.default_rng(0)
    out: dict = {}
    for target in [t for t in LARGE if any(r["target"] == t for r in results)]:
        vals = table_arrays(target).val_accuracy
        best_val = float(vals.max())
        rows: dict = {}
        by_method = {
            m: sorted([r for r in results if r["target"] == target and r["method"] == m], key=lambda r: r["seed"])
            for m in METHODS
        }
        for m, runs in by_method.items():
            if not runs:
                continue
            hits = _hits(runs, max_evals)
            row = {
                "seeds": len(runs),
                "to_top1": float(np.median(hits)),
                "to_top1_se": _boot_median_se(hits, rng),
                "reached": int(np.sum(hits <= max_evals)),
                "ask_s": float(np.mean([r["ask_s"] for r in runs])),
                "first_ask_s": float(np.mean([r["first_ask_s"] for r in runs])),
            }
            for n in CHECKPOINTS:
                accs = [r["test"][int(np.argmax(r["val"][:n]))] for r in runs if len(r["val"]) >= n]
                if accs:
                    row[f"test@{n}"] = (float(np.mean(accs)), float(np.std(accs) / np.sqrt(len(accs))), len(accs))
            length = min(len(r["val"]) for r in runs)
            regret = np.array([[best_val - max(r["val"][: k + 1]) for k in range(length)] for r in runs])
            row["regret"] = np.median(regret, axis=0).tolist()
            final = [r["weights"][-1] for r in runs if r["weights"]]
            if final:
                tasks = [k for k in final[0] if k != "n"]
                row["weights"] = {t: float(np.mean([w.get(t, 0.0) for w in final])) for t in tasks}
                row["weights_at"] = final[0]["n"]
            share = _source_share(runs)
            if share is not None:
                row["source_share"] = share
            if runs[0].get("transfer_model"):
                row["model"] = runs[0]["transfer_model"]
            if "box_size" in runs[0]:
                row["box_size"] = float(np.mean([r["box_size"] for r in runs]))
            rows[m] = row
        cold = by_method.get("cold") or []
        for m in COMPARED:
            runs = by_method.get(m) or []
            if m in rows and cold and [r["seed"] for r in runs] == [r["seed"] for r in cold]:
                a, b = _hits(runs, max_evals), _hits(cold, max_evals)
                rows[m]["diff_vs_cold"] = float(np.median(a) - np.median(b))
                rows[m]["diff_se"] = _paired_diff_se(a, b, rng)
        out[target] = rows
    return out


def cold_self_check(
    cold_runs: list[dict], seeds: int, max_evals: int, splits: int = 400, factor: float = SE_FACTOR
) -> dict:
    """How often the issue's one-sided test ("worse than cold BO by more than ``factor`` paired
    bootstrap standard errors") flags cold BO *against itself*: disjoint random groups of
    ``seeds`` cold searches play "method" and "cold BO", and the test (difference of medians >
    ``factor`` x the paired bootstrap SE, as :func:`summarize`) is applied per target. Needs at
    least ``2 * seeds`` cold searches per target.

    Returns ``{"per_target": {target: (median over all cold seeds, seeds, false-alarm rate)},
    "any": rate at which at least one target fails}``.
    """
    rng = np.random.default_rng(1)
    hits = {t: _hits([r for r in cold_runs if r["target"] == t], max_evals) for t in LARGE}
    hits = {t: h for t, h in hits.items() if len(h) >= 2 * seeds}
    if not hits:
        return {}
    fails = np.zeros((splits, len(hits)), dtype=bool)
    for k in range(splits):
        for j, h in enumerate(hits.values()):
            perm = rng.permutation(len(h))
            a, b = h[perm[:seeds]], h[perm[seeds : 2 * seeds]]
            fails[k, j] = np.median(a) - np.median(b) > factor * _paired_diff_se(a, b, rng)
    return {
        "per_target": {
            t: (float(np.median(h)), len(h), float(fails[:, j].mean())) for j, (t, h) in enumerate(hits.items())
        },
        "any": float(fails.any(1).mean()),
    }


# -- the tests ----------------------------------------------------------------------------


def _ok(flag: bool | None) -> str:
    return "-" if flag is None else ("ok" if flag else "**NO**")


def _pass(flags: list[bool]) -> str:
    return "n/a" if not flags else ("PASS" if all(flags) else "FAIL")


def _speed_sources(speed: dict) -> str:
    sizes = sorted({(sp["sources"], sp["source_obs"]) for sp in speed.values()})
    return ", ".join(f"{n} source(s), {k} observations" for n, k in sizes) or "not timed"


def verdict(
    regime: str, summary: dict, sources: dict, orderings: dict, speed: dict, method: str
) -> tuple[list[str], dict]:
    """Issue 19's tests (a)-(f) for one warm ``method`` in one regime: Markdown lines (a table per
    target, then one line per test) and ``{test: "PASS" | "FAIL" | "n/a"}``."""
    targets = [t for t, rows in summary.items() if method in rows and "cold" in rows]
    if not targets:
        return [], {}
    lines = [
        f"| target | (a) {method} − cold ± SE | (b) {method} / cold | (c) a source knows the top 1% "
        f"(whole-table order vs cold) | (d) test@5 {method} − cold | test@10 {method} − cold | "
        f"(e) {method} vs CTS | {method} vs box | (f) fit + ask (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    flags: dict[str, list[bool]] = {k: [] for k in "abcdef"}
    wins = {"cts": 0, "box": 0}
    ratios: list[float] = []
    worse, knows_rows = [], []
    related = regime in RELATED_REGIMES
    for t in targets:
        rows = summary[t]
        w, c = rows[method], rows["cold"]
        d, se = w.get("diff_vs_cold"), w.get("diff_se")
        a_ok = None if d is None else d <= SE_FACTOR * se
        if a_ok is not None:
            flags["a"].append(a_ok)
            if not a_ok:
                worse.append(t)
        ratio = w["to_top1"] / c["to_top1"]
        ratios.append(ratio)
        knows = sorted((orderings[t][s]["first"], s) for s in sources[t] if orderings[t][s]["first"] < c["to_top1"] / 2)
        c_cell = "-"
        if knows:
            c_ok = ratio <= 0.5
            flags["c"].append(c_ok)
            knows_rows.append(f"{t} ({', '.join(f'{s} {n}' for n, s in knows)}; cold {c['to_top1']:.1f})")
            c_cell = f"{knows[0][1]} {knows[0][0]} vs {c['to_top1']:.1f}: {ratio:.2f} {_ok(c_ok)}"
        d_cells = []
        for n in (5, 10):
            tw, tc = w.get(f"test@{n}"), c.get(f"test@{n}")
            if tw and tc:
                d_ok = tw[0] >= tc[0]
                if related:
                    flags["d"].append(d_ok)
                d_cells.append(f"{tw[0] - tc[0]:+.4f} {_ok(d_ok) if related else ''}".strip())
            else:
                d_cells.append("-")
        e_cells = []
        for b in ("cts", "box"):
            if b in rows:
                ahead = w["to_top1"] < rows[b]["to_top1"]
                wins[b] += int(ahead)
                e_cells.append(
                    f"{w['to_top1']:.1f} vs {rows[b]['to_top1']:.1f} {_ok(ahead) if related else ''}".strip()
                )
            else:
                e_cells.append("-")
        sp = speed.get(t)
        f_cell = "-"
        if sp:
            f_ok = sp["fit_ask_s"] <= SPEED_LIMIT_S
            flags["f"].append(f_ok)
            f_cell = f"{sp['fit_ask_s']:.2f} {_ok(f_ok)} (first {sp['first_ask_s']:.2f})"
        lines.append(
            f"| {t} | {'-' if d is None else f'{d:+.1f} ± {se:.1f} {_ok(a_ok)}'} | {ratio:.2f} | {c_cell} | "
            + " | ".join(d_cells + e_cells)
            + f" | {f_cell} |"
        )
    geo = float(np.exp(np.mean(np.log(ratios))))
    target_b = GEOMEAN_TARGET.get(regime)
    if target_b is not None:
        flags["b"].append(geo <= target_b)
    need = math.ceil(7 * len(targets) / 8)
    if related:
        for b in ("cts", "box"):
            if all(b in summary[t] for t in targets):
                flags["e"].append(wins[b] >= need)
    out = {k: _pass(v) for k, v in flags.items()}
    lines += [
        "",
        f"- (a) never worse (one-sided: {method}'s median exceeds cold BO's by more than {SE_FACTOR:g} paired "
        f"bootstrap SEs): **{out['a']}**" + (f" (worse on {', '.join(worse)})" if worse else ""),
        f"- (b) geometric mean over {len(targets)} targets of {method} / cold median evaluations: {geo:.2f}"
        + (f" (target <= {target_b:.2f}): **{out['b']}**" if target_b is not None else " (no target in this regime)"),
        "- (c) targets where one of this regime's sources, evaluating the pool in its whole table's order, reaches "
        "the top 1% in under half of cold BO's median evaluations (sources and their evaluations): "
        + ("; ".join(knows_rows) if knows_rows else "none")
        + f"; {method} / cold <= 0.5 on each: **{out['c']}**",
        "- (d) anytime: mean test accuracy after 5 and 10 evaluations at least cold BO's on every target: "
        + (f"**{out['d']}**" if related else "reported only (the test is for A and B)"),
        f"- (e) fewer evaluations to the top 1% than CTS on {wins['cts']} and than the bounding box on {wins['box']} of "
        f"{len(targets)} targets (need {need} each): "
        + (f"**{out['e']}**" if related else "reported only (the test is for A and B)"),
        f"- (f) fit + one ask with the regime's seed-0 sources ({_speed_sources(speed)}) and {SPEED_OBS} target "
        f"observations <= {SPEED_LIMIT_S:g} s (the slower of two asks after the first, one of the sources' model "
        f"and one of the strategy, each after one more observation; in brackets the first ask, with the one-off "
        f"source work): **{out['f']}**",
    ]
    return lines, out


# -- the page -------------------------------------------------------------------------------------


def render_regime(
    regime: str,
    summary: dict,
    corr: dict,
    max_evals: int,
    meta: dict,
    sources: dict,
    orderings: dict,
    speed: dict,
) -> str:
    """One regime's section: the verdict of issue 19, then a table per target."""
    strategy = regime_strategy(regime, meta["source_strategy"])
    lines = [f"## Regime {regime}: {REGIMES[regime]}", ""]
    if regime == "C":
        lines += [
            f"Sources: {meta['source_trials']} trials of {strategy} on one dataset per target, the one with the lowest "
            "Spearman correlation of validation accuracy: "
            + ", ".join(f"{t} ← {sources[t][0]} ({corr[t][sources[t][0]]:.2f})" for t in summary),
            "",
        ]
    else:
        lines += [f"Sources: {meta['source_trials']} trials of {strategy} on each of the other 7 datasets.", ""]
    for m in WARM:
        v_lines, _ = verdict(regime, summary, sources, orderings, speed.get(m, {}), m)
        if v_lines:
            lines += [f"### Issue 19's tests: {m}", ""] + v_lines + [""]
    for target, rows in summary.items():
        lines += [f"### {regime}: {target}", ""]
        if regime != "C":
            best = max(corr[target].items(), key=lambda kv: kv[1])
            lines += [
                f"Most correlated source: {best[0]} (Spearman {best[1]:.2f} on validation accuracy); "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(corr[target].items(), key=lambda kv: -kv[1])),
                "",
            ]
        o = orderings[target]
        mine = [s for s in sources[target] if s in o]
        lines += [
            "Evaluations to the top 1% if the pool were evaluated in the order of a source's whole table, "
            f"and (in brackets) how many of the target's {next(iter(o.values()))['top']} top-1% architectures "
            "are in that source's top 1%: "
            + ", ".join(
                f"{k} {o[k]['first']} ({o[k]['overlap']})" for k in sorted(mine, key=lambda k: -corr[target][k])
            ),
            "",
            "| method | seeds | evals to top 1% | reached | "
            + " | ".join(f"test@{n}" for n in CHECKPOINTS)
            + " | s / ask (first) |",
            "|---|---|---|---|" + "---|" * len(CHECKPOINTS) + "---|",
        ]
        for m, row in rows.items():
            cells = []
            for n in CHECKPOINTS:
                t = row.get(f"test@{n}")
                cells.append(f"{t[0]:.4f} ± {t[1]:.4f}" if t else "-")
            label = f"{m} ({row['model']})" if row.get("model") and row["model"] != m else m
            lines.append(
                f"| {label} | {row['seeds']} | {row['to_top1']:.1f} ± {row['to_top1_se']:.1f} | "
                f"{row['reached']}/{row['seeds']} | "
                + " | ".join(cells)
                + f" | {row['ask_s']:.3f} ({row['first_ask_s']:.2f}) |"
            )
        for m in WARM:
            row = rows.get(m, {})
            w = row.get("weights")
            if w:
                lines.append(
                    f"\n{m} trust after {row['weights_at']} evaluations (mean over seeds): "
                    + ", ".join(
                        f"{k.removeprefix('nbgraph-')} {v:.2f}" for k, v in sorted(w.items(), key=lambda kv: -kv[1])
                    )
                    + (
                        f"; share of its proposals from the sources: {row['source_share']:.0%}"
                        if "source_share" in row
                        else ""
                    )
                )
        if "box" in rows:
            lines.append(f"\nbounding box: {rows['box'].get('box_size', 0):.0f} pool members inside (mean over seeds)")
        lines.append("")
    return "\n".join(lines) + "\n"


def render_head(meta: dict, max_evals: int) -> str:
    return "\n".join(
        [
            "# Warm-started BO on NAS-Bench-Graph: three source regimes (issue 19)",
            "",
            f"Regimes: {', '.join(f'{r} ({REGIMES[r]})' for r in meta['regimes'])}. Sources: {meta['source_trials']} "
            f"trials per source dataset, seeded by the seed ({meta['where']}). Cold BO and random search run once per "
            "target and seed and every regime is compared with them on the same seeds. Target searches run until "
            f"the top 1% is reached and at least {meta['min_evals']} evaluations, at most {max_evals}. Evaluations to "
            f"the top 1%: median over seeds (± bootstrap standard error; {max_evals + 1} = not reached). Test accuracy "
            "of the best-by-validation architecture: mean ± standard error. Seconds per ask: mean (first ask, with the "
            "one-off source work).",
            "",
            "Baselines (written in `benchmarks/transfer.py`): **cts** (Salinas et al. 2020): each source's values "
            "through a Gaussian copula (rank -> normal quantile), a random forest (scikit-learn, 100 trees) of the "
            "copula values over the one-hot encodings fitted on all sources; Thompson sampling from the forest's mean "
            f"and spread across trees for the first {CTS_THOMPSON} proposals, then the CGP variant: a GP on the "
            "residuals of the target's copula values from the forest's mean, log expected improvement over the pool. "
            "**box** (Perrone et al. 2019): per categorical decision (link pattern, each node's op), the set of values "
            "taken by the best architecture of each source; random search inside that box, then in the rest of the "
            "pool.",
            "",
        ]
    )


def plot(summary: dict, out: Path, max_evals: int, regime: str = "A") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefix = "transfer_" if regime == "A" else f"transfer_{regime}_"
    for target, rows in summary.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for m, row in rows.items():
            r = np.maximum(np.array(row["regret"]), 1e-4)
            ax.plot(np.arange(1, len(r) + 1), r, label=m)
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("median regret (validation accuracy)")
        ax.set_title(f"{target}, regime {regime}: {REGIMES[regime]}", fontsize=9)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"{prefix}{target}.png", dpi=90)
        plt.close(fig)
    targets = list(summary)
    methods = [m for m in METHODS if any(m in summary[t] for t in targets)]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(targets)), 4))
    width = 0.8 / max(len(methods), 1)
    for j, m in enumerate(methods):
        med = [summary[t].get(m, {}).get("to_top1", np.nan) for t in targets]
        se = [summary[t].get(m, {}).get("to_top1_se", 0.0) for t in targets]
        ax.bar(np.arange(len(targets)) + j * width, med, width, yerr=se, label=m)
    ax.set_xticks(np.arange(len(targets)) + 0.4 - width / 2)
    ax.set_xticklabels(targets)
    ax.set_ylabel(f"median evaluations to top 1% ({max_evals + 1} = not reached)")
    ax.set_title(f"regime {regime}: {REGIMES[regime]}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{prefix}summary.png", dpi=90)
    plt.close(fig)


# -- the store path -------------------------------------------------------------------------------


def _nasw() -> list[str]:
    exe = Path(sys.executable).with_name("nasw")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "workbench.cli"]


def store_check(
    target: str,
    regime: str,
    datasets: tuple[str, ...],
    strategy: str,
    n_trials: int,
    hedge: int | None = None,
    budget: int = 10,
) -> tuple[str, bool]:
    """Record one regime's seed-0 sources of ``target`` with the CLI, read them back, warm-start
    from them with ``nasw search --warm-start auto`` and compare its proposals with the in-memory
    warm run. Returns a Markdown paragraph and whether everything matched."""
    from metastore import open_store
    from workbench.space.genotype import Genotype
    from workbench.space.nbgraph import NBGraphSpace

    tmp = Path(tempfile.mkdtemp(prefix=f"nasw-transfer-{regime}-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    t0 = time.perf_counter()
    for ds in datasets:
        subprocess.run(
            _nasw()
            + ["search", "--task", f"nbgraph-{ds}", "--strategy", strategy, "--budget", str(n_trials)]
            + ["--seed", "0", "--store", uri, "--quiet"],
            check=True,
            capture_output=True,
            text=True,
        )
    recorded = time.perf_counter() - t0
    store = open_store(uri)
    t1 = time.perf_counter()
    hist = store.histories("nbgraph-v1", "val_accuracy", exclude_task=f"nbgraph-{target}")
    read = time.perf_counter() - t1
    mine = histories_for(target, 0, n_trials, strategy, datasets)
    same = sorted(hist) == sorted(mine) and all(
        hist[t].genotype_jsons == mine[t].genotype_jsons and np.allclose(hist[t].values, mine[t].values) for t in mine
    )
    options = [f"hedge={hedge}"] if hedge is not None else []
    cmd = ["search", "--task", f"nbgraph-{target}", "--strategy", "bo", "--warm-start", "auto"]
    cmd += [x for o in options for x in ("--option", o)]
    cmd += ["--budget", str(budget), "--seed", "0", "--store", uri, "--quiet"]
    proc = subprocess.run(
        _nasw() + cmd, check=True, capture_output=True, text=True, env={**os.environ, "COLUMNS": "1000"}
    )
    warm_lines = [ln.strip() for ln in proc.stdout.splitlines() + proc.stderr.splitlines() if "warm start" in ln]
    search = max(store.searches(task=f"nbgraph-{target}"), key=lambda s: s.start_time)
    space = NBGraphSpace(target)
    trials = sorted(store.trials(search.search_id), key=lambda r: r.number)
    cli_seq = [space.index_of(Genotype.from_json(r.genotype_json)) for r in trials]
    tags = store.search(search.search_id).tags
    mem = run_one(target, "rgpe", 0, budget, budget, n_trials, strategy, hedge, datasets, regime)
    match = cli_seq == mem["seq"]
    shown = " ".join(["nasw"] + cmd[:-3] + ["--store", "STORE"])
    text = (
        f"Regime {regime} (seed 0, target {target}): the {len(datasets)} source search(es) recorded with `nasw search "
        f"--strategy {strategy} --budget {n_trials}` into a fresh SQLite store in {recorded:.0f} s; `histories()` read "
        f"them back in {read:.3f} s and they are {'identical to' if same else 'DIFFERENT from'} the in-memory sources. "
        f"`{shown}` printed: "
        + ("; ".join(f"`{ln}`" for ln in warm_lines) or "(no warm-start line)")
        + f"; parent-run tag source_weights: `{tags.get('source_weights', '')[:300]}`. Its {len(cli_seq)} proposals "
        + ("are" if match else "are NOT")
        + f" the in-memory warm run's ({len(mem['seq'])}), architecture by architecture"
        + ("" if match else f" (CLI {cli_seq}, in memory {mem['seq']})")
        + ".\n"
    )
    return text, bool(same and match)


# -- main -----------------------------------------------------------------------------------------


def _parse_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def run_strategies(args, regimes: list[str], targets: list[str], seeds: int, out: Path, quick: dict) -> None:
    """``--strategies``: warm vs cold of each named strategy per regime, target and seed."""
    strategies = _parse_list(args.strategies)
    bad = [s for s in strategies if s not in STRATEGY_PAIRS]
    if bad:
        raise SystemExit(f"unknown --strategies {bad}; of {list(STRATEGY_PAIRS)}")
    max_evals = args.max_evals if args.max_evals is not None else 150
    corr = correlations()
    jobs = []
    for t in targets:  # target by target, seed by seed (a deadline leaves complete pairs)
        for s in range(seeds):
            for r in regimes:
                src = regime_sources(r, t, corr)
                strategy_of_sources = regime_strategy(r, args.source_strategy)
                for name in strategies:
                    for warm in (True, False):
                        jobs.append((t, name, warm, s, max_evals, args.source_trials, strategy_of_sources, src, r))
    t0 = time.perf_counter()
    deadline = None if args.deadline is None else t0 + args.deadline
    results = list(in_order(run_strategy, jobs, args.jobs, deadline))
    wall = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer_strategies_raw.json").write_text(json.dumps(results))
    command = (
        f"python benchmarks/transfer.py --strategies {','.join(strategies)} --regimes {','.join(regimes)}"
        f" --targets {','.join(targets)} --seeds {seeds} --max-evals {max_evals}"
        + (f" --source-trials {args.source_trials}" if args.source_trials != 150 else "")
        + (f" --source-strategy {args.source_strategy}" if args.source_strategy != "evolution" else "")
        + f" --jobs {args.jobs}"
        + (f" --deadline {args.deadline:.0f}" if args.deadline else "")
    )
    text = render_strategies(results, max_evals, regimes) + (
        f"\nRan: {len(results)} of {len(jobs)} searches in {wall:.0f} s on {args.jobs} processes.\n"
        f"Command: `OMP_NUM_THREADS=1 {command}`\n"
    )
    print(text)
    (out / "transfer_strategies.md").write_text(text)
    print(f"(written to {out})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regime", choices=sorted(REGIMES), default=None, help="one source regime (default A)")
    ap.add_argument("--regimes", default=None, help="several regimes in one run, e.g. A,B,C (each its own section)")
    ap.add_argument("--targets", default=None, help=f"default: all 8 ({','.join(LARGE)})")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"of {','.join(METHODS)}")
    ap.add_argument("--seeds", type=int, default=None, help="default 40")
    ap.add_argument("--max-evals", type=int, default=None, help="default 100")
    ap.add_argument("--min-evals", type=int, default=None, help=f"default {max(CHECKPOINTS)}")
    ap.add_argument("--source-trials", type=int, default=150)
    ap.add_argument("--source-strategy", default="evolution", help="the source strategy of regimes A and C")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--deadline", type=float, default=None, help="stop after this many seconds; summarise what finished"
    )
    ap.add_argument(
        "--store-check", action="store_true", help="also run each regime's seed-0 sources through `nasw search`"
    )
    ap.add_argument(
        "--hedge", type=int, default=None, help="pass BO's hedge option to the warm methods (if BO still takes it)"
    )
    ap.add_argument(
        "--cold-seeds",
        type=int,
        default=None,
        help="also run cold BO on seeds up to this many and report how often the issue's one-sided 2-SE test "
        "flags cold BO against itself",
    )
    ap.add_argument("--no-speed", action="store_true", help="skip the timed fit + ask (f)")
    ap.add_argument(
        "--strategies",
        default=None,
        help=f"instead of the BO methods: each of these strategies ({','.join(STRATEGY_PAIRS)}) warm vs cold "
        "on the same seeds (the regimes' sources; --max-evals is the budget, default 150)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: {QUICK['seeds']} seeds, targets {QUICK['targets']}, max {QUICK['max_evals']} evaluations "
        f"(min {QUICK['min_evals']}), cold self-check on {QUICK['cold_seeds']} seeds, written to a temp directory "
        "unless --out (explicit options win)",
    )
    ap.add_argument(
        "--out", default=None, help=f"default {RESULTS} ({tempfile.gettempdir()}/nasw-transfer-quick with --quick)"
    )
    args = ap.parse_args()
    quick = QUICK if args.quick else {}
    if args.regime and args.regimes:
        ap.error("give --regime or --regimes, not both")
    regimes = _parse_list(args.regimes) if args.regimes else [args.regime or "A"]
    targets = _parse_list(args.targets or quick.get("targets", ",".join(LARGE)))
    methods = _parse_list(args.methods)
    seeds = args.seeds if args.seeds is not None else quick.get("seeds", 40)
    max_evals = args.max_evals if args.max_evals is not None else quick.get("max_evals", 100)
    min_evals = args.min_evals if args.min_evals is not None else quick.get("min_evals", max(CHECKPOINTS))
    cold_seeds = args.cold_seeds if args.cold_seeds is not None else quick.get("cold_seeds", 0)
    out = Path(args.out) if args.out else (Path(tempfile.gettempdir()) / "nasw-transfer-quick" if quick else RESULTS)
    bad = (
        [t for t in targets if t not in LARGE]
        + [m for m in methods if m not in METHODS]
        + [r for r in regimes if r not in REGIMES]
    )
    if bad:
        ap.error(
            f"unknown targets/methods/regimes {bad}; targets: {LARGE}, methods: {METHODS}, regimes: {sorted(REGIMES)}"
        )
    if args.strategies:
        run_strategies(args, regimes, targets, seeds, out, quick)
        return
    if args.hedge is not None:  # BO decides whether it still takes a hedge, and which values
        from workbench.errors import UserError
        from workbench.space.nbgraph import NBGraphSpace

        try:
            build_strategy("bo", NBGraphSpace(targets[0]), 0, max_evals, bo_options("rgpe", args.hedge))
        except UserError as exc:
            ap.error(f"--hedge: {exc}")
    corr = correlations()
    sources = {r: {t: regime_sources(r, t, corr) for t in targets} for r in regimes}
    shared = [m for m in methods if m in SHARED]
    per_regime = [m for m in methods if m not in SHARED]
    jobs = []
    for t in targets:  # target by target, seed by seed (so a deadline leaves complete paired comparisons)
        for s in range(seeds):
            for m in shared:
                jobs.append((t, m, s, max_evals, min_evals, args.source_trials, args.source_strategy, None, None, ""))
            for r in regimes:
                for m in per_regime:
                    strategy = regime_strategy(r, args.source_strategy)
                    jobs.append(
                        (t, m, s, max_evals, min_evals, args.source_trials, strategy, args.hedge, sources[r][t], r)
                    )
    t0 = time.perf_counter()
    deadline = None if args.deadline is None else t0 + args.deadline
    results: list[dict] = list(in_order(run_one, jobs, args.jobs, deadline))
    # keep only complete seeds (every method of every regime) so comparisons are paired
    per_seed = len(shared) + len(regimes) * len(per_regime)
    count: dict[tuple, int] = {}
    for r in results:
        count[r["target"], r["seed"]] = count.get((r["target"], r["seed"]), 0) + 1
    complete = {k for k, n in count.items() if n == per_seed}
    dropped = sum(1 for r in results if (r["target"], r["seed"]) not in complete)
    results = [r for r in results if (r["target"], r["seed"]) in complete]
    wall = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer_raw.json").write_text(json.dumps(results))
    # (f): timed in this process after the searches, one target at a time (no other job running)
    speed: dict = {r: {m: {} for m in WARM} for r in regimes}
    if not args.no_speed:
        for r in regimes:
            for m in [m for m in per_regime if m in WARM]:
                for t in targets:
                    strategy = regime_strategy(r, args.source_strategy)
                    speed[r][m][t] = speed_check(t, sources[r][t], strategy, args.source_trials, args.hedge, m)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    orderings = source_orderings()
    meta = {
        "source_trials": args.source_trials,
        "source_strategy": args.source_strategy,
        "min_evals": min_evals,
        "where": "in memory, from the tables",
        "regimes": regimes,
    }
    text = render_head(meta, max_evals)
    summaries = {}
    for r in regimes:
        mine = [q for q in results if q["regime"] in ("", r)]
        summaries[r] = summarize(mine, max_evals)
        text += "\n" + render_regime(r, summaries[r], corr, max_evals, meta, sources[r], orderings, speed[r])
    ran = sorted({(r["target"], r["seed"]) for r in results})
    seeds_by_target = {t: sum(1 for tt, _ in ran if tt == t) for t in targets}
    command = (
        "python benchmarks/transfer.py"
        + (" --quick" if quick else "")
        + f" --regimes {','.join(regimes)}"
        + (f" --targets {','.join(targets)}" if not quick or args.targets else "")
        + (f" --methods {','.join(methods)}" if tuple(methods) != DEFAULT_METHODS else "")
        + (f" --seeds {seeds}" if not quick or args.seeds is not None else "")
        + (f" --max-evals {max_evals}" if args.max_evals is not None else "")
        + (f" --min-evals {min_evals}" if args.min_evals is not None else "")
        + (f" --source-trials {args.source_trials}" if args.source_trials != 150 else "")
        + (f" --source-strategy {args.source_strategy}" if args.source_strategy != "evolution" else "")
        + f" --jobs {args.jobs}"
        + (f" --hedge {args.hedge}" if args.hedge is not None else "")
        + (f" --cold-seeds {cold_seeds}" if cold_seeds > seeds and (not quick or args.cold_seeds is not None) else "")
        + (f" --deadline {args.deadline:.0f}" if args.deadline else "")
        + (" --store-check" if args.store_check else "")
    )
    text += (
        f"\nRan: {len(results)} searches ({', '.join(f'{t}: {n} seeds' for t, n in seeds_by_target.items())}; "
        f"regimes {', '.join(regimes)}; methods {', '.join(methods)}"
        + (f", of which {', '.join(shared)} ran once, shared by every regime" if shared else "")
        + f") in {wall:.0f} s on {args.jobs} processes"
        + (
            f"; {len(jobs) - len(results) - dropped} not finished before the deadline and {dropped} of incomplete seeds dropped"
            if len(results) < len(jobs)
            else ""
        )
        + (f"; fit + ask timed afterwards in one process (load average {load:.1f})" if not args.no_speed else "")
        + ".\n"
        f"Command: `OMP_NUM_THREADS=1 {command}`\n"
    )
    if cold_seeds > seeds and "cold" in methods:
        extra = [
            (t, "cold", s, max_evals, min_evals, args.source_trials, args.source_strategy)
            for t in targets
            for s in range(seeds, cold_seeds)
        ]
        cold_runs = [r for r in results if r["method"] == "cold"] + list(in_order(run_one, extra, args.jobs, deadline))
        (out / "transfer_cold_raw.json").write_text(json.dumps(cold_runs))
        check = cold_self_check(cold_runs, seeds, max_evals)
        if check:
            text += (
                f"\n## The one-sided {SE_FACTOR:g}-SE test against itself\n\nCold BO on {cold_seeds} seeds; disjoint "
                f"random groups of {seeds} seeds compared with test (a) (one group's median more than {SE_FACTOR:g} "
                "paired bootstrap SEs above the other's; 400 splits). Per target: cold BO's median evaluations to the "
                "top 1% over all its seeds, and how often the test calls cold BO worse than itself:\n\n"
                "| target | cold seeds | median evals to top 1% | flagged |\n|---|---|---|---|\n"
                + "".join(f"| {t} | {n} | {m:.1f} | {f:.0%} |\n" for t, (m, n, f) in check["per_target"].items())
                + f"\nAt least one of the {len(check['per_target'])} targets flagged: {check['any']:.0%} of splits.\n"
            )
    if args.store_check:
        text += "\n## Through the CLI and the store\n\n"
        for r in regimes:
            para, _ = store_check(
                targets[0],
                r,
                sources[r][targets[0]],
                regime_strategy(r, args.source_strategy),
                args.source_trials,
                args.hedge,
            )
            text += para + "\n"
    print(text)
    (out / "transfer.md").write_text(text)
    for r in regimes:
        if summaries[r]:
            plot(summaries[r], out, max_evals, r)
    print(f"(written to {out})")


if __name__ == "__main__":
    main()
