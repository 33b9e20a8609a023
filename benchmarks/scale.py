"""Scale benchmark: trials per hour with 1, 2 and 4 workers (process pool and Ray), and the
workbench's per-trial overhead against the same trainings in a bare loop.

Run: ``python benchmarks/scale.py`` (about 15 minutes on 2 cores; ``--quick`` for a smoke run).
Prints a table and writes ``benchmarks/results/scale.md``. Run it on an otherwise idle machine:
the numbers are ratios measured side by side in one run.

Trial length: ``--trial-seconds`` (10) sets the epochs so that one trial of the space takes about
that long in the bare loop (calibrated on a few sampled architectures at the start).

Overhead: the in-process search and a bare loop (the evaluator alone, the same genotypes and
training seeds, no store, no strategy) run the same trainings in one process, one after the
other. The per-trial overhead is (search wall - bare wall - once-per-search work) / trials, where
the once-per-search work is the plots and HTML report written to the parent run when the search
ends (timed separately and reported); opening the store is outside both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

LOAD = os.getloadavg()
THREADS = os.environ.get("OMP_NUM_THREADS", "torch default")

TASK = """
name = "scale-digits"
description = "digits, fixed-cost conv nets (scale benchmark)"
kind = "trained"
[dataset]
loader = "digits"
[space]
kind = "chain"
max_layers = 3
kernels = [3]
widths = [64]
dense_widths = [64]
[training]
epochs = {epochs}
batch_size = 64
"""


ONE_OFF = {"seconds": 0.0}


def _time_one_off() -> None:
    """Time the once-per-search artifacts (plots, report) that a finished search writes."""
    from workbench.search import Search

    plot = Search._plot

    def timed(self) -> None:  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        plot(self)
        ONE_OFF["seconds"] += time.perf_counter() - t0

    Search._plot = timed  # type: ignore[method-assign]


def calibrate_epochs(folder: Path, trial_seconds: float, n: int = 4) -> tuple[int, float]:
    """Epochs that make a trial of the space take about ``trial_seconds`` in the bare loop."""
    import numpy as np

    from workbench.evaluate.factory import evaluator_for, space_for
    from workbench.task import load_task

    task = load_task(str(folder / "task.toml"))
    ev, space = evaluator_for(task), space_for(task)
    rng = np.random.default_rng(12345)
    ev.evaluate(space.sample(rng), seed=0)  # warm-up: data loading, first-call costs
    t0 = time.perf_counter()
    for i in range(n):
        ev.evaluate(space.sample(rng), seed=i)
    per_epoch = (time.perf_counter() - t0) / n / task.training.get("epochs", 1)
    return max(1, round(trial_seconds / per_epoch)), per_epoch


def run_search(folder: Path, executor: str, workers: int, trials: int, seed: int = 0) -> tuple[float, list]:
    from metastore import open_store
    from workbench.search import new_search
    from workbench.task import load_task

    uri = f"sqlite:///{folder / f'{executor}-{workers}.db'}"
    store = open_store(uri)
    store.searches()  # the schema exists before the clock starts
    task = load_task(str(folder / "task.toml"))
    t0 = time.perf_counter()
    search = new_search(store, task, "random", trials, seed, executor=executor, workers=workers)
    search.run()
    wall = time.perf_counter() - t0
    trials_rec = store.trials(search.search_id)
    assert len(trials_rec) == trials and all(t.state == "finished" for t in trials_rec), [t.reason for t in trials_rec]
    return wall, trials_rec


def bare_loop(folder: Path, records: list) -> float:
    """The same genotypes and seeds trained by the evaluator directly: no store, no strategy."""
    from workbench.evaluate.factory import evaluator_for
    from workbench.evaluate.trainer import evaluator_seed
    from workbench.space.genotype import Genotype
    from workbench.task import load_task

    ev = evaluator_for(load_task(str(folder / "task.toml")))
    t0 = time.perf_counter()
    for r in records:
        ev.evaluate(Genotype.from_json(r.genotype_json), seed=evaluator_seed(0, r.number))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--trial-seconds", type=float, default=10.0, help="length of one trial in the bare loop")
    ap.add_argument("--epochs", type=int, default=0, help="epochs per trial (0: calibrate to --trial-seconds)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 trials of 2 epochs")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.trials, args.epochs = 4, 2
    folder = Path(tempfile.mkdtemp(prefix="nasw-scale-"))
    per_epoch = float("nan")
    if not args.epochs:
        (folder / "task.toml").write_text(TASK.format(epochs=2))
        args.epochs, per_epoch = calibrate_epochs(folder, args.trial_seconds)
    (folder / "task.toml").write_text(TASK.format(epochs=args.epochs))
    _time_one_off()
    rows = []
    # Overhead: in-process search vs the same trainings in a bare loop, side by side.
    wall_search, recs = run_search(folder, "inprocess", 1, args.trials)
    one_off = ONE_OFF["seconds"]
    wall_bare = bare_loop(folder, recs)
    per_trial = wall_bare / args.trials
    overhead_s = (wall_search - one_off - wall_bare) / args.trials
    overhead = overhead_s / per_trial
    rows.append(("inprocess", 1, wall_search, 3600 * args.trials / wall_search, 1.0))
    base = None
    configs = [("pool", 1), ("pool", 2), ("pool", 4)]
    try:
        import ray  # noqa: F401

        if not args.no_ray:
            configs += [("ray", 1), ("ray", 2), ("ray", 4)]
    except ImportError:
        pass
    for executor, workers in configs:
        wall, _ = run_search(folder, executor, workers, args.trials)
        if executor == "pool" and workers == 1:
            base = wall
        rows.append((executor, workers, wall, 3600 * args.trials / wall, None))
        if executor == "ray":
            import ray

            ray.shutdown()
    ref = {}
    for executor, workers, wall, _, _ in rows:
        ref.setdefault(executor, wall if workers == 1 else None)
    lines = [
        f"# Scale benchmark ({args.trials} trials of {args.epochs} epochs on digits, random search)",
        "",
        f"`python benchmarks/scale.py {' '.join(sys.argv[1:])}`; {os.cpu_count()} CPUs, load average "
        f"{LOAD[0]:.2f} before and {os.getloadavg()[0]:.2f} after; torch threads in-process "
        f"{THREADS}; pool workers get cores / workers threads each"
        + (f"; calibrated {per_epoch:.3f} s per epoch" if per_epoch == per_epoch else "")
        + ".",
        "",
        "| executor | workers | wall s | trials / hour | speed-up vs 1 worker (same executor) |",
        "|---|---|---|---|---|",
    ]
    for executor, workers, wall, tph, _ in rows:
        one = ref.get(executor) or base
        lines.append(f"| {executor} | {workers} | {wall:.1f} | {tph:.0f} | {one / wall:.2f}x |")
    lines += [
        "",
        f"Bare loop (same genotypes and seeds, evaluator only): {wall_bare:.1f} s, {per_trial:.1f} s per trial.",
        f"Workbench in-process search: {wall_search:.1f} s, of which {one_off:.1f} s once per search "
        f"(plots and report on the parent run when it ends).",
        f"**Overhead per trial** (store writes, strategy, weights, heartbeats): {overhead_s:.3f} s, "
        f"**{100 * overhead:.1f}%** of a {per_trial:.1f} s trial (target < 5%); counting the once-per-search "
        f"work too: {100 * (wall_search - wall_bare) / wall_bare:.1f}%.",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).resolve().parent / "results" / "scale.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    print(
        json.dumps(
            {
                "overhead": overhead,
                "per_trial_s": per_trial,
                "speedup_pool_2": (ref.get("pool") or 0) / next(w for e, n, w, _, _ in rows if e == "pool" and n == 2),
            }
        )
    )


if __name__ == "__main__":
    main()
