"""Benchmark: do children that inherit weights through network morphisms need fewer epochs?

One command prints the tables and writes ``benchmarks/results/morphism.md``::

    python benchmarks/morphism.py             # modest default: minutes on a laptop CPU
    python benchmarks/morphism.py --full      # the issue's setting: 10 pairs, full epochs, 30 trials

On ``mnist1d`` and ``digits`` (their task files' spaces and training settings):

1. **Pairs** (parent, morphed child): a random parent is trained from scratch for the full
   budget ``E``; 1-3 random morphism steps give the child. The *target* is the validation
   accuracy the child reaches when trained from scratch for ``E`` epochs. Reported: the epochs
   the child needs to reach the target (a) from scratch (first epoch of the full run at the
   target; and whether a run with a budget of ``E/3`` reaches it), (b) from the inherited
   weights, fine-tuning with budgets 1, 2, 3, 5, 8, ... (each its own cosine schedule; the
   first budget that reaches the target), (c) from weights of the same parent architecture
   trained on *another task* (``mnist5k`` for ``digits``; a noisier MNIST-1D, other generator
   seed, for ``mnist1d``), carried over by shape (input stem and head fresh), then morphed.
   Medians over pairs; a child that never reaches the target counts as ``> E``.
2. **Search**: hill climbing with inheritance (``hillclimb``) against from-scratch regularized
   evolution, the same number of trials: wall-clock time, total epochs trained, and the test
   accuracy of the best trial (chosen by validation accuracy).

``--jobs N`` runs pairs and searches in N processes (each with one thread); ``--device cuda``
trains on the GPU (bf16, channels-last). ``--time-limit`` writes what finished by then.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LADDER = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89)
SOURCE = {"digits": "mnist5k", "mnist1d": "mnist1d-noisy"}


# -- setup (runs in workers) ------------------------------------------------------------------


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _task_and_evaluator(name: str, epochs: int, device: str, sp: tuple[float, float] | None = None):
    """The task (epochs and, if given, shrink and perturb overridden), its space and a trainer
    (``finetune_epochs`` set per run)."""
    from workbench.evaluate.factory import evaluator_for, space_for
    from workbench.task import load_task, parse_task_dict

    task = load_task(name)
    d = task.to_dict()
    d["training"] = {**d["training"], "epochs": int(epochs)}
    if sp is not None:
        d["training"].update(finetune_shrink=float(sp[0]), finetune_perturb=float(sp[1]))
    task = parse_task_dict(d)
    return task, space_for(task), evaluator_for(task, device=device)


def _source_evaluator(name: str, epochs: int, device: str, sp: tuple[float, float] | None = None):
    """The trainer of the other task whose weights are carried over to ``name``."""
    from workbench.data.base import Splits, split_arrays
    from workbench.evaluate.trainer import TrainedEvaluator

    _, _, target = _task_and_evaluator(name, epochs, device, sp)
    cfg = target.config
    if SOURCE[name] == "mnist5k":
        from workbench.data.base import load_splits

        return TrainedEvaluator(load_splits("mnist5k"), cfg)
    import numpy as np
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = 5000, 7
    args.corr_noise_scale, args.iid_noise_scale, args.shear_scale = 0.4, 0.05, 1.0
    d = make_dataset(args)
    splits: Splits = split_arrays(
        "mnist1d-noisy",
        d["x"][:, None, :].astype("float32"),
        d["y"],
        test=0.2,
        valid=0.15,
        seed=0,
        x_test=d["x_test"][:, None, :].astype("float32"),
        y_test=np.asarray(d["y_test"]),
    )
    return TrainedEvaluator(splits, cfg)


def _ladder(full: int) -> list[int]:
    return sorted({b for b in LADDER if b <= full} | {max(1, math.ceil(full / 3)), full})


def _epochs_to_target(ev, g, init_state, target: float, full: int, seed: int) -> dict[str, Any]:
    """Fine-tune from ``init_state`` with budgets 1, 2, 3, 5, ... until the target is reached."""
    base = ev.config
    third = max(1, math.ceil(full / 3))
    out: dict[str, Any] = {"needed": None, "val_at_third": None, "epochs_spent": 0, "runs": {}}
    try:
        for b in _ladder(full):
            ev.config = replace(base, finetune_epochs=b)
            r = ev.evaluate(g, seed=seed, init_state=init_state)
            if r.notes:
                out["note"] = "; ".join(r.notes.values())
            val = r.metrics["val_accuracy"]
            out["runs"][b] = val
            out["epochs_spent"] += b
            if b == third:
                out["val_at_third"] = val
            if val >= target:
                out["needed"] = b
                break
    finally:
        ev.config = base
    return out


def pair_job(
    dataset: str,
    index: int,
    full: int,
    device: str,
    seed: int,
    cross: bool,
    threads: int,
    sp: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Train one (parent, morphed child) pair every way; returns the measurements."""
    import numpy as np
    import torch

    from workbench.evaluate.trainer import accuracy
    from workbench.morph.lineage import inherit_state, morph_child
    from workbench.space.morphs import random_morphisms

    _threads(threads)
    t0 = time.perf_counter()
    task, space, ev = _task_and_evaluator(dataset, full, device, sp)
    shape, n_classes = ev.splits.input_shape, ev.splits.n_classes
    rng = np.random.default_rng([seed, index, zlib.crc32(dataset.encode())])
    for _ in range(1000):
        parent_g = space.sample(rng)
        found = random_morphisms(parent_g, rng, int(rng.integers(1, 4)), space=space, input_shape=shape)
        if found is not None:
            break
    child_g, steps = found
    s = 1000 * index + seed
    parent = ev.evaluate(parent_g, seed=s)
    _, child_state = morph_child(parent_g, parent.state_dict, steps, shape, n_classes, seed=s)
    # function preserved: the morphed child's validation accuracy before any fine-tuning
    net = ev.build(child_g, s)
    net.load_state_dict(child_state)
    data = ev._data()
    with torch.no_grad():
        val0 = accuracy(net.to(ev.device), data["x_val"], data["y_val"], amp=ev.device.type == "cuda")
    scratch = ev.evaluate(child_g, seed=s + 1)
    target = scratch.metrics["val_accuracy"]
    first = next(i + 1 for i, p in enumerate(scratch.curve) if p["val_accuracy"] >= target)
    third = max(1, math.ceil(full / 3))
    ev.config = replace(ev.config, epochs=third)
    scratch_third = ev.evaluate(child_g, seed=s + 1).metrics["val_accuracy"]
    ev.config = replace(ev.config, epochs=full)
    inherited = _epochs_to_target(ev, child_g, child_state, target, full, s + 1)
    out: dict[str, Any] = {
        "dataset": dataset,
        "index": index,
        "full": full,
        "parent": parent_g.spec,
        "steps": [str(x) for x in steps],
        "parent_val": parent.metrics["val_accuracy"],
        "child_val_before_finetune": val0,
        "target": target,
        "scratch_test": scratch.metrics["test_accuracy"],
        "scratch_first_epoch": first,
        "scratch_val_at_third": scratch_third,
        "inherited": inherited,
    }
    if cross:
        src = _source_evaluator(dataset, full, device, sp)
        src_parent = src.evaluate(parent_g, seed=s + 2)
        state, notes = inherit_state(
            parent_g, src_parent.state_dict, steps, child_g, shape, n_classes, other_task=True, seed=s
        )
        out["cross"] = _epochs_to_target(ev, child_g, state, target, full, s + 1)
        out["cross"]["source"] = SOURCE[dataset]
        out["cross"]["source_val"] = src_parent.metrics["val_accuracy"]
        out["cross"]["transfer"] = notes.get("transfer", "")
    out["seconds"] = time.perf_counter() - t0
    return out


