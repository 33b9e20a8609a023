"""Reading the store: ``nasw ls``, ``nasw show``, ``nasw lineage`` and ``nasw ui``."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

import click

from workbench.cli.app import STORE_HELP, cli, fmt_num, genotype_obj, narrow_table, store_of
from workbench.errors import UserError


def parse_since(text: str) -> float:
    """``--since``: an age (``30m``, ``12h``, ``2d``, ``1w``) as seconds.

    Raises:
        UserError: Anything else, in one line.
    """
    units = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    word = text.strip().lower()
    try:
        value = float(word[:-1])
    except ValueError:
        value = -1.0
    if word[-1:] not in units or not (value >= 0 and value < 1e6):
        raise UserError(f"--since expects an age such as 30m, 12h, 2d or 1w; got {text!r}")
    return value * units[word[-1]]


def _ls_rows(rows, width: int) -> list[str]:
    """Two lines per search: id, task, strategy, state, trials, best values, start; then, indented,
    what sets it apart (seed, budget, options, objectives, scheduler, warm start), wrapped."""
    import textwrap
    from datetime import datetime

    from workbench.cli.app import setup_parts, text_table

    cells = [
        [
            s.search_id[:8],
            s.task,
            s.strategy,
            s.state,
            str(s.n_trials),
            fmt_num(s.summary.get(f"best_{s.objective}")),
            fmt_num(s.summary.get("best_test_accuracy")),
            datetime.fromtimestamp(s.start_time).strftime("%m-%d %H:%M") if s.start_time else "-",
        ]
        for s in rows
    ]
    header = ["search", "task", "strategy", "state", "n", "best", "test", "started"]
    table = text_table(header, cells, width, right=(4, 5, 6), flex=1)  # only the task name gives way
    lines = table[:1]
    for s, row in zip(rows, table[1:]):
        lines.append(row)
        setup = (f"{s.name}: " if s.name else "") + ", ".join(setup_parts(s))
        lines += textwrap.wrap(setup, width=max(20, width), initial_indent=" " * 10, subsequent_indent=" " * 12)
    lines.append("n: trials; best: best objective; test: its test accuracy; ids: any unique prefix")
    return lines


@cli.command("ls", epilog="\b\nExamples:\n  nasw ls --strategy bo --since 2d\n  nasw ls --state finished --last 5")
@click.option("--task", "task_name", default=None, help="Only searches of this task.")
@click.option("--strategy", default=None, help="Only searches with this strategy.")
@click.option("--state", type=click.Choice(["running", "finished", "failed", "killed"]), default=None)
@click.option("--since", default=None, metavar="AGE", help="Only searches started within AGE (30m, 12h, 2d, 1w).")
@click.option("--last", type=click.IntRange(min=1), default=None, metavar="N", help="Only the N newest searches.")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def ls_cmd(
    task_name: str | None,
    strategy: str | None,
    state: str | None,
    since: str | None,
    last: int | None,
    store: str | None,
    fmt: str,
) -> None:
    """List searches, newest first, with their best values and what sets each apart (seed,
    budget, options, objectives, scheduler, warm start)."""
    import time

    max_age = parse_since(since) if since is not None else None
    st = store_of(store, "read")
    rows = st.searches(task_name)
    if strategy is not None:
        rows = [s for s in rows if s.strategy == strategy]
    if state is not None:
        rows = [s for s in rows if s.state == state]
    if max_age is not None:
        rows = [s for s in rows if s.start_time >= time.time() - max_age]
    rows = sorted(rows, key=lambda s: -s.start_time)[:last]
    if fmt == "json":
        click.echo(
            json.dumps(
                [
                    {
                        "search_id": s.search_id,
                        "name": s.name,
                        "task": s.task,
                        "strategy": s.strategy,
                        "state": s.state,
                        "seed": s.seed,
                        "n_trials": s.n_trials,
                        "objective": s.objective,
                        "summary": s.summary,
                        "start_time": s.start_time,
                        "budget": s.spec.get("budget"),
                        "strategy_options": s.spec.get("strategy_options") or {},
                        "scheduler": s.spec.get("scheduler"),
                        "warm_start": s.spec["warm_start"].get("sources")
                        if isinstance(s.spec.get("warm_start"), dict)
                        else None,
                    }
                    for s in rows
                ],
                indent=2,
            )
        )
        return
    if not rows:
        what = " matching the filters" if any(x is not None for x in (task_name, strategy, state, since)) else ""
        click.echo(f"no searches{what} in {st.uri}")
        return
    from workbench.cli.app import terminal_width

    click.echo("\n".join(_ls_rows(rows, terminal_width(120))))


@cli.command("show", epilog="\b\nExample:\n  nasw show 3f2a1b2c   (a search id or a unique prefix)")
@click.argument("search_id")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--wide", is_flag=True, help="Whole architectures, each on its own line under its trial.")
def show_cmd(search_id: str, store: str | None, fmt: str, wide: bool) -> None:
    """Show a search's trials, one line each (a unique prefix of its id is enough)."""
    st = store_of(store, "read", wanted=f"search {search_id!r}")
    sid = st.resolve_search(search_id)
    rec = st.search(sid)
    trials = st.trials(sid)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "search_id": sid,
                    "task": rec.task,
                    "strategy": rec.strategy,
                    "state": rec.state,
                    "seed": rec.seed,
                    "objective": rec.objective,
                    "summary": rec.summary,
                    "tags": rec.tags,
                    "trials": [
                        {
                            "trial_id": t.trial_id,
                            "number": t.number,
                            "state": t.state,
                            "metrics": t.metrics,
                            "genotype": genotype_obj(t.genotype_json),
                            "genotype_key": t.genotype_key,
                            "parent_trial": t.parent_trial,
                            "reason": t.reason,
                        }
                        for t in trials
                    ],
                },
                indent=2,
            )
        )
        return
    for line in show_lines(rec, trials, wide):
        click.echo(line)


