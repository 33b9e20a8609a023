"""Speed of one ``bo`` ask on NAS-Bench-Graph versus stock BoTorch defaults, side by side.

With ``n`` observations (random architectures of one dataset, by validation accuracy), time:

* **ours**: a fresh ``BayesianOptimization`` told the observations, then ``ask(1)``: the MAP
  hyperparameter fit and LogEI over every architecture not yet evaluated (the full pool);
* **stock**: ``SingleTaskGP(X, Y)`` with its default priors and outcome standardisation,
  ``fit_gpytorch_mll`` with default settings, and ``LogExpectedImprovement`` maximised over the
  same pool with ``optimize_acqf_discrete`` (BoTorch's discrete optimiser, default batch size).

Both see the same one-hot encodings and run in one process with the same torch thread count
(2 by default: the project's 2-core machines). Prints a Markdown table and writes it to
``benchmarks/results/bo_speed.md``.

Usage::

    python benchmarks/bo_speed.py                 # cora, n = 300, 2 threads, 3 repeats
    python benchmarks/bo_speed.py --n 100,300 --dataset photo --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "bo_speed.md"


def _observations(dataset: str, n: int, seed: int):
    from workbench.evaluate.tabular import table_arrays
    from workbench.space.nbgraph import NBGraphSpace
    from workbench.strategy.base import Observation

    space = NBGraphSpace(dataset)
    pool = space.pool()
    val = np.asarray(table_arrays(dataset).val_accuracy)
    idx = np.random.default_rng(seed).choice(len(pool), n, replace=False)
    return space, [Observation(pool[i], float(val[i])) for i in idx], idx


def time_ours(space, observations, repeats: int, **options) -> dict:
    """Median seconds of one ask (fit + acquisition) of a fresh strategy, over ``repeats``."""
    from workbench.strategy.bo.strategy import BayesianOptimization

    totals, fits, acqs, picks = [], [], [], []
    for _ in range(repeats):
        s = BayesianOptimization(space, seed=0, **options)
        s.tell(observations)
        t = time.perf_counter()
        (p,) = s.ask(1)
        totals.append(time.perf_counter() - t)
        fits.append(s.last_ask["fit_s"])
        acqs.append(s.last_ask["acq_s"])
        picks.append(space.index_of(p.genotype))
    hp = s.last_ask["hyperparameters"][0]
    return {
        "total": statistics.median(totals),
        "fit": statistics.median(fits),
        "acq": statistics.median(acqs),
        "pick": picks[-1],
        "detail": f"{hp.iterations} L-BFGS iterations, {hp.evaluations} likelihood evaluations",
        "candidates": s.last_ask["candidates"],
    }


def time_stock(space, observations, idx: np.ndarray) -> dict:
    """Seconds of the stock pipeline: SingleTaskGP + fit_gpytorch_mll defaults + LogEI on the pool."""
    from botorch.acquisition.analytic import LogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.optim import optimize_acqf_discrete
    from gpytorch.mlls import ExactMarginalLogLikelihood

    pool_x = torch.as_tensor(np.array(space.pool_encoding("onehot")), dtype=torch.float64)
    mask = np.ones(len(pool_x), dtype=bool)
    mask[idx] = False
    choices = pool_x[torch.as_tensor(np.flatnonzero(mask))]
    x = pool_x[torch.as_tensor(idx)]
    y = torch.as_tensor([[o.value] for o in observations], dtype=torch.float64)
    t0 = time.perf_counter()
    model = SingleTaskGP(x, y)
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    fit_gpytorch_mll(mll)
    t1 = time.perf_counter()
    print(f"  stock fit done in {t1 - t0:.1f}s", flush=True)
    acq = LogExpectedImprovement(model, best_f=y.max())
    with torch.no_grad():
        cand, _ = optimize_acqf_discrete(acq, q=1, choices=choices)
    t2 = time.perf_counter()
    pick = int(np.flatnonzero(mask)[int(torch.nonzero((choices == cand).all(-1))[0, 0])])
    return {"total": t2 - t0, "fit": t1 - t0, "acq": t2 - t1, "pick": pick, "candidates": len(choices)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="cora")
    parser.add_argument("--n", default="300", help="observation counts, comma-separated")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the project's machines have 2 cores)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of our ask (the median is reported)")
    parser.add_argument("--no-stock", action="store_true", help="skip the (slow) stock pipeline")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for n in [int(v) for v in args.n.split(",")]:
        space, observations, idx = _observations(args.dataset, n, seed=0)
        space.pool_encoding("onehot")
        ours = time_ours(space, observations, args.repeats)
        print(f"n={n}: ours {ours['total']:.3f}s (fit {ours['fit']:.3f}s, acquisition {ours['acq']:.3f}s)", flush=True)
        stock = None if args.no_stock else time_stock(space, observations, idx)
        rows.append((n, ours, stock))
        print(
            f"n={n}: ours {ours['total']:.3f}s" + ("" if stock is None else f", stock {stock['total']:.2f}s"),
            flush=True,
        )

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"# One `bo` ask on NAS-Bench-Graph {args.dataset}: ours vs stock BoTorch",
        "",
        f"torch {torch.__version__}, {args.threads} torch threads, {os.cpu_count()} CPUs visible, "
        f"1-min load average at the end {load:.1f}, {platform.machine()}; "
        f"ours = median of {args.repeats} asks of a fresh strategy (fit + LogEI over the full pool); "
        "stock = SingleTaskGP + fit_gpytorch_mll defaults + LogEI via optimize_acqf_discrete, one run.",
        "",
        "| observations | candidates | ours: fit (s) | ours: acquisition (s) | ours: ask (s) | "
        "stock: fit (s) | stock: acquisition (s) | stock: ask (s) | speed-up |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, ours, stock in rows:
        if stock is None:
            lines.append(
                f"| {n} | {ours['candidates']} | {ours['fit']:.3f} | {ours['acq']:.3f} | {ours['total']:.3f} "
                "| - | - | - | - |"
            )
        else:
            lines.append(
                f"| {n} | {ours['candidates']} | {ours['fit']:.3f} | {ours['acq']:.3f} | {ours['total']:.3f} | "
                f"{stock['fit']:.2f} | {stock['acq']:.2f} | {stock['total']:.2f} | "
                f"{stock['total'] / ours['total']:.0f}x |"
            )
    lines += ["", f"Our fit: {rows[-1][1]['detail']} (n = {rows[-1][0]})."]
    table = "\n".join(lines) + "\n"
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
