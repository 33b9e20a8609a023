"""What there is to search with: ``nasw tasks`` lists the tasks, ``nasw task init`` writes one for a
user's own data, ``nasw strategies`` lists the strategies with their options."""

from __future__ import annotations

import click

from workbench.cli.app import cli, strategy_options
from workbench.errors import UserError


@cli.command("tasks", epilog="\b\nExample:\n  nasw tasks --wide")
@click.option("--wide", is_flag=True, help="Whole descriptions (wrapped) instead of one line per task.")
def tasks_cmd(wide: bool) -> None:
    """List the tasks in tasks/ (and $NASW_TASKS), one line each; files that do not read are
    listed as broken."""
    from rich.console import Console
    from rich.text import Text

    from workbench.cli.app import narrow_table
    from workbench.task import printable, scan_tasks

    def cell(value: object, limit: int = 200) -> Text:
        return Text(printable(str(value), limit))  # plain text: no markup, no control characters

    tasks, broken = scan_tasks()
    rows = [
        [
            cell(t.name),
            cell(t.kind),
            cell(t.dataset.get("name", t.dataset.get("loader")), 40),
            cell(t.space.get("kind", "?"), 40),
            cell(t.objective, 40),
            cell(t.description, 500),
        ]
        for t in tasks
    ]
    rows += [
        [cell(b.path.stem, 60), Text("broken", style="red"), Text(""), Text(""), Text(""), cell(b.error, 500)]
        for b in broken
    ]
    console = Console()
    headers = ["task", "kind", "data", "space", "objective"]
    if not wide and console.width < 100:  # the data set is mostly in the task's name: --wide shows it
        del headers[2]
        rows = [r[:2] + r[3:] for r in rows]
    table = narrow_table(*headers, "description", wrap=("description",), show_edge=False)
    desc = table.columns[-1]
    if not wide:  # one line per task: the description gets what the other columns leave, ending in "…"
        used = sum(max([len(h)] + [r[i].cell_len for r in rows]) + 2 for i, h in enumerate(headers))
        desc.no_wrap, desc.overflow, desc.max_width = True, "ellipsis", max(11, console.width - used - 4)
    for r in rows:
        table.add_row(*r)
    console.print(table)


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


@task_group.command("init", epilog="\b\nExample:\n  nasw task init flowers --data flowers.csv --label species")
@click.argument("name")
@click.option(
    "--data",
    "data",
    required=True,
    help="A CSV file, a .npz/.npy file, or a folder of images (one subfolder per class).",
)
@click.option(
    "--label",
    default=None,
    help="CSV: the label column (default: label, target or class, else the last); "
    ".npz: the labels key; .npy: the labels file.",
)
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


def _default_text(value: object) -> str:
    if value is None or value == () or value == "":
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@cli.command("strategies", epilog="\b\nExample:\n  nasw strategies evolution")
@click.argument("names", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def strategies_cmd(names: tuple[str, ...], fmt: str) -> None:
    """List the search strategies and their --option keys with defaults (NAMES: only these;
    '-' means unset: the strategy picks, or the option is off)."""
    import json

    from workbench.strategy.registry import strategy_class, strategy_names

    unknown = [n for n in names if n not in strategy_names()]
    if unknown:
        raise UserError(f"unknown strategy {unknown[0]!r}; expected one of {', '.join(strategy_names())}")
    rows = []
    for name in names or strategy_names():
        doc = (strategy_class(name).__doc__ or "").strip().splitlines()
        rows.append((name, doc[0].rstrip(",") if doc else "", strategy_options(name)))
    if fmt == "json":
        out = [{"strategy": n, "summary": d, "options": {k: repr(v) for k, v in opts}} for n, d, opts in rows]
        click.echo(json.dumps(out, indent=2))
        return
    import textwrap

    for name, doc, opts in rows:
        click.echo(textwrap.fill(f"{name}: {doc}", width=78, subsequent_indent="    "))
        text = ", ".join(f"{k}={_default_text(v)}" for k, v in opts) or "(no options)"
        click.echo(textwrap.fill(text, width=78, initial_indent="  options: ", subsequent_indent="    "))
    click.echo("use: nasw search --task TASK --strategy NAME --option KEY=VALUE (repeatable)")
