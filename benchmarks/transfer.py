"""Transfer benchmark: leave one NAS-Bench-Graph dataset out, warm-start BO from the other seven.

For each target dataset (the 8 large ones by default) and each seed, the *sources* are searches on
the other seven datasets: ``--source-trials`` trials (150) of ``--source-strategy``
(``evolution``) each, seeded by the seed, run on the tables. The target search then runs with:

* ``rgpe``, ``mtgp``: BO warm-started through the real warm-start plumbing
  (:func:`workbench.transfer.plan.plan_warm_start` with ``--warm-start auto``: the sources as
  the metastore's ``histories()`` would return them, weighed by the tasks' meta-features, handed
  to ``BayesianOptimization(sources=..., transfer=...)``);
* ``cold``: BO without sources (5 random initial points, then LogEI);
* ``random``: uniform sampling without repeats;
* ``naive``: the sources' best architectures first (one per source, most trusted source first,
  :func:`workbench.transfer.sources.warm_candidates`), then random.

Where the searches run. The bulk runs in memory (strategies asked and told directly from the
tables, as ``benchmarks/strategies.py``), which is what makes 20 seeds x 8 targets x 5 methods
feasible. ``--store-check`` exercises the store path for one configuration: the seed-0 sources of
the first target are recorded by ``nasw search --strategy evolution`` into a temporary SQLite
store, read back with ``Metastore.histories()`` and compared with the in-memory sources, then
``nasw search --task nbgraph-TARGET --strategy bo --warm-start auto`` runs on that store and its
proposals are compared with the in-memory warm RGPE run of seed 0.

Reported per target (``benchmarks/results/transfer.md``): the median number of evaluations to
reach the top 1% by validation accuracy (ties within 1e-9 count; a search that never gets there
in ``--max-evals`` counts as ``max-evals + 1``) with a bootstrap standard error over seeds; the
mean test accuracy (± standard error) of the best-by-validation architecture after 5, 10, 20 and
50 evaluations; the sources' final trust. A verdict section checks the issue's targets: warm
needs at most half of cold BO's evaluations wherever a source has validation rank correlation
>= 0.5 with the target, and is never worse than cold BO by more than one standard error (paired
bootstrap over seeds of the difference of medians). Plots: ``transfer_<target>.png`` (median
regret per evaluation) and ``transfer_summary.png``.

Usage::

    python benchmarks/transfer.py                                   # everything: 8 targets, 20 seeds
    python benchmarks/transfer.py --targets photo,cora --seeds 20 --jobs 2 --deadline 3600
    python benchmarks/transfer.py --store-check --targets photo --seeds 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _jobs import in_order  # benchmarks/_jobs.py

LARGE = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv")
METHODS = ("rgpe", "mtgp", "cold", "random", "naive")
CHECKPOINTS = (5, 10, 20, 50)
RESULTS = Path(__file__).resolve().parent / "results"
_SOURCES: dict[tuple, tuple[list[int], list[float]]] = {}


# -- sources ----------------------------------------------------------------------------------------


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
        from workbench.strategy.registry import make_strategy

        space = NBGraphSpace(dataset)
        vals = table_arrays(dataset).val_accuracy
        strat = make_strategy(strategy, space, seed=seed)
        seq: list[int] = []
        for _ in range(n_trials):
            (p,) = strat.ask(1)
            i = space.index_of(p.genotype)
            seq.append(i)
            strat.tell([Observation(p.genotype, float(vals[i]))])
        _SOURCES[key] = (seq, [float(vals[i]) for i in seq])
    return _SOURCES[key]


def histories_for(target: str, seed: int, n_trials: int, strategy: str) -> dict:
    """The other seven datasets' searches as ``Metastore.histories()`` returns them."""
    from metastore import TaskHistory
    from workbench.space.nbgraph import NBGraphSpace
    from workbench.task import load_task

    out = {}
    for ds in LARGE:
        if ds == target:
            continue
        seq, values = source_search(ds, seed, n_trials, strategy)
        pool = NBGraphSpace(ds).pool()
        task = load_task(f"nbgraph-{ds}")
        out[task.name] = TaskHistory(
            task.name, [pool[i].to_json() for i in seq], np.asarray(values), dict(task.meta_features)
        )
    return out