def search_job(
    dataset: str,
    strategy: str,
    budget: int,
    full: int,
    device: str,
    seed: int,
    threads: int,
    sp: tuple[float, float] | None = None,
    children: int = 4,
    margin: float | None = None,
    initial: int | None = None,
) -> dict[str, Any]:
    """One search on a memory store; wall-clock and the best trial's test accuracy."""
    from metastore import open_store
    from workbench.search import Search, price_genotypes
    from workbench.strategy.base import StrategySetup
    from workbench.strategy.evolution import RegularizedEvolution
    from workbench.strategy.hillclimb import HillClimb

    _threads(threads)
    task, space, ev = _task_and_evaluator(dataset, full, device, sp)
    if strategy == "hillclimb":
        opts = {} if initial is None else {"initial": initial}
        if margin is not None:  # else the strategy's
            opts["margin"] = margin
        HillClimb.prepare_options(opts, StrategySetup(budget=budget))  # initial as nasw search sets it
        strat = HillClimb(space, seed=seed, input_shape=ev.splits.input_shape, children=children, **opts)
        price_genotypes(strat, ev)
    else:
        strat = RegularizedEvolution(space, seed=seed)
    store = open_store("memory://")
    search = Search(store, task, strat, ev, space, budget, seed=seed)
    search.start({"benchmark": "morphism"})
    t0 = time.perf_counter()
    search.run()
    wall = time.perf_counter() - t0
    trials = store.trials(search.search_id)
    best = search.best_record()
    return {
        "dataset": dataset,
        "strategy": strategy,
        "seed": seed,
        "trials": len(trials),
        "failed": sum(t.state != "finished" for t in trials),
        "inherited": sum(1 for t in trials if "nasw.note.inherited" in t.tags),
        "epochs": sum(t.metrics.get("epochs", 0) for t in trials),
        "train_seconds": sum(t.metrics.get("train_seconds", 0) for t in trials),
        "wall": wall,
        "best_val": best.metrics["val_accuracy"] if best else float("nan"),
        "best_test": best.metrics["test_accuracy"] if best else float("nan"),
        "best_genotype": best.genotype_json if best else "",
        "trial_log": [
            {
                "val": t.metrics.get("val_accuracy"),
                "test": t.metrics.get("test_accuracy"),
                "inherited": "nasw.note.inherited" in t.tags,
                "epochs": t.metrics.get("epochs", 0),
                "train_seconds": t.metrics.get("train_seconds", 0),
                "genotype": t.genotype_json,
            }
            for t in trials
        ],
    }


