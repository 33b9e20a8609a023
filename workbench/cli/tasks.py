"""Tasks: ``nasw tasks`` lists them, ``nasw task init`` writes one for a user's own data."""

from __future__ import annotations

import click

from workbench.cli.app import cli
from workbench.errors import UserError


@cli.command("tasks")
def tasks_cmd() -> None:
    """List the tasks in tasks/ (and $NASW_TASKS); files that do not read are listed as broken."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from workbench.task import printable, scan_tasks

    def cell(value: object, limit: int = 200) -> Text:
        return Text(printable(str(value), limit))  # plain text: no markup, no control characters

    table = Table("task", "kind", "dataset", "space", "objective")
    table.add_column("description", max_width=60)  # wraps, so a narrow terminal keeps every column
    for col in table.columns[:-1]:
        col.no_wrap = True
    tasks, broken = scan_tasks()
    for t in tasks:
        table.add_row(
            cell(t.name),
            cell(t.kind),
            cell(t.dataset.get("name", t.dataset.get("loader")), 40),
            cell(t.space.get("kind", "?"), 40),
            cell(t.objective, 40),
            cell(t.description, 500),
        )
    for b in broken:
        table.add_row(cell(b.path.stem, 60), Text("broken", style="red"), "", "", "", cell(b.error, 500))
    Console().print(table)


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
