"""What a search produced, for people: plots, a self-contained HTML report, comparisons, exports.

Everything here reads the metastore (never a running search), so it works on any recorded
search: at the end of a search (:func:`log_search_artifacts`, called by the loop), from
``nasw report`` / ``nasw compare`` / ``nasw export``, or from a notebook.

Warm-start source weights come from the search's ``source_weights`` tag (written by the search:
JSON ``{task: weight}`` when it starts, then ``{task: [weight after each trial]}``).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metastore import Metastore, SearchRecord, TrialRecord
from metastore.schema import REASON_INTERRUPTED, TAG_FIDELITY, TAG_SOURCE_WEIGHTS, is_full_fidelity
from workbench.errors import UserError
from workbench.space.registry import describe_json

_log = logging.getLogger(__name__)

#: Plot files of a search, in report order: name -> caption.
PLOTS: dict[str, str] = {
    "best_so_far": "Every trial's objective and the best so far, against trials and against wall-clock time",
    "learning_curves": "Learning curves of the top trials",
    "pareto_front": "Pareto front of the search's objectives",
    "architecture": "The best architecture",
    "source_weights": "Warm start: weight of each source task",
}


@dataclass
class SearchSummary:
    """One search read back from the store, with what the plots and the report need.

    Attributes:
        record: The search.
        trials: Its trials in start order.
        objective: The maximised metric.
        report_metric: The metric reported for the final model (``test_accuracy``).
        budget: The total budget from the spec, or None.
        best: The finished trial with the highest objective, or None.
        wall_seconds: From the search's start to its last trial's end, or None.
        warm_start: Warm-start sources as text (``"-"`` when none).
        objectives: Multi-objective specs (``["val_accuracy", "-params"]``), or empty.
        curves: Learning curves of the top trials: label -> ``(epoch, value)`` points.
        source_weights: Source task -> ``(x, weight)`` points.
        input_shape: Shape of one example, when known (for the architecture's layer shapes).
        n_classes: Number of classes, when known.
    """

    record: SearchRecord
    trials: list[TrialRecord]
    objective: str
    report_metric: str
    budget: int | None
    best: TrialRecord | None
    wall_seconds: float | None
    warm_start: str = "-"
    objectives: list[str] = field(default_factory=list)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    source_weights: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    n_classes: int | None = None

    @property
    def n_failed(self) -> int:
        """Failed trials (interrupted ones are counted by :attr:`n_interrupted`)."""
        return sum(1 for t in self.trials if t.state == "failed") - self.n_interrupted

    @property
    def n_interrupted(self) -> int:
        """Trials an interruption stopped (a resumed search re-runs them; they do not count)."""
        return sum(1 for t in self.trials if t.state == "failed" and (t.reason or "").startswith(REASON_INTERRUPTED))

    def best_value(self, metric: str) -> float | None:
        """``metric`` of the best trial (by the objective)."""
        return None if self.best is None else self.best.metrics.get(metric)


# -- reading ----------------------------------------------------------------------------------
def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def best_trial(trials: Sequence[TrialRecord], objective: str) -> TrialRecord | None:
    """The finished trial with the highest finite ``objective``, among the full-fidelity ones when
    there are any (not a scheduler's lower rung, a trial stopped early or a one-shot estimate)."""
    ok = [t for t in trials if t.state == "finished" and _finite(t.metrics.get(objective))]
    ok = [t for t in ok if is_full_fidelity(t.tags.get(TAG_FIDELITY))] or ok
    return max(ok, key=lambda t: t.metrics[objective]) if ok else None


def warm_start_text(rec: SearchRecord) -> str:
    """The warm-start sources of a search as text, from its spec or tags; ``"-"`` when none."""
    spec = rec.spec or {}
    for key in ("warm_start", "warm_start_sources", "sources"):
        value = spec.get(key)
        if value not in (None, "", "none", [], {}):
            return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    for key, value in sorted(rec.tags.items()):
        k = key.lower()
        if ("warm" in k or k.endswith("sources")) and value not in ("", "none"):
            return value
    return "-"


def objectives_of(rec: SearchRecord) -> list[str]:
    """The multi-objective specs of a search (``strategy_options.objectives``), or empty."""
    opts = (rec.spec or {}).get("strategy_options") or {}
    value = opts.get("objectives") if isinstance(opts, Mapping) else None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)) and len(value) >= 2 and all(isinstance(v, str) for v in value):
        return list(value)
    return []