# -- driver ----------------------------------------------------------------------------------


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _needed(r: dict[str, Any], full: int) -> float:
    return float(r["needed"]) if r["needed"] is not None else math.inf


def _fmt_epochs(x: float, full: int) -> str:
    return f"> {full}" if math.isinf(x) else f"{x:g}"


def pair_table(pairs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| dataset | pairs | E | target val (scratch, E epochs) | child val before fine-tuning = parent val | "
        "scratch: first epoch at target (median) | scratch with E/3 budget reaches target | "
        "inherited: epochs to target (median) | inherited reaches it within E/3 | "
        "other task: epochs to target (median) | other task within E/3 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ds in sorted({p["dataset"] for p in pairs}):
        ps = [p for p in pairs if p["dataset"] == ds]
        full = ps[0]["full"]
        third = max(1, math.ceil(full / 3))
        inh = [_needed(p["inherited"], full) for p in ps]
        same = sum(abs(p["child_val_before_finetune"] - p["parent_val"]) < 1e-9 for p in ps)
        cross = [_needed(p["cross"], full) for p in ps if "cross" in p]
        lines.append(
            f"| {ds} | {len(ps)} | {full} | {_median([p['target'] for p in ps]):.3f} | {same}/{len(ps)} equal | "
            f"{_median([p['scratch_first_epoch'] for p in ps]):g} | "
            f"{sum(p['scratch_val_at_third'] >= p['target'] for p in ps)}/{len(ps)} | "
            f"{_fmt_epochs(_median(inh), full)} | {sum(x <= third for x in inh)}/{len(ps)} | "
            + (
                f"{_fmt_epochs(_median(cross), full)} ({ps[0]['cross']['source']}) | {sum(x <= third for x in cross)}/{len(cross)} |"
                if cross
                else "- | - |"
            )
        )
    return lines


def search_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| dataset | strategy | seeds | trials | inherited | epochs trained | wall-clock s | best val | test acc of best |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ds in sorted({r["dataset"] for r in rows}):
        for strat in ("hillclimb", "evolution"):
            rs = [r for r in rows if r["dataset"] == ds and r["strategy"] == strat]
            if not rs:
                continue
            mean = lambda k: statistics.fmean(r[k] for r in rs)  # noqa: E731, B023 - used in this iteration
            lines.append(
                f"| {ds} | {strat}{' (inheritance)' if strat == 'hillclimb' else ' (from scratch)'} | {len(rs)} | "
                f"{mean('trials'):g} | {mean('inherited'):g} | {mean('epochs'):.0f} | {mean('wall'):.0f} | "
                f"{mean('best_val'):.3f} | {mean('best_test'):.3f} |"
            )
    return lines


def search_details(rows: list[dict[str, Any]]) -> list[str]:
    """Per seed, the two searches side by side, and the paired differences (hill climbing minus
    evolution: test accuracy, and the wall-clock ratio) as mean +- standard error over seeds."""
    from fidelity import mean_se  # benchmarks/fidelity.py

    lines = [
        "## Search details (per seed)",
        "",
        "| dataset | seed | hillclimb s | evolution s | ratio | hillclimb val / test | evolution val / test |",
        "|---|---|---|---|---|---|---|",
    ]
    summary = []
    for ds in sorted({r["dataset"] for r in rows}):
        by = {(r["strategy"], r["seed"]): r for r in rows if r["dataset"] == ds}
        pairs = []
        for s in sorted({s for _, s in by}):  # a seed one strategy ran alone: "-" for the other
            h, e = by.get(("hillclimb", s)), by.get(("evolution", s))
            if h and e:
                pairs.append((s, h, e))
            wall = [f"{r['wall']:.0f}" if r else "-" for r in (h, e)]
            acc = [f"{r['best_val']:.3f} / {r['best_test']:.3f}" if r else "-" for r in (h, e)]
            ratio = f"{h['wall'] / e['wall']:.2f}" if h and e else "-"
            lines.append(f"| {ds} | {s} | {wall[0]} | {wall[1]} | {ratio} | {acc[0]} | {acc[1]} |")
        if pairs:
            rt = mean_se([h["wall"] / e["wall"] for _, h, e in pairs])
            dt = mean_se([h["best_test"] - e["best_test"] for _, h, e in pairs])
            wins = sum(h["best_test"] >= e["best_test"] for _, h, e in pairs)
            summary.append(
                f"| {ds} | {len(pairs)} | {rt[0]:.2f} +- {rt[1]:.2f} | {dt[0]:+.4f} +- {dt[1]:.4f} | "
                f"{wins}/{len(pairs)} |"
            )
    if summary:
        lines += [
            "",
            "Paired over seeds (mean +- standard error): hill climbing's wall-clock as a fraction of "
            "evolution's, its test accuracy minus evolution's, and the seeds where it is at least as accurate.",
            "",
            "| dataset | seeds | wall-clock ratio | test acc difference | at least as accurate |",
            "|---|---|---|---|---|",
            *summary,
        ]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Network morphism / weight inheritance benchmark (issue 6).")
    p.add_argument("--full", action="store_true", help="the issue's setting: 10 pairs, task epochs, 30-trial searches")
    p.add_argument("--datasets", nargs="+", default=["mnist1d", "digits"])
    p.add_argument("--pairs", type=int, default=None, help="pairs per dataset (default 4; --full: 10)")
    p.add_argument(
        "--epochs",
        type=int,
        nargs="*",
        default=None,
        help="full budget E per dataset, in --datasets order (default 12; --full: the task files')",
    )
    p.add_argument("--budget", type=int, default=None, help="trials per search (default 10; --full: 30)")
    p.add_argument("--seeds", type=int, default=1, help="searches per strategy and dataset")
    p.add_argument("--no-cross", action="store_true", help="skip weights from another task")
    p.add_argument("--no-search", action="store_true", help="skip the search comparison")
    p.add_argument("--no-pairs", action="store_true", help="skip the pairs")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--children",
        type=int,
        default=4,
        help="hillclimb: candidate children per proposal, the cheapest is trained (1: the first)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=None,
        help="hillclimb: grow the cheapest trial within this much of the best objective "
        "(default: the strategy's, 0.005)",
    )
    p.add_argument(
        "--initial",
        type=int,
        default=None,
        help="hillclimb: random trials before the climb (default: half the budget, as nasw search sets it)",
    )
    p.add_argument("--raw", default=None, help="also write every search's trials (JSON) here")
    p.add_argument("--strategies", default="evolution,hillclimb", help="searches to run (comma-separated)")
    p.add_argument(
        "--shrink-perturb",
        type=float,
        nargs=2,
        default=None,
        metavar=("SHRINK", "PERTURB"),
        help="override [training] finetune_shrink and finetune_perturb (1 0: fine-tune the exact "
        "morphed weights); default: the task's (0.3 0.1)",
    )
    p.add_argument("--time-limit", type=float, default=None, help="seconds; then write what finished")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "morphism.md"))
    a = p.parse_args(argv)
    n_pairs = a.pairs if a.pairs is not None else (10 if a.full else 4)
    budget = a.budget if a.budget is not None else (30 if a.full else 10)
    epochs: dict[str, int] = {}
    for i, ds in enumerate(a.datasets):
        if a.epochs:
            epochs[ds] = a.epochs[min(i, len(a.epochs) - 1)]
        elif a.full:
            from workbench.task import load_task

            epochs[ds] = int(load_task(ds).training.get("epochs", 20))
        else:
            epochs[ds] = 12
    start = time.perf_counter()
    deadline = None if a.time_limit is None else start + a.time_limit
    jobs: list[tuple[str, tuple]] = []
    sp = None if a.shrink_perturb is None else tuple(a.shrink_perturb)
    if not a.no_search:  # the longest jobs first
        for ds in a.datasets:
            for s in range(a.seeds):
                for strat in a.strategies.split(","):
                    jobs.append(
                        (
                            "search",
                            (
                                ds,
                                strat,
                                budget,
                                epochs[ds],
                                a.device,
                                a.seed + s,
                                a.threads,
                                sp,
                                a.children,
                                a.margin,
                                a.initial,
                            ),
                        )
                    )
    if not a.no_pairs:
        for ds in a.datasets:
            for i in range(n_pairs):
                jobs.append(("pair", (ds, i, epochs[ds], a.device, a.seed, not a.no_cross, a.threads, sp)))
    print(
        f"{len(jobs)} jobs on {a.jobs} worker(s), device {a.device}; E = {epochs}, {n_pairs} pairs, "
        f"{budget}-trial searches",
        flush=True,
    )
    pairs: list[dict[str, Any]] = []
    searches: list[dict[str, Any]] = []
    errors: list[str] = []
    fns = {"pair": pair_job, "search": search_job}

    def take(kind: str, res: dict[str, Any]) -> None:
        (pairs if kind == "pair" else searches).append(res)
        if kind == "pair":
            inh = res["inherited"]["needed"]
            print(
                f"  pair {res['dataset']}#{res['index']}: target {res['target']:.3f}, inherited needs "
                f"{inh if inh is not None else '>' + str(res['full'])} epochs, scratch first {res['scratch_first_epoch']}, "
                f"{res['seconds']:.0f}s",
                flush=True,
            )
        else:
            print(
                f"  search {res['dataset']} {res['strategy']} seed {res['seed']}: {res['wall']:.0f}s, "
                f"best val {res['best_val']:.3f}, test {res['best_test']:.3f}",
                flush=True,
            )

    if a.jobs <= 1:
        for kind, args in jobs:
            if deadline is not None and time.perf_counter() > deadline:
                errors.append(f"time limit: {kind} {args[:2]} not run")
                continue
            take(kind, fns[kind](*args))
    else:
        pool = cf.ProcessPoolExecutor(a.jobs, mp_context=mp.get_context("spawn"))
        futs = {pool.submit(fns[kind], *args): (kind, args) for kind, args in jobs}
        try:
            for fut in cf.as_completed(
                futs, timeout=None if deadline is None else max(1.0, deadline - time.perf_counter())
            ):
                kind, args = futs[fut]
                try:
                    take(kind, fut.result())
                except Exception as exc:  # noqa: BLE001 - report and go on
                    errors.append(f"{kind} {args[:2]}: {type(exc).__name__}: {exc}")
        except cf.TimeoutError:
            left = [futs[f] for f in futs if not f.done()]
            errors += [f"time limit: {kind} {args[:2]} unfinished" for kind, args in left]
            for proc in list(getattr(pool, "_processes", {}).values()):  # stop the workers still training
                proc.terminate()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    total = time.perf_counter() - start
    lines = [
        "# Network morphisms: inherited weights vs training from scratch",
        "",
        f"Command: `python benchmarks/morphism.py {' '.join(argv if argv is not None else sys.argv[1:])}`  ",
        f"Device: {a.device}, {a.jobs} worker(s) x {a.threads} thread(s), {platform.node()} ({os.cpu_count()} CPUs); "
        f"E = {epochs}; {n_pairs} pairs per dataset; {budget}-trial searches x {a.seeds} seed(s); "
        f"inherited weights shrunk and perturbed {'as in the task files' if sp is None else sp}; {total:.0f} s in all.",
        "",
        "## Pairs (parent, morphed child)",
        "",
        "Epochs to reach the validation accuracy the child reaches from scratch with the full budget E. "
        "Inherited / other-task children fine-tune with budgets 1, 2, 3, 5, 8, ... (cosine each), counting "
        "only the child's own epochs; `> E` = not reached within E.",
        "",
        *(pair_table(pairs) if pairs else ["(no pairs)"]),
        "",
        "## Search: hill climbing with inheritance vs from-scratch evolution (same number of trials)",
        "",
        *(search_table(searches) if searches else ["(no searches)"]),
        "",
    ]
    if searches:
        lines += search_details(searches)
    if pairs:
        lines += [
            "## Pair details",
            "",
            "| dataset | # | parent val | steps | target | scratch first | inherited runs (budget: val) | other task runs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(pairs, key=lambda r: (r["dataset"], r["index"])):
            runs = ", ".join(f"{b}: {v:.3f}" for b, v in r["inherited"]["runs"].items())
            cross = ", ".join(f"{b}: {v:.3f}" for b, v in r["cross"]["runs"].items()) if "cross" in r else "-"
            lines.append(
                f"| {r['dataset']} | {r['index']} | {r['parent_val']:.3f} | {'; '.join(r['steps'])} | "
                f"{r['target']:.3f} | {r['scratch_first_epoch']} | {runs} | {cross} |"
            )
        lines.append("")
    if errors:
        lines += ["## Not completed", "", *[f"- {e}" for e in errors], ""]
    text = "\n".join(lines)
    print("\n" + text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")
    if a.raw:
        Path(a.raw).write_text(
            json.dumps({"argv": argv if argv is not None else sys.argv[1:], "searches": searches}, indent=1)
        )
        print(f"trials written to {a.raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