def warm_plan(target: str, seed: int, n_trials: int, strategy: str, transfer: str = "rgpe"):
    """The warm-start plan of ``--warm-start auto`` for a BO search on ``target``."""
    from workbench.space.nbgraph import NBGraphSpace
    from workbench.strategy.bo.strategy import BayesianOptimization
    from workbench.task import load_task
    from workbench.transfer.plan import plan_warm_start

    task = load_task(f"nbgraph-{target}")
    return plan_warm_start(
        "auto",
        histories_for(target, seed, n_trials, strategy),
        NBGraphSpace(target),
        task.name,
        dict(task.meta_features),
        BayesianOptimization,
        {"transfer": transfer},
    )


# -- one target search ----------------------------------------------------------------------------


def run_one(
    target: str,
    method: str,
    seed: int,
    max_evals: int,
    min_evals: int,
    n_trials: int,
    source_strategy: str,
    hedge: int = 2,
) -> dict:
    """One search on ``target``: validation / test accuracy per evaluation, seconds per ask."""
    import torch

    torch.set_num_threads(1)
    from workbench.evaluate.tabular import table_arrays
    from workbench.space.nbgraph import NBGraphSpace
    from workbench.strategy.base import Observation
    from workbench.strategy.bo.strategy import BayesianOptimization

    space = NBGraphSpace(target)
    pool = space.pool()
    arrays = table_arrays(target)
    vals, tests = arrays.val_accuracy, arrays.test_accuracy
    threshold = float(np.quantile(vals, 0.99))
    seq: list[int] = []
    weights: list[dict] = []
    ask_s: list[float] = []
    strat = None
    order: list[int] = []
    if method in ("rgpe", "mtgp"):
        plan = warm_plan(target, seed, n_trials, source_strategy, method)
        strat = BayesianOptimization(
            space, seed=seed, transfer=method, hedge=hedge, **BayesianOptimization.warm_start_options(plan.offer, {})
        )
    elif method == "cold":
        strat = BayesianOptimization(space, seed=seed)
    elif method == "naive":
        from workbench.transfer.sources import warm_candidates

        plan = warm_plan(target, seed, n_trials, source_strategy)
        order = [space.index_of(g) for g in warm_candidates(plan.sources, plan.weights.weights, len(plan.sources))]
    rng = np.random.default_rng([seed, 0xBE7C])
    perm = [int(i) for i in rng.permutation(len(pool))]
    hit = None
    while len(seq) < max_evals and (hit is None or len(seq) < min_evals):
        t0 = time.perf_counter()
        if strat is not None:
            (p,) = strat.ask(1)
            i = space.index_of(p.genotype)
        else:
            done = set(seq)
            i = next(j for j in order + perm if j not in done)
        ask_s.append(time.perf_counter() - t0)
        seq.append(i)
        if strat is not None:
            strat.tell([Observation(pool[i], float(vals[i]))])
            if method in ("rgpe", "mtgp") and len(seq) in CHECKPOINTS:
                weights.append({"n": len(seq), **strat.source_weights()})
        if hit is None and vals[i] >= threshold - 1e-9:
            hit = len(seq)
    return {
        "target": target,
        "method": method,
        "seed": seed,
        "hit": hit,
        "val": [float(vals[i]) for i in seq],
        "test": [float(tests[i]) for i in seq],
        "ask_s": float(np.mean(ask_s)),
        "first_ask_s": ask_s[0],
        "weights": weights,
    }


# -- summaries ------------------------------------------------------------------------------------


def correlations() -> dict[str, dict[str, float]]:
    """Spearman rank correlation of validation accuracy between every two large datasets."""
    from scipy.stats import spearmanr

    from workbench.evaluate.tabular import table_arrays

    v = {d: table_arrays(d).val_accuracy for d in LARGE}
    return {a: {b: float(spearmanr(v[a], v[b]).statistic) for b in LARGE if b != a} for a in LARGE}


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


def summarize(results: list[dict], max_evals: int) -> dict:
    """Per target and method: evaluations to the top 1%, test accuracy at the checkpoints."""
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
            rows[m] = row
        cold = by_method.get("cold") or []
        for m in ("rgpe", "mtgp", "naive"):
            runs = by_method.get(m) or []
            if m in rows and cold and len(runs) == len(cold):
                a, b = _hits(runs, max_evals), _hits(cold, max_evals)
                rows[m]["diff_vs_cold"] = float(np.median(a) - np.median(b))
                rows[m]["diff_se"] = _paired_diff_se(a, b, rng)
        out[target] = rows
    return out


