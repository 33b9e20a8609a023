"""The ``nasw`` group, its entry point (one ``error: ...`` line and exit code 2 for bad input,
never a traceback), and the helpers the command modules share."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from workbench.errors import NaswError, StoreError, UserError

DEBUG_ENV = "NASW_DEBUG"
STORE_HELP = "Metastore URI (default: $NASW_STORE or sqlite:///runs/mlflow.db)."


def store_of(uri: str | None, mode: str = "create", *, wanted: str | None = None):
    """The metastore at ``uri`` (default: ``$NASW_STORE`` or ``sqlite:///runs/mlflow.db``).

    ``mode`` says what the command does with it (:func:`metastore.open_store`): ``create``
    (``nasw search``: a missing store is created), ``write`` (the store must exist and be
    writable) or ``read`` (the store must exist; a mistyped path is one error line naming it,
    never a new empty store). ``wanted`` names what the command looks for in the store (``search
    'abc'``): the error of a missing store then starts with ``no search 'abc': ``.
    """
    from metastore import open_store
    from metastore.errors import NoStore

    try:
        return open_store(uri, mode=mode)
    except NoStore as exc:
        if wanted is None:
            raise
        raise NoStore(f"no {wanted}: {exc}") from None


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
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


def fmt_num(value: float | None, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals; ``-`` for None."""
    return "-" if value is None else f"{value:.{digits}f}"


def ellipsize(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the cut marked with ``…`` (the full value is in
    ``--format json``)."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def narrow_table(*headers: str, wrap: tuple[str, ...] = (), **kwargs: Any):
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


def genotype_obj(text: str) -> Any:
    """A stored genotype JSON as an object for ``--format json``; the raw text if it does not parse."""
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return text


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nasw", prog_name="nasw")
def cli() -> None:
    """nasw: neural architecture search that learns across tasks.

    Every search and trial is recorded in an MLflow metastore (default: runs/mlflow.db).
    """


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
            _error_line(
                f"internal error: {type(exc).__name__}{': ' + text if text else ''} "
                f"(please report it; set {DEBUG_ENV}=1 for the traceback)"
            ),
            err=True,
        )
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
