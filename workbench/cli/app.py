"""The ``nasw`` group, its entry point (one ``error: ...`` line and exit code 2 for bad input,
never a traceback), and the helpers the command modules share."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
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


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], width: int, *, right: Sequence[int] = (), flex: int = -1
) -> list[str]:
    """Plain aligned columns that fit ``width`` characters, one line per row: every column as wide
    as its longest value, except column ``flex`` (default: the last), which gets what is left (at
    least 8 characters) and ends in ``…`` where its value is longer; ``right`` columns align right."""
    n = len(header)
    flex = flex % n
    widths = [max([len(header[i])] + [len(r[i]) for r in rows]) for i in range(n)]
    rest = sum(widths) - widths[flex] + 2 * (n - 1)
    widths[flex] = max(8, min(widths[flex], width - rest))

    def line(values: Sequence[str]) -> str:
        cells = [ellipsize(v, widths[i]) for i, v in enumerate(values)]
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)]
        return "  ".join(cells).rstrip()

    return [line(header)] + [line(r) for r in rows]


def terminal_width(limit: int = 160) -> int:
    """Columns of the terminal (``$COLUMNS`` first; 80 when unknown), at most ``limit``."""
    import shutil

    return min(shutil.get_terminal_size((80, 24)).columns, limit)


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


class StrategyChoice(click.Choice):
    """``--strategy``: one of the registered strategies (:func:`~workbench.strategy.registry.strategy_names`),
    read when the choices are shown or checked, so a strategy registered later is offered too."""

    name = "strategy"

    def __init__(self) -> None:
        super().__init__([], case_sensitive=True)

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        from workbench.strategy.registry import strategy_names

        return tuple(strategy_names())

    @choices.setter
    def choices(self, value: Any) -> None:  # click's constructor sets it; the registry decides
        pass

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if value in self.choices:
            return value
        self.fail(f"unknown strategy {value!r}; expected one of: {', '.join(self.choices)}", param, ctx)


#: Constructor keywords a search fills in itself (warm start, input shape, a climb's start).
INTERNAL_OPTIONS = frozenset({"prior", "sources", "input_shape", "start_genotype", "parents", "cost"})


def strategy_options(name: str) -> list[tuple[str, Any]]:
    """The ``--option`` keys of strategy ``name`` with their defaults, in constructor order (the
    constructor's keywords and, through ``**kwargs``, its parents'; those the search fills in
    itself left out)."""
    import inspect

    from workbench.strategy.base import Strategy
    from workbench.strategy.registry import strategy_class

    out: dict[str, Any] = {}
    for klass in strategy_class(name).__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is Strategy or klass is object:
            break
        params = list(inspect.signature(init).parameters.values())
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "space", "seed"):
                if p.name not in INTERNAL_OPTIONS:
                    out.setdefault(p.name, None if p.default is p.empty else p.default)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return list(out.items())


def _value_text(value: Any, width: int = 24) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ellipsize(",".join(_value_text(v, width) for v in value), width)
    if isinstance(value, dict):
        return ellipsize(",".join(f"{k}:{_value_text(v, width)}" for k, v in value.items()), width)
    return ellipsize(str(value), width)


def warm_text(spec: Any) -> str:
    """A search's warm start for people: ``auto: nbgraph-photo 0.42, nbgraph-cs 0.10`` (its mode
    and sources with their initial trust, most trusted first), ``cold`` without one."""
    ws = spec.get("warm_start") if isinstance(spec, dict) else None
    if not isinstance(ws, dict):
        return "cold"
    mode = str(ws.get("mode") or "?")
    sources = ws.get("sources") if isinstance(ws.get("sources"), dict) else {}
    if not sources:
        return f"{mode}: no sources (cold)"
    ranked = sorted(sources.items(), key=lambda kv: -kv[1] if isinstance(kv[1], (int, float)) else 0)
    return f"{mode}: " + ", ".join(
        f"{task} {fmt_num(w, 2) if isinstance(w, (int, float)) else w}" for task, w in ranked
    )


def objectives_text(spec: Any) -> str:
    """The objectives of a multi-objective search (``val_accuracy,-latency``); ``""`` otherwise."""
    opts = spec.get("strategy_options") if isinstance(spec, dict) else None
    value = opts.get("objectives") if isinstance(opts, dict) else None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) and len(value) > 1 else ""


def setup_parts(rec: Any) -> list[str]:
    """What tells a search apart, each part short: budget (and what it counts), the options the
    user set, objectives, scheduler, early stopping, estimator, warm start."""
    spec = rec.spec if isinstance(rec.spec, dict) else {}
    sched = spec.get("scheduler") if isinstance(spec.get("scheduler"), dict) else None
    budget = spec.get("budget")
    parts = [f"seed {rec.seed}"]
    if budget is not None:
        parts.append(f"budget {budget}" + (" (compute)" if sched else ""))
    opts = spec.get("strategy_options") if isinstance(spec.get("strategy_options"), dict) else {}
    shown = {k: v for k, v in opts.items() if k not in INTERNAL_OPTIONS and k != "objectives"}
    parts += [f"{k}={_value_text(v)}" for k, v in shown.items()]
    objectives = objectives_text(spec)
    if objectives:
        parts.append(f"objectives {objectives}")
    if sched:
        extra = sched.get("options") if isinstance(sched.get("options"), dict) else {}
        parts.append(f"scheduler {sched.get('name')}" + (f" ({_value_text(extra, 40)})" if extra else ""))
    stop = spec.get("stop_early")
    if isinstance(stop, dict) and stop.get("rule"):
        parts.append(f"stop early {stop['rule']}")
    oneshot = spec.get("oneshot")
    if isinstance(oneshot, dict) and oneshot.get("estimator"):
        parts.append(f"estimator {oneshot['estimator']}")
    if isinstance(spec.get("warm_start"), dict):
        parts.append("warm start " + warm_text(spec))
    return parts


def genotype_obj(text: str) -> Any:
    """A stored genotype JSON as an object for ``--format json``; the raw text if it does not parse."""
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return text


def duration(seconds: float) -> str:
    """``42s``, ``4m10s``, ``2h05m``, ``3d04h``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_value(value: float | None) -> str:
    """An objective for people: 4 decimals for values like accuracies, 3 significant digits for
    tiny or huge ones (latencies, losses), whole counts with separators (params)."""
    if value is None or not isinstance(value, (int, float)):
        return "-"
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if abs(v) >= 1000 and v.is_integer():
        return f"{int(v):,}"
    if v == 0 or 1e-3 <= abs(v) < 1000:
        return f"{v:.4f}"
    return f"{v:.3g}"


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
