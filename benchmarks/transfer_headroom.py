"""How much the sources of `benchmarks/transfer.py` could save at best, and how much of it a
model-free learner of "which source to follow" gets (issue 19; page: results/transfer.md).

For each target and seed, each source search (150 trials of evolution in regime A, of random
search in B, the seed's own) is read as an ordering: its architectures best first by the source's
validation accuracy. Per (target, seed):

* ``follow``: evaluations until that ordering reaches the target's top 1% by validation accuracy
  (inf when none of its 150 architectures is in it);
* ``oracle (fixed source)``: ``min(follow of the target's best source, cold BO's evaluations)``,
  the source chosen in hindsight per target (the one with the smallest median of that minimum):
  a search that knew which source to follow and when to give up on it;
* ``oracle (per seed)``: the same with the best source chosen per seed;
* ``bandit``: Thompson sampling over the seven orderings (Beta(1, 1) per source; an evaluation is a
  success for its source when it reaches the ``--quantile`` of the target's values so far), no
  model and no cold arm, at most 80 evaluations (81 = not reached).

``--models`` reads the sources through warm BO's models instead: the whole pool best first by
each source's GP mean (fitted on the seed's source search, as BO fits it), and by two ways of
pooling the seven: the rank sum BO's zero-shot lead follows and the sum of standardised means.
Per target: the best source GP per seed (hindsight), the median source GP, and the two pools, each
followed alone (no cap by cold BO).

Cold BO's evaluations are today's, read from ``benchmarks/data/transfer_issue19_raw.json``
(seeds 0-39). Geometric means are over the 8 targets of median / cold BO's median.
Rerun: ``OMP_NUM_THREADS=1 python benchmarks/transfer_headroom.py`` (about 5 minutes);
``... --models --seeds 10`` (about 4 minutes per regime).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from transfer import LARGE, regime_strategy, source_search  # noqa: E402

from workbench.strategy.bo.consensus import source_pool_mean  # noqa: E402

RAW = Path(__file__).parent / "data" / "transfer_issue19_raw.json"
MAX_EVALS = 80


def orderings(target: str, seed: int, regime: str, n_trials: int) -> dict[str, list[int]]:
    """Each other dataset's source search on ``seed``: pool indices, best first."""
    out = {}
    for ds in LARGE:
        if ds != target:
            seq, vals = source_search(ds, seed, n_trials, regime_strategy(regime))
            out[ds] = [seq[j] for j in np.argsort(-np.asarray(vals), kind="stable")]
    return out


def model_orderings(target: str, seed: int, regime: str, n_trials: int) -> dict[str, list[int]]:
    """The pool (table indices) best first by each source's GP mean, as warm BO fits them on the
    seed's source searches (``--models``), and by the two ways of pooling them: the rank sum that
    BO's zero-shot lead follows (:class:`~workbench.strategy.bo.consensus.SourceConsensus`) and
    the sum of the standardised means."""
    from transfer import build_strategy, warm_plan

    from workbench.space.nbgraph import NBGraphSpace

    space = NBGraphSpace(target)
    plan = warm_plan(target, seed, n_trials, regime_strategy(regime))
    strat = build_strategy("bo", space, seed, MAX_EVALS, None, plan.offer)
    strat.ask(1)  # builds the proposer: one GP per source, fitted once
    proposer = strat._transfer  # noqa: SLF001 - a benchmark reads the fitted source models
    cands, gps = proposer.pool, proposer.consensus.gps
    table = np.array([space.index_of(g) for g in proposer.context.full_pool.members()])
    rows = np.arange(len(table))
    means = [source_pool_mean(cands, gp) for gp in gps]
    out = {
        s.task.removeprefix("nbgraph-"): table[np.argsort(-m, kind="stable")].tolist()
        for s, m in zip(proposer.sources, means)
    }
    out["consensus: rank sum"] = table[proposer.consensus.order(cands, rows)].tolist()
    z = sum((m - m.mean()) / m.std() for m in means)
    out["consensus: mean of predictions"] = table[np.argsort(-z, kind="stable")].tolist()
    return out


