"""The backoff rule: when a warm-started strategy lets its warm proposer choose.

A warm start gives a strategy a second proposer that knows other tasks (BO's model of the
sources, RL's controller pre-trained on them). The rule decides, per ask, whether that proposer
or the strategy's cold one chooses, as a pure function of the target's usable values in the
order they were observed (so a resumed search replays the same decisions):

the first ``lead`` asks are the warm proposer's (zero-shot guesses; 1 by default); the next
``n_init - 1`` asks are the cold proposer's (BO: its random initial design, the same draws as a
cold search); then the cold proposer chooses and the warm one gets a turn after ``gap`` cold
asks. A warm ask *succeeds* when its value is at least the ``quantile`` of the target's values
before it (the median by default; 1.0: a new best); the lead succeeds when its best value is at
least that quantile of the ``n_init - 1`` design values after it. A success sets ``gap`` to 1
(the two alternate) or, with ``keep_turn``, to 0 (the warm proposer keeps asking while it
succeeds); a failure doubles it. A warm proposer that does not help therefore costs about
``lead - 1 + log2(budget)`` asks (asks 0, 5, 10, 19, 36, 69 of a 100-trial search with
``n_init = 5`` and a lead of 1), and the search is otherwise the cold strategy's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _threshold(values: np.ndarray, quantile: float) -> float:
    return float(np.median(values)) if quantile == 0.5 else float(np.quantile(values, quantile))


def _warm_asks(
    values: Sequence[float], n_init: int, quantile: float, n: int, lead: int = 1, keep_turn: bool = False
) -> list[int]:
    """The warm asks among asks ``0 .. n-1``, judged by ``values`` (those observed so far)."""
    lead = max(int(lead), 1)
    out = list(range(min(lead, n)))
    design_end = lead + max(n_init - 1, 0)  # asks lead .. design_end-1 are the cold proposer's
    if n <= design_end:
        return out
    v = np.asarray(values, dtype=float)
    won = 0 if keep_turn else 1
    design = v[lead:design_end]
    gap, last = (won if not len(design) or v[:lead].max() >= _threshold(design, quantile) else 2), lead - 1
    for i in range(design_end, n):
        if i - last > gap:
            out.append(i)
            last = i
            if i < len(v):  # judged once observed
                gap = won if v[i] >= _threshold(v[:i], quantile) else max(gap, 1) * 2
    return out


def backoff_turn(
    values: Sequence[float], n_init: int, quantile: float = 0.5, *, lead: int = 1, keep_turn: bool = False
) -> bool:
    """Whether ask number ``len(values)`` is the warm proposer's (a warm ask succeeds when its
    value is at least this ``quantile`` of the values before it; 0.5: the median)."""
    return len(values) in _warm_asks(values, n_init, quantile, len(values) + 1, lead, keep_turn)


def backoff_asks(
    values: Sequence[float], n_init: int, quantile: float = 0.5, *, lead: int = 1, keep_turn: bool = False
) -> list[int]:
    """The asks (0-based) among the first ``len(values)`` that were the warm proposer's."""
    return _warm_asks(values, n_init, quantile, len(values), lead, keep_turn)
