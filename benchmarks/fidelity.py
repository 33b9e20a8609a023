"""Benchmark: cheaper evaluation (successive halving, Hyperband, learning-curve stopping) against
full-fidelity search.

One command prints the tables and writes ``benchmarks/results/fidelity.md`` (and a plot)::

    python benchmarks/fidelity.py            # modest default: ~10-15 minutes on 2 busy CPU cores
    python benchmarks/fidelity.py --full     # the tasks' own spaces and epochs, 5 seeds, 27 trials

On ``mnist1d`` and ``mnist5k`` (their task files, by default with a smaller space and ``E``
epochs so that it runs in minutes; ``--full`` keeps their spaces and training settings):

1. **Searches**, for every seed, with random proposals (``--strategy``):

   * ``full``: ``N`` trials trained for the full ``E`` epochs;
   * ``sh`` / ``hyperband``: ``--scheduler sh|hyperband`` over epochs ``e0 .. E`` (eta 3; ``e0``
     is the cheapest rung of the task file's ``[fidelity]`` table: 3 for mnist1d, 1 for mnist5k),
     with a budget of ``N / 3`` full-fidelity-equivalent trainings (a third of the full search's);
   * ``bohb``: BO proposals under ``sh``, the same budget;
   * ``lc``: ``N`` full trials with ``--stop-early lc``;
   * optional (``--schemes``): ``asha`` (one worker here).

   Reported per scheme (mean +- standard error over seeds): the validation and test accuracy
   of the chosen architecture (the best full-fidelity trial by validation accuracy) as found
   and **retrained** from scratch for ``E`` epochs with one fixed seed (the architecture
   choice, free of how the scheme trained it), the total training compute (sum of
   ``train_seconds``, and full-training equivalents), trials, wall-clock, and the full
   search's test accuracy *at the same compute* (its best-so-far when it had trained as long
   as the scheme did in all: the equal-wall-clock comparison).
2. **The learning-curve rule offline**: every full curve the ``full`` searches recorded is
   replayed through :class:`~workbench.evaluate.curves.LCStopRule` in ``--lc-orders`` random
   orders (the incumbent is the best curve completed so far, as in a search). Reported: the
   fraction of curves ending below the median that the rule stops (target >= 1/2) and of the
   top-10% curves it stops (target < 1/20), and the epochs it saves.

``--time-limit`` writes what finished by then.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _jobs import in_order  # noqa: E402  benchmarks/_jobs.py

SCHEMES = ("full", "sh", "hyperband", "bohb", "lc")
QUICK_SPACE = {
    "mnist1d": {"kind": "chain", "max_layers": 4, "kernels": [3, 5], "widths": [16, 32], "dense_widths": [64]},
    "mnist5k": {"kind": "chain", "max_layers": 3, "kernels": [3, 5], "widths": [4, 8], "dense_widths": [32]},
}
#: Quick mode trains mnist5k at 14 x 14 (a fixed fidelity: every scheme's "full" training).
QUICK_FIXED = {"mnist5k": {"resolution": 0.5}}


def bench_task(name: str, epochs: int | None, quick: bool):
    """The task as benchmarked: its file, with ``E`` epochs and the fidelity range ``1 .. E``."""
    from workbench.task import load_task, parse_task_dict

    d = load_task(name).to_dict()
    if epochs:
        d["training"] = {**d["training"], "epochs": int(epochs)}
    if quick:
        d["space"] = QUICK_SPACE[name]
    e = int(d["training"].get("epochs", 20))
    low = d.get("fidelity", {}).get("epochs", [1, e])  # the task file's cheapest rung, within 1 .. E
    low = min(int(low[0] if isinstance(low, list) else low), e)
    d["fidelity"] = {"epochs": [low, e], "eta": 3, **(QUICK_FIXED.get(name, {}) if quick else {})}
    d.pop("metric", None)
    return parse_task_dict(d)


CHEAP_FRACTION = 1 / 3  # the cheap schemes' budget, as a fraction of the full search's trials


def run_search(
    task, scheme: str, trials: int, seed: int, strategy: str, fraction: float = CHEAP_FRACTION
) -> dict[str, Any]:
    """One search of a scheme; what it found and what it cost."""
    from metastore import open_store
    from workbench.search import is_full, new_search

    store = open_store("memory://")
    kw: dict[str, Any] = {}
    budget: float = trials
    if scheme in ("sh", "hyperband", "asha", "bohb"):
        kw["scheduler"] = "sh" if scheme == "bohb" else scheme
        budget = max(1.0, trials * fraction)
        if scheme == "bohb":
            strategy = "bo"
    elif scheme == "lc":
        kw["stop_early"] = "lc"
    t0 = time.perf_counter()
    search = new_search(store, task, strategy, budget, seed, **kw)
    result = search.run()
    wall = time.perf_counter() - t0
    recs = store.trials(result.search_id)
    best = result.best_trial
    # best-so-far (full fidelity, by validation) against cumulative training seconds
    spent, trace, incumbent = 0.0, [], None
    for r in recs:
        spent += float(r.metrics.get("train_seconds", 0.0))
        if (
            r.state == "finished"
            and is_full(r)
            and (incumbent is None or r.metrics["val_accuracy"] > incumbent.metrics["val_accuracy"])
        ):
            incumbent = r
        trace.append((spent, None if incumbent is None else incumbent.metrics["test_accuracy"]))
    curves = [search.fidelity.curve_of(r.trial_id) for r in recs if r.state == "finished" and is_full(r)]
    return {
        "scheme": scheme,
        "seed": seed,
        "wall": wall,
        "trials": len(recs),
        "compute": float(result.summary.get("total_train_seconds", spent)),
        "equivalents": float(result.summary.get("compute_full_equivalents", len(recs))),
        "stopped": int(result.summary.get("n_stopped_early", 0)),
        "val": None if best is None else best.metrics["val_accuracy"],
        "test": None if best is None else best.metrics["test_accuracy"],
        "genotype": None if best is None else best.genotype_json,
        "trace": trace,
        "curves": curves if scheme == "full" else [],
        "evaluator": search.evaluator,
    }


def run_and_retrain(task, scheme: str, trials: int, seed: int, strategy: str, fraction: float) -> dict[str, Any]:
    """A search and the retraining of its choice (one job of ``--jobs``; runs in a worker process)."""
    import torch

    torch.set_num_threads(int(os.environ.get("NASW_BENCH_THREADS", "1")))
    r = run_search(task, scheme, trials, seed, strategy, fraction)
    r["retrained"] = retrain(r.pop("evaluator"), r["genotype"])
    return r


def retrain(evaluator, genotype_json: str | None, seed: int = 12345) -> float | None:
    """Test accuracy of the chosen architecture trained from scratch at full fidelity."""
    if genotype_json is None:
        return None
    from workbench.space.genotype import Genotype

    return float(evaluator.evaluate(Genotype.from_json(genotype_json), seed=seed).metrics["test_accuracy"])


def at_compute(trace: list[tuple[float, float | None]], seconds: float) -> float | None:
    """The best-so-far test accuracy of a trace once ``seconds`` of training were spent."""
    out = None
    for spent, test in trace:
        if spent > seconds + 1e-9:
            break
        out = test
    return out


def lc_offline(curves: list[list[float]], orders: int, seed: int = 0, **rule_options: Any) -> dict[str, float]:
    """Replay full curves through the stop rule in random orders (see the module docstring)."""
    import numpy as np

    from workbench.evaluate.curves import LCStopRule, replay_stop_epoch

    curves = [list(c) for c in curves if len(c) >= 3]
    n = len(curves)
    if n < 4:
        return {}
    finals = np.asarray([c[-1] for c in curves])
    median = float(np.median(finals))
    top_cut = float(np.quantile(finals, 0.9))
    below = [i for i in range(n) if finals[i] < median]
    top = [i for i in range(n) if finals[i] >= top_cut]
    rng = np.random.default_rng(seed)
    stopped_below, stopped_top, judged_below, judged_top, saved, total = 0, 0, 0, 0, 0, 0
    for _ in range(orders):
        incumbent = None
        population: list[float] = []
        for i in rng.permutation(n):
            c = curves[i]
            total += len(c)
            if incumbent is None:
                incumbent = i
                population.append(c[-1])
                continue
            rule = LCStopRule(
                target_epoch=len(c),
                incumbent=curves[incumbent][-1],
                incumbent_curve=curves[incumbent],
                population=list(population),
                **rule_options,
            )
            d = replay_stop_epoch(c, rule)
            population.append(c[-1] if d is None else d.predicted)
            judged_below += i in below
            judged_top += i in top
            if d is not None:
                stopped_below += i in below
                stopped_top += i in top
                saved += len(c) - d.epoch
            elif c[-1] > curves[incumbent][-1]:
                incumbent = i
    return {
        "curves": n,
        "orders": orders,
        "below_median_stopped": stopped_below / max(1, judged_below),
        "top10_stopped": stopped_top / max(1, judged_top),
        "top10_judged": judged_top,
        "below_judged": judged_below,
        "epochs_saved": saved / max(1, total),
    }


def mean_se(values: list[float | None]) -> tuple[float, float, int]:
    v = [x for x in values if x is not None]
    if not v:
        return float("nan"), float("nan"), 0
    if len(v) == 1:
        return v[0], float("nan"), 1
    return statistics.fmean(v), statistics.stdev(v) / math.sqrt(len(v)), len(v)


def fmt(m: float | None, se: float = math.nan, digits: int = 4) -> str:
    if m is None or math.isnan(m):
        return "-"
    return f"{m:.{digits}f}" + ("" if math.isnan(se) else f" +- {se:.{digits}f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="mnist1d,mnist5k")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=15, help="N: trials of the full search (the cheap schemes get N/3)")
    ap.add_argument("--epochs", type=int, default=9, help="E: full training epochs (0: the task file's)")
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--strategy", default="random")
    ap.add_argument("--lc-orders", type=int, default=20)
    ap.add_argument("--full", action="store_true", help="task files' spaces and epochs, 5 seeds, 27 trials")
    ap.add_argument("--jobs", type=int, default=1, help="searches run at once (processes, one torch thread each)")
    ap.add_argument(
        "--cheap-fraction",
        type=float,
        default=CHEAP_FRACTION,
        help="budget of sh/hyperband/bohb in full-training equivalents, as a fraction of N",
    )
    ap.add_argument("--time-limit", type=float, default=None, help="seconds; write what finished by then")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fidelity.md"))
    ap.add_argument(
        "--lc-from",
        default=None,
        metavar="JSON",
        help="only replay the curves saved by an earlier run (fidelity_curves.json) through the LC rule",
    )
    ap.add_argument(
        "--lc-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="LCStopRule setting for the offline replay, e.g. threshold=0.05 (repeatable)",
    )
    args = ap.parse_args(argv)
    rule_options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.lc_option)}
    if args.lc_from:
        saved = json.loads(Path(args.lc_from).read_text())
        for name, curves in saved.items():
            print(name, json.dumps(lc_offline(curves, args.lc_orders, **rule_options)))
        return 0
    if args.full:
        args.seeds, args.trials, args.epochs = max(args.seeds, 5), max(args.trials, 27), 0
    import torch

    torch.set_num_threads(int(os.environ.get("NASW_BENCH_THREADS", "1")))
    start = time.perf_counter()
    deadline = start + args.time_limit if args.time_limit else None
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    rows: dict[str, list[dict[str, Any]]] = {}
    lc: dict[str, dict[str, float]] = {}
    out_of_time = False
    saved_curves: dict[str, list[list[float]]] = {}
    for name in tasks:
        task = bench_task(name, args.epochs or None, quick=not args.full)
        rows[name] = []
        jobs = [(seed, scheme) for seed in range(args.seeds) for scheme in schemes]
        runs = in_order(
            run_and_retrain,
            [(task, scheme, args.trials, seed, args.strategy, args.cheap_fraction) for seed, scheme in jobs],
            args.jobs,
            deadline,
        )
        for (seed, scheme), r in zip(jobs, runs):
            rows[name].append(r)
            print(
                f"{name} seed {seed} {scheme:9s} val {fmt(r['val'])} test {fmt(r['test'])} retrained "
                f"{fmt(r['retrained'])} compute {r['compute']:7.1f} s ({r['equivalents']:.2f} full) "
                f"trials {r['trials']:3d} stopped {r['stopped']:2d} wall {r['wall']:.0f} s",
                flush=True,
            )
        out_of_time = out_of_time or len(rows[name]) < len(jobs)
        curves = [c for r in rows[name] for c in r["curves"]]
        saved_curves[name] = [list(c) for c in curves]
        lc[name] = lc_offline(curves, args.lc_orders, **rule_options)
        lc[name + ":incumbent"] = lc_offline(curves, args.lc_orders, **{**rule_options, "quantile": 1.0})
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).with_name(Path(args.out).stem + "_curves.json").write_text(json.dumps(saved_curves))
        if lc[name]:
            print(
                f"{name} LC rule on {lc[name]['curves']} recorded curves: stops {lc[name]['below_median_stopped']:.2f} "
                f"of below-median, {lc[name]['top10_stopped']:.3f} of top-10%",
                flush=True,
            )
    elapsed = time.perf_counter() - start
    text = report(rows, lc, args, elapsed, out_of_time)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    plot(rows, out.with_suffix(".png"))
    out.with_name(out.stem + "_curves.json").write_text(json.dumps(saved_curves))
    out.with_name(out.stem + "_runs.json").write_text(
        json.dumps(
            {
                name: [{k: v for k, v in r.items() if k not in ("curves", "trace")} for r in rs]
                for name, rs in rows.items()
            },
            indent=1,
        )
    )
    print(f"wrote {out}")
    return 0


def report(
    rows: dict[str, list[dict[str, Any]]], lc: dict[str, dict[str, float]], args: Any, elapsed: float, out_of_time: bool
) -> str:
    lines = ["# Cheaper evaluation: fidelities, successive halving, Hyperband, learning-curve stopping", ""]
    lines += [
        f"`python benchmarks/fidelity.py {' '.join(sys.argv[1:])}`".replace("  ", " "),
        "",
        f"Tasks {', '.join(rows)}; seeds {args.seeds}; full search N = {args.trials} trials of "
        f"{'the task files’ epochs' if not args.epochs else f'E = {args.epochs} epochs'}; sh / hyperband / bohb budget "
        f"{max(1.0, args.trials * args.cheap_fraction):g} full-training equivalents (eta 3, epochs from the task file's cheapest rung "
        f"to E, promotions continue from the lower rung's weights; bohb = BO proposals under sh); lc: N trials with "
        f"`--stop-early lc`; proposals: {args.strategy}. "
        f"{'Quick spaces (see QUICK_SPACE; mnist5k trained at 14 x 14 by every scheme). ' if not args.full else ''}"
        f"Ran {elapsed / 60:.1f} min on {platform.machine()} ({os.cpu_count()} CPUs, {args.jobs} searches at once), torch threads "
        f"{os.environ.get('NASW_BENCH_THREADS', '1')}{'; stopped early by --time-limit' if out_of_time else ''}.",
        "",
        "Test accuracy of the chosen architecture (best full-fidelity trial by validation), as found and retrained "
        "from scratch for E epochs (seed 12345); compute = sum of train_seconds (and full-training equivalents); "
        "'full @ same compute' = the full search's best-so-far test accuracy after as much training as the scheme "
        "used in all. Mean +- standard error over seeds.",
        "",
    ]
    for name, rs in rows.items():
        lines += [
            f"## {name}",
            "",
            "| scheme | val | test (found) | test (retrained) | compute s | full equiv. | trials | stopped | wall s | full @ same compute |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        full_by_seed = {r["seed"]: r for r in rs if r["scheme"] == "full"}
        summary: dict[str, dict[str, Any]] = {}
        for scheme in dict.fromkeys(r["scheme"] for r in rs):
            sel = [r for r in rs if r["scheme"] == scheme]
            same = [
                at_compute(full_by_seed[r["seed"]]["trace"], r["compute"]) if r["seed"] in full_by_seed else None
                for r in sel
            ]
            stats = {
                k: mean_se([r[k] for r in sel])
                for k in ("val", "test", "retrained", "compute", "equivalents", "trials", "stopped", "wall")
            }
            summary[scheme] = stats
            lines.append(
                f"| {scheme} | {fmt(*stats['val'][:2])} | {fmt(*stats['test'][:2])} | {fmt(*stats['retrained'][:2])} | "
                f"{fmt(*stats['compute'][:2], digits=1)} | {fmt(*stats['equivalents'][:2], digits=2)} | "
                f"{stats['trials'][0]:.1f} | {stats['stopped'][0]:.1f} | {stats['wall'][0]:.0f} | {fmt(*mean_se(same)[:2])} |"
            )
        lines.append("")
        if "full" in summary:
            f_test, f_se, _ = summary["full"]["retrained"]
            f_found, f_found_se, _ = summary["full"]["test"]
            f_comp = summary["full"]["compute"][0]
            f_eq = summary["full"]["equivalents"][0]
            met = []
            for scheme, st in summary.items():
                if scheme == "full":
                    continue
                ratio = st["compute"][0] / f_comp if f_comp else float("nan")
                ratio_eq = st["equivalents"][0] / f_eq if f_eq else float("nan")
                ok_acc = st["retrained"][0] >= f_test - (0 if math.isnan(f_se) else f_se)
                ok_found = st["test"][0] >= f_found - (0 if math.isnan(f_found_se) else f_found_se)
                ok_eq, ok_s = ratio_eq <= 1 / 3 + 1e-9, ratio <= 1 / 3 + 1e-9
                if ok_acc and ok_eq:
                    met.append(f"{scheme} ({'also' if ok_s else 'not'} by measured seconds)")
                lines.append(
                    f"- {scheme}: compute {ratio_eq:.2f} of the full search's in full-training equivalents, {ratio:.2f} in "
                    f"measured train_seconds (target <= 0.33: {'yes' if ok_eq else 'no'} / {'yes' if ok_s else 'no'}); "
                    f"retrained test {st['retrained'][0]:.4f} vs full {f_test:.4f} +- {f_se:.4f} "
                    f"(within one SE or better: {'yes' if ok_acc else 'no'}); as found {st['test'][0]:.4f} vs "
                    f"{f_found:.4f} +- {f_found_se:.4f} ({'yes' if ok_found else 'no'})"
                )
            lines.append(
                f"- target (retrained test within one SE of full, compute <= 1/3 in full-training equivalents) "
                f"met by: {', '.join(met) if met else 'none'}"
            )
            lines.append("")
        if lc.get(name):
            d = lc[name]
            lines += [
                f"Learning-curve rule offline on the {d['curves']} full curves recorded by the full searches, "
                f"{d['orders']} random orders: stops **{d['below_median_stopped']:.2f}** of the curves that end below the median "
                f"(target >= 0.50; {d['below_judged']} judged) and **{d['top10_stopped']:.3f}** of the top-10% curves "
                f"(target < 0.05; {d['top10_judged']} judged); {d['epochs_saved']:.2f} of all epochs saved.",
            ]
            inc = lc.get(name + ":incumbent") or {}
            if inc:
                lines.append(
                    f"Compared with the incumbent itself (`quantile=1`, Domhan et al.'s rule): stops "
                    f"{inc['below_median_stopped']:.2f} of below-median and {inc['top10_stopped']:.3f} of top-10% curves "
                    f"({inc['epochs_saved']:.2f} of epochs saved)."
                )
            lines.append("")
    return "\n".join(lines) + "\n"


def plot(rows: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Best-so-far test accuracy against training compute, seed 0, one panel per task."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return
    fig, axes = plt.subplots(1, max(1, len(rows)), figsize=(5 * max(1, len(rows)), 3.6), squeeze=False)
    for ax, (name, rs) in zip(axes[0], rows.items()):
        for r in rs:
            if r["seed"] != 0:
                continue
            pts = [(s, t) for s, t in r["trace"] if t is not None]
            if pts:
                ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", label=r["scheme"])
        ax.set_title(f"{name} (seed 0)")
        ax.set_xlabel("training compute (s)")
        ax.set_ylabel("best-so-far test accuracy")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
