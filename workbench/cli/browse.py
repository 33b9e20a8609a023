"""Reading the store: ``nasw ls``, ``nasw show``, ``nasw lineage`` and ``nasw ui``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

import click

from workbench.cli.app import STORE_HELP, cli, ellipsize, fmt_num, genotype_obj, narrow_table, store_of
from workbench.errors import UserError

#: Characters of a seed that ``nasw ls`` shows (2**32 has 10 digits; longer seeds end in "…").
SEED_WIDTH = 10


@cli.command("ls")
@click.option("--task", "task_name", default=None, help="Only searches of this task.")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def ls_cmd(task_name: str | None, store: str | None, fmt: str) -> None:
    """List searches with their best values."""
    st = store_of(store, "read")
    rows = st.searches(task_name)
    if fmt == "json":
        click.echo(
            json.dumps(
                [
                    {
                        "search_id": s.search_id,
                        "task": s.task,
                        "strategy": s.strategy,
                        "state": s.state,
                        "seed": s.seed,
                        "n_trials": s.n_trials,
                        "objective": s.objective,
                        "summary": s.summary,
                        "start_time": s.start_time,
                    }
                    for s in rows
                ],
                indent=2,
            )
        )
        return
    from datetime import datetime

    from rich.console import Console

    table = narrow_table(
        "search",
        "task",
        "strategy",
        "seed",
        "state",
        "n",
        "best",
        "test",
        "started",
        wrap=("task",),
        show_edge=False,
        padding=(0, 0),
        caption="n: trials; best: best objective; test: its test accuracy",
    )
    for s in rows:
        table.add_row(
            s.search_id[:8],
            s.task,
            s.strategy,
            ellipsize(str(s.seed), SEED_WIDTH),  # a 22-digit seed must not squeeze the task out
            s.state,
            str(s.n_trials),
            fmt_num(s.summary.get(f"best_{s.objective}")),
            fmt_num(s.summary.get("best_test_accuracy")),
            datetime.fromtimestamp(s.start_time).strftime("%m-%d %H:%M") if s.start_time else "-",
        )
    Console().print(table if rows else f"no searches in {st.uri}")


@cli.command("show")
@click.argument("search_id")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def show_cmd(search_id: str, store: str | None, fmt: str) -> None:
    """Show a search's trials (a unique prefix of its id is enough)."""
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
    from rich.console import Console

    from workbench.space.registry import describe_json

    obj = rec.objective
    short = {"val_accuracy": "val acc", "test_accuracy": "test acc", "neg_val_loss": "-val loss"}
    table = narrow_table(
        "no",
        "trial",
        "state",
        short.get(obj, obj),
        "test acc",
        "params",
        "secs",
        title=f"{rec.task}, {rec.strategy}, seed {rec.seed}, {rec.state}",
        caption=f"search {sid}",
    )
    table.add_column("genotype / reason", overflow="fold", min_width=8, max_width=36)
    from metastore.schema import TAG_ESTIMATOR, TAG_SUPERNET
    from workbench.report import best_trial

    best = best_trial(trials, obj)  # a full-fidelity trial when there is one (not an estimate)
    for t in trials:
        style = (
            "bold green"
            if best is not None and t.trial_id == best.trial_id
            else ("red" if t.state == "failed" else None)
        )
        detail = t.reason if t.state == "failed" else describe_json(t.genotype_json)
        if t.tags.get(TAG_SUPERNET):  # a one-shot search's supernet training, not a trial of its loop
            detail = f"supernet ({t.tags[TAG_SUPERNET]}){': ' + t.reason if t.reason else ''}"
        elif t.tags.get(TAG_ESTIMATOR):
            detail = f"{t.tags[TAG_ESTIMATOR]} estimate: {detail}"
        params = t.metrics.get("params")
        table.add_row(
            str(t.number),
            t.trial_id[:10],
            t.state,
            fmt_num(t.metrics.get(obj)),
            fmt_num(t.metrics.get("test_accuracy")),
            "-" if params is None else f"{int(params):,}",
            fmt_num(t.metrics.get("train_seconds"), 1),
            detail or "",
            style=style,
        )
    Console().print(table)


@cli.command("lineage")
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


@cli.command("ui")
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