def follow_models(seeds: range, regime: str, n_trials: int) -> None:
    """``--models``: evaluations to the top 1% when following the source models' orderings."""
    from workbench.evaluate.tabular import table_arrays

    cold = json.loads(RAW.read_text())["hits"]["cold"]
    print(f"\nRegime {regime}, source GPs' orderings: median evaluations to the top 1% over {len(seeds)} seeds\n")
    print("| target | cold BO | best source GP (per seed) | median source GP | rank sum | mean of predictions |")
    print("|---|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {"seed": [], "median": [], "rank": [], "mean": []}
    for t in LARGE:
        tv = table_arrays(t).val_accuracy
        thr = float(np.quantile(tv, 0.99))
        c = float(np.median([float(cold[t][str(s)]) for s in seeds]))
        per_seed, typical, rank, mean = [], [], [], []
        for s in seeds:
            orders = model_orderings(t, s, regime, n_trials)
            pos = {k: follow(v, tv, thr) for k, v in orders.items()}
            single = [v for k, v in pos.items() if not k.startswith("consensus")]
            per_seed.append(min(single))
            typical.append(float(np.median(single)))
            rank.append(pos["consensus: rank sum"])
            mean.append(pos["consensus: mean of predictions"])
        row = [float(np.median(x)) for x in (per_seed, typical, rank, mean)]
        for key, v in zip(ratios, row):
            ratios[key].append(v / c)
        print(f"| {t} | {c:.1f} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    geo = {k: float(np.exp(np.mean(np.log(v)))) for k, v in ratios.items()}
    print(
        f"\nGeometric mean / cold BO: best source GP per seed {geo['seed']:.2f}, median source GP "
        f"{geo['median']:.2f}, rank sum {geo['rank']:.2f}, mean of predictions {geo['mean']:.2f}"
    )


def follow(order: list[int], values: np.ndarray, threshold: float) -> float:
    return next((k + 1.0 for k, i in enumerate(order) if values[i] >= threshold - 1e-9), np.inf)


def bandit(lists: list[list[int]], values: np.ndarray, threshold: float, seed: int, quantile: float) -> int:
    rng = np.random.default_rng([seed, 7])
    succ, fail = np.zeros(len(lists)), np.zeros(len(lists))
    ptr = [0] * len(lists)
    seen: set[int] = set()
    got: list[float] = []
    for n in range(MAX_EVALS):
        for k, order in enumerate(lists):
            while ptr[k] < len(order) and order[ptr[k]] in seen:
                ptr[k] += 1
        live = [k for k in range(len(lists)) if ptr[k] < len(lists[k])]
        if not live:
            break
        theta = rng.beta(1 + succ, 1 + fail)
        k = max(live, key=lambda j: theta[j])
        a = lists[k][ptr[k]]
        seen.add(a)
        v = float(values[a])
        if got:
            if v >= np.quantile(got, quantile):
                succ[k] += 1
            else:
                fail[k] += 1
        got.append(v)
        if v >= threshold - 1e-9:
            return n + 1
    return MAX_EVALS + 1


def main() -> None:
    from workbench.evaluate.tabular import table_arrays

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--regimes", default="A,B")
    ap.add_argument("--quantile", type=float, default=0.5)
    ap.add_argument("--source-trials", type=int, default=150)
    ap.add_argument(
        "--models", action="store_true", help="follow the orderings of warm BO's source GPs and of their consensus"
    )
    args = ap.parse_args()
    cold = json.loads(RAW.read_text())["hits"]["cold"]
    seeds = range(args.seeds)
    if args.models:
        for regime in args.regimes.split(","):
            follow_models(seeds, regime, args.source_trials)
        return
    for regime in args.regimes.split(","):
        print(f"\nRegime {regime}: median evaluations to the top 1% over {args.seeds} seeds\n")
        print(
            "| target | cold BO | best source (fixed) | follow it | oracle (fixed source) | oracle (per seed) | bandit |"
        )
        print("|---|---|---|---|---|---|---|")
        ratios: dict[str, list[float]] = {"fixed": [], "seed": [], "bandit": []}
        for t in LARGE:
            tv = table_arrays(t).val_accuracy
            thr = float(np.quantile(tv, 0.99))
            c = np.array([float(cold[t][str(s)]) for s in seeds])
            lists = [orderings(t, s, regime, args.source_trials) for s in seeds]
            pos = {ds: np.array([follow(lists[k][ds], tv, thr) for k in range(len(c))]) for ds in lists[0]}
            best = min(pos, key=lambda ds: np.median(np.minimum(pos[ds], c)))
            fixed = float(np.median(np.minimum(pos[best], c)))
            per_seed = float(np.median(np.minimum(np.min(np.vstack(list(pos.values())), axis=0), c)))
            hits = [bandit(list(lists[k].values()), tv, thr, s, args.quantile) for k, s in enumerate(seeds)]
            b = float(np.median(hits))
            cm = float(np.median(c))
            for key, v in (("fixed", fixed), ("seed", per_seed), ("bandit", b)):
                ratios[key].append(v / cm)
            print(f"| {t} | {cm:.1f} | {best} | {np.median(pos[best]):.1f} | {fixed:.1f} | {per_seed:.1f} | {b:.1f} |")
        geo = {k: float(np.exp(np.mean(np.log(v)))) for k, v in ratios.items()}
        print(
            f"\nGeometric mean / cold BO: oracle (fixed source) {geo['fixed']:.2f}, oracle (per seed) "
            f"{geo['seed']:.2f}, bandit {geo['bandit']:.2f}"
        )


if __name__ == "__main__":
    main()