#: Short headers of common metrics, so numbers keep their room at 80 columns.
SHORT_NAMES = {"val_accuracy": "val acc", "test_accuracy": "test acc", "neg_val_loss": "-val loss"}


def trial_state(t) -> str:
    """``finished``, ``failed``, ``stopped 3/30`` (stopped early by a rule after 3 of 30 epochs),
    ``running``; a one-shot search's ``supernet`` and its ``estimate``s."""
    from metastore.schema import TAG_ESTIMATOR, TAG_SUPERNET
    from workbench.search.records import fidelity_of

    if t.tags.get(TAG_SUPERNET) and t.state == "finished":  # a one-shot search's supernet training
        return "supernet"
    fid = fidelity_of(t)
    if t.state == "finished" and fid.get("stopped"):
        done, planned = fid.get("epochs"), fid.get("planned_epochs")
        return f"stopped {done}/{planned}" if done and planned else "stopped"
    if t.state == "finished" and t.tags.get(TAG_ESTIMATOR):
        return "estimate"
    return t.state


def show_lines(rec, trials, wide: bool = False) -> list[str]:
    """``nasw show`` as lines: a title, what sets the search apart, one line per trial (the best
    marked ``*``, members of a multi-objective search's Pareto front ``P``, every objective, the
    rung of a scheduled trial, the short architecture or why it failed) and a legend."""
    import textwrap

    from metastore.schema import TAG_ESTIMATOR, TAG_SUPERNET
    from workbench.cli.app import objectives_text, setup_parts, terminal_width, text_table
    from workbench.report import best_trial
    from workbench.search.records import fidelity_of
    from workbench.space.registry import describe_json

    width = terminal_width(400 if wide else 160)
    obj = rec.objective
    specs = [o for o in objectives_text(rec.spec).split(",") if o]
    metrics = [o.lstrip("+-") for o in specs] or [obj, "test_accuracy"]
    front = _front_ids(trials, specs)
    best = best_trial(trials, obj)  # a full-fidelity trial when there is one (not an estimate)
    rungs = any(fidelity_of(t).get("rung") is not None for t in trials)
    fmts = {m: _metric_format([t.metrics.get(m) for t in trials]) for m in metrics}
    header = ["", "no", "trial", "state", *(SHORT_NAMES.get(m, m) for m in metrics), "params", "secs"]
    header += ["rung"] if rungs else []
    header.append("architecture")
    rows = []
    for t in trials:
        mark = "*" if best is not None and t.trial_id == best.trial_id else ("P" if t.trial_id in front else "")
        detail = " ".join(str(t.reason or "").split()) if t.state == "failed" else describe_json(t.genotype_json, 2000)
        if t.tags.get(TAG_SUPERNET):  # a one-shot search's supernet training, not a trial of its loop
            detail = f"supernet ({t.tags[TAG_SUPERNET]}){': ' + t.reason if t.reason else ''}"
        elif t.tags.get(TAG_ESTIMATOR):
            detail = f"{t.tags[TAG_ESTIMATOR]}: {detail}"
        params = t.metrics.get("params")
        row = [
            mark,
            str(t.number),
            t.trial_id[:8],
            trial_state(t),
            *(_metric(t.metrics.get(m), fmts[m]) for m in metrics),
        ]
        row += [_count(params), fmt_num(t.metrics.get("train_seconds"), 1)]
        if rungs:
            rung = fidelity_of(t).get("rung")
            row.append("-" if rung is None else str(rung))
        rows.append([*row, detail or ""])
    right = tuple(range(4, len(header) - 1))
    title = f"{rec.task}, {rec.strategy}, {rec.state}, {len(trials)} trials; " + ", ".join(setup_parts(rec))
    lines = [f"search {rec.search_id}" + (f" ({rec.name})" if rec.name else ""), *textwrap.wrap(title, width=width)]
    if wide:  # whole architectures, each under its row
        table = text_table(header[:-1], [r[:-1] for r in rows], width, right=right, flex=2)
        lines.append(table[0])
        for row, r in zip(table[1:], rows):
            lines += [row] + textwrap.wrap(r[-1], width=width, initial_indent="      ", subsequent_indent="        ")
    else:
        lines += text_table(header, rows, width, right=right)
    legend = "* best trial" + ("; P: on the Pareto front" if front else "")
    if any(r[3].startswith("stopped ") for r in rows):
        legend += "; stopped a/b: stopped early after a of b epochs"
    if not wide:
        legend += "; whole architectures: --wide"
    return [*lines, *textwrap.wrap(legend, width=width)]


