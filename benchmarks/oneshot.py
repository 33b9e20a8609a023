"""Benchmark: one-shot estimates and gradient-based search on cell tasks.

Three commands; each keeps its raw results in ``benchmarks/results/oneshot_*.json`` (reruns reuse
what is there: a standalone training is never repeated) and rewrites the generated tables of
``benchmarks/results/oneshot.md``::

    OMP_NUM_THREADS=1 python benchmarks/oneshot.py rank --task digits-cell --n 40
    OMP_NUM_THREADS=1 python benchmarks/oneshot.py rank --task benchmarks/tasks/mnist1d-cell.toml --n 40
    OMP_NUM_THREADS=1 python benchmarks/oneshot.py search --task digits-cell --seeds 5

1. **rank**: a fixed random sample of ``n`` cells of the task's space (seeded, recorded in the
   JSON; cells whose output ignores the input, i.e. no live path, are left out: ranking them last
   is trivial) is trained from scratch (the task's ``[training]``, seed 0). Kendall tau and
   Spearman rho between that standalone validation accuracy and each estimate: the SPOS
   supernet's (``--supernet-epochs``, uniform single paths), the same with BatchNorm
   recalibrated on each path, and the cheapest fidelity at equal compute (each cell trained
   ``round(supernet_epochs / n)`` epochs, at least 1: the same number of single-path epochs as
   the supernet). ``--supernet-seeds`` supernets give mean +- standard error.
2. **search**: per seed, from-scratch regularized evolution (``--evo-budget`` trained trials),
   DARTS and GDAS (the derived cell retrained; ``--budget 1``) and SPOS + evolution
   (``--estimator oneshot``, ``--oneshot-budget`` estimates, the best 3 retrained), each a real
   ``nasw`` search in a temporary store; reported: the test accuracy of the search's best trial
   (a retrained one for the one-shot searches) and the search's wall-clock, mean +- SE.
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
RESULTS = ROOT / "benchmarks" / "results"
PAGE = RESULTS / "oneshot.md"
SAMPLE_SEED = 2024


def _slug(task: str) -> str:
    return Path(task).stem


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def mean_se(xs: list[float]) -> tuple[float, float]:
    xs = [float(x) for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return float("nan"), float("nan")
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def _fmt(m: float, se: float, digits: int = 3) -> str:
    if not math.isfinite(m):
        return "-"
    return f"{m:.{digits}f}" + (f" +- {se:.{digits}f}" if math.isfinite(se) else "")


def _machine() -> str:
    import torch

    return f"{platform.node()} ({os.cpu_count()} CPUs, torch {torch.__version__}, {time.strftime('%Y-%m-%d')})"


# -- 1. ranking quality ---------------------------------------------------------------------------
def sample_cells(space: Any, n: int, seed: int = SAMPLE_SEED) -> list[Any]:
    """``n`` distinct cells with a live input -> output path, in sampling order."""
    import numpy as np

    from workbench.space.cell import canonical_ops

    rng = np.random.default_rng(seed)
    out, keys = [], set()
    while len(out) < n:
        g = space.sample(rng)
        if g.key in keys or all(op == "none" for op in canonical_ops(space.ops_of(g))):
            continue
        keys.add(g.key)
        out.append(g)
    return out


def rank(args: argparse.Namespace) -> None:
    from scipy.stats import kendalltau, spearmanr

    from workbench.evaluate.factory import evaluator_for, space_for
    from workbench.oneshot.estimator import OneShotEstimator
    from workbench.oneshot.settings import SupernetSettings
    from workbench.oneshot.train import SupernetTrainer
    from workbench.task import load_task

    task = load_task(args.task)
    space, ev = space_for(task), evaluator_for(task, device=args.device)
    path = RESULTS / f"oneshot_rank_{_slug(args.task)}.json"
    data = _load(path)
    cells = sample_cells(space, args.n)
    data.update(task=task.name, sample_seed=SAMPLE_SEED, cells=[g.to_json() for g in cells])
    standalone = data.setdefault("standalone", {})
    deadline = time.perf_counter() + args.time_limit if args.time_limit else None
    for i, g in enumerate(cells):
        if g.key in standalone:
            continue
        if deadline is not None and time.perf_counter() > deadline:
            print("time limit: standalone trainings cut short", flush=True)
            break
        r = ev.evaluate(g, seed=0)
        standalone[g.key] = {k: r.metrics[k] for k in ("val_accuracy", "test_accuracy", "train_seconds")}
        print(f"standalone {i + 1}/{len(cells)} {space.describe(g)}: val {r.metrics['val_accuracy']:.4f}", flush=True)
        _save(path, data)
    done = [g for g in cells if g.key in standalone]
    truth = [standalone[g.key]["val_accuracy"] for g in done]
    settings = SupernetSettings.read("spos", {"epochs": args.supernet_epochs}).resolved(ev.config)
    epochs = int(settings.epochs)  # default: the estimator's (4x the task's epochs)
    low_epochs = max(1, round(epochs / max(1, len(cells))))
    low = data.setdefault("low_fidelity", {}).setdefault(str(low_epochs), {})
    for g in done:
        if g.key not in low:
            from dataclasses import replace

            ev.config, cfg = replace(ev.config, epochs=low_epochs), ev.config
            try:
                r = ev.evaluate(g, seed=0)
            finally:
                ev.config = cfg
            low[g.key] = {"val_accuracy": r.metrics["val_accuracy"], "train_seconds": r.metrics["train_seconds"]}
    _save(path, data)
    runs = data.setdefault("spos", {}).setdefault(str(epochs), {})
    for seed in range(args.supernet_seeds):
        if str(seed) in runs and all(g.key in runs[str(seed)]["plain"] for g in done):
            continue
        trainer = SupernetTrainer(ev.splits, ev.config, space.macro, settings, seed=seed)
        t0 = time.perf_counter()
        res = trainer.run()
        row: dict[str, Any] = {"supernet_seconds": time.perf_counter() - t0}
        for label, bn in (("plain", False), ("bn", True)):
            est = OneShotEstimator(ev, bn_recalibrate=bn)
            est.attach(res.supernet)
            t1 = time.perf_counter()
            row[label] = {g.key: est.evaluate(g).metrics["val_accuracy"] for g in done}
            row[f"{label}_seconds"] = time.perf_counter() - t1
        runs[str(seed)] = row
        _save(path, data)
        print(f"spos {epochs} epochs seed {seed}: {row['supernet_seconds']:.0f} s", flush=True)

    again = data.setdefault("standalone_seed1", {})
    if args.repeat:
        for i, g in enumerate(done):
            if g.key not in again:
                r = ev.evaluate(g, seed=1)
                again[g.key] = {k: r.metrics[k] for k in ("val_accuracy", "test_accuracy", "train_seconds")}
                print(f"standalone seed 1 {i + 1}/{len(done)}: val {r.metrics['val_accuracy']:.4f}", flush=True)
                _save(path, data)

    def corr(scores: list[float]) -> tuple[float, float]:
        return float(kendalltau(truth, scores)[0]), float(spearmanr(truth, scores)[0])

    table = []
    for label, name in (("plain", "SPOS supernet"), ("bn", "SPOS supernet, BN recalibrated")):
        taus, rhos = [], []
        for row in runs.values():
            t, r = corr([row[label][g.key] for g in done])
            taus.append(t)
            rhos.append(r)
        table.append((name, mean_se(taus), mean_se(rhos), len(runs)))
    t, r = corr([low[g.key]["val_accuracy"] for g in done])
    table.append((f"trained {low_epochs} epoch(s) each (equal compute)", (t, float("nan")), (r, float("nan")), 1))
    if all(g.key in again for g in done):
        t, r = corr([again[g.key]["val_accuracy"] for g in done])
        table.append(("standalone again, training seed 1 (noise ceiling)", (t, float("nan")), (r, float("nan")), 1))
    data["summary"] = {
        "n": len(done),
        "supernet_epochs": epochs,
        "rows": [{"estimate": n, "tau": tau, "rho": rho, "runs": k} for n, tau, rho, k in table],
        "standalone_range": [min(truth), max(truth)],
        "standalone_seconds": sum(standalone[g.key]["train_seconds"] for g in done),
        "supernet_seconds": statistics.fmean(row["supernet_seconds"] for row in runs.values()),
        "machine": _machine(),
    }
    _save(path, data)
    print(f"\n{task.name}: {len(done)} cells, standalone val accuracy {min(truth):.3f} .. {max(truth):.3f}")
    for n, tau, rho, k in table:
        print(f"  {n:55s} tau {_fmt(*tau)}  rho {_fmt(*rho)}  ({k} run(s))")
    write_page()


# -- 2. search comparison -------------------------------------------------------------------------
SEARCHES = {
    "evolution": lambda a: ["--strategy", "evolution", "--budget", str(a.evo_budget)],
    # from-scratch evolution training as many proposals as SPOS + evolution scores
    "evolution-100": lambda a: ["--strategy", "evolution", "--budget", "100"],
    "darts": lambda a: ["--strategy", "darts", "--budget", "1"],
    "gdas": lambda a: ["--strategy", "gdas", "--budget", "1"],
    "spos+evolution": lambda a: [
        "--strategy",
        "evolution",
        "--estimator",
        "oneshot",
        "--budget",
        str(a.oneshot_budget),
        "--option",
        "retrain_top=3",
    ],
}


def one_search(task: str, method: str, seed: int, argv: list[str], store: str) -> dict[str, Any]:
    """One ``nasw search`` in this process; its best trial's metrics and its wall-clock."""
    import contextlib
    import io

    from workbench.cli import main

    cmd = ["search", "--task", task, "--seed", str(seed), "--store", store, "--json", "--quiet", *argv]
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(cmd)
        except SystemExit as exc:
            if exc.code:
                raise RuntimeError(f"nasw {' '.join(cmd)} exited {exc.code}") from None
    seconds = time.perf_counter() - t0
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    best = result.get("best") or {}
    return {
        "method": method,
        "seed": seed,
        "seconds": seconds,
        "n_trials": result["n_trials"],
        "val_accuracy": (best.get("metrics") or {}).get("val_accuracy"),
        "test_accuracy": (best.get("metrics") or {}).get("test_accuracy"),
        "genotype": best.get("genotype"),
        "search_id": result["search_id"],
    }