def cold_self_check(cold_runs: list[dict], seeds: int, max_evals: int, splits: int = 400) -> dict:
    """How often the issue's "not worse than cold BO by more than one standard error" test flags
    cold BO *against itself*: disjoint random groups of ``seeds`` cold searches play "method" and
    "cold BO", and the test (difference of medians > paired bootstrap SE, as :func:`summarize`)
    is applied per target. Needs at least ``2 * seeds`` cold searches per target.

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
            fails[k, j] = np.median(a) - np.median(b) > _paired_diff_se(a, b, rng)
    return {
        "per_target": {
            t: (float(np.median(h)), len(h), float(fails[:, j].mean())) for j, (t, h) in enumerate(hits.items())
        },
        "any": float(fails.any(1).mean()),
    }


def render(summary: dict, corr: dict, max_evals: int, meta: dict, orderings: dict | None = None) -> str:
    lines = [
        "# Warm-started BO on NAS-Bench-Graph (leave one dataset out)",
        "",
        f"Sources: {meta['source_trials']} trials of {meta['source_strategy']} on each of the other 7 datasets "
        f"(seeded by the seed; {meta['where']}). Target searches run until the top 1% is reached and at least "
        f"{meta['min_evals']} evaluations, at most {max_evals}. Evaluations to the top 1%: median over seeds "
        f"(± bootstrap standard error; {max_evals + 1} = not reached). Test accuracy of the best-by-validation "
        "architecture: mean ± standard error. Seconds per ask: mean (first ask, with the one-off source fits).",
        "",
    ]
    for target, rows in summary.items():
        best = max(corr[target].items(), key=lambda kv: kv[1])
        lines += [
            f"## {target}",
            "",
            f"Most correlated source: {best[0]} (Spearman {best[1]:.2f} on validation accuracy); "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(corr[target].items(), key=lambda kv: -kv[1])),
            "",
        ]
        if orderings:
            o = orderings[target]
            lines += [
                "Evaluations to the top 1% if the pool were evaluated in the order of a source's whole table, "
                f"and (in brackets) how many of the target's {next(iter(o.values()))['top']} top-1% architectures "
                "are in that source's top 1%: "
                + ", ".join(
                    f"{k} {o[k]['first']} ({o[k]['overlap']})" for k in sorted(o, key=lambda k: -corr[target][k])
                ),
                "",
            ]
        lines += [
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
            lines.append(
                f"| {m} | {row['seeds']} | {row['to_top1']:.1f} ± {row['to_top1_se']:.1f} | "
                f"{row['reached']}/{row['seeds']} | "
                + " | ".join(cells)
                + f" | {row['ask_s']:.3f} ({row['first_ask_s']:.2f}) |"
            )
        for m in ("rgpe", "mtgp"):
            w = rows.get(m, {}).get("weights")
            if w:
                lines.append(
                    f"\n{m} trust after {rows[m]['weights_at']} evaluations (mean over seeds): "
                    + ", ".join(
                        f"{k.removeprefix('nbgraph-')} {v:.2f}" for k, v in sorted(w.items(), key=lambda kv: -kv[1])
                    )
                )
        lines.append("")
    lines += ["## Targets of issue 5", ""]
    for m in ("rgpe", "mtgp"):
        half, close = [], []
        for target, rows in summary.items():
            if m not in rows or "cold" not in rows:
                continue
            related = max(corr[target].values()) >= 0.5
            r, c = rows[m], rows["cold"]
            if related:
                ok = r["to_top1"] <= c["to_top1"] / 2
                half.append(f"{target} {'yes' if ok else 'NO'} ({r['to_top1']:.1f} vs {c['to_top1']:.1f})")
            ok = r.get("diff_vs_cold", 0.0) <= r.get("diff_se", 0.0)
            close.append(
                f"{target} {'yes' if ok else 'NO'} ({r.get('diff_vs_cold', 0.0):+.1f} ± {r.get('diff_se', 0.0):.1f})"
            )
        lines.append(
            f"- {m}: at most half of cold BO's evaluations where a source correlates >= 0.5: "
            + ("; ".join(half) or "no such target run")
        )
        lines.append(
            f"- {m}: not worse than cold BO by more than one standard error (median difference ± paired "
            "bootstrap SE): " + ("; ".join(close) or "-")
        )
    return "\n".join(lines) + "\n"


def plot(summary: dict, out: Path, max_evals: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for target, rows in summary.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for m, row in rows.items():
            r = np.maximum(np.array(row["regret"]), 1e-4)
            ax.plot(np.arange(1, len(r) + 1), r, label=m)
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("median regret (validation accuracy)")
        ax.set_title(f"{target}: warm-started from the other 7 datasets")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"transfer_{target}.png", dpi=90)
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
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "transfer_summary.png", dpi=90)
    plt.close(fig)


# -- the store path -------------------------------------------------------------------------------


def store_check(target: str, n_trials: int, strategy: str, budget: int = 10) -> str:
    """Record the seed-0 sources of ``target`` with the CLI, read them back, warm-start from them.

    Returns a Markdown paragraph with what was compared.
    """
    from metastore import open_store

    nasw = (
        [sys.executable, "-m", "workbench.cli"]
        if not Path(sys.executable).with_name("nasw").exists()
        else [str(Path(sys.executable).with_name("nasw"))]
    )
    tmp = Path(tempfile.mkdtemp(prefix="nasw-transfer-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    t0 = time.perf_counter()
    for ds in LARGE:
        if ds != target:
            subprocess.run(
                nasw
                + [
                    "search",
                    "--task",
                    f"nbgraph-{ds}",
                    "--strategy",
                    strategy,
                    "--budget",
                    str(n_trials),
                    "--seed",
                    "0",
                    "--store",
                    uri,
                    "--quiet",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
    recorded = time.perf_counter() - t0
    store = open_store(uri)
    t1 = time.perf_counter()
    hist = store.histories("nbgraph-v1", "val_accuracy", exclude_task=f"nbgraph-{target}")
    read = time.perf_counter() - t1
    mine = histories_for(target, 0, n_trials, strategy)
    same = sorted(hist) == sorted(mine) and all(
        hist[t].genotype_jsons == mine[t].genotype_jsons and np.allclose(hist[t].values, mine[t].values) for t in mine
    )
    proc = subprocess.run(
        nasw
        + [
            "search",
            "--task",
            f"nbgraph-{target}",
            "--strategy",
            "bo",
            "--warm-start",
            "auto",
            "--budget",
            str(budget),
            "--seed",
            "0",
            "--store",
            uri,
            "--quiet",
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "1000"},
    )
    warm_line = next((ln for ln in proc.stdout.splitlines() + proc.stderr.splitlines() if "warm start" in ln), "")
    search = (
        max(store.searches(task=f"nbgraph-{target}"), key=lambda s: s.start_time)
        if hasattr(store, "searches")
        else None
    )
    cli_seq = []
    tags = {}
    if search is not None:
        from workbench.space.genotype import Genotype
        from workbench.space.nbgraph import NBGraphSpace

        space = NBGraphSpace(target)
        cli_seq = [space.index_of(Genotype.from_json(r.genotype_json)) for r in store.trials(search.search_id)]
        tags = store.search(search.search_id).tags
    mem = run_one(target, "rgpe", 0, budget, budget, n_trials, strategy)
    from workbench.evaluate.tabular import table_arrays

    vals = table_arrays(target).val_accuracy
    cli_vals = [float(vals[i]) for i in cli_seq]
    return (
        f"Store path (seed 0, target {target}): the 7 source searches recorded with `nasw search --strategy "
        f"{strategy} --budget {n_trials}` into a fresh SQLite store in {recorded:.0f} s; `histories()` read them back "
        f"in {read:.3f} s and they are {'identical to' if same else 'DIFFERENT from'} the in-memory sources. "
        f"`nasw search --task nbgraph-{target} --strategy bo --warm-start auto --budget {budget}` printed: "
        f"`{warm_line.strip()}`; parent-run tag source_weights: `{tags.get('source_weights', '')[:300]}`. "
        f"Its validation accuracies {'match' if np.allclose(cli_vals, mem['val']) else 'DO NOT match'} the in-memory "
        f"warm RGPE run of seed 0 trial by trial ({len(cli_vals)} trials).\n"
    )


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=",".join(LARGE))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--max-evals", type=int, default=100)
    ap.add_argument("--min-evals", type=int, default=max(CHECKPOINTS))
    ap.add_argument("--source-trials", type=int, default=150)
    ap.add_argument("--source-strategy", default="evolution")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--deadline", type=float, default=None, help="stop after this many seconds; summarise what finished"
    )
    ap.add_argument("--store-check", action="store_true", help="also record seed-0 sources through `nasw search`")
    ap.add_argument("--hedge", type=int, default=2, help="warm BO's hedge option (0: never cold BO's model)")
    ap.add_argument(
        "--cold-seeds",
        type=int,
        default=0,
        help="also run cold BO on seeds up to this many and report how often the issue's one-SE test "
        "flags cold BO against itself",
    )
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [t for t in targets if t not in LARGE] + [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown targets/methods {bad}; targets: {LARGE}, methods: {METHODS}")
    jobs = [
        (t, m, s, args.max_evals, args.min_evals, args.source_trials, args.source_strategy, args.hedge)
        for t in targets
        for s in range(args.seeds)
        for m in methods
    ]
    # target by target, seed by seed (so a deadline leaves complete paired comparisons)
    t0 = time.perf_counter()
    deadline = None if args.deadline is None else t0 + args.deadline
    results: list[dict] = list(in_order(run_one, jobs, args.jobs, deadline))
    # keep only complete seeds (every method) so comparisons are paired
    complete = {
        (r["target"], r["seed"])
        for r in results
        if sum(1 for q in results if q["target"] == r["target"] and q["seed"] == r["seed"]) == len(methods)
    }
    dropped = len(results) - sum(1 for r in results if (r["target"], r["seed"]) in complete)
    results = [r for r in results if (r["target"], r["seed"]) in complete]
    wall = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer_raw.json").write_text(json.dumps(results))
    corr = correlations()
    summary = summarize(results, args.max_evals)
    where = "in memory, from the tables"
    text = render(
        summary,
        corr,
        args.max_evals,
        {
            "source_trials": args.source_trials,
            "source_strategy": args.source_strategy,
            "min_evals": args.min_evals,
            "where": where,
        },
        source_orderings(),
    )
    ran = sorted({(r["target"], r["seed"]) for r in results})
    seeds_by_target = {t: sum(1 for tt, _ in ran if tt == t) for t in targets}
    text += (
        f"\nRan: {len(results)} searches ({', '.join(f'{t}: {n} seeds' for t, n in seeds_by_target.items())}; "
        f"methods {', '.join(methods)}) in {wall:.0f} s on {args.jobs} processes"
        + (
            f"; {len(jobs) - len(results) - dropped} not finished before the deadline and {dropped} of incomplete seeds dropped"
            if len(results) < len(jobs)
            else ""
        )
        + ".\n"
        f"Command: `python benchmarks/transfer.py --targets {','.join(targets)} --seeds {args.seeds} --jobs {args.jobs}"
        + (f" --hedge {args.hedge}" if args.hedge != 2 else "")
        + (f" --cold-seeds {args.cold_seeds}" if args.cold_seeds > args.seeds else "")
        + (f" --deadline {args.deadline:.0f}" if args.deadline else "")
        + "`\n"
    )
    if args.cold_seeds > args.seeds:
        extra = [
            (t, "cold", s, args.max_evals, args.min_evals, args.source_trials, args.source_strategy)
            for t in targets
            for s in range(args.seeds, args.cold_seeds)
        ]
        cold_runs = [r for r in results if r["method"] == "cold"] + list(in_order(run_one, extra, args.jobs, deadline))
        (out / "transfer_cold_raw.json").write_text(json.dumps(cold_runs))
        check = cold_self_check(cold_runs, args.seeds, args.max_evals)
        if check:
            text += (
                f"\n## The one-SE test against itself\n\nCold BO on {args.cold_seeds} seeds; disjoint random groups of "
                f"{args.seeds} seeds compared with the test of issue 5 (400 splits). Per target: cold BO's median "
                "evaluations to the top 1% over all its seeds, and how often the test calls cold BO worse than "
                "itself:\n\n| target | cold seeds | median evals to top 1% | flagged |\n|---|---|---|---|\n"
                + "".join(f"| {t} | {n} | {m:.1f} | {f:.0%} |\n" for t, (m, n, f) in check["per_target"].items())
                + f"\nAt least one of the {len(check['per_target'])} targets flagged: {check['any']:.0%} of splits.\n"
            )
    if args.store_check:
        text += "\n" + store_check(targets[0], args.source_trials, args.source_strategy)
    print(text)
    (out / "transfer.md").write_text(text)
    if summary:
        plot(summary, out, args.max_evals)


if __name__ == "__main__":
    main()
