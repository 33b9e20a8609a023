"""Plots of searches (matplotlib, headless)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from metastore import TrialRecord


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_progress(records: Sequence[TrialRecord], objective: str, title: str = "", path: str | None = None) -> str | None:
    """Objective of every finished trial and the best so far, by trial number; returns the PNG path."""
    pts = [(r.number, r.metrics[objective]) for r in records if r.state == "finished" and objective in r.metrics]
    if not pts:
        return None
    plt = _pyplot()
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
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(path) if path else Path(tempfile.mkdtemp(prefix="nasw-plot-")) / "progress.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return str(out)