def source_weights_of(rec: SearchRecord) -> dict[str, list[tuple[float, float]]]:
    """Weight each source task received over a warm-started search (see the module docstring)."""
    series: dict[str, list[tuple[float, float]]] = {}
    text = rec.tags.get(TAG_SOURCE_WEIGHTS)
    if text:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, Mapping):
            for task, w in doc.items():
                if isinstance(w, (int, float)):
                    series[str(task)] = [(0.0, float(w))]
                elif isinstance(w, list):
                    series[str(task)] = [(float(i), float(v)) for i, v in enumerate(w) if _finite(v)]
    return {k: v for k, v in series.items() if v}


def data_shape(rec: SearchRecord) -> tuple[tuple[int, ...] | None, int | None]:
    """Input shape and number of classes of a search's task, by loading its data (None when it cannot)."""
    try:
        from workbench.data.base import load_splits
        from workbench.task import parse_task_dict

        task = parse_task_dict((rec.spec or {})["task"])
        if task.kind != "trained":
            return None, None
        options = {k: v for k, v in task.dataset.items() if k != "loader"}
        split = {k: v for k, v in task.split.items() if k in ("seed", "test", "valid")}
        splits = load_splits(task.dataset["loader"], **split, **options)
        return tuple(int(s) for s in splits.input_shape), int(splits.n_classes)
    except Exception as exc:  # noqa: BLE001 - the drawing goes without shapes
        _log.debug("no data shape for search %s: %s", rec.search_id, exc)
        return None, None


def summarize(
    store: Metastore,
    search_id: str,
    *,
    top: int = 5,
    curve_metric: str = "val_accuracy",
    input_shape: Sequence[int] | None = None,
    n_classes: int | None = None,
    load_data: bool = True,
) -> SearchSummary:
    """Read a search back for plots and reports.

    Args:
        store: The metastore.
        search_id: Full search id.
        top: Learning curves of this many best trials.
        curve_metric: The per-epoch metric of the learning curves.
        input_shape, n_classes: The task's data shape (read from the data when omitted and
            ``load_data``).
        load_data: Load the task's data to learn its shape when it is not given.
    """
    rec = store.search(search_id)
    trials = store.trials(search_id)
    objective = rec.objective or "val_accuracy"
    task_spec = (rec.spec or {}).get("task") or {}
    report_metric = (task_spec.get("metric") or {}).get("report", "test_accuracy")
    budget = (rec.spec or {}).get("budget")
    best = best_trial(trials, objective)
    ends = [t.end_time for t in trials if t.end_time]
    start = rec.start_time or min((t.start_time for t in trials if t.start_time), default=0.0)
    wall = (max(ends) - start) if ends and start else None
    ranked = sorted(
        (t for t in trials if t.state == "finished" and _finite(t.metrics.get(objective))),
        key=lambda t: -t.metrics[objective],
    )[:top]
    curves: dict[str, list[tuple[int, float]]] = {}
    for t in ranked:
        try:
            pts = store.metric_history(t.trial_id, curve_metric)
        except Exception:  # noqa: BLE001 - no history in this backend: no curves
            break
        if pts:
            curves[f"#{t.number} ({t.metrics[objective]:.3f})"] = pts
    if input_shape is None and load_data and best is not None:
        input_shape, n_classes = data_shape(rec)
    return SearchSummary(
        record=rec,
        trials=trials,
        objective=objective,
        report_metric=report_metric,
        budget=int(budget) if isinstance(budget, (int, float)) else None,
        best=best,
        wall_seconds=wall,
        warm_start=warm_start_text(rec),
        objectives=objectives_of(rec),
        curves=curves,
        source_weights=source_weights_of(rec),
        input_shape=None if input_shape is None else tuple(int(s) for s in input_shape),
        n_classes=n_classes,
    )


