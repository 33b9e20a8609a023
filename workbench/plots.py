"""Plots of searches (matplotlib, headless): progress, best so far against trials and time,
learning curves, Pareto fronts, source weights of warm starts, comparisons
(:mod:`workbench.architecture_plot` draws architectures). Every function writes one PNG and
returns its path (None when there is nothing to draw)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from metastore import TrialRecord


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def legend_outside(ax: Any, **kwargs: Any) -> None:
    """The legend below the axes, in one row: never over a point (the worst trials included)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ncol = min(len(handles), kwargs.pop("ncol", 4))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, frameon=False, fontsize=8, **kwargs)


def plot_progress(
    records: Sequence[TrialRecord], objective: str, title: str = "", path: str | None = None
) -> str | None:
    """Objective of every finished trial and the best so far, by trial number; returns the PNG path.

    (The report draws :func:`plot_best_so_far`, which holds this and the same against time.)"""
    pts = [(r.number, r.metrics[objective]) for r in records if r.state == "finished" and objective in r.metrics]
    if not pts:
        return None
    plt = pyplot()
    xs, ys = zip(*pts)
    best, run = [], float("-inf")
    for y in ys:
        run = max(run, y)
        best.append(run)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(xs, ys, s=14, alpha=0.6, label="trial")
    ax.step(xs, best, where="post", color="C1", label="best so far")
    failed = [r.number for r in records if r.state == "failed"]
    if failed:
        ax.scatter(failed, [min(ys)] * len(failed), marker="x", color="C3", label="failed")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title(title)
    legend_outside(ax)
    fig.tight_layout()
    return save_png(fig, out_path(path, "progress.png"))


# -- shared helpers ---------------------------------------------------------------------------
def out_path(path: str | None, name: str) -> Path:
    return Path(path) if path else Path(tempfile.mkdtemp(prefix="nasw-plot-")) / name


