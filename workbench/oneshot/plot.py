"""The evolution of op weights during a DARTS / GDAS supernet training: one panel per edge, one
line per op (matplotlib, headless); returns the PNG's path."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from workbench.space.relaxation import OpWeights


def plot_op_weights(history: Sequence[OpWeights], title: str = "", path: str | None = None) -> str | None:
    """Op weight per epoch on every edge; None when there is no epoch to draw."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = history[0]
    cols = 3
    rows = (len(first.edges) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), sharex=True, sharey=True, squeeze=False)
    epochs = list(range(1, len(history) + 1))
    for e, edge in enumerate(first.edges):
        ax = axes[e // cols][e % cols]
        for k, op in enumerate(first.ops):
            ax.plot(
                epochs,
                [w.probs[e][k] for w in history],
                label=op,
                color=f"C{k}",
                marker="." if len(history) < 30 else None,
            )
        ax.set_title(f"edge {edge}", fontsize=9)
        ax.set_ylim(0, 1)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for row in axes:
        row[0].set_ylabel("op weight")
    for k in range(len(first.edges), rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(title or "op weights")
    fig.tight_layout()
    out = Path(path) if path else Path(tempfile.mkdtemp(prefix="nasw-plot-")) / "op_weights.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return str(out)
