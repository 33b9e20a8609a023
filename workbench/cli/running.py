"""``nasw search`` and ``nasw resume``: run a search with a live progress bar, then its result."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence

import click

from workbench.cli.app import STORE_HELP, cli, fmt_num, parse_options, store_of
from workbench.errors import UserError


class _LiveProgress:
    """A rich progress bar with the best value so far."""

    def __init__(self, objective: str, quiet: bool = False) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        self.objective = objective
        self.quiet = quiet
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            disable=quiet,
        )
        self.task_id = None
        self.best: float | None = None

    def search_started(self, search_id: str, budget: int, done: int) -> None:
        if not self.quiet:
            self.console.print(f"search [bold]{search_id}[/bold]: {budget} trials ({done} already recorded)")
        self.bar.start()
        self.task_id = self.bar.add_task("trials", total=budget, completed=done, status="")

    def trial_started(self, number: int, genotype) -> None:
        self.bar.update(self.task_id, status=f"trial {number} | best {self.objective} {fmt_num(self.best)}")

    def epoch(self, number: int, epoch: int, metrics: Mapping[str, float]) -> None:
        v = metrics.get("val_accuracy")
        what = "supernet" if number < 0 else f"trial {number}"  # -1: a one-shot search's supernet training
        self.bar.update(
            self.task_id,
            status=f"{what} epoch {epoch + 1} val {fmt_num(v)} | best {self.objective} {fmt_num(self.best)}",
        )

    def trial_finished(self, number: int, obs, best: float | None) -> None:
        self.best = best
        self.bar.update(self.task_id, advance=1, status=f"best {self.objective} {fmt_num(best)}")

    def stop(self) -> None:
        self.bar.stop()


def _report(search, console) -> None:
    from rich.table import Table

    best = search.best_record()
    rec = search.store.search(search.search_id)
    table = Table(title=f"search {search.search_id} ({rec.task}, {rec.strategy})", show_header=False)
    table.add_row("trials", f"{len(search.records)} ({search.n_failed} failed)")
    if best is not None:
        table.add_row("best trial", f"#{best.number} {best.trial_id}")
        table.add_row(search.task.objective, fmt_num(best.metrics.get(search.task.objective)))
        table.add_row(search.task.report, fmt_num(best.metrics.get(search.task.report)))
        table.add_row("genotype", best.genotype_json)
    table.add_row("store", search.store.uri)
    console.print(table)
    used = search.source_use()
    if used:
        console.print(used, markup=False, highlight=False)


def _run(search, progress: _LiveProgress, json_out: bool) -> None:
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
                    "n_trials": len(search.records),
                    "n_failed": search.n_failed,
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
        _report(search, progress.console)


OVERSUBSCRIBE_HELP = "Allow --workers above this machine's CPU cores (GPUs with --device cuda)."

#: Modules whose warnings a nasw user cannot act on (library internals, deprecations, image
#: formats): hidden while a search runs. nasw's own messages are errors and lines, not warnings.
LIBRARY_MODULES = (
    r"(PIL|torch|torchvision|gpytorch|botorch|linear_operator|mlflow|sqlalchemy|alembic|pydantic|scipy|sklearn"
    r"|numpy|pandas|ray)(\.|$)"
)
#: Library warnings that name the caller's module rather than their own (raised from C++ or with
#: ``stacklevel``), by the start of their text.
LIBRARY_MESSAGES = (
    r"The given NumPy array is not writable",
    r"TypedStorage is deprecated",
    r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`",
    r"User provided device_type of 'cuda', but CUDA is not available",
    r"In (CPU|CUDA) autocast, but the target dtype is not supported",
    r"Lazy modules are a new feature",
    r"Palette images with Transparency",
    r"Possibly corrupt EXIF",
    r"Image size \(\d+ pixels\) exceeds limit",
    r"Attempting to run cuBLAS, but there was no current CUDA context",
    r"Using a target size .* that is different to the input size",
    r"Initializing zero-element tensors is a no-op",
)


@contextlib.contextmanager
def quiet_library_warnings() -> Iterator[None]:
    """Hide the libraries' warnings (:data:`LIBRARY_MODULES`, :data:`LIBRARY_MESSAGES`) while a
    search runs; the filters are restored afterwards, and warnings of other modules still show.

    Trials in pool workers are separate processes: their warnings are not filtered here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=LIBRARY_MODULES)
        for text in LIBRARY_MESSAGES:
            warnings.filterwarnings("ignore", message=text)
        yield


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


@cli.command("search")
@click.option("--task", "task_name", required=True, help="Task name from tasks/ or a path to a task .toml file.")
@click.option("--strategy", default="evolution", show_default=True, help="Search strategy (random, evolution, ...).")
@click.option("--budget", type=click.IntRange(min=1), default=20, show_default=True, help="Number of trials.")
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
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "json_out", is_flag=True, help="Print the result as JSON.")
def search_cmd(
    task_name: str,
    strategy: str,
    budget: int,
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

    With --scheduler, --budget is the number of full-fidelity-equivalent trainings (training
    compute), not of trials.
    """
    from workbench.search import new_search
    from workbench.strategy.registry import strategy_names
    from workbench.task import load_task

    if strategy not in strategy_names():
        raise UserError(f"unknown strategy {strategy!r}; expected one of {strategy_names()}")
    check_workers(workers, executor, address, device, oversubscribe)
    task = load_task(task_name)
    opts = parse_options(options)
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
        )
        _run(search, progress, json_out)


@cli.command("resume")
@click.argument("search_id")
@click.option("--budget", type=click.IntRange(min=1), default=None, help="New total budget (default: the original).")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--device", default=None, help="Training device: cuda or cpu.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Trials at once.")
@click.option("--oversubscribe", is_flag=True, help=OVERSUBSCRIBE_HELP)
@click.option("--executor", type=click.Choice(["inprocess", "pool", "ray"]), default="inprocess", show_default=True)
@click.option("--address", default=None, help="Ray cluster address (HOST:PORT).")
@click.option("--force", is_flag=True, help="Resume even if a trial looks alive (its heartbeat is recent).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
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