# -- plots ------------------------------------------------------------------------------------
def render_plots(summary: SearchSummary, folder: str | Path) -> dict[str, Path]:
    """Write every plot that applies to the search into ``folder``.

    Each plot is drawn on its own: one that fails is logged and left out, never raised.

    Returns:
        Plot name (a key of :data:`PLOTS`) -> PNG path, in :data:`PLOTS` order.
    """
    from workbench import architecture_plot, plots

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rec = summary.record
    title = f"{rec.task}: {rec.strategy} (seed {rec.seed})"

    makers = {
        "best_so_far": lambda p: plots.plot_best_so_far(
            summary.trials, summary.objective, title=title, path=p, start_time=rec.start_time or None
        ),
        "learning_curves": lambda p: plots.plot_learning_curves(
            summary.curves, "val_accuracy", title=f"learning curves of the top trials: {rec.task}", path=p
        ),
        "pareto_front": lambda p: (
            plots.plot_search_pareto(summary.trials, summary.objectives, title=f"Pareto front: {title}", path=p)
            if summary.objectives
            else None
        ),
        "architecture": lambda p: (
            None
            if summary.best is None
            else architecture_plot.plot_architecture(
                summary.best.genotype_json,
                summary.input_shape,
                summary.n_classes,
                title=f"best architecture: trial #{summary.best.number}, {summary.objective} "
                f"{summary.best.metrics.get(summary.objective, float('nan')):.4f}",
                path=p,
            )
        ),
        "source_weights": lambda p: plots.plot_source_weights(summary.source_weights, path=p),
    }
    out: dict[str, Path] = {}
    for name, make in makers.items():
        try:
            path = make(str(folder / f"{name}.png"))
        except Exception as exc:  # noqa: BLE001 - one plot must never cost the others
            _log.warning("plot %s of search %s failed: %s", name, rec.search_id, exc)
            continue
        if path:
            out[name] = Path(path)
    return out


