"""Quick quality check of ``bo`` on NAS-Bench-Graph against random search and Optuna's TPE.

For each dataset and seed, every strategy runs ``--budget`` sequential evaluations (table
lookups of validation accuracy). Reported per dataset and strategy:

* the median number of evaluations until an architecture in the top 1% of the space by
  validation accuracy (ties included: every architecture at least as good as the 1%-quantile
  one) is found; a run that never finds one counts as ``budget + 1``;
* the mean test accuracy of the best-by-validation architecture after the full budget.

TPE sees the benchmark's own parametrisation: a categorical link pattern (9) and a categorical
operation per node (4 x 9). A combination that is not an architecture of the table (all skips)
is told to TPE as failed and does not count as an evaluation; a repeated architecture does.

This is a small check for tuning ``bo``; the full comparison (all strategies, 20+ seeds, plots)
lives in ``benchmarks/strategies``. Prints a Markdown table and, with ``--out``, writes it.

Usage::

    python benchmarks/bo_quality.py --datasets cora,photo --seeds 4 --budget 100
    python benchmarks/bo_quality.py --strategies bo --bo-options '{"n_init": 8}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv")
#: Random search's median evaluations to the top 1% (REFERENCES.md), for the "a third" target.
RANDOM_REFERENCE = {
    "physics": 64.5,
    "photo": 51.7,
    "cora": 63.6,
    "citeseer": 62.3,
    "cs": 65.7,
    "computers": 60.2,
    "arxiv": 64.3,
    "pubmed": 67.9,
}


def top_threshold(val: np.ndarray, fraction: float = 0.01) -> float:
    """Validation accuracy of the architecture at the ``fraction`` quantile (ties included)."""
    k = int(np.ceil(fraction * len(val)))
    return float(np.sort(val)[::-1][k - 1])


def run_workbench(name: str, dataset: str, seed: int, budget: int, options: dict) -> list[int]:
    """Pool indices evaluated by a workbench strategy, in order."""
    from workbench.evaluate.tabular import table_arrays
    from workbench.space.nbgraph import NBGraphSpace
    from workbench.strategy.base import Observation
    from workbench.strategy.registry import make_strategy

    space = NBGraphSpace(dataset)
    val = np.asarray(table_arrays(dataset).val_accuracy)
    s = make_strategy(name, space, seed=seed, **options)
    out = []
    for _ in range(budget):
        (p,) = s.ask(1)
        i = space.index_of(p.genotype)
        s.tell([Observation(p.genotype, float(val[i]))])
        out.append(i)
    return out


def run_tpe(dataset: str, seed: int, budget: int) -> list[int]:
    """Pool indices evaluated by Optuna's TPE sampler (default settings), in order."""
    import optuna

    from workbench.errors import InvalidGenotype
    from workbench.evaluate.tabular import table_arrays
    from workbench.space.genotype import Genotype
    from workbench.space.nbgraph import LINK_PATTERNS, NBGraphSpace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = NBGraphSpace(dataset)
    val = np.asarray(table_arrays(dataset).val_accuracy)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    out: list[int] = []
    while len(out) < budget:
        trial = study.ask()
        link = trial.suggest_categorical("link", list(range(len(LINK_PATTERNS))))
        ops = [trial.suggest_categorical(f"op{i}", list(space.ops)) for i in range(4)]
        g = Genotype.of(space.name, {"links": list(LINK_PATTERNS[link]), "ops": ops})
        try:
            i = space.index_of(g)
        except InvalidGenotype:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, float(val[i]))
        out.append(i)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--strategies", default="bo,random,tpe")
    parser.add_argument("--bo-options", default="{}", help="JSON dict of bo options")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    import torch

    from workbench.evaluate.tabular import table_arrays

    torch.set_num_threads(args.threads)
    bo_options = json.loads(args.bo_options)
    strategies = args.strategies.split(",")
    rows = []
    for dataset in args.datasets.split(","):
        arrays = table_arrays(dataset)
        val, test = np.asarray(arrays.val_accuracy), np.asarray(arrays.test_accuracy)
        thr = top_threshold(val)
        for name in strategies:
            hits, finals, secs = [], [], []
            for seed in range(args.seeds):
                t = time.perf_counter()
                idx = (
                    run_tpe(dataset, seed, args.budget)
                    if name == "tpe"
                    else run_workbench(name, dataset, seed, args.budget, bo_options if name == "bo" else {})
                )
                secs.append((time.perf_counter() - t) / args.budget)
                found = [k + 1 for k, i in enumerate(idx) if val[i] >= thr]
                hits.append(found[0] if found else args.budget + 1)
                best = max(idx, key=lambda i: (val[i], -i))
                finals.append(float(test[best]))
            rows.append(
                (
                    dataset,
                    name,
                    statistics.median(hits),
                    hits,
                    float(np.mean(finals)),
                    float(np.std(finals)),
                    statistics.mean(secs),
                )
            )
            print(
                f"{dataset:9s} {name:7s} median-to-top1% {statistics.median(hits):6.1f} {sorted(hits)} "
                f"final test {np.mean(finals):.4f} ± {np.std(finals):.4f}  {statistics.mean(secs):.3f} s/eval",
                flush=True,
            )

    lines = [
        f"# bo quality check on NAS-Bench-Graph ({args.seeds} seeds, budget {args.budget})",
        "",
        f"bo options: `{json.dumps(bo_options)}`. Median evaluations to the top 1% by validation "
        f"accuracy (ties included; not found = {args.budget + 1}); final = mean ± sd test accuracy of the "
        f"best-by-validation architecture after {args.budget} evaluations; random's reference medians "
        "from REFERENCES.md, target = at most a third of them.",
        "",
        "| dataset | strategy | median to top 1% | target (random ref / 3) | final test accuracy | s per eval |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for dataset, name, med, _, final, sd, sec in rows:
        target = RANDOM_REFERENCE.get(dataset, float("nan")) / 3
        lines.append(f"| {dataset} | {name} | {med:.1f} | {target:.1f} | {final:.4f} ± {sd:.4f} | {sec:.3f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
