"""When a warm-started BO search proposes with the model of its sources, and when with cold BO's.

Two schedules, each a pure function of the target's usable values in the order they were
observed (so a resumed search replays the same decisions):

* ``backoff`` (default): the first ask is the sources' pick (their model with no target data:
  a zero-shot guess); the next ``n_init - 1`` asks are cold BO's random initial design (the same
  draws as a cold search); then cold BO proposes, and the sources' model gets a turn after
  ``gap`` cold asks. A transfer ask *succeeds* when its value is at least the median of the
  target's values before it (the first one is judged against the initial design); a success
  sets ``gap`` to 1 (the two proposers alternate), a failure doubles it. Sources that do not
  help therefore cost about ``log2(budget)`` asks (asks 0, 5, 10, 19, 36, 69 of a 100-trial
  search), and the search is otherwise cold BO, initial design included.
* ``fixed``: no initial design; every ask uses the sources' model except every ``hedge``-th
  (counted by usable observations, from the second on; 0: never), the rule before ``backoff``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SCHEDULES = ("backoff", "fixed")


def backoff_turn(values: Sequence[float], n_init: int) -> bool:
    """Whether ask number ``len(values)`` uses the sources' model under ``backoff``."""
    n = len(values)
    if n == 0:
        return True
    if n < n_init:
        return False
    v = np.asarray(values, dtype=float)
    gap, last = (1 if n_init < 2 or v[0] >= np.median(v[1:n_init]) else 2), 0
    for i in range(max(n_init, 1), n + 1):
        turn = i - last > gap
        if i == n:
            return turn
        if turn:
            gap = 1 if v[i] >= np.median(v[:i]) else gap * 2
            last = i
    return False  # not reached


def fixed_turn(n: int, hedge: int) -> bool:
    """Whether the ask after ``n`` usable observations uses the sources' model under ``fixed``."""
    return not (hedge and n >= 2 and n % hedge == 0)


def backoff_asks(values: Sequence[float], n_init: int) -> list[int]:
    """The asks (0-based) among the first ``len(values)`` that used the sources' model."""
    return [i for i in range(len(values)) if backoff_turn(values[:i], n_init)]
