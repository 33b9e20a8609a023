"""The ``nasw`` command line: parses, builds objects, calls the loop; nothing else.

Heavy modules (torch, mlflow, botorch) are imported inside the commands, so ``nasw --help``
stays fast. User mistakes print one ``error: ...`` line and exit with code 2.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from workbench.errors import NaswError, StoreError, UserError

DEBUG_ENV = "NASW_DEBUG"
STORE_HELP = "Metastore URI (default: $NASW_STORE or sqlite:///runs/mlflow.db)."


def _store(uri: str | None):
    from metastore import open_store

    return open_store(uri)


def _parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings into a dict; values parsed as JSON when they can be."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--option expects KEY=VALUE, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nasw", prog_name="nasw")
def cli() -> None:
    """nasw: neural architecture search that learns across tasks.

    Every search and trial is recorded in an MLflow metastore (default: runs/mlflow.db).
    """


@cli.command("tasks")
def tasks_cmd() -> None:
    """List the tasks in tasks/ (and $NASW_TASKS)."""
    from rich.console import Console
    from rich.table import Table

    from workbench.task import list_tasks

    table = Table("task", "kind", "dataset", "space", "objective")
    table.add_column("description", max_width=60)  # wraps, so a narrow terminal keeps every column
    for col in table.columns[:-1]:
        col.no_wrap = True
    for t in list_tasks():
        table.add_row(t.name, t.kind, str(t.dataset.get("name", t.dataset.get("loader"))), t.space.get("kind", "?"), t.objective, t.description)
    Console().print(table)


class _LiveProgress:
    """A rich progress bar with the best value so far."""

    def __init__(self, objective: str, quiet: bool = False) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
        self.bar.update(self.task_id, status=f"trial {number} | best {self.objective} {_fmt(self.best)}")

    def epoch(self, number: int, epoch: int, metrics: Mapping[str, float]) -> None:
        v = metrics.get("val_accuracy")
        self.bar.update(
            self.task_id,
            status=f"trial {number} epoch {epoch + 1} val {_fmt(v)} | best {self.objective} {_fmt(self.best)}",
        )

    def trial_finished(self, number: int, obs, best: float | None) -> None:
        self.best = best
        self.bar.update(self.task_id, advance=1, status=f"best {self.objective} {_fmt(best)}")

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
        table.add_row(search.task.objective, _fmt(best.metrics.get(search.task.objective)))
        table.add_row(search.task.report, _fmt(best.metrics.get(search.task.report)))
        table.add_row("genotype", best.genotype_json)
    table.add_row("store", search.store.uri)
    console.print(table)


def _run(search, progress: _LiveProgress, json_out: bool) -> None:
    try:
        search.run()
    except KeyboardInterrupt:
        progress.stop()
        progress.console.print(
            f"interrupted: finished trials are kept; continue with `nasw resume {search.search_id}`"
        )
        sys.exit(130)
    finally:
        progress.stop()
    if json_out:
        best = search.best_record()
        click.echo(json.dumps({
            "search_id": search.search_id,
            "n_trials": len(search.records),
            "n_failed": search.n_failed,
            "best": None if best is None else {"trial_id": best.trial_id, "metrics": best.metrics, "genotype": json.loads(best.genotype_json)},
        }))
    else:
        _report(search, progress.console)


@cli.command("search")
@click.option("--task", "task_name", required=True, help="Task name from tasks/ or a path to a task .toml file.")
@click.option("--strategy", default="evolution", show_default=True, help="Search strategy (random, evolution, ...).")
@click.option("--budget", type=click.IntRange(min=1), default=20, show_default=True, help="Number of trials.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the strategy and of every trial (a non-negative integer).")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--device", default=None, help="Training device: cuda or cpu (default: cuda when available).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Strategy option, e.g. population=20 (repeatable).")
@click.option("--warm-start", "warm_start", default="none", show_default=True, metavar="none|auto|TASK[,TASK...]",
              help="Start from earlier searches of other tasks in the store (same search space): auto picks and "
                   "weighs the sources; TASK,... names them.")
@click.option("--objectives", default=None, metavar="M1,-M2",
              help="Multi-objective search, e.g. val_accuracy,-latency or val_accuracy,-params ('-' = minimise); "
                   "the search records the Pareto front.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Trials at once.")
@click.option("--executor", type=click.Choice(["inprocess", "pool", "ray"]), default="inprocess", show_default=True,
              help="Where trials run: this process, a local process pool, or Ray (pool is used for inprocess with --workers > 1).")
@click.option("--address", default=None, help="Ray cluster address (HOST:PORT); default: a local Ray instance.")
@click.option("--scheduler", type=click.Choice(["sh", "hyperband", "asha"]), default=None,
              help="Multi-fidelity schedule over the task's [fidelity] table (successive halving, Hyperband, "
                   "asynchronous SH); --budget then counts full-fidelity-equivalent trainings.")
@click.option("--scheduler-option", "scheduler_options", multiple=True, metavar="KEY=VALUE",
              help="Scheduler option, e.g. eta=3, n_configs=9, promote=retrain (repeatable).")
@click.option("--stop-early", "stop_early", type=click.Choice(["lc"]), default=None,
              help="Stop trials whose extrapolated learning curve is unlikely (P < 5%) to beat the incumbent.")
@click.option("--stop-option", "stop_options", multiple=True, metavar="KEY=VALUE",
              help="Early-stopping option: threshold=0.05, min_epochs=4, every=1 (repeatable).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "json_out", is_flag=True, help="Print the result as JSON.")
def search_cmd(task_name: str, strategy: str, budget: int, seed: int, store: str | None, device: str | None,
               options: Sequence[str], warm_start: str, objectives: str | None, workers: int, executor: str,
               address: str | None, scheduler: str | None, scheduler_options: Sequence[str],
               stop_early: str | None, stop_options: Sequence[str], quiet: bool, json_out: bool) -> None:
    """Run a new search on a task and record it in the metastore.

    With --scheduler, --budget is the number of full-fidelity-equivalent trainings (training
    compute), not of trials.
    """
    from workbench.loop import new_search
    from workbench.strategy.registry import strategy_names
    from workbench.task import load_task

    if strategy not in strategy_names():
        raise UserError(f"unknown strategy {strategy!r}; expected one of {strategy_names()}")
    task = load_task(task_name)
    opts = _parse_options(options)
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
    st = _store(store)
    search = new_search(st, task, strategy, budget, seed, strategy_options=opts, progress=progress, device=device,
                        executor=executor, workers=workers, address=address, warm_start=warm_start,
                        echo=progress.console.print, scheduler=scheduler,
                        scheduler_options=_parse_options(scheduler_options), stop_early=stop_early,
                        stop_options=_parse_options(stop_options))
    _run(search, progress, json_out)


@cli.command("resume")
@click.argument("search_id")
@click.option("--budget", type=click.IntRange(min=1), default=None, help="New total budget (default: the original).")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--device", default=None, help="Training device: cuda or cpu.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Trials at once.")
@click.option("--executor", type=click.Choice(["inprocess", "pool", "ray"]), default="inprocess", show_default=True)
@click.option("--address", default=None, help="Ray cluster address (HOST:PORT).")
@click.option("--force", is_flag=True, help="Resume even if a trial looks alive (its heartbeat is recent).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "json_out", is_flag=True, help="Print the result as JSON.")
def resume_cmd(search_id: str, budget: int | None, store: str | None, device: str | None, workers: int,
               executor: str, address: str | None, force: bool, quiet: bool, json_out: bool) -> None:
    """Continue an interrupted search: stale trials are marked failed, finished ones replayed."""
    from workbench.loop import resume_search

    st = _store(store)
    sid = st.resolve_search(search_id)
    rec = st.search(sid)
    progress = _LiveProgress(rec.objective, quiet or json_out)
    search = resume_search(st, sid, budget=budget, progress=progress, device=device, force=force,
                           executor=executor, workers=workers, address=address)
    _run(search, progress, json_out)


@cli.command("ls")
@click.option("--task", "task_name", default=None, help="Only searches of this task.")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def ls_cmd(task_name: str | None, store: str | None, fmt: str) -> None:
    """List searches with their best values."""
    st = _store(store)
    rows = st.searches(task_name)
    if fmt == "json":
        click.echo(json.dumps([
            {"search_id": s.search_id, "task": s.task, "strategy": s.strategy, "state": s.state, "seed": s.seed,
             "n_trials": s.n_trials, "objective": s.objective, "summary": s.summary, "start_time": s.start_time}
            for s in rows
        ], indent=2))
        return
    from datetime import datetime

    from rich.console import Console

    table = _narrow_table("search", "task", "strategy", "seed", "state", "n", "best", "test", "started",
                          wrap=("task",), show_edge=False, padding=(0, 0),
                          caption="n: trials; best: best objective; test: its test accuracy")
    for s in rows:
        table.add_row(
            s.search_id[:8], s.task, s.strategy, str(s.seed), s.state, str(s.n_trials),
            _fmt(s.summary.get(f"best_{s.objective}")), _fmt(s.summary.get("best_test_accuracy")),
            datetime.fromtimestamp(s.start_time).strftime("%m-%d %H:%M") if s.start_time else "-",
        )
    Console().print(table if rows else f"no searches in {st.uri}")


@cli.command("show")
@click.argument("search_id")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def show_cmd(search_id: str, store: str | None, fmt: str) -> None:
    """Show a search's trials (a unique prefix of its id is enough)."""
    st = _store(store)
    sid = st.resolve_search(search_id)
    rec = st.search(sid)
    trials = st.trials(sid)
    if fmt == "json":
        click.echo(json.dumps({
            "search_id": sid, "task": rec.task, "strategy": rec.strategy, "state": rec.state, "seed": rec.seed,
            "objective": rec.objective, "summary": rec.summary, "tags": rec.tags,
            "trials": [
                {"trial_id": t.trial_id, "number": t.number, "state": t.state, "metrics": t.metrics,
                 "genotype": _genotype_obj(t.genotype_json), "genotype_key": t.genotype_key,
                 "parent_trial": t.parent_trial, "reason": t.reason}
                for t in trials
            ],
        }, indent=2))
        return
    from rich.console import Console

    obj = rec.objective
    short = {"val_accuracy": "val acc", "test_accuracy": "test acc", "neg_val_loss": "-val loss"}
    table = _narrow_table("no", "trial", "state", short.get(obj, obj), "test acc", "params", "secs",
                          title=f"{rec.task}, {rec.strategy}, seed {rec.seed}, {rec.state}", caption=f"search {sid}")
    table.add_column("genotype / reason", overflow="fold", min_width=8, max_width=36)
    best = max((t for t in trials if t.state == "finished" and obj in t.metrics), key=lambda t: t.metrics[obj], default=None)
    for t in trials:
        style = "bold green" if best is not None and t.trial_id == best.trial_id else ("red" if t.state == "failed" else None)
        detail = t.reason if t.state == "failed" else _short_genotype(t.genotype_json)
        params = t.metrics.get("params")
        table.add_row(
            str(t.number), t.trial_id[:10], t.state, _fmt(t.metrics.get(obj)), _fmt(t.metrics.get("test_accuracy")),
            "-" if params is None else f"{int(params):,}", _fmt(t.metrics.get("train_seconds"), 1), detail or "", style=style,
        )
    Console().print(table)


