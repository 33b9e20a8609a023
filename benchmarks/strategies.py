"""Strategy benchmark on NAS-Bench-Graph: every registered strategy (and variants), side by side.

Run: ``python benchmarks/strategies.py`` (every strategy of :data:`VARIANTS`, the 8 large
datasets, 100 evaluations, 20 seeds; parallel over ``--jobs`` processes). ``--quick`` runs 3
seeds on 2 datasets. ``optuna-tpe`` (Optuna's TPESampler, the reference for nasw's own ``tpe``)
runs when Optuna is installed (the ``bench`` extra).

Every finished search is appended to ``--raw`` (JSON lines) as it finishes, and searches already
there are not run again: a long benchmark can be run in parts (``--datasets``, ``--strategies``,
``--deadline``) and summarised at the end from the file alone (``--summarize``).

Prints and saves (``benchmarks/results/strategies.md`` or ``--out``) a table per dataset: mean and
standard deviation of the test accuracy of the best-by-validation architecture after 10, 30 and
100 evaluations; the median number of evaluations to reach the top 1% of the space by validation
accuracy (ties included: any architecture whose validation accuracy is within 1e-9 of the 1%
threshold counts; a run that never gets there counts as budget + 1); seconds per ask over the
search and for one ask with ``budget`` observations. Then the survey-style summary: the mean rank
of every strategy on every dataset, and one figure of the median regret against evaluations with
every strategy (``strategies_summary.png``, a panel per dataset); and the issue's targets.
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
#: name -> (registered strategy, options): every registered strategy with its defaults, and the
#: variants the issues measure (crossover, prescreening). ``optuna-tpe`` is Optuna's sampler.
VARIANTS: dict[str, tuple[str, dict]] = {
    "random": ("random", {}),
    "evolution": ("evolution", {}),
    "evolution-crossover": ("evolution", {"crossover": 0.5}),
    "evolution-prescreen-gp": ("evolution", {"prescreen": "gp"}),
    "evolution-prescreen-rf": ("evolution", {"prescreen": "rf"}),
    "hillclimb": ("hillclimb", {}),
    "rl": ("rl", {}),
    "qlearning": ("qlearning", {}),
    "eda": ("eda", {}),
    "tpe": ("tpe", {}),
    "optuna-tpe": ("optuna-tpe", {}),
    "smac": ("smac", {}),
    "bo": ("bo", {}),
}
STRATEGIES = tuple(VARIANTS)
CHECKPOINTS = (10, 30, 100)


def run_one(strategy: str, dataset: str, seed: int, budget: int) -> dict:
    """One search: the sequence of (val, test) values and the time spent in ask (over the search,
    and for one more ask once ``budget`` observations were told)."""
    import torch

    torch.set_num_threads(1)
    from workbench.evaluate.tabular import table_arrays
    from workbench.space.nbgraph import NBGraphSpace

    space = NBGraphSpace(dataset)
    arrays = table_arrays(dataset)
    vals, tests = arrays.val_accuracy, arrays.test_accuracy
    seq: list[int] = []
    ask_seconds = 0.0
    last_ask = last_cpu = float("nan")
    name, options = VARIANTS[strategy]
    if name == "optuna-tpe":
        seq, ask_seconds = _run_tpe(space, vals, seed, budget)
    else:
        from workbench.strategy.base import Observation, StrategySetup
        from workbench.strategy.registry import make_strategy, strategy_class

        # options completed as nasw search completes them (e.g. hill climbing's random starts)
        options = strategy_class(name).prepare_options(dict(options), StrategySetup(budget=budget))
        strat = make_strategy(name, space, seed=seed, **options)
        for _ in range(budget):
            t0 = time.perf_counter()
            (p,) = strat.ask(1)
            ask_seconds += time.perf_counter() - t0
            i = space.index_of(p.genotype)
            seq.append(i)
            strat.tell([Observation(p.genotype, float(vals[i]), trial_id=str(len(seq)))])
        t0, c0 = time.perf_counter(), time.process_time()
        strat.ask(1)
        last_ask, last_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "strategy": strategy,
        "dataset": dataset,
        "seed": seed,
        "val": [float(vals[i]) for i in seq],
        "test": [float(tests[i]) for i in seq],
        "ask_seconds": ask_seconds / max(1, budget),
        "last_ask_seconds": last_ask,
        "last_ask_cpu_seconds": last_cpu,
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
            runs = sorted((r for r in results if r["dataset"] == ds and r["strategy"] == st), key=lambda r: r["seed"])
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
            row["last_ask_s"] = _mean([r.get("last_ask_seconds", np.nan) for r in runs])
            row["last_ask_cpu"] = _mean([r.get("last_ask_cpu_seconds", np.nan) for r in runs])
            regret = np.array([[best_val - max(r["val"][: k + 1]) for k in range(len(r["val"]))] for r in runs])
            row["regret"] = np.median(regret, axis=0).tolist()
            row["by_seed"] = {r["seed"]: _final(r) for r in runs}
            out.setdefault(ds, {})[st] = row
        _add_ranks(out.get(ds, {}))
    return out


def _mean(values: list[float]) -> float:
    """The mean of the finite values, NaN without any (Optuna's runs time no ask at the end)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _final(run: dict) -> tuple[float, int]:
    """A search's result for ranking: its best validation accuracy, and how early it found it."""
    v = np.asarray(run["val"])
    return float(v.max()), -int(np.argmax(v))


def _add_ranks(rows: dict) -> None:
    """Each strategy's mean rank over the seeds every strategy of the dataset ran (1 = best; by
    the best validation accuracy after the budget, ties by fewer evaluations to find it, equal
    results sharing their mean rank)."""
    seeds = sorted(set.intersection(*(set(row["by_seed"]) for row in rows.values()))) if rows else []
    names = list(rows)
    totals = dict.fromkeys(names, 0.0)
    for seed in seeds:
        keys = [rows[n]["by_seed"][seed] for n in names]
        order = sorted(range(len(names)), key=lambda i: keys[i], reverse=True)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and keys[order[j + 1]] == keys[order[i]]:
                j += 1
            for t in range(i, j + 1):
                totals[names[order[t]]] += (i + j) / 2 + 1
            i = j + 1
    for n in names:
        rows[n]["rank"] = totals[n] / len(seeds) if seeds else float("nan")
        rows[n]["rank_seeds"] = len(seeds)


def _fewer(summary: dict, a: str, b: str, factor: float = 1.0) -> list[str]:
    """Datasets on which ``a`` needs fewer evaluations to the top 1% than ``factor`` times ``b``'s
    (``factor`` 1: strictly fewer; otherwise at most)."""
    out = []
    for ds, rows in summary.items():
        if a in rows and b in rows:
            x, y = rows[a]["to_top1"], rows[b]["to_top1"]
            if (x < y) if factor == 1.0 else (x <= factor * y):
                out.append(ds)
    return out


def render(summary: dict, budget: int) -> str:
    lines = [
        "# Strategies on NAS-Bench-Graph",
        "",
        f"{budget} evaluations per search; test accuracy of the best-by-validation architecture "
        "(mean ± sd over seeds); evaluations to reach the top 1% by validation accuracy (median; "
        f"{budget + 1} = not reached); seconds per ask over the search, and for one ask with {budget} "
        "observations.",
        "",
        "Median regret (validation accuracy) per evaluation, every strategy, a panel per dataset: "
        "[`strategies_summary.png`](strategies_summary.png).",
        "",
        "![median regret](strategies_summary.png)",
        "",
        "## Mean rank per dataset",
        "",
        "Rank of each search among the strategies' searches of the same seed (1 = best: the highest "
        f"validation accuracy after {budget} evaluations, ties by fewer evaluations to find it), "
        "averaged over the seeds.",
        "",
    ]
    datasets = list(summary)
    names = [st for st in STRATEGIES if any(st in rows for rows in summary.values())]
    lines.append("| strategy | " + " | ".join(datasets) + " | mean |")
    lines.append("|---|" + "---|" * (len(datasets) + 1))
    for st in names:
        ranks = [summary[ds][st]["rank"] if st in summary[ds] else float("nan") for ds in datasets]
        cells = " | ".join("-" if np.isnan(r) else f"{r:.1f}" for r in ranks)
        lines.append(f"| {st} | {cells} | {np.nanmean(ranks):.2f} |")
    seeds = sorted({rows[next(iter(rows))]["rank_seeds"] for rows in summary.values()})
    lines += ["", f"Seeds ranked per dataset: {', '.join(map(str, seeds))}.", ""]
    lines += ["## Evaluations to the top 1% (median)", ""]
    lines.append("| strategy | " + " | ".join(datasets) + f" | s / ask at {budget} (wall) | CPU s / ask at {budget} |")
    lines.append("|---|" + "---|" * (len(datasets) + 2))
    for st in names:
        cells = " | ".join(f"{summary[ds][st]['to_top1']:.1f}" if st in summary[ds] else "-" for ds in datasets)
        times = [
            _mean([summary[ds][st][key] for ds in datasets if st in summary[ds]])
            for key in ("last_ask_s", "last_ask_cpu")
        ]
        lines.append(f"| {st} | {cells} | " + " | ".join("-" if np.isnan(t) else f"{t:.3f}" for t in times) + " |")
    lines.append("")
    for ds, rows in summary.items():
        lines += [
            f"## {ds}",
            "",
            "| strategy | seeds | test@10 | test@30 | test@100 | evals to top 1% | reached | s / ask | mean rank |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for st, row in rows.items():
            cells = [f"{row[f'test@{n}'][0]:.4f} ± {row[f'test@{n}'][1]:.4f}" for n in CHECKPOINTS]
            lines.append(
                f"| {st} | {row['seeds']} | "
                + " | ".join(cells)
                + f" | {row['to_top1']:.1f} | {row['reached']}/{row['seeds']} | {row['ask_s']:.3f} | {row['rank']:.1f} |"
            )
        lines.append("")
    # verdict lines for the issues' targets
    n = len(summary)
    present = {st for rows in summary.values() for st in rows}
    lines += ["## Targets", ""]
    thirds = [  # (a line is left out where a strategy it compares did not run)
        ds
        for ds, rows in summary.items()
        if "bo" in rows and "random" in rows and rows["bo"]["to_top1"] <= rows["random"]["to_top1"] / 3
    ]
    if {"bo", "random"} <= present:
        lines.append(
            f"- BO reaches the top 1% in at most a third of random's evaluations on {len(thirds)} of "
            f"{n} datasets: {', '.join(thirds) or '-'}"
        )
    for tpe in ("tpe", "optuna-tpe"):
        if not {"bo", tpe} <= present:
            continue
        above = [
            ds
            for ds, rows in summary.items()
            if "bo" in rows and tpe in rows and rows["bo"]["test@100"][0] >= rows[tpe]["test@100"][0]
        ]
        lines.append(
            f"- BO ends at or above {tpe}'s mean test accuracy on {len(above)} of {n}: {', '.join(above) or '-'}"
        )
    for st in ("eda", "qlearning"):
        if not {st, "random"} <= present:
            continue
        won = _fewer(summary, st, "random")
        lines.append(
            f"- {st} needs fewer evaluations than random to the top 1% on {len(won)} of {n} (target 6): "
            f"{', '.join(won) or '-'}"
        )
    if {"smac", "bo"} <= present:
        near = _fewer(summary, "smac", "bo", 1.5)
        lines.append(
            f"- smac needs at most 1.5x BO's evaluations to the top 1% on {len(near)} of {n} (target 6): "
            f"{', '.join(near) or '-'}"
        )
    slow = [summary[ds]["smac"]["last_ask_cpu"] for ds in summary if "smac" in summary[ds]]
    wall = [summary[ds]["smac"]["last_ask_s"] for ds in summary if "smac" in summary[ds]]
    if slow:
        lines.append(
            f"- smac seconds per ask at {budget} observations (mean per dataset, CPU time of the process): at most "
            f"{max(slow):.3f} (target 0.1); wall-clock at most {max(wall):.3f}"
        )
    for hybrid in ("evolution-prescreen-gp", "evolution-prescreen-rf"):
        if not {hybrid, "evolution"} <= present:
            continue
        won = _fewer(summary, hybrid, "evolution")
        lines.append(
            f"- {hybrid} needs fewer evaluations than evolution on {len(won)} of {n} (target 6): {', '.join(won) or '-'}"
        )
    won = _fewer(summary, "evolution-crossover", "evolution")
    tie = [ds for ds in summary if "evolution-crossover" in summary[ds] and "evolution" in summary[ds]]
    ratio = [summary[ds]["evolution-crossover"]["to_top1"] / summary[ds]["evolution"]["to_top1"] for ds in tie]
    if ratio:
        lines.append(
            f"- crossover (p = 0.5) vs plain evolution: fewer evaluations on {len(won)} of {len(tie)}; "
            f"median ratio of evaluations {np.median(ratio):.2f} (no target, a measurement)"
        )
    return "\n".join(lines)


def plot(summary: dict, out: Path) -> None:
    """One figure: a panel per dataset, the median regret of every strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [st for st in STRATEGIES if any(st in rows for rows in summary.values())]
    # a colour per registered strategy, a line style per variant of it (random in black)
    bases = list(dict.fromkeys(VARIANTS[st][0].replace("optuna-", "") for st in names if st != "random"))
    colour = {
        st: "black" if st == "random" else f"C{bases.index(VARIANTS[st][0].replace('optuna-', '')) % 10}"
        for st in names
    }
    styles: dict[str, str] = {}
    for st in names:
        base = VARIANTS[st][0].replace("optuna-", "")
        styles[st] = ("-", "--", ":", "-.")[sum(1 for o in styles if VARIANTS[o][0].replace("optuna-", "") == base) % 4]
    cols = min(4, len(summary))
    rows_n = int(np.ceil(len(summary) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3.2 * rows_n), squeeze=False, sharex=True)
    for ax, (ds, rows) in zip(axes.flat, summary.items()):
        for st in names:
            if st in rows:
                r = np.maximum(np.array(rows[st]["regret"]), 1e-4)
                ax.plot(np.arange(1, len(r) + 1), r, styles[st], color=colour[st], label=st, lw=1.3)
        ax.set_yscale("log")
        ax.set_title(ds)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("median regret (val. acc.)")
    for ax in list(axes.flat)[len(summary) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(7, len(labels)), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(out / "strategies_summary.png", dpi=90)
    plt.close(fig)


def _read_raw(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(LARGE))
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="seeds first-seed .. seeds-1 (e.g. held-out seeds 20..39)"
    )
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument(
        "--raw",
        default=str(Path(__file__).resolve().parent.parent / "runs" / "strategies_raw.jsonl"),
        help="JSON lines of finished searches: appended to, and searches already there are not rerun",
    )
    ap.add_argument("--summarize", action="store_true", help="only summarise what --raw holds")
    ap.add_argument("--quick", action="store_true", help="3 seeds on cora and photo")
    ap.add_argument(
        "--deadline", type=float, default=None, help="stop after this many seconds; summarise what finished"
    )
    args = ap.parse_args()
    datasets = args.datasets.split(",")
    strategies = args.strategies.split(",")
    unknown = [st for st in strategies if st not in VARIANTS]
    if unknown:
        ap.error(f"unknown strategies {unknown}; expected some of {list(VARIANTS)}")
    if "optuna-tpe" in strategies and not _has_optuna():
        print("optuna is not installed (the bench extra): optuna-tpe left out", flush=True)
        strategies.remove("optuna-tpe")
    if args.quick:
        args.seeds, datasets = 3, ["cora", "photo"]
    raw = Path(args.raw)
    raw.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["strategy"], r["dataset"], r["seed"]) for r in _read_raw(raw) if len(r["val"]) == args.budget}
    jobs = [
        (st, ds, seed, args.budget)
        for st in strategies
        for ds in datasets
        for seed in range(args.first_seed, args.seeds)
        if (st, ds, seed) not in done
    ]
    # dataset by dataset (so a --deadline leaves complete comparisons), slow strategies first
    order = {"bo": 0, "smac": 1, "evolution-prescreen-gp": 2, "evolution-prescreen-rf": 3, "rl": 4}
    jobs.sort(key=lambda j: (datasets.index(j[1]), j[2], order.get(j[0], 9)))
    t0 = time.perf_counter()
    finished = 0
    if not args.summarize:
        deadline = None if args.deadline is None else t0 + args.deadline
        with raw.open("a") as fh:
            for result in in_order(run_one, jobs, args.jobs, deadline):
                fh.write(json.dumps(result) + "\n")
                fh.flush()
                finished += 1
        if finished < len(jobs):
            print(f"deadline reached: {finished} of {len(jobs)} searches finished; summarising those", flush=True)
    wall = time.perf_counter() - t0
    results = [
        r
        for r in _read_raw(raw)
        if r["strategy"] in strategies
        and r["dataset"] in datasets
        and args.first_seed <= r["seed"] < args.seeds
        and len(r["val"]) == args.budget
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "strategies_raw.json").write_text(json.dumps(results))
    summary = summarize(results, args.budget)
    ran = f"{finished} searches run in {wall:.0f} s on {args.jobs} processes" if not args.summarize else "Summarised"
    text = render(summary, args.budget) + f"\n\n{ran}; {len(results)} searches in the tables (from `{raw.name}`).\n"
    print(text)
    (out / "strategies.md").write_text(text)
    plot(summary, out)


def _has_optuna() -> bool:
    import importlib.util

    return importlib.util.find_spec("optuna") is not None


if __name__ == "__main__":
    main()
