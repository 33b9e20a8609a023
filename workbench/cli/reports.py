"""Comparisons, exports and reports of recorded searches: ``nasw compare``, ``nasw export``, ``nasw report``."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click

from workbench.cli.app import STORE_HELP, cli, duration, fmt_num, setup_parts, store_of, terminal_width, text_table
from workbench.errors import UserError


def _searches(store, ids: Sequence[str]) -> list[str]:
    return [store.resolve_search(i) for i in ids]


@cli.command("compare", epilog="\b\nExample:\n  nasw compare 3f2a1b2c 9e8d7c6b   (search ids or unique prefixes)")
@click.argument("search_ids", nargs=-1, required=True)
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--out", "out", default="compare.png", show_default=True, help="PNG of the best-so-far curves.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def compare_cmd(search_ids: Sequence[str], store: str | None, out: str, fmt: str) -> None:
    """Compare searches: a table of their results and one plot of their best-so-far curves."""
    from workbench.plots import plot_compare
    from workbench.report import compare_rows

    st = store_of(store, "read", wanted="searches " + ", ".join(map(repr, search_ids)))
    rows = compare_rows(st, _searches(st, search_ids))
    objectives = sorted({r["objective"] for r in rows})
    curves = {f"{r['task']} {r['strategy']} {r['search_id'][:8]}": r["curve"] for r in rows}
    try:
        png = plot_compare(curves, "/".join(objectives), path=out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    if fmt == "json":
        click.echo(
            json.dumps(
                {"searches": [{k: v for k, v in r.items() if k != "curve"} for r in rows], "plot": png}, indent=2
            )
        )
        return
    click.echo("\n".join(compare_lines(st, rows, terminal_width(120))))
    click.echo(f"best-so-far curves: {png}" if png else "no finished trials to plot")


def compare_lines(store, rows, width: int) -> list[str]:
    """One line per search (id, task, strategy, trials, best values, wall time), then, indented
    and wrapped, what sets it apart: seed, budget, options, scheduler, the warm start in words."""
    import textwrap

    header = ["search", "task", "strategy", "trials", "best", "test", "wall"]
    cells = []
    for r in rows:
        wall = r["wall_seconds"]
        trials = f"{r['trials']} ({r['failed']} failed)" if r["failed"] else str(r["trials"])
        cells.append(
            [
                r["search_id"][:12],
                r["task"],
                r["strategy"],
                trials,
                fmt_num(r["best_objective"]),
                fmt_num(r["best_report"]),
                "-" if wall is None else duration(wall),
            ]
        )
    table = text_table(header, cells, width, right=(3, 4, 5, 6), flex=1)
    lines = table[:1]
    for r, line in zip(rows, table[1:]):
        lines.append(line)
        rec = store.search(r["search_id"])
        setup = (f"{rec.name}: " if rec.name else "") + ", ".join(setup_parts(rec))
        lines += textwrap.wrap(setup, width=max(20, width), initial_indent=" " * 4, subsequent_indent=" " * 6)
    objectives = sorted({r["objective"] for r in rows})
    lines.append(f"best: best {'/'.join(objectives)}; test: its test accuracy; wall: wall-clock time")
    return lines


@cli.command("export", epilog="\b\nExample:\n  nasw export 3f2a1b2c --out trials.csv")
@click.argument("search_id")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default=None,
    help="Output format (default: from --out's extension, else csv).",
)
@click.option("--out", "out", default=None, help="File to write (default: standard output).")
def export_cmd(search_id: str, store: str | None, fmt: str | None, out: str | None) -> None:
    """Export every trial of a search (number, id, state, metrics, params, genotype, reason)."""
    from workbench.report import export_text

    if fmt is None:
        fmt = "json" if out and out.lower().endswith(".json") else "csv"
    st = store_of(store, "read", wanted=f"search {search_id!r}")
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


@cli.command("report", epilog="\b\nExample:\n  nasw report 3f2a1b2c   (writes report-<search id>.html)")
@click.argument("search_id")
@click.option("--store", envvar="NASW_STORE", default=None, help=STORE_HELP)
@click.option("--out", "out", default=None, help="HTML file to write (default: report-<search id>.html).")
def report_cmd(search_id: str, store: str | None, out: str | None) -> None:
    """Write a self-contained HTML report of a search (summary, trials, plots); also attached to its
    MLflow run when the store is writable."""
    from workbench.report import write_report

    st = store_of(store, "read", wanted=f"search {search_id!r}")
    sid = st.resolve_search(search_id)
    path = write_report(st, sid, out or f"report-{sid[:12]}.html", log=st.writable)
    if st.writable:
        click.echo(f"wrote {path} (also attached to the search's MLflow run as report/report.html)")
    else:
        click.echo(f"wrote {path} (not attached to the search's MLflow run: the store is read-only)")