def _narrow_table(*headers: str, wrap: tuple[str, ...] = (), **kwargs: Any):
    """A rich table for an 80-column terminal: simple rules, no edge padding, every column at
    least as wide as its header; only the ``wrap`` columns give way in a narrow terminal (they
    fold), the others (ids, numbers) are never cut."""
    from rich import box
    from rich.table import Table

    table = Table(*headers, box=box.SIMPLE_HEAD, pad_edge=False, **kwargs)
    for col in table.columns:
        col.no_wrap = col.header not in wrap
        col.min_width = len(str(col.header))
        if col.header in wrap:
            col.overflow = "fold"
    return table


def _genotype_obj(text: str) -> Any:
    """A stored genotype JSON as an object for ``--format json``; the raw text if it does not parse."""
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return text


def _short_genotype(text: str) -> str:
    try:
        spec = json.loads(text)["spec"]
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        return str(text)[:80]
    try:
        if isinstance(spec, dict) and isinstance(spec.get("layers"), list):
            parts = []
            for layer in spec["layers"]:
                if not isinstance(layer, dict):
                    parts.append(str(layer)[:20])
                    continue
                op = str(layer.get("op", "?"))
                if "kernel" in layer:
                    parts.append(f"{op}{layer['kernel']}x{layer.get('width')}")
                elif "width" in layer:
                    parts.append(f"{op}{layer['width']}")
                else:
                    parts.append(op)
            return " > ".join(parts)[:200]
        return json.dumps(spec, separators=(",", ":"))[:100]
    except (ValueError, TypeError, RecursionError):  # a planted genotype shows as text, never a crash
        return str(text)[:80]


