"""``nasw search`` and ``nasw resume``: run a search with a line per trial (and a progress bar on a
terminal), then its result."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

import click

from workbench.cli.app import (
    STORE_HELP,
    StrategyChoice,
    cli,
    duration,
    ellipsize,
    fmt_num,
    fmt_value,
    parse_options,
    quiet_library_warnings,
    store_of,
)
from workbench.errors import UserError
from workbench.space.registry import describe_json


class _LiveProgress:
    """What a running search shows: one line per finished trial (number, state, objective(s),
    seconds, ETA, short architecture) and, on a terminal, a progress bar below them; on a
    non-terminal (a file, nohup, a cluster job) plain timestamped lines only, so a log keeps
    every trial. ``quiet`` shows nothing while the search runs (its result still prints)."""

    def __init__(self, objective: str, quiet: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.objective = objective
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self.bar = None
        self.task_id = None
        self.best: float | None = None
        self.search = None
        self.total = 0
        self.done_before = 0
        self.done_here = 0
        self.started: float | None = None

    def attach(self, search) -> None:
        """The search whose records, space and warm start the lines read."""
        self.search = search

    @property
    def wall_seconds(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def say(self, text: str) -> None:
        """One line: above the bar on a terminal, else with a timestamp."""
        if self.quiet:
            return
        if self.live:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(f"{datetime.now():%Y-%m-%d %H:%M:%S} {text}", err=True)

    def search_started(self, search_id: str, budget: int, done: int) -> None:
        self.started, self.total, self.done_before = time.monotonic(), budget, done
        self.say(f"search {search_id}: {budget} trials ({done} already recorded)")
        if not self.live:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
        )
        self.bar.start()
        self.task_id = self.bar.add_task("trials", total=budget, completed=done, status="")

    def _status(self, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task_id, status=f"{text} | best {fmt_num(self.best)}{self._eta(' | eta ')}")

    def trial_started(self, number: int, genotype) -> None:
        self._status(f"trial {number}")

    def epoch(self, number: int, epoch: int, metrics: Mapping[str, float]) -> None:
        what = "supernet" if number < 0 else f"trial {number}"  # -1: a one-shot search's supernet training
        self._status(f"{what} epoch {epoch + 1} val {fmt_num(metrics.get('val_accuracy'))}")
        if number < 0 and not self.live:  # a supernet trains long before the first trial: a log keeps its epochs
            self.say(f"{what} epoch {epoch + 1} val_accuracy {fmt_value(metrics.get('val_accuracy'))}")

    def _eta(self, prefix: str) -> str:
        """The time left at the pace of the trials finished in this run (``""`` before the first)."""
        left = self.total - self.done_before - self.done_here
        if not self.done_here or left <= 0:
            return ""
        return prefix + duration(self.wall_seconds / self.done_here * left)

    def trial_finished(self, number: int, obs, best: float | None) -> None:
        value = obs.objectives.get(self.objective)
        new_best = best is not None and value == best and (self.best is None or best > self.best)
        self.best = best
        self.done_here += 1
        if self.bar is not None:
            self.bar.update(self.task_id, advance=1)
            self._status(f"trial {number} done")
        if not self.quiet:
            self.say(self.trial_line(number, obs, new_best))

    def trial_line(self, number: int, obs, new_best: bool) -> str:
        """``trial 3 [4/20]  finished  val_accuracy 0.9123 (new best)  12.3 s  eta 4m10s  conv3x16 > dense64``
        (the trial's number, then how many of the budget are done)."""
        from workbench.search.records import fidelity_of

        search = self.search
        rec = next((r for r in reversed(search.records) if r.trial_id == obs.trial_id), None) if search else None
        metrics = dict(rec.metrics if rec is not None else obs.objectives)
        state = rec.state if rec is not None else ("finished" if obs.ok else "failed")
        fid = fidelity_of(rec) if rec is not None else dict(obs.fidelity)
        if state == "finished" and fid.get("stopped"):
            done, planned = fid.get("epochs"), fid.get("planned_epochs")
            state = f"stopped early ({fid['stopped']}) at epoch {done}/{planned}" if done else "stopped early"
        if fid.get("rung") is not None:
            state += f", rung {fid['rung']}"
        names = objective_names(search, self.objective)
        values = " ".join(f"{n} {fmt_value(metrics.get(n))}" for n in names)
        if state == "failed":
            values = ellipsize(" ".join(str(rec.reason if rec is not None else "").split()), 80) or "no reason recorded"
        elif new_best and len(names) == 1:
            values += " (new best)"
        secs = metrics.get("train_seconds")
        parts = [f"trial {number} [{self.done_before + self.done_here}/{self.total}]", state, values]
        parts += [f"{secs:.1f} s" if secs is not None and math.isfinite(secs) else "", self._eta("eta ")]
        if search is not None:
            parts.append(trust_text(search))
            parts.append(describe_json(obs.genotype.to_json(), 200))
        return "  ".join(p for p in parts if p)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def objective_names(search, objective: str) -> list[str]:
    """The metric names a multi-objective search is judged by (``latency`` for ``-latency``),
    else the task's objective."""
    specs = [str(o) for o in (search.strategy.objectives or [])] if search is not None else []
    return [s.lstrip("+-") for s in specs] if len(specs) > 1 else [objective]


def trust_text(search) -> str:
    """A warm start's current trust in its two most trusted sources (``""`` for a cold search)."""
    warm = search.warm
    if warm is None or not warm.sources:
        return ""
    now = {s.task: (warm.history.get(s.task) or [warm.weights.weights.get(s.task, 0.0)])[-1] for s in warm.sources}
    top = sorted(now.items(), key=lambda kv: -kv[1])[:2]
    return "trust " + ", ".join(f"{task} {w:.2f}" for task, w in top) + (" ..." if len(now) > 2 else "")


def pareto_lines(search, limit: int = 10) -> list[str]:
    """A multi-objective search's Pareto front of finished trials, one line per member (best of
    the first objective first); ``[]`` for a single-objective search."""
    from workbench.strategy.pareto import objective_matrix, pareto_front, parse_objectives

    specs = [str(o) for o in (search.strategy.objectives or [])]
    if len(specs) < 2:
        return []
    parsed = parse_objectives(specs)
    done = [r for r in search.records if r.state == "finished"]
    values, ok = objective_matrix([r.metrics for r in done], parsed)
    rows = [r for r, good in zip(done, ok) if good]
    if not rows:
        return []
    front = [rows[int(i)] for i in pareto_front(values[ok])]
    front.sort(key=lambda r: -parsed[0].sign * r.metrics[parsed[0].key])
    out = [f"Pareto front ({', '.join(specs)}): {len(front)} of {len(done)} finished trials"]
    for r in front[:limit]:
        vals = "  ".join(f"{o.key} {fmt_value(r.metrics[o.key])}" for o in parsed)
        out.append(f"  #{r.number:<3} {vals}  {describe_json(r.genotype_json, 200)}")
    if len(front) > limit:
        out.append(f"  ... {len(front) - limit} more (nasw show)")
    return out


def _report(search, progress: _LiveProgress) -> None:
    """The closing summary: counts and wall time, the best trial with its short architecture,
    the Pareto front, the warm start's use, where it is stored and the next commands."""
    rec = search.store.search(search.search_id)
    best = search.best_record()
    short = search.search_id[:8]
    lines = [
        f"search {search.search_id} ({rec.name or f'{rec.task}, {rec.strategy}, seed {rec.seed}'}): "
        f"{search.n_counted} trials "
        f"({search.n_failed} failed) in {duration(progress.wall_seconds)}"
    ]
    if best is not None:
        shown = [search.task.objective] + ([search.task.report] if search.task.report != search.task.objective else [])
        vals = ", ".join(f"{m} {fmt_value(best.metrics.get(m))}" for m in shown)
        lines += [
            f"best: trial #{best.number} ({best.trial_id[:10]}): {vals}",
            f"  {describe_json(best.genotype_json, 400)}",
        ]
    else:
        lines.append("best: no trial finished")
    try:
        lines += pareto_lines(search)
    except (ValueError, TypeError, KeyError):
        pass
    used = search.source_use()
    if used:
        lines.append(used)
    lines.append(f"store: {search.store.uri}")
    if not search.store.uri.startswith("memory://"):  # a memory store is gone when the command ends
        lines.append(f"next: nasw show {short}   nasw report {short}")
    for line in lines:
        progress.console.print(line, markup=False, highlight=False, soft_wrap=True)


def _run(search, progress: _LiveProgress, json_out: bool) -> None:
    progress.attach(search)
    try:
        search.run()
    except KeyboardInterrupt as exc:
        from workbench.execute.signals import Terminated

        progress.stop()
        how = f"interrupted by {exc.name}" if isinstance(exc, Terminated) else "interrupted"
        progress.console.print(
            f"{how}: finished trials are kept; continue with `nasw resume {search.search_id}`", soft_wrap=True
        )
        sys.exit(128 + (exc.signum if isinstance(exc, Terminated) else 2))
    finally:
        progress.stop()
    if json_out:
        best = search.best_record()
        click.echo(
            json.dumps(
                {
                    "search_id": search.search_id,
                    "n_trials": search.n_counted,
                    "n_failed": search.n_failed,
                    "wall_seconds": round(progress.wall_seconds, 3),
                    "warm_start": search.source_use() or None,
                    "best": None
                    if best is None
                    else {
                        "trial_id": best.trial_id,
                        "metrics": best.metrics,
                        "genotype": json.loads(best.genotype_json),
                    },
                }
            )
        )
    else:
        _report(search, progress)


def warn_population(strategy: str, options: Mapping[str, object], budget: int) -> None:
    """One ``warning:`` line when the budget does not exceed the population the user set
    (``--option population=N``): its first ``population`` trials are random samples, so it would
    never use what it learns."""
    from workbench.cli.app import strategy_options

    if "population" not in options or "population" not in dict(strategy_options(strategy)):
        return  # only a population the user chose: a small default-population search is a choice too
    population = options["population"]
    if isinstance(population, int) and not isinstance(population, bool) and budget <= population:
        click.echo(
            f"warning: --budget {budget} is not above the {strategy} population of {population}: every trial is a "
            "random sample (nothing is mutated or learnt); raise --budget or lower --option population",
            err=True,
        )


OVERSUBSCRIBE_HELP = "Allow --workers above this machine's CPU cores (GPUs with --device cuda)."


def machine_slots(device: str | None) -> tuple[int, str]:
    """How many trials this machine runs side by side without competing: (count, what), the GPUs
    with a ``cuda`` device (0 when CUDA is missing), else the CPU cores this process may use."""
    if device and device.strip().lower().startswith("cuda"):
        import torch

        n = int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
        return n, "GPU" if n == 1 else "GPUs"
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return n, "CPU core" if n == 1 else "CPU cores"


def check_workers(workers: int, executor: str, address: str | None, device: str | None, oversubscribe: bool) -> None:
    """Refuse ``--workers`` above the machine's cores (or GPUs) unless ``--oversubscribe``: trials
    would compete for them (slower, or out of memory). A Ray cluster (``--address``) is not this
    machine and is not checked; neither is a device that is not there (the trainer says so).

    Raises:
        UserError: Too many workers, in one line.
    """
    if workers <= 1 or oversubscribe or (executor == "ray" and address):
        return
    slots, what = machine_slots(device)
    if 0 < slots < workers:
        raise UserError(
            f"--workers {workers} is more than this machine's {slots} {what}: trials would compete for them "
            f"(slower, or out of memory); use --workers {slots} or less, or add --oversubscribe"
        )


@cli.command(
    "search",
    epilog="\b\nExamples:\n  nasw search --task digits --strategy evolution --budget 20 --option population=5\n"
    "  nasw search --task digits --strategy bo --warm-start auto --name bo-warm\n"
    "Every strategy's options with their defaults: nasw strategies",
)
@click.option("--task", "task_name", required=True, help="Task name from tasks/ or a path to a task .toml file.")
@click.option(
    "--strategy",
    type=StrategyChoice(),
    default="evolution",
    show_default=True,
    help="Search strategy (`nasw strategies` lists each one's --option keys).",
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Number of trials; with --scheduler, full-fidelity-equivalent trainings (compute), not trials.",
)
@click.option(
    "--name",
    default=None,
    help="A readable name for the search (its MLflow run name); default: "
    "built from the task, strategy, key options and a short id.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the strategy and of every trial (a non-negative integer).",
)
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--device", default=None, help="Training device: cuda or cpu (default: cuda when available).")
@click.option(
    "--option", "options", multiple=True, metavar="KEY=VALUE", help="Strategy option, e.g. population=20 (repeatable)."
)
@click.option(
    "--warm-start",
    "warm_start",
    default="none",
    show_default=True,
    metavar="none|auto|TASK[,TASK...]",
    help="Start from earlier searches of other tasks in the store (same search space): auto picks and "
    "weighs the sources; TASK,... names them.",
)
@click.option(
    "--objectives",
    default=None,
    metavar="M1,-M2",
    help="Multi-objective search, e.g. val_accuracy,-latency or val_accuracy,-params ('-' = minimise); "
    "the search records the Pareto front.",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Trials at once.")
@click.option("--oversubscribe", is_flag=True, help=OVERSUBSCRIBE_HELP)
@click.option(
    "--executor",
    type=click.Choice(["inprocess", "pool", "ray"]),
    default="inprocess",
    show_default=True,
    help="Where trials run: this process, a local process pool, or Ray "
    "(pool is used for inprocess with --workers > 1).",
)
@click.option("--address", default=None, help="Ray cluster address (HOST:PORT); default: a local Ray instance.")
@click.option(
    "--scheduler",
    type=click.Choice(["sh", "hyperband", "asha"]),
    default=None,
    help="Multi-fidelity schedule over the task's [fidelity] table (successive halving, Hyperband, "
    "asynchronous SH); --budget then counts full-fidelity-equivalent trainings.",
)
@click.option(
    "--scheduler-option",
    "scheduler_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Scheduler option, e.g. eta=3, n_configs=9, promote=retrain (repeatable).",
)
@click.option(
    "--stop-early",
    "stop_early",
    type=click.Choice(["lc"]),
    default=None,
    help="Stop trials whose extrapolated learning curve is unlikely (P < 5%) to beat the incumbent.",
)
@click.option(
    "--stop-option",
    "stop_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Early-stopping option: threshold=0.05, min_epochs=4, every=1 (repeatable).",
)
@click.option(
    "--estimator",
    type=click.Choice(["oneshot"]),
    default=None,
    help="Score trials without training them: oneshot = a weight-sharing supernet (SPOS) trained once on a cell "
    "task; the best retrain_top=K (--option, default 3) are then retrained from scratch.",
)
@click.option("--quiet", is_flag=True, help="Nothing while it runs (no trial lines, no progress bar); the result only.")
@click.option("--json", "json_out", is_flag=True, help="Print the result as JSON.")
def search_cmd(
    task_name: str,
    strategy: str,
    budget: int,
    name: str | None,
    seed: int,
    store: str | None,
    device: str | None,
    options: Sequence[str],
    warm_start: str,
    objectives: str | None,
    workers: int,
    oversubscribe: bool,
    executor: str,
    address: str | None,
    scheduler: str | None,
    scheduler_options: Sequence[str],
    stop_early: str | None,
    stop_options: Sequence[str],
    estimator: str | None,
    quiet: bool,
    json_out: bool,
) -> None:
    """Run a new search on a task and record it in the metastore.

    It prints a line per finished trial (plain timestamped lines when the output is not a
    terminal, so a log file keeps them) and a summary with the next commands. With --scheduler,
    --budget is the number of full-fidelity-equivalent trainings (training compute), not of trials.
    """
    from workbench.search import new_search
    from workbench.task import load_task

    check_workers(workers, executor, address, device, oversubscribe)
    task = load_task(task_name)
    opts = parse_options(options)
    if scheduler is None:
        warn_population(strategy, opts, budget)
    if objectives:
        from workbench.strategy.pareto import parse_objectives

        try:
            specs = parse_objectives(objectives)
        except ValueError as exc:
            raise UserError(f"--objectives: {exc}") from None
        if len(specs) < 2:
            raise UserError(f"--objectives needs at least two objectives, got {objectives!r}")
        opts["objectives"] = [str(o) for o in specs]
    progress = _LiveProgress(task.objective, quiet or json_out)
    st = store_of(store)
    with quiet_library_warnings():
        search = new_search(
            st,
            task,
            strategy,
            budget,
            seed,
            strategy_options=opts,
            progress=progress,
            device=device,
            executor=executor,
            workers=workers,
            address=address,
            warm_start=warm_start,
            echo=progress.console.print,
            scheduler=scheduler,
            scheduler_options=parse_options(scheduler_options),
            stop_early=stop_early,
            stop_options=parse_options(stop_options),
            estimator=estimator,
            **({"name": name} if name else {}),
        )
        _run(search, progress, json_out)


@cli.command(
    "resume", epilog="\b\nExample:\n  nasw resume 3f2a1b2c --budget 40   (3f2a1b2c: a search id or a unique prefix)"
)
@click.argument("search_id")
@click.option("--budget", type=click.IntRange(min=1), default=None, help="New total budget (default: the original).")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--device", default=None, help="Training device: cuda or cpu.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Trials at once.")
@click.option("--oversubscribe", is_flag=True, help=OVERSUBSCRIBE_HELP)
@click.option("--executor", type=click.Choice(["inprocess", "pool", "ray"]), default="inprocess", show_default=True)
@click.option("--address", default=None, help="Ray cluster address (HOST:PORT).")
@click.option("--force", is_flag=True, help="Resume even if a trial looks alive (its heartbeat is recent).")
@click.option("--quiet", is_flag=True, help="Nothing while it runs (no trial lines, no progress bar); the result only.")
@click.option("--json", "json_out", is_flag=True, help="Print the result as JSON.")
def resume_cmd(
    search_id: str,
    budget: int | None,
    store: str | None,
    device: str | None,
    workers: int,
    oversubscribe: bool,
    executor: str,
    address: str | None,
    force: bool,
    quiet: bool,
    json_out: bool,
) -> None:
    """Continue an interrupted search: stale trials are marked failed, finished ones replayed."""
    from workbench.search import resume_search

    check_workers(workers, executor, address, device, oversubscribe)
    st = store_of(store, "write", wanted=f"search {search_id!r}")
    sid = st.resolve_search(search_id)
    rec = st.search(sid)
    progress = _LiveProgress(rec.objective, quiet or json_out)
    with quiet_library_warnings():
        search = resume_search(
            st,
            sid,
            budget=budget,
            progress=progress,
            device=device,
            force=force,
            executor=executor,
            workers=workers,
            address=address,
        )
        _run(search, progress, json_out)