# -- HTML -------------------------------------------------------------------------------------
_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; border-bottom: 2px solid #4a6d8c; padding-bottom: .3em; }
h2 { font-size: 1.2em; margin-top: 2em; color: #2c4a66; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ccd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #eef2f7; }
table.summary th { width: 14em; }
tr.best td { background: #e3f4e1; font-weight: 600; }
tr.failed td { color: #a33; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: .8em; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #555; margin-top: .3em; }
footer { margin-top: 3em; font-size: .75em; color: #777; }
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    """A number for people: whole numbers as integers (``epochs 30``), small ones with
    significant digits (``latency 0.000231``), others with ``digits`` decimals."""
    if not _finite(value):
        return "-"
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value)}"
    if abs(value) < 0.1:
        return f"{value:.{max(digits - 1, 1)}g}"
    return f"{value:.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(path.stem)}">'


def render_html(summary: SearchSummary, plot_files: Mapping[str, Path]) -> str:
    """A self-contained HTML page (inline CSS, images as data URIs, no external links)."""
    rec = summary.record
    obj, rep = summary.objective, summary.report_metric
    best = summary.best
    interrupted = f", {summary.n_interrupted} interrupted and re-run" if summary.n_interrupted else ""
    rows = [
        ("search", rec.search_id),
        ("task", rec.task),
        ("strategy", rec.strategy),
        ("space", rec.space),
        ("seed", rec.seed),
        ("state", rec.state),
        ("warm start", summary.warm_start),
        ("budget", "-" if summary.budget is None else summary.budget),
        ("trials", f"{len(summary.trials) - summary.n_interrupted} ({summary.n_failed} failed{interrupted})"),
        (f"best {obj}", _num(summary.best_value(obj))),
        (f"best {rep}", _num(summary.best_value(rep))),
        ("best trial", "-" if best is None else f"#{best.number} ({best.trial_id})"),
        ("wall time", _duration(summary.wall_seconds)),
        ("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.start_time)) if rec.start_time else "-"),
    ]
    if summary.objectives:
        rows.append(("objectives", ", ".join(summary.objectives)))
    if summary.input_shape:
        rows.append(("input shape", " x ".join(map(str, summary.input_shape))))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>nasw report: {_esc(rec.task)} {_esc(rec.strategy)} {_esc(rec.search_id[:12])}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>Search {_esc(rec.search_id[:12])}: {_esc(rec.task)}, {_esc(rec.strategy)}</h1>",
        '<h2 id="summary">Summary</h2>',
        '<table class="summary">',
        *[f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows],
        "</table>",
    ]
    if best is not None:
        try:
            pretty = json.dumps(json.loads(best.genotype_json), indent=2)
        except (ValueError, RecursionError):
            pretty = best.genotype_json
        parts += ['<h2 id="best">Best architecture</h2>', f"<pre>{_esc(pretty)}</pre>"]
    parts.append('<h2 id="plots">Plots</h2>')
    if not plot_files:
        parts.append("<p>No plots: no trial finished.</p>")
    for name, path in plot_files.items():
        parts += [
            f'<figure id="plot-{_esc(name)}">',
            _img(path),
            f"<figcaption>{_esc(PLOTS.get(name, name))}</figcaption>",
            "</figure>",
        ]
    metric_keys = [obj] + [k for k in (rep, "params", "train_seconds") if k != obj]
    extra = sorted({k for t in summary.trials for k in t.metrics} - set(metric_keys) - {"train_loss"})[:4]
    cols = ["#", "trial", "state", *metric_keys, *extra, "parent", "architecture / reason"]
    parts += [
        '<h2 id="trials">Trials</h2>',
        '<table class="trials">',
        "<tr>" + "".join(f"<th>{_esc(c)}</th>" for c in cols) + "</tr>",
    ]
    for t in summary.trials:
        cls = "best" if best is not None and t.trial_id == best.trial_id else ("failed" if t.state == "failed" else "")
        cells = [f'<td class="num">{t.number}</td>', f"<td>{_esc(t.trial_id[:12])}</td>", f"<td>{_esc(t.state)}</td>"]
        for k in [*metric_keys, *extra]:
            v = t.metrics.get(k)
            text = f"{int(v):,}" if k == "params" and _finite(v) else _num(v, 1 if k == "train_seconds" else 4)
            cells.append(f'<td class="num">{_esc(text)}</td>')
        cells.append(f"<td>{_esc((t.parent_trial or '-')[:12])}</td>")
        detail = t.reason if t.state == "failed" else describe_json(t.genotype_json)
        cells.append(f"<td>{_esc(detail or '')}</td>")
        parts.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    parts += [
        "</table>",
        f"<footer>nasw report of search {_esc(rec.search_id)}, written "
        f"{_esc(time.strftime('%Y-%m-%d %H:%M:%S'))}</footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(
    store: Metastore,
    search_id: str,
    out: str | Path,
    *,
    log: bool = True,
    summary: SearchSummary | None = None,
    plot_files: Mapping[str, Path] | None = None,
) -> Path:
    """Write the HTML report of a search to ``out``; also attach it to the search's parent run.

    Args:
        store: The metastore.
        search_id: Full search id.
        out: The HTML file to write.
        log: Attach the report (as ``report/report.html``) to the parent run.
        summary, plot_files: Already read / drawn (else read and drawn here).

    Returns:
        The written path.
    """
    out = Path(out)
    summary = summary or summarize(store, search_id)
    with tempfile.TemporaryDirectory(prefix="nasw-report-") as tmp:
        files = dict(plot_files) if plot_files is not None else render_plots(summary, tmp)
        text = render_html(summary, files)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    if log:
        with tempfile.TemporaryDirectory(prefix="nasw-report-") as tmp:
            copy = Path(tmp) / "report.html"
            copy.write_text(text, encoding="utf-8")
            store.log_file(search_id, str(copy), "report")
    return out


def log_search_artifacts(
    store: Metastore,
    search_id: str,
    *,
    input_shape: Sequence[int] | None = None,
    n_classes: int | None = None,
) -> dict[str, str]:
    """Draw every plot of a search and write its report; attach them to its parent run.

    Plots go to ``plots/<name>.png`` and the report to ``report/report.html``. Failures are
    logged, never raised: a finished search must not fail for a plot.

    Returns:
        Artifact name -> the local file that was attached (gone once this returns).
    """
    attached: dict[str, str] = {}
    try:
        summary = summarize(store, search_id, input_shape=input_shape, n_classes=n_classes)
        with tempfile.TemporaryDirectory(prefix="nasw-plots-") as tmp:
            files = render_plots(summary, tmp)
            for name, path in files.items():
                try:
                    store.log_file(search_id, str(path), "plots")
                    attached[f"plots/{path.name}"] = str(path)
                except Exception as exc:  # noqa: BLE001
                    _log.warning("cannot attach plot %s to search %s: %s", name, search_id, exc)
            report = Path(tmp) / "report.html"
            report.write_text(render_html(summary, files), encoding="utf-8")
            store.log_file(search_id, str(report), "report")
            attached["report/report.html"] = str(report)
    except Exception as exc:  # noqa: BLE001 - a plot must never fail a finished search
        _log.warning("plots of search %s failed: %s", search_id, exc)
    return attached


# -- comparison and export --------------------------------------------------------------------
def compare_rows(store: Metastore, search_ids: Sequence[str]) -> list[dict[str, Any]]:
    """One row per search: task, strategy, warm start, budget, trials, best values, wall time."""
    rows = []
    for sid in search_ids:
        s = summarize(store, sid, top=0, load_data=False)
        rec = s.record
        rows.append(
            {
                "search_id": rec.search_id,
                "task": rec.task,
                "strategy": rec.strategy,
                "seed": rec.seed,
                "warm_start": s.warm_start,
                "budget": s.budget,
                "trials": len(s.trials),
                "failed": s.n_failed,
                "objective": s.objective,
                "best_objective": s.best_value(s.objective),
                "report_metric": s.report_metric,
                "best_report": s.best_value(s.report_metric),
                "wall_seconds": s.wall_seconds,
                "curve": [
                    (t.number, t.metrics[s.objective])
                    for t in s.trials
                    if t.state == "finished" and _finite(t.metrics.get(s.objective))
                ],
            }
        )
    return rows


def export_rows(trials: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """Every trial as a JSON-able dict (genotype parsed)."""
    out = []
    for t in trials:
        try:
            genotype: Any = json.loads(t.genotype_json)
        except (ValueError, TypeError, RecursionError):
            genotype = t.genotype_json
        out.append(
            {
                "number": t.number,
                "trial_id": t.trial_id,
                "search_id": t.search_id,
                "task": t.task,
                "state": t.state,
                "metrics": dict(t.metrics),
                "params": dict(t.params),
                "genotype": genotype,
                "genotype_key": t.genotype_key,
                "parent_trial": t.parent_trial,
                "reason": t.reason,
                "tags": dict(t.tags),
                "start_time": t.start_time,
                "end_time": t.end_time,
            }
        )
    return out


def export_text(trials: Sequence[TrialRecord], fmt: str) -> str:
    """Trials as CSV (``metrics.*`` and ``params.*`` columns, the genotype as JSON) or JSON."""
    rows = export_rows(trials)
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt != "csv":
        raise UserError(f"export format must be csv or json, got {fmt!r}")
    metric_keys = sorted({k for r in rows for k in r["metrics"]})
    param_keys = sorted({k for r in rows for k in r["params"]})
    head = [
        "number",
        "trial_id",
        "state",
        *[f"metrics.{k}" for k in metric_keys],
        *[f"params.{k}" for k in param_keys],
        "genotype",
        "genotype_key",
        "parent_trial",
        "reason",
        "start_time",
        "end_time",
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(head)
    for r in rows:
        writer.writerow(
            [
                r["number"],
                r["trial_id"],
                r["state"],
                *[r["metrics"].get(k, "") for k in metric_keys],
                *[r["params"].get(k, "") for k in param_keys],
                json.dumps(r["genotype"], separators=(",", ":")),
                r["genotype_key"],
                r["parent_trial"] or "",
                r["reason"] or "",
                r["start_time"],
                "" if r["end_time"] is None else r["end_time"],
            ]
        )
    return buf.getvalue()