def _count(value) -> str:
    """A parameter count in 4 or 5 characters: ``812``, ``12.3k``, ``989k``, ``1.2M``."""
    if value is None or not math.isfinite(float(value)):
        return "-"
    v = float(value)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.1f}{unit}" if abs(v) < 10 * size else f"{v / size:.0f}{unit}"
    return str(int(v))


def _metric_format(values) -> str:
    """One format for a column of metrics: 4 decimals, or 3 significant digits when some value is
    tiny or huge (latencies, losses)."""
    finite = [abs(float(v)) for v in values if v is not None and math.isfinite(float(v)) and v != 0]
    return ".4f" if all(1e-3 <= v < 1e4 for v in finite) else ".3g"


def _metric(value, fmt: str) -> str:
    return "-" if value is None else format(float(value), fmt)


def _front_ids(trials, specs: list[str]) -> set[str]:
    """Ids of the finished trials on the Pareto front of a multi-objective search (empty otherwise)."""
    if len(specs) < 2:
        return set()
    from workbench.strategy.pareto import objective_matrix, pareto_front, parse_objectives

    try:
        parsed = parse_objectives(specs)
        done = [t for t in trials if t.state == "finished"]
        values, ok = objective_matrix([t.metrics for t in done], parsed)
        rows = [t for t, good in zip(done, ok) if good]
        return {rows[int(i)].trial_id for i in pareto_front(values[ok])} if rows else set()
    except (ValueError, TypeError):
        return set()


@cli.command("lineage", epilog="\b\nExample:\n  nasw lineage 7c1d0e   (a trial id or a unique prefix of 6+ characters)")
@click.argument("trial_id")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def lineage_cmd(trial_id: str, store: str | None, fmt: str) -> None:
    """Show a trial's family tree: its ancestors up to the root, the morphism steps between
    them, and its children (TRIAL_ID: the full id or a unique prefix of 6+ characters)."""
    from workbench.lineage import ancestors, children, resolve_trial
    from workbench.space.registry import describe_json

    st = store_of(store, "read", wanted=f"trial {trial_id!r}")
    tid = resolve_trial(st, trial_id)
    line = ancestors(st, tid)
    kids = children(st, line[-1].trial)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "trial_id": tid,
                    "ancestors": [
                        {
                            "trial_id": g.trial.trial_id,
                            "task": g.trial.task,
                            "search_id": g.trial.search_id,
                            "number": g.trial.number,
                            "state": g.trial.state,
                            "parent_trial": g.trial.parent_trial,
                            "genotype": genotype_obj(g.trial.genotype_json),
                            "steps": [s.to_dict() for s in g.steps],
                            "inherited": g.inherited,
                            "warning": g.warning,
                            "metrics": g.trial.metrics,
                        }
                        for g in line
                    ],
                    "children": [{"trial_id": c.trial_id, "number": c.number, "metrics": c.metrics} for c in kids],
                },
                indent=2,
            )
        )
        return
    from rich.console import Console

    root = line[0].trial
    title = f"lineage of trial {tid[:12]} ({len(line)} generation{'s' if len(line) != 1 else ''})"
    table = narrow_table(
        "gen",
        "trial",
        "task #",
        "val",
        "test",
        "epochs",
        "genotype",
        "from parent",
        wrap=("task #", "genotype", "from parent"),
        title=title,
        show_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
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
            str(depth),
            t.trial_id[:8],
            f"{t.task} #{t.number}",
            fmt_num(t.metrics.get("val_accuracy")) if t.state == "finished" else t.state,
            fmt_num(t.metrics.get("test_accuracy")),
            "-" if epochs is None else str(int(epochs)),
            describe_json(t.genotype_json),
            how,
            style="bold" if t.trial_id == tid else None,
        )
    console = Console()
    console.print(table)
    if root.parent_trial is None and len(line) == 1 and not kids:
        console.print("no parent and no children: trained from scratch")
    if kids:
        listed = ", ".join(
            f"#{c.number} {c.trial_id[:12]} (val {fmt_num(c.metrics.get('val_accuracy'))})" for c in kids[:20]
        )
        console.print(f"children in its search: {listed}{' ...' if len(kids) > 20 else ''}")