@cli.command("lineage")
@click.argument("trial_id")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def lineage_cmd(trial_id: str, store: str | None, fmt: str) -> None:
    """Show a trial's family tree: its ancestors up to the root, the morphism steps between
    them, and its children (TRIAL_ID: the full id or a unique prefix of 6+ characters)."""
    from workbench.lineage import ancestors, children, describe, resolve_trial

    st = _store(store)
    tid = resolve_trial(st, trial_id)
    line = ancestors(st, tid)
    kids = children(st, line[-1].trial)
    if fmt == "json":
        click.echo(json.dumps({
            "trial_id": tid,
            "ancestors": [
                {"trial_id": g.trial.trial_id, "task": g.trial.task, "search_id": g.trial.search_id,
                 "number": g.trial.number, "state": g.trial.state, "parent_trial": g.trial.parent_trial,
                 "genotype": _genotype_obj(g.trial.genotype_json), "steps": [s.to_dict() for s in g.steps],
                 "inherited": g.inherited, "warning": g.warning, "metrics": g.trial.metrics}
                for g in line
            ],
            "children": [{"trial_id": c.trial_id, "number": c.number, "metrics": c.metrics} for c in kids],
        }, indent=2))
        return
    from rich.console import Console

    root = line[0].trial
    title = f"lineage of trial {tid[:12]} ({len(line)} generation{'s' if len(line) != 1 else ''})"
    table = _narrow_table("gen", "trial", "task #", "val", "test", "epochs", "genotype", "from parent",
                          wrap=("task #", "genotype", "from parent"), title=title, show_edge=False,
                          padding=(0, 1), collapse_padding=True)
    for depth, g in enumerate(line):
        t = g.trial
        if depth == 0:
            how = "root" + (f" (parent {t.parent_trial[:12]} not found)" if t.parent_trial else "")
        else:
            how = "; ".join(str(s) for s in g.steps) or "same weights"
        if g.warning:
            how += f" [red]! {g.warning}[/red]"
        epochs = t.metrics.get("epochs")
        table.add_row(  # an unfinished trial shows its state where its accuracy would be
            str(depth), t.trial_id[:8], f"{t.task} #{t.number}",
            _fmt(t.metrics.get("val_accuracy")) if t.state == "finished" else t.state,
            _fmt(t.metrics.get("test_accuracy")), "-" if epochs is None else str(int(epochs)),
            describe(t.genotype_json), how, style="bold" if t.trial_id == tid else None,
        )
    console = Console()
    console.print(table)
    if root.parent_trial is None and len(line) == 1 and not kids:
        console.print("no parent and no children: trained from scratch")
    if kids:
        listed = ", ".join(f"#{c.number} {c.trial_id[:12]} (val {_fmt(c.metrics.get('val_accuracy'))})" for c in kids[:20])
        console.print(f"children in its search: {listed}{' ...' if len(kids) > 20 else ''}")