def search(args: argparse.Namespace) -> None:
    import tempfile

    path = RESULTS / f"oneshot_search_{_slug(args.task)}.json"
    data = _load(path)
    runs = data.setdefault("runs", [])
    have = {(r["method"], r["seed"]) for r in runs}
    methods = [m for m in args.methods.split(",") if m]
    deadline = time.perf_counter() + args.time_limit if args.time_limit else None
    with tempfile.TemporaryDirectory(prefix="nasw-oneshot-bench-") as tmp:
        for seed in range(args.seeds):
            for method in methods:
                if (method, seed) in have:
                    continue
                if deadline is not None and time.perf_counter() > deadline:
                    print("time limit: searches cut short", flush=True)
                    break
                store = f"sqlite:///{tmp}/{method}-{seed}.db"
                row = one_search(args.task, method, seed, SEARCHES[method](args), store)
                runs.append(row)
                _save(path, {**data, "task": args.task, "settings": vars(args) | {"func": None}})
                print(f"{method} seed {seed}: test {row['test_accuracy']:.4f} in {row['seconds']:.0f} s", flush=True)
    summary = {}
    for method in [m for m in SEARCHES if any(r["method"] == m for r in runs)]:
        rows = [r for r in runs if r["method"] == method]
        summary[method] = {
            "n": len(rows),
            "test": mean_se([r["test_accuracy"] for r in rows]),
            "val": mean_se([r["val_accuracy"] for r in rows]),
            "seconds": mean_se([r["seconds"] for r in rows]),
        }
    data.update(task=args.task, summary=summary, machine=_machine())
    _save(path, data)
    for method, s in summary.items():
        print(f"  {method:16s} n={s['n']}  test {_fmt(*s['test'])}  wall-clock {_fmt(*s['seconds'], 0)} s")
    write_page()