@cli.command("ui", epilog="\b\nExample:\n  nasw ui --port 5001")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to listen on (127.0.0.1 = this machine only)."
)
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option(
    "--allowed-hosts",
    "allowed_hosts",
    default=None,
    metavar="HOST[,HOST...]",
    help="Host headers the UI answers (MLflow's guard against DNS rebinding; default: this machine's "
    "loopback names, --host and its host name, with and without the port).",
)
def ui_cmd(store: str | None, host: str, port: int, allowed_hosts: str | None) -> None:
    """Start the MLflow UI on the same store (it stops with this command, however it is stopped)."""
    import subprocess

    from metastore import default_store_uri
    from metastore.mlflow_setup import tracking_uri_for

    uri = store or default_store_uri()
    if uri.startswith(("http://", "https://")):
        click.echo(f"the store is an MLflow server: open {uri}")
        return
    if uri.startswith("memory://"):
        raise UserError("a memory:// store has no UI")
    tracking = tracking_uri_for(uri)
    if not _is_loopback(host):
        click.echo(
            f"warning: --host {host} makes the store readable and writable by anyone who can reach port {port} "
            "(the MLflow UI has no login); for a team server use MLflow's authentication: "
            "`mlflow server --app-name basic-auth` (https://mlflow.org/docs/latest/self-hosting/security/basic-http-auth/)",
            err=True,
        )
    with tempfile.TemporaryDirectory(prefix="nasw-ui-") as tmp:
        pid_file = os.path.join(tmp, "server.pid")
        cmd = [sys.executable, "-m", "metastore.ui_server", "--parent", str(os.getpid()), "--pid-file", pid_file]
        cmd += ["--", "--backend-store-uri", tracking, "--host", host, "--port", str(port)]
        cmd += ["--allowed-hosts", allowed_hosts or _default_allowed_hosts(host, port)]
        # MLflow 3 opens on its GenAI view unless told otherwise; this URL opens the runs tables.
        click.echo(f"MLflow UI for {tracking}")
        click.echo(f"open http://{host}:{port}/#/experiments?workflowType=machine_learning (Ctrl-C to stop)")
        with _forward_stop_signals(pid_file) as stopped:
            code = subprocess.call(cmd)
    if stopped:
        click.echo("MLflow UI stopped", err=True)
        code = 0
    sys.exit(code)


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def _default_allowed_hosts(host: str, port: int) -> str:
    """The Host headers the UI answers by default: the loopback names, a specific --host, and for
    a non-loopback --host this machine's host name; each with and without the port."""
    import socket

    names = ["localhost", "127.0.0.1", "[::1]"]
    if host not in ("0.0.0.0", "::", ""):
        names.append(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    if not _is_loopback(host):
        full = socket.gethostname()
        names += [full, full.split(".")[0]] if full else []
    return ",".join(dict.fromkeys(x for n in names for x in (n, f"{n}:{port}")))


@contextlib.contextmanager
def _forward_stop_signals(pid_file: str):
    """While the UI runs: SIGTERM, SIGINT and SIGHUP are passed on to the server's supervisor
    (:mod:`metastore.ui_server`), which stops every process of the server, and this command
    waits for it; yields a list that is non-empty once a signal came. Before the supervisor has
    written its pid, this process exits at once and the supervisor, seeing its parent gone,
    stops the server itself."""
    stopped: list[int] = []

    def forward(signum, frame) -> None:
        stopped.append(signum)
        try:
            pid = int(Path(pid_file).read_text(encoding="ascii"))
        except (OSError, ValueError):
            os._exit(128 + signum)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    names = ("SIGTERM", "SIGINT", "SIGHUP")
    signals = [getattr(signal, n) for n in names if hasattr(signal, n)]
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return
    # an ignored signal stays ignored (SIGHUP under nohup, SIGINT of a background job)
    previous = {sig: signal.signal(sig, forward) for sig in signals if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield stopped
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