@cli.command("ui")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (127.0.0.1 = this machine only).")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
def ui_cmd(store: str | None, host: str, port: int) -> None:
    """Start the MLflow UI on the same store."""
    import subprocess

    from metastore import default_store_uri
    from metastore.mlflow_store import tracking_uri_for

    uri = store or default_store_uri()
    if uri.startswith(("http://", "https://")):
        click.echo(f"the store is an MLflow server: open {uri}")
        return
    if uri.startswith("memory://"):
        raise UserError("a memory:// store has no UI")
    tracking = tracking_uri_for(uri)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking, "--host", host, "--port", str(port)]
    # MLflow 3 opens on its GenAI view unless told otherwise; this URL opens the runs tables.
    click.echo(f"MLflow UI for {tracking}")
    click.echo(f"open http://{host}:{port}/#/experiments?workflowType=machine_learning (Ctrl-C to stop)")
    try:
        sys.exit(subprocess.call(cmd))
    except KeyboardInterrupt:
        sys.exit(0)


# -- bring your own data, comparisons, exports and reports (issue 9) -------------------------------
@cli.group("task")
def task_group() -> None:
    """Create task files for your own data (`nasw tasks` lists them)."""


def _parse_resize(text: str | None) -> list[int] | None:
    if text is None:
        return None
    parts = text.lower().replace("*", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise UserError(f"--resize expects HEIGHTxWIDTH or one size in pixels (e.g. 32x32 or 28), got {text!r}")
    return values


@task_group.command("init")
@click.argument("name")
@click.option("--data", "data", required=True, help="A CSV file, a .npz/.npy file, or a folder of images (one subfolder per class).")
@click.option("--label", default=None, help="CSV: the label column (default: label, target or class, else the last); .npz: the labels key; .npy: the labels file.")
@click.option("--out", "out", default=None, help="Folder to write NAME.toml into (default: ./tasks).")
@click.option("--resize", default=None, metavar="HxW", help="Images: resize every image to HEIGHTxWIDTH pixels.")
@click.option("--force", is_flag=True, help="Overwrite an existing task file.")
def task_init_cmd(name: str, data: str, label: str | None, out: str | None, resize: str | None, force: bool) -> None:
    """Inspect a dataset and write a task file for it (tasks/NAME.toml)."""
    from pathlib import Path

    from workbench.task import tasks_dirs
    from workbench.task_init import init_task

    result = init_task(name, data, label=label, out=out, force=force, resize=_parse_resize(resize))
    for line in result.lines:
        click.echo(line)
    for line in result.warnings:
        click.echo(f"warning: {line}", err=True)
    try:
        shown = result.path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = result.path
    click.echo(f"wrote {shown}")
    in_search_path = result.path.parent.resolve() in [d.resolve() for d in tasks_dirs()]
    target = name if in_search_path else str(result.path)
    click.echo(f"next: nasw search --task {target} --budget 20")


def _searches(store, ids: Sequence[str]) -> list[str]:
    return [store.resolve_search(i) for i in ids]


@cli.command("compare")
@click.argument("search_ids", nargs=-1, required=True)
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--out", "out", default="compare.png", show_default=True, help="PNG of the best-so-far curves.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def compare_cmd(search_ids: Sequence[str], store: str | None, out: str, fmt: str) -> None:
    """Compare searches: a table of their results and one plot of their best-so-far curves."""
    from workbench.plots import plot_compare
    from workbench.report import compare_rows

    st = _store(store)
    rows = compare_rows(st, _searches(st, search_ids))
    objectives = sorted({r["objective"] for r in rows})
    curves = {f"{r['task']} {r['strategy']} {r['search_id'][:8]}": r["curve"] for r in rows}
    try:
        png = plot_compare(curves, "/".join(objectives), path=out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    if fmt == "json":
        click.echo(json.dumps({"searches": [{k: v for k, v in r.items() if k != "curve"} for r in rows],
                               "plot": png}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("search", "task", "strategy", "warm start", "budget", "trials", "best " + "/".join(objectives),
                  "best test", "wall time", title="searches compared")
    for r in rows:
        wall = r["wall_seconds"]
        table.add_row(
            r["search_id"][:12], r["task"], r["strategy"], r["warm_start"], "-" if r["budget"] is None else str(r["budget"]),
            f"{r['trials']} ({r['failed']} failed)" if r["failed"] else str(r["trials"]),
            _fmt(r["best_objective"]), _fmt(r["best_report"]), "-" if wall is None else f"{wall:.1f} s",
        )
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    console.print(f"best-so-far curves: {png}" if png else "no finished trials to plot")


@cli.command("export")
@click.argument("search_id")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default=None,
              help="Output format (default: from --out's extension, else csv).")
@click.option("--out", "out", default=None, help="File to write (default: standard output).")
def export_cmd(search_id: str, store: str | None, fmt: str | None, out: str | None) -> None:
    """Export every trial of a search (number, id, state, metrics, params, genotype, reason)."""
    from workbench.report import export_text

    if fmt is None:
        fmt = "json" if out and out.lower().endswith(".json") else "csv"
    st = _store(store)
    sid = st.resolve_search(search_id)
    trials = st.trials(sid)
    text = export_text(trials, fmt)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        with open(out, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {len(trials)} trials of search {sid[:12]} to {out}", err=True)


@cli.command("report")
@click.argument("search_id")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--out", "out", default=None, help="HTML file to write (default: report-<search id>.html).")
def report_cmd(search_id: str, store: str | None, out: str | None) -> None:
    """Write a self-contained HTML report of a search (summary, trials, plots); also attached to its MLflow run."""
    from workbench.report import write_report

    st = _store(store)
    sid = st.resolve_search(search_id)
    path = write_report(st, sid, out or f"report-{sid[:12]}.html")
    click.echo(f"wrote {path} (also attached to the search's MLflow run as report/report.html)")


def _error_line(message: object) -> str:
    """``error: MESSAGE`` on one line, whatever line breaks the message (or user input in it) holds."""
    return "error: " + " ".join(str(message).splitlines()).strip()


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: one clear line and exit code 2 for bad input, never a traceback.

    Exit codes: 0 success; 2 a user mistake or an unusable store (:class:`UserError`,
    :class:`StoreError`, bad options); 1 any other :class:`NaswError`, or an internal error
    (a bug: one ``error: internal error: ...`` line, the traceback with ``NASW_DEBUG=1``);
    130 interrupted.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        click.echo(cli.get_help(click.Context(cli, info_name="nasw")))
        sys.exit(0)
    try:
        rv = cli.main(args=args, prog_name="nasw", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        click.echo(_error_line(exc.format_message()), err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(_error_line(exc.format_message()), err=True)
        sys.exit(exc.exit_code)
    except (UserError, StoreError) as exc:
        click.echo(_error_line(exc), err=True)
        sys.exit(2)
    except NaswError as exc:
        click.echo(_error_line(exc), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a bug must still not print a traceback at the user
        if os.environ.get(DEBUG_ENV):
            raise
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        click.echo(
            _error_line(f"internal error: {type(exc).__name__}{': ' + text if text else ''} "
                        f"(please report it; set {DEBUG_ENV}=1 for the traceback)"),
            err=True,
        )
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