# -- the page -------------------------------------------------------------------------------------
BEGIN, END = "<!-- generated: begin -->", "<!-- generated: end -->"


def generated_tables() -> str:
    lines = []
    for path in sorted(RESULTS.glob("oneshot_rank_*.json")):
        s = _load(path).get("summary")
        if not s:
            continue
        lo, hi = s["standalone_range"]
        lines += [
            f"### Ranking: {_load(path)['task']} ({s['n']} cells, standalone val accuracy {lo:.3f} .. {hi:.3f})",
            "",
            f"SPOS supernet: {s['supernet_epochs']} epochs, {s['supernet_seconds']:.0f} s; the {s['n']} standalone "
            f"trainings: {s['standalone_seconds']:.0f} s. Measured on {s['machine']}.",
            "",
            "| estimate | Kendall tau | Spearman rho | runs |",
            "|---|---|---|---|",
        ]
        for row in s["rows"]:
            lines.append(f"| {row['estimate']} | {_fmt(*row['tau'])} | {_fmt(*row['rho'])} | {row['runs']} |")
        lines.append("")
    for path in sorted(RESULTS.glob("oneshot_search_*.json")):
        d = _load(path)
        if not d.get("summary"):
            continue
        lines += [
            f"### Search: {d['task']} (mean +- SE over seeds; measured on {d.get('machine', '?')})",
            "",
            "| search | seeds | test accuracy of the best trial | val accuracy | wall-clock (s) |",
            "|---|---|---|---|---|",
        ]
        for method, s in d["summary"].items():
            lines.append(
                f"| {method} | {s['n']} | {_fmt(*s['test'], 4)} | {_fmt(*s['val'], 4)} | {_fmt(*s['seconds'], 0)} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_page() -> None:
    text = PAGE.read_text() if PAGE.exists() else f"# One-shot estimates and gradient-based search\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    PAGE.write_text(f"{head}{BEGIN}\n{generated_tables()}\n{END}{tail}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rank", help="ranking quality of one-shot estimates")
    r.add_argument("--task", default="digits-cell")
    r.add_argument("--n", type=int, default=40)
    r.add_argument("--supernet-epochs", type=int, default=None, help="default: the estimator's (4x the task's)")
    r.add_argument("--supernet-seeds", type=int, default=3)
    r.add_argument("--repeat", action="store_true", help="train the sample again with seed 1 (the noise ceiling)")
    r.add_argument("--device", default="cpu")
    r.add_argument("--time-limit", type=float, default=None, help="seconds for the standalone trainings")
    r.set_defaults(func=rank)
    s = sub.add_parser("search", help="DARTS, GDAS, SPOS + evolution against from-scratch evolution")
    s.add_argument("--task", default="digits-cell")
    s.add_argument("--seeds", type=int, default=5)
    s.add_argument("--methods", default="evolution,darts,gdas,spos+evolution", help=f"some of {', '.join(SEARCHES)}")
    s.add_argument("--evo-budget", type=int, default=20)
    s.add_argument("--oneshot-budget", type=int, default=100)
    s.add_argument("--time-limit", type=float, default=None)
    s.set_defaults(func=search)
    w = sub.add_parser("page", help="rewrite the page's generated tables from the JSON results")
    w.set_defaults(func=lambda a: write_page())
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
