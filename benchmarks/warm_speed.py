"""Speed of warm-started BO: fit plus one ask with 1,000 source and 50 target observations.

The data: 50 random architectures of the target dataset (``--target``, photo) and 1,000 source
observations spread over five other NAS-Bench-Graph datasets (200 random architectures each), by
validation accuracy; every ask scores the full pool (26,206 architectures less the evaluated
ones). Side by side, in one process with the same torch thread count:

* **ours** (``rgpe`` and ``mtgp``): ``BayesianOptimization(sources=..., transfer=...)`` told the
  50 target observations. *First ask*: everything, including the one-off source work (RGPE: one
  GP per source; MTGP: the data kernel and the sources' task covariance), which never happens
  again in a search. *Fit + one ask*: a later ask after one more observation (what every ask of
  a search costs: the target's part of the model, then LogEI over the pool), median of
  ``--repeats``.
* **stock**: BoTorch's ``MultiTaskGP`` (target task first, outcomes standardised per task, default
  priors, likelihood and ``PositiveIndexKernel``), ``fit_gpytorch_mll`` with default settings,
  and ``LogExpectedImprovement`` over the same pool (in chunks of 2,048 to bound memory).

Prints a Markdown table and writes ``benchmarks/results/warm_speed.md`` (and ``.json``). The stock
fit takes the better part of an hour on a loaded 2-core machine; ``--stock-from FILE`` reuses
a stock measurement saved by an earlier run (``benchmarks/results/warm_speed_stock.json``, written
whenever the stock runs) and says so in the table.

Usage::

    python benchmarks/warm_speed.py                   # photo, 1,000 + 50, 1 thread, with the stock model
    python benchmarks/warm_speed.py --stock-from benchmarks/results/warm_speed_stock.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
SOURCES = ("computers", "arxiv", "cs", "physics", "pubmed")


def make_data(target: str, n_target: int, n_source: int, sources: tuple[str, ...], seed: int = 0):
    """Target observations and ``(task, genotypes, values, weight)`` sources (random architectures)."""
    from workbench.evaluate.tabular import table_arrays
    from workbench.space.nbgraph import NBGraphSpace
    from workbench.strategy.base import Observation, WarmSource

    space = NBGraphSpace(target)
    pool = space.pool()
    vals = table_arrays(target).val_accuracy
    idx = np.random.default_rng(seed).choice(len(pool), n_target, replace=False)
    obs = [Observation(pool[i], float(vals[i])) for i in idx]
    per = n_source // len(sources)
    raw = []
    for j, ds in enumerate(sources):
        sidx = np.random.default_rng([seed, j + 1]).choice(len(pool), per, replace=False)
        raw.append(WarmSource(f"nbgraph-{ds}", tuple(pool[i] for i in sidx), table_arrays(ds).val_accuracy[sidx], 0.5))
    return space, obs, raw, idx


def time_ours(space, obs, raw, transfer: str, repeats: int) -> dict:
    from workbench.evaluate.tabular import table_arrays
    from workbench.strategy.base import Observation
    from workbench.strategy.bo.strategy import BayesianOptimization

    vals = table_arrays(space.dataset).val_accuracy
    # hedge=0: every ask uses the multi-task model (the default hedge turns every second ask over to
    # cold BO's model, which is cheaper still)
    s = BayesianOptimization(space, seed=0, sources=raw, transfer=transfer, hedge=0)
    s.tell(obs)
    t0, c0 = time.perf_counter(), time.process_time()
    (p,) = s.ask(1)
    first = time.perf_counter() - t0
    first_cpu = time.process_time() - c0
    info = dict(s.last_ask)
    first_pick = space.index_of(p.genotype)
    totals, fits, acqs, cpus = [], [], [], []
    for _ in range(repeats):
        s.tell([Observation(p.genotype, float(vals[space.index_of(p.genotype)]))])
        t0, c0 = time.perf_counter(), time.process_time()
        (p,) = s.ask(1)
        totals.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        fits.append(s.last_ask["fit_s"])
        acqs.append(s.last_ask["acq_s"])
    return {
        "model": f"ours: {transfer}",
        "setup": info["setup_s"],
        "first": first,
        "fit": statistics.median(fits),
        "acq": statistics.median(acqs),
        "total": statistics.median(totals),
        "pick": first_pick,
        "cpu": statistics.median(cpus),
        "first_cpu": first_cpu,
        "weights": {k.removeprefix("nbgraph-"): round(v, 2) for k, v in s.source_weights().items()},
        "source_fits": s._transfer.source_fits,
    }


def time_stock(space, obs, raw, chunk: int = 2048) -> dict:
    """BoTorch MultiTaskGP + fit_gpytorch_mll defaults + LogEI over the pool."""
    from botorch.acquisition.analytic import LogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import MultiTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    torch.manual_seed(0)  # the stock task kernel starts from torch.randn
    pool_x = torch.as_tensor(np.array(space.pool_encoding("onehot")), dtype=torch.float64)
    xs, ys = [], []
    groups = [(0, [o.genotype for o in obs], np.array([o.value for o in obs]))]
    groups += [(t + 1, s.genotypes, np.asarray(s.values, dtype=float)) for t, s in enumerate(raw)]
    for task, gs, v in groups:
        x = pool_x[[space.index_of(g) for g in gs]]
        xs.append(torch.cat([x, torch.full((len(gs), 1), float(task), dtype=torch.float64)], 1))
        ys.append(torch.as_tensor((v - v.mean()) / v.std(), dtype=torch.float64))  # per task
    train_x, train_y = torch.cat(xs), torch.cat(ys)[:, None]
    t0, c0 = time.perf_counter(), time.process_time()
    model = MultiTaskGP(train_x, train_y, task_feature=-1, output_tasks=[0])
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    fit_gpytorch_mll(mll)
    fit = time.perf_counter() - t0
    mask = np.ones(len(pool_x), dtype=bool)
    mask[[space.index_of(o.genotype) for o in obs]] = False
    cand = torch.cat([pool_x[mask], torch.zeros(int(mask.sum()), 1, dtype=torch.float64)], 1)
    t1 = time.perf_counter()
    acq = LogExpectedImprovement(model, best_f=float(ys[0].max()))
    with torch.no_grad():
        scores = torch.cat([acq(cand[i : i + chunk].unsqueeze(-2)) for i in range(0, len(cand), chunk)])
    acq_s = time.perf_counter() - t1
    cpu = time.process_time() - c0
    pick = int(np.flatnonzero(mask)[int(torch.argmax(scores))])
    return {
        "model": "stock: MultiTaskGP + fit_gpytorch_mll + LogEI",
        "setup": 0.0,
        "first": fit + acq_s,
        "fit": fit,
        "acq": acq_s,
        "total": fit + acq_s,
        "pick": pick,
        "cpu": cpu,
        "first_cpu": cpu,
    }


def render(rows: list[dict], meta: dict) -> str:
    from scipy.stats import rankdata

    from workbench.evaluate.tabular import table_arrays

    vals = table_arrays(meta["target"]).val_accuracy
    pct = rankdata(vals) / len(vals)
    lines = [
        "# Warm-started BO: fit + one ask, 1,000 source + 50 target observations, full NAS-Bench-Graph pool",
        "",
        f"Target {meta['target']} (50 random architectures), sources {', '.join(meta['sources'])} "
        f"({meta['n_source'] // len(meta['sources'])} random architectures each), one-hot encoding (45 columns), "
        f"{meta['candidates']} candidates per ask. torch {torch.__version__}, {meta['threads']} thread(s), "
        f"{platform.machine()}, {os.cpu_count()} cores; load average {meta['load_before']:.1f} before, "
        f"{meta['load_after']:.1f} after (a shared machine: absolute times are inflated, compare side by side).",
        "",
        "| model | one-off source work (s) | fit (s) | LogEI over the pool (s) | **fit + one ask (s)** | CPU (s) | "
        "first ask incl. one-off (s) | pick (target percentile) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu = f"{r['cpu']:.3f}" if r.get("cpu") is not None else "-"
        lines.append(
            f"| {r['model']} | {r['setup']:.2f} | {r['fit']:.3f} | {r['acq']:.3f} | **{r['total']:.3f}** | {cpu} | "
            f"{r['first']:.2f} | {pct[r['pick']]:.3f} |"
        )
    stock = next((r for r in rows if r["model"].startswith("stock")), None)
    lines.append("")
    for r in rows:
        if r["model"].startswith("ours"):
            lines.append(
                f"- {r['model']}: fit + one ask {r['total']:.3f} s "
                f"({'meets' if r['total'] <= 1.0 else 'MISSES'} the 1 s target); source fits over the run: "
                f"{r['source_fits']}; final trust {r['weights']}"
                + (
                    f"; stock / ours = {stock['total'] / r['total']:.0f}x per ask, "
                    f"{stock['total'] / r['first']:.0f}x counting the one-off source work"
                    if stock
                    else ""
                )
            )
    if stock is None:
        lines.append("- stock not run (--skip-stock)")
    elif stock.get("from"):
        lines.append(
            f"- the stock row is from an earlier run of this script on the same data ({stock['from']}); "
            "compare with the ours rows of that same run, measured under the same load:"
        )
        for r in meta.get("ours_same_run", []):
            lines.append(
                f"  - {r['model']} then: fit + one ask {r['total']:.3f} s, first ask incl. one-off {r['first']:.2f} s; "
                f"stock / ours = {stock['total'] / r['total']:.0f}x per ask, "
                f"{stock['total'] / r['first']:.0f}x counting the one-off source work"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="photo")
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--n-target", type=int, default=50)
    ap.add_argument("--n-source", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-stock", action="store_true")
    ap.add_argument("--stock-from", default=None, help="reuse the stock row saved in this JSON file")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    space, obs, raw, _ = make_data(args.target, args.n_target, args.n_source, sources)
    # warm-up outside the timings: pool features, imports
    import botorch.acquisition.analytic  # noqa: F401
    import scipy.special  # noqa: F401
    import scipy.stats  # noqa: F401

    from workbench.strategy.bo.strategy import BayesianOptimization

    BayesianOptimization(space).full_pool.features()
    rows = [time_ours(space, obs, raw, t, args.repeats) for t in ("rgpe", "mtgp")]
    for r in rows:
        print(r, flush=True)
    if args.stock_from:
        saved = json.loads(Path(args.stock_from).read_text())
        rows.append({**saved["row"], "from": saved.get("note", args.stock_from)})
        ours_same_run = saved.get("ours_same_run", [])
    elif not args.skip_stock:
        rows.append(time_stock(space, obs, raw))
        print(rows[-1], flush=True)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "warm_speed_stock.json").write_text(
            json.dumps(
                {
                    "row": rows[-1],
                    "ours_same_run": rows[:-1],
                    "note": f"measured {time.strftime('%Y-%m-%d %H:%M')}, "
                    f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} at the end",
                },
                indent=1,
                default=str,
            )
        )
    meta = {
        "ours_same_run": locals().get("ours_same_run", []),
        "target": args.target,
        "sources": sources,
        "n_source": args.n_source,
        "threads": args.threads,
        "candidates": len(space.pool()) - args.n_target,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    text = render(rows, meta)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "warm_speed.md").write_text(text)
    (out / "warm_speed.json").write_text(json.dumps({"rows": rows, "meta": meta}, default=str, indent=1))


if __name__ == "__main__":
    main()
