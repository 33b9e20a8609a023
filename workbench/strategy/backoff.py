"""The backoff rule: when a warm-started strategy lets its warm proposer choose.

A warm start gives a strategy a second proposer that knows other tasks (BO's model of the
sources, RL's controller pre-trained on them). The rule decides, per ask, whether that proposer
or the strategy's cold one chooses, as a pure function of the target's usable values in the
order they were observed (so a resumed search replays the same decisions):

the first ask is the warm proposer's (a zero-shot guess); the next ``n_init - 1`` asks are the
cold proposer's (BO: its random initial design, the same draws as a cold search); then the cold
proposer chooses and the warm one gets a turn after ``gap`` cold asks. A warm ask *succeeds*
when its value is at least the median of the target's values before it (the first one is judged
against the ``n_init - 1`` after it); a success sets ``gap`` to 1 (the two alternate), a failure
doubles it. A warm proposer that does not help therefore costs about ``log2(budget)`` asks (asks
0, 5, 10, 19, 36, 69 of a 100-trial search with ``n_init = 5``), and the search is otherwise the
cold strategy's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _threshold(values: np.ndarray, quantile: float) -> float:
    return float(np.median(values)) if quantile == 0.5 else float(np.quantile(values, quantile))


def _warm_asks(values: Sequence[float], n_init: int, quantile: float, n: int) -> list[int]:
    """The warm asks among asks ``0 .. n-1``, judged by ``values`` (those observed so far)."""
    if n == 0:
        return []
    out = [0]
    if n <= n_init:  # asks 1 .. n_init-1 are the cold proposer's
        return out
    v = np.asarray(values, dtype=float)
    gap, last = (1 if n_init < 2 or v[0] >= _threshold(v[1:n_init], quantile) else 2), 0
    for i in range(max(n_init, 1), n):
        if i - last > gap:
            out.append(i)
            last = i
            if i < len(v):  # judged once observed
                gap = 1 if v[i] >= _threshold(v[:i], quantile) else gap * 2
    return out


def backoff_turn(values: Sequence[float], n_init: int, quantile: float = 0.5) -> bool:
    """Whether ask number ``len(values)`` is the warm proposer's (a warm ask succeeds when its
    value is at least this ``quantile`` of the values before it; 0.5: the median)."""
    return len(values) in _warm_asks(values, n_init, quantile, len(values) + 1)


def backoff_asks(values: Sequence[float], n_init: int, quantile: float = 0.5) -> list[int]:
    """The asks (0-based) among the first ``len(values)`` that were the warm proposer's."""
    return _warm_asks(values, n_init, quantile, len(values))
