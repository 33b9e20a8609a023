"""Strategy benchmark on NAS-Bench-Graph: every strategy plus Optuna's TPE, side by side.

Run: ``python benchmarks/strategies.py`` (all strategies, the 8 large datasets, 100 evaluations,
20 seeds; parallel over ``--jobs`` processes). ``--quick`` runs 3 seeds on 2 datasets.

Prints and saves (``benchmarks/results/strategies.md`` or ``--out``) a table per dataset: mean and
standard deviation of the test accuracy of the best-by-validation architecture after 10, 30 and
100 evaluations; the median number of evaluations to reach the top 1% of the space by validation
accuracy (ties included: any architecture whose validation accuracy is within 1e-9 of the 1%
threshold counts; a run that never gets there counts as budget + 1); and seconds per ask.
Writes a regret plot per dataset (``strategies_<dataset>.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _jobs import in_order  # benchmarks/_jobs.py

LARGE = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv")
STRATEGIES = ("random", "evolution", "rl", "bo", "tpe")
CHECKPOINTS = (10, 30, 100)


def run_one(strategy: str, dataset: str, seed: int, budget: int) -> dict:
    """One search: the sequence of (val, test) values and the time spent in ask."""
    import torch

    torch.set_num_threads(1)
    from workbench.evaluate.tabular import table_arrays
    from workbench.space.nbgraph import NBGraphSpace

    space = NBGraphSpace(dataset)
    arrays = table_arrays(dataset)
    vals, tests = arrays.val_accuracy, arrays.test_accuracy
    seq: list[int] = []
    ask_seconds = 0.0
    if strategy == "tpe":
        seq, ask_seconds = _run_tpe(space, vals, seed, budget)
    else:
        from workbench.strategy.base import Observation
        from workbench.strategy.registry import make_strategy

        strat = make_strategy(strategy, space, seed=seed)
        for _ in range(budget):
            t0 = time.perf_counter()
            (p,) = strat.ask(1)
            ask_seconds += time.perf_counter() - t0
            i = space.index_of(p.genotype)
            seq.append(i)
            strat.tell([Observation(p.genotype, float(vals[i]), trial_id=str(len(seq)))])
    return {
        "strategy": strategy,
        "dataset": dataset,
        "seed": seed,
        "val": [float(vals[i]) for i in seq],
        "test": [float(tests[i]) for i in seq],
        "ask_seconds": ask_seconds / max(1, budget),
        "unique": len(set(seq)),
    }


def _run_tpe(space, vals, seed: int, budget: int) -> tuple[list[int], float]:
    """Optuna's TPE over the benchmark's own parametrisation: a link pattern and 4 operations."""
    import optuna

    from workbench.data.nbgraph_tables import LINK_PATTERNS, ops_for
    from workbench.errors import InvalidGenotype
    from workbench.space.genotype import Genotype

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ops = ops_for(space.dataset) if hasattr(space, "dataset") else ops_for("cora")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    seq: list[int] = []
    spent = 0.0
    worst = float(np.min(vals))
    while len(seq) < budget:
        t0 = time.perf_counter()
        trial = study.ask()
        links = LINK_PATTERNS[trial.suggest_categorical("links", list(range(len(LINK_PATTERNS))))]
        chosen = [trial.suggest_categorical(f"op{k}", list(ops)) for k in range(4)]
        spent += time.perf_counter() - t0
        try:
            g = Genotype.of(space.name, {"links": list(links), "ops": chosen})
            i = space.index_of(g)
        except InvalidGenotype:
            study.tell(trial, worst)  # e.g. all-skip: not an architecture; costs no evaluation
            continue
        seq.append(i)
        study.tell(trial, float(vals[i]))
    return seq, spent / max(1, budget)


def summarize(results: list[dict], budget: int) -> dict:
    from workbench.evaluate.tabular import table_arrays

    out: dict = {}
    for ds in sorted({r["dataset"] for r in results}):
        vals = table_arrays(ds).val_accuracy
        threshold = float(np.quantile(vals, 0.99))
        best_val = float(vals.max())
        for st in STRATEGIES:
            runs = [r for r in results if r["dataset"] == ds and r["strategy"] == st]
            if not runs:
                continue
            row: dict = {"seeds": len(runs)}
            for n in CHECKPOINTS:
                accs = []
                for r in runs:
                    v = np.array(r["val"][:n])
                    accs.append(r["test"][int(np.argmax(v))])
                row[f"test@{n}"] = (float(np.mean(accs)), float(np.std(accs)))
            hits = []
            for r in runs:
                idx = [k for k, v in enumerate(r["val"]) if v >= threshold - 1e-9]
                hits.append(idx[0] + 1 if idx else budget + 1)
            row["to_top1"] = float(np.median(hits))
            row["reached"] = sum(h <= budget for h in hits)
            row["ask_s"] = float(np.mean([r["ask_seconds"] for r in runs]))
            regret = np.array([[best_val - max(r["val"][: k + 1]) for k in range(len(r["val"]))] for r in runs])
            row["regret"] = np.median(regret, axis=0).tolist()
            out.setdefault(ds, {})[st] = row
    return out


def render(summary: dict, budget: int) -> str:
    lines = [
        "# Strategies on NAS-Bench-Graph",
        "",
        f"{budget} evaluations per search; test accuracy of the best-by-validation architecture "
        "(mean ± sd over seeds); evaluations to reach the top 1% by validation accuracy (median; "
        f"{budget + 1} = not reached); seconds per ask.",
        "",
    ]
    for ds, rows in summary.items():
        lines += [
            f"## {ds}",
            "",
            "| strategy | seeds | test@10 | test@30 | test@100 | evals to top 1% | reached | s / ask |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for st, row in rows.items():
            cells = [f"{row[f'test@{n}'][0]:.4f} ± {row[f'test@{n}'][1]:.4f}" for n in CHECKPOINTS]
            lines.append(
                f"| {st} | {row['seeds']} | "
                + " | ".join(cells)
                + f" | {row['to_top1']:.1f} | {row['reached']}/{row['seeds']} | {row['ask_s']:.3f} |"
            )
        lines.append("")
    # verdict lines for the targets
    lines += ["## Targets", ""]
    thirds = [
        ds
        for ds, rows in summary.items()
        if "bo" in rows and "random" in rows and rows["bo"]["to_top1"] <= rows["random"]["to_top1"] / 3
    ]
    above = [
        ds
        for ds, rows in summary.items()
        if "bo" in rows and "tpe" in rows and rows["bo"]["test@100"][0] >= rows["tpe"]["test@100"][0]
    ]
    lines.append(
        f"- BO reaches the top 1% in at most a third of random's evaluations on {len(thirds)} of "
        f"{len(summary)} datasets: {', '.join(thirds) or '-'}"
    )
    lines.append(
        f"- BO ends at or above TPE's mean test accuracy on {len(above)} of {len(summary)}: {', '.join(above) or '-'}"
    )
    return "\n".join(lines)


def plot(summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for ds, rows in summary.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for st, row in rows.items():
            r = np.maximum(np.array(row["regret"]), 1e-4)
            ax.plot(np.arange(1, len(r) + 1), r, label=st)
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("median regret (validation accuracy)")
        ax.set_title(f"NAS-Bench-Graph {ds}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"strategies_{ds}.png", dpi=90)
        plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(LARGE))
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--quick", action="store_true", help="3 seeds on cora and photo")
    ap.add_argument(
        "--deadline", type=float, default=None, help="stop after this many seconds; summarise what finished"
    )
    args = ap.parse_args()
    datasets = args.datasets.split(",")
    if args.quick:
        args.seeds, datasets = 3, ["cora", "photo"]
    jobs = [
        (st, ds, seed, args.budget)
        for st in args.strategies.split(",")
        for ds in datasets
        for seed in range(args.seeds)
    ]
    # dataset by dataset (so a --deadline leaves complete comparisons), slow strategies first
    order = {"bo": 0, "rl": 1, "tpe": 2, "evolution": 3, "random": 4}
    jobs.sort(key=lambda j: (datasets.index(j[1]), order.get(j[0], 5)))
    t0 = time.perf_counter()
    deadline = None if args.deadline is None else t0 + args.deadline
    results: list[dict] = list(in_order(run_one, jobs, args.jobs, deadline))
    if len(results) < len(jobs):
        print(f"deadline reached: {len(results)} of {len(jobs)} searches finished; summarising those", flush=True)
    wall = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "strategies_raw.json").write_text(json.dumps(results))
    summary = summarize(results, args.budget)
    text = render(summary, args.budget) + f"\n\n{len(jobs)} searches in {wall:.0f} s on {args.jobs} processes.\n"
    print(text)
    (out / "strategies.md").write_text(text)
    plot(summary, out)


if __name__ == "__main__":
    main()