def save_png(fig, out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")  # a legend outside the axes stays in the picture
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(out)


def _integer_ticks(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def best_so_far(values: Sequence[float]) -> list[float]:
    """Running maximum of ``values``."""
    out, run = [], float("-inf")
    for v in values:
        run = max(run, v)
        out.append(run)
    return out


def dedupe_steps(points: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """One value per step (the first logged), in step order.

    A trial's final metrics are logged again at its last epoch's step; the curve keeps the
    per-epoch value.
    """
    seen: dict[int, float] = {}
    for step, value in points:
        seen.setdefault(int(step), float(value))
    return sorted(seen.items())


# -- best value so far ------------------------------------------------------------------------
def plot_best_so_far(
    records: Sequence[TrialRecord],
    objective: str,
    title: str = "",
    path: str | None = None,
    start_time: float | None = None,
) -> str | None:
    """Best objective so far against trials (left, with every trial's objective and the failed
    trials) and against wall-clock time (right).

    Args:
        records: The search's trials.
        objective: The maximised metric.
        title: Figure title.
        path: Where to write the PNG (default: a temporary file).
        start_time: When the search started (seconds since the epoch); default: the first trial's start.

    Returns:
        The PNG path, or None when no trial finished.
    """
    done = [r for r in records if r.state == "finished" and objective in r.metrics]
    if not done:
        return None
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r.number for r in done]
    ys = [r.metrics[objective] for r in done]
    ax1.scatter(xs, ys, s=14, alpha=0.5, label="trial")
    ax1.step(xs, best_so_far(ys), where="post", color="C1", label="best so far")
    failed = [r.number for r in records if r.state == "failed"]
    if failed:
        ax1.scatter(failed, [min(ys)] * len(failed), marker="x", color="C3", label="failed")
    ax1.set_xlabel("trial")
    ax1.set_ylabel(objective)
    legend_outside(ax1)
    _integer_ticks(ax1)
    t0 = start_time or min(r.start_time for r in records if r.start_time) or 0.0
    timed = sorted((r for r in done if r.end_time), key=lambda r: r.end_time)
    if timed:
        ts = [max(0.0, r.end_time - t0) for r in timed]
        vs = best_so_far([r.metrics[objective] for r in timed])
        unit, scale = ("min", 60.0) if ts[-1] > 600 else ("s", 1.0)
        ax2.step([0.0] + [t / scale for t in ts], [vs[0]] + vs, where="post", color="C1")
        ax2.scatter([t / scale for t in ts], [r.metrics[objective] for r in timed], s=14, alpha=0.5, color="C0")
        ax2.set_xlabel(f"wall-clock time ({unit})")
    else:
        ax2.text(0.5, 0.5, "no end times recorded", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_ylabel(f"best {objective}")
    fig.suptitle(title or f"best {objective} so far")
    fig.tight_layout()
    return save_png(fig, out_path(path, "best_so_far.png"))


# -- learning curves --------------------------------------------------------------------------
def plot_learning_curves(
    curves: Mapping[str, Sequence[tuple[int, float]]],
    metric: str = "val_accuracy",
    title: str = "",
    path: str | None = None,
) -> str | None:
    """Per-epoch ``metric`` of a few trials (e.g. the top five), one line each.

    Args:
        curves: Label (``"#3 (0.912)"``) -> ``(step, value)`` points.
        metric: Metric name for the axis.

    Returns:
        The PNG path, or None when no curve has two points (a table lookup's "curve" is one
        dot: nothing to draw).
    """
    curves = {k: pts for k, v in curves.items() if v and len(pts := dedupe_steps(v)) > 1}
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in curves.items():
        steps, values = zip(*pts)
        ax.plot([s + 1 for s in steps], values, marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    _integer_ticks(ax)
    ax.set_ylabel(metric)
    ax.set_title(title or f"learning curves ({metric})")
    legend_outside(ax, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, out_path(path, "learning_curves.png"))


# -- Pareto front -----------------------------------------------------------------------------
def plot_pareto(
    points: Sequence[Sequence[float]],
    names: Sequence[str],
    front: Sequence[int],
    labels: Sequence[str] = (),
    title: str = "",
    path: str | None = None,
) -> str | None:
    """All trials on the first two objectives, the Pareto front highlighted and joined.

    Args:
        points: `n x m` raw objective values (not sign-flipped), ``m >= 2``.
        names: Objective names with direction, e.g. ``["val_accuracy (maximised)", "params (minimised)"]``.
        front: Indices of the non-dominated points.
        labels: Optional text per point (trial numbers), shown next to front points.

    Returns:
        The PNG path, or None with fewer than two objectives or no points.
    """
    if len(points) == 0 or len(names) < 2:
        return None
    plt = pyplot()
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(xs, ys, s=18, alpha=0.45, color="C0", label="trial")
    fr = sorted(front, key=lambda i: xs[i])
    if fr:
        ax.plot([xs[i] for i in fr], [ys[i] for i in fr], "-o", color="C3", markersize=6, label="Pareto front")
        for i in fr:
            if i < len(labels):
                ax.annotate(labels[i], (xs[i], ys[i]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    extra = f" (front over all {len(names)} objectives)" if len(names) > 2 else ""
    ax.set_title(title or f"Pareto front{extra}")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, out_path(path, "pareto_front.png"))


#: How an axis says which way an objective goes ("min" reads as minutes).
DIRECTION_WORDS = {"min": "minimised", "max": "maximised"}


def plot_search_pareto(
    trials: Sequence[TrialRecord], objectives: Sequence[str], title: str = "", path: str | None = None
) -> str | None:
    """The Pareto front of a search's finished trials over its ``objectives`` (``-params`` is
    minimised), axes labelled ``params (minimised)``; None when no trial has them all."""
    from workbench.strategy.pareto import objective_matrix, pareto_front, parse_objectives

    specs = parse_objectives(list(objectives))
    done = [t for t in trials if t.state == "finished"]
    values, ok = objective_matrix([t.metrics for t in done], specs)
    rows = [i for i in range(len(done)) if ok[i]]
    if not rows:
        return None
    oriented = values[rows]
    raw = [[o.sign * v for o, v in zip(specs, row)] for row in oriented]
    front = [int(i) for i in pareto_front(oriented)]
    names = [f"{o.key} ({DIRECTION_WORDS.get(o.direction, o.direction)})" for o in specs]
    labels = [f"#{done[i].number}" for i in rows]
    return plot_pareto(raw, names, front, labels, title=title, path=path)


# -- source weights of a warm start -----------------------------------------------------------
def plot_source_weights(
    series: Mapping[str, Sequence[tuple[float, float]]],
    title: str = "",
    path: str | None = None,
    xlabel: str = "trial",
) -> str | None:
    """Weight each source task received over the search (warm starts).

    Args:
        series: Source task -> ``(trial or step, weight)`` points.

    Returns:
        The PNG path, or None without points.
    """
    series = {k: sorted(v) for k, v in series.items() if v}
    if not series:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in sorted(series.items()):
        xs, ws = zip(*pts)
        if len(xs) == 1:
            ax.scatter(xs, ws, s=30, label=name)
        else:
            ax.plot(xs, ws, marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("source weight")
    ax.set_title(title or "warm start: weight of each source task")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, out_path(path, "source_weights.png"))


# -- comparison of searches -------------------------------------------------------------------
def plot_compare(
    curves: Mapping[str, Sequence[tuple[int, float]]], objective: str, title: str = "", path: str | None = None
) -> str | None:
    """Best-so-far curves of several searches on one figure.

    Args:
        curves: Search label -> ``(trial number, objective)`` of its finished trials.

    Returns:
        The PNG path, or None when no search has a finished trial.
    """
    curves = {k: sorted(v) for k, v in curves.items() if v}
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pts in curves.items():
        xs, ys = zip(*pts)
        ax.step(xs, best_so_far(ys), where="post", label=label, linewidth=1.8)
    ax.set_xlabel("trial")
    _integer_ticks(ax)
    ax.set_ylabel(f"best {objective} so far")
    ax.set_title(title or f"best {objective} so far")
    legend_outside(ax, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, out_path(path, "compare.png"))


# -- architecture drawings --------------------------------------------------------------------
