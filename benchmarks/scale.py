"""Scale benchmark: trials per hour with 1, 2 and 4 workers (process pool and Ray), and the
workbench's per-trial overhead against the same trainings in a bare loop.

Run: ``python benchmarks/scale.py`` (about 10 minutes on 2 cores; ``--quick`` for a smoke run).
Prints a table and writes ``benchmarks/results/scale.md``. Run it on an otherwise idle machine:
the numbers are ratios measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

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
widths = [32]
dense_widths = [64]
[training]
epochs = {epochs}
batch_size = 64
"""


def run_search(folder: Path, executor: str, workers: int, trials: int, seed: int = 0) -> tuple[float, list]:
    from metastore import open_store
    from workbench.loop import new_search
    from workbench.task import load_task

    uri = f"sqlite:///{folder / f'{executor}-{workers}.db'}"
    store = open_store(uri)
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
    ap.add_argument("--epochs", type=int, default=12, help="epochs per trial (12 ~ 10 s on one idle core)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 trials of 2 epochs")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.trials, args.epochs = 4, 2
    folder = Path(tempfile.mkdtemp(prefix="nasw-scale-"))
    (folder / "task.toml").write_text(TASK.format(epochs=args.epochs))
    rows = []
    # Overhead: in-process search vs the same trainings in a bare loop, side by side.
    wall_search, recs = run_search(folder, "inprocess", 1, args.trials)
    wall_bare = bare_loop(folder, recs)
    per_trial = wall_bare / args.trials
    overhead = (wall_search - wall_bare) / wall_bare
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
        "| executor | workers | wall s | trials / hour | speed-up vs 1 worker (same executor) |",
        "|---|---|---|---|---|",
    ]
    for executor, workers, wall, tph, _ in rows:
        one = ref.get(executor) or base
        lines.append(f"| {executor} | {workers} | {wall:.1f} | {tph:.0f} | {one / wall:.2f}x |")
    lines += [
        "",
        f"Bare loop (same genotypes and seeds, evaluator only): {wall_bare:.1f} s, {per_trial:.1f} s per trial.",
        f"Workbench in-process search: {wall_search:.1f} s. Overhead per trial (store writes, strategy, "
        f"weights): {100 * overhead:.1f}% ({(wall_search - wall_bare) / args.trials:.2f} s per trial).",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).resolve().parent / "results" / "scale.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    print(json.dumps({"overhead": overhead, "per_trial_s": per_trial,
                      "speedup_pool_2": (ref.get("pool") or 0) / next(w for e, n, w, _, _ in rows if e == "pool" and n == 2)}))
    _ = statistics


if __name__ == "__main__":
    main()
