"""How well ``bo`` maximises its acquisition in a space without a pool, and whether it matters.

On chain, cell, DAG and joint spaces ``bo`` cannot enumerate the candidates: each ask scores a
reservoir of random samples (up to ``n_samples=1000``, growing with the history) plus
``n_mutations=200`` mutations of the 5 best observations (``workbench/strategy/bo/pool.py``)
and proposes the best by LogEI. This benchmark runs ``bo`` on NAS-Bench-Graph tables *treated
as pool-less* (the same sampled candidates instead of the 26,206-architecture pool), where the
whole pool still gives the exact maximum of the acquisition to compare with. Variants:

* ``current``: the default scheme above;
* ``random``: random samples only (``n_mutations=0``, ``n_samples=1200``: as many candidates);
* ``local``: the default candidates, then 3 rounds of evolutionary local search of the
  acquisition (``local_rounds=3``: each round mutates the 10 candidates with the best LogEI
  10 times each and scores the children too).

Two measurements:

1. *Acquisition reached*: states of a search (the ``current`` variant's history after 10, 30
   and 60 evaluations, per seed) are told to each variant, which generates its candidates
   (same model, same random stream); reported is the gap between the best LogEI among them and
   the exact maximum over every unevaluated architecture (median with its bootstrap standard
   error, mean with its standard error, over seeds and states; and paired with ``current``), how
   often the exact maximum is reached (within 1e-6: ties count), and the seconds to generate and
   score the candidates.
2. *Searches*: each variant runs ``--budget`` evaluations per seed; reported is the median
   number of evaluations to the top 1% of the space by validation accuracy (a run that never
   gets there counts as budget + 1), its bootstrap standard error, and the median seconds per ask.

Usage::

    python benchmarks/acquisition.py                          # 4 datasets, 15 seeds, budget 60
    python benchmarks/acquisition.py --quick                  # 1 dataset, 2 seeds, budget 30
    python benchmarks/acquisition.py --out /tmp/acquisition.md --raw /tmp/acq.json   # then merge into
    python benchmarks/acquisition.py --summarize /tmp/acq.json   # benchmarks/results/acquisition.md

One process (``OMP_NUM_THREADS=1`` recommended).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

VARIANTS: dict[str, dict] = {
    "current": {},
    "random": {"n_mutations": 0, "n_samples": 1200},
    "local": {"local_rounds": 3, "local_top": 10, "local_children": 10},
}
STATES = (10, 30, 60)


def pool_less(space, seed: int, options: dict):
    """``bo`` on ``space`` with the candidates of a space without a pool."""
    from workbench.strategy.bo.pool import SampledPool
    from workbench.strategy.registry import make_strategy

    strat = make_strategy("bo", space, seed=seed, **options)
    strat.full_pool = None
    strat.sampled_pool = SampledPool(
        space, strat.seed, int(options.get("n_samples", 1000)), int(options.get("n_mutations", 200))
    )
    return strat


def search(space, vals: np.ndarray, variant: str, seed: int, budget: int) -> dict:
    """One search: the evaluated indices and the seconds of every ask."""
    from workbench.strategy.base import Observation

    strat = pool_less(space, seed, VARIANTS[variant])
    seq: list[int] = []
    asks: list[float] = []
    for _ in range(budget):
        t0 = time.perf_counter()
        (p,) = strat.ask(1)
        asks.append(time.perf_counter() - t0)
        i = space.index_of(p.genotype)
        seq.append(i)
        strat.tell([Observation(p.genotype, float(vals[i]), trial_id=str(len(seq)))])
    return {"seq": seq, "asks": asks}


def acquisition_gaps(space, pool_x, vals: np.ndarray, history: list[int], seed: int) -> list[dict]:
    """Per state and variant: the best LogEI among the variant's candidates against the exact
    maximum over the unevaluated pool."""
    import torch

    from workbench.strategy.base import Observation
    from workbench.strategy.bo.acquisition import top_log_ei
    from workbench.strategy.bo.model import DTYPE

    members = space.pool()
    out = []
    for n in STATES:
        if n > len(history):
            continue
        seen = history[:n]
        exact = None
        for variant, options in VARIANTS.items():
            strat = pool_less(space, seed, options)
            strat.tell([Observation(members[i], float(vals[i]), trial_id=str(k)) for k, i in enumerate(seen)])
            models, used, ys = strat._models()
            best_f = float(ys[:, 0].max())
            if exact is None:
                mask = np.ones(len(members), dtype=bool)
                mask[seen] = False
                avail = np.flatnonzero(mask)
                rows, values = top_log_ei(models[0], torch.from_numpy(pool_x[avail]), best_f, 1)
                exact = (int(avail[int(rows[0])]), float(values[0]))
            t0 = time.perf_counter()
            rng = np.random.default_rng([seed, n, 7])
            genotypes, x = strat.sampled_candidates(models, used, ys, set(), rng)
            rows, values = top_log_ei(models[0], x.to(DTYPE), best_f, 1)
            seconds = time.perf_counter() - t0
            found = space.index_of(genotypes[int(rows[0])])
            out.append(
                {
                    "variant": variant,
                    "state": n,
                    "seed": seed,
                    "gap": exact[1] - float(values[0]),
                    "hit": found == exact[0] or exact[1] - float(values[0]) <= 1e-6,
                    "candidates": len(genotypes),
                    "seconds": seconds,
                }
            )
    return out


def median_se(x, reps: int = 2000) -> tuple[float, float]:
    """Median and its bootstrap standard error."""
    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(0)
    boots = np.median(rng.choice(x, size=(reps, len(x))), axis=1)
    return float(np.median(x)), float(boots.std())


def to_top(seq: list[int], vals: np.ndarray, budget: int) -> int:
    """Evaluations until one in the top 1% by validation accuracy (budget + 1 if never)."""
    threshold = float(np.quantile(vals, 0.99)) - 1e-9
    for k, i in enumerate(seq, 1):
        if vals[i] >= threshold:
            return k
    return budget + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="cora,photo,citeseer,arxiv")
    ap.add_argument("--seeds", type=int, default=15)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds FIRST_SEED .. FIRST_SEED + SEEDS - 1")
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument("--quick", action="store_true", help="1 dataset, 2 seeds, budget 30")
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown page here")
    ap.add_argument("--raw", type=Path, default=None, help="also write every measurement as JSON")
    ap.add_argument(
        "--summarize", type=Path, nargs="+", default=None, help="only print the page of earlier --raw files"
    )
    args = ap.parse_args()
    if args.quick:
        args.datasets, args.seeds, args.budget = "cora", 2, 30
    if args.summarize:
        raws = [json.loads(path.read_text()) for path in args.summarize]
        raw = {key: [row for r in raws for row in r[key]] for key in ("gaps", "runs")}
        raw["seconds"] = sum(r.get("seconds", float("nan")) for r in raws)
        args.datasets = ",".join(dict.fromkeys(r["dataset"] for r in raw["runs"]))
        args.seeds = len({(r["dataset"], r["seed"]) for r in raw["runs"]}) // max(1, len(args.datasets.split(",")))
        text = report(raw["gaps"], raw["runs"], args, raw.get("seconds", float("nan")))
        print(text)
        if args.out:
            args.out.write_text(text)
        return
    import torch

    from workbench.evaluate.tabular import table_arrays
    from workbench.space.nbgraph import NBGraphSpace

    torch.set_num_threads(1)
    started = time.time()
    gaps: list[dict] = []
    runs: list[dict] = []
    for ds in args.datasets.split(","):
        space = NBGraphSpace(ds)
        vals = table_arrays(ds).val_accuracy
        pool_x = None
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for variant in VARIANTS:
                r = search(space, vals, variant, seed, args.budget)
                runs.append(
                    {
                        "dataset": ds,
                        "variant": variant,
                        "seed": seed,
                        **r,
                        "to_top": to_top(r["seq"], vals, args.budget),
                    }
                )
                if variant == "current":
                    if pool_x is None:
                        strat = pool_less(space, seed, {})
                        pool_x = strat.featurizer(space.pool())
                    gaps += [{"dataset": ds, **g} for g in acquisition_gaps(space, pool_x, vals, r["seq"], seed)]
            print(f"[{time.time() - started:6.0f}s] {ds} seed {seed} done", flush=True)
            if args.raw:  # after every seed: a long run cut short still leaves its measurements
                args.raw.write_text(json.dumps({"gaps": gaps, "runs": runs, "seconds": time.time() - started}))
    text = report(gaps, runs, args, time.time() - started)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.raw:
        args.raw.write_text(json.dumps({"gaps": gaps, "runs": runs, "seconds": time.time() - started}))


def _to_top_cell(rows: list[dict], budget: int) -> str:
    """Median evaluations to the top 1% ± SE, and how many searches got there."""
    if not rows:
        return "-"
    m, se = median_se([r["to_top"] for r in rows])
    reached = sum(r["to_top"] <= budget for r in rows)
    return f"{m:.1f} ± {se:.1f} ({reached}/{len(rows)})"


def report(gaps: list[dict], runs: list[dict], args, seconds: float) -> str:
    lines = [
        "## Acquisition reached (LogEI gap to the exact maximum over the unevaluated pool; 0 is optimal)",
        "",
        "| variant | state (evaluations) | median gap ± SE | mean gap ± SE | exact maximum reached | candidates | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        for n in (*STATES, "all"):
            rows = [g for g in gaps if g["variant"] == variant and (n == "all" or g["state"] == n)]
            if not rows:
                continue
            gap = np.array([g["gap"] for g in rows])
            m, se = median_se(gap)
            mean_se = gap.std(ddof=1) / np.sqrt(len(gap)) if len(gap) > 1 else float("nan")
            hit = np.mean([g["hit"] for g in rows])
            cand = np.median([g["candidates"] for g in rows])
            sec = np.median([g["seconds"] for g in rows])
            lines.append(
                f"| {variant} | {n} | {m:.3f} ± {se:.3f} | {gap.mean():.3f} ± {mean_se:.3f} | {hit:.0%} | {cand:.0f}"
                f" | {sec:.3f} |"
            )
    lines += [
        "",
        "Paired with `current` on the same states (same model, same random stream for the shared candidates):",
        "",
    ]
    ref = {(g["dataset"], g["seed"], g["state"]): g["gap"] for g in gaps if g["variant"] == "current"}
    for variant in [v for v in VARIANTS if v != "current"]:
        diff = np.array(
            [g["gap"] - ref[(g["dataset"], g["seed"], g["state"])] for g in gaps if g["variant"] == variant]
        )
        if len(diff):
            better, worse = np.mean(diff < -1e-6), np.mean(diff > 1e-6)
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            lines.append(
                f"- {variant}: higher acquisition than `current` in {better:.0%} of {len(diff)} states, lower in"
                f" {worse:.0%}, equal in the rest; gap minus current's gap {diff.mean():+.3f} ± {se:.3f} (mean ± SE)"
            )
    lines += [
        "",
        f"## Searches ({args.budget} evaluations; evaluations to the top 1%, median ± bootstrap SE over seeds"
        " (searches that got there))",
        "",
        "| dataset | " + " | ".join(VARIANTS) + " |",
        "|---|" + "---|" * len(VARIANTS),
    ]
    for ds in args.datasets.split(","):
        cells = [
            _to_top_cell([r for r in runs if r["dataset"] == ds and r["variant"] == v], args.budget) for v in VARIANTS
        ]
        lines.append(f"| {ds} | " + " | ".join(cells) + " |")
    cells = [_to_top_cell([r for r in runs if r["variant"] == v], args.budget) for v in VARIANTS]
    lines.append("| all | " + " | ".join(cells) + " |")
    half = args.budget // 2
    lines += ["", f"| variant | median seconds per ask | median seconds per ask after {half} |", "|---|---|---|"]
    for variant in VARIANTS:
        asks = [a for r in runs if r["variant"] == variant for a in r["asks"]]
        late = [a for r in runs if r["variant"] == variant for a in r["asks"][half:]]
        lines.append(f"| {variant} | {np.median(asks):.3f} | {np.median(late) if late else float('nan'):.3f} |")
    lines += [
        "",
        f"{args.seeds} seeds, datasets {args.datasets}, {seconds / 60:.0f} min on {platform.processor() or platform.machine()}"
        f" ({platform.python_version()}), one process.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
