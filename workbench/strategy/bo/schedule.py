"""When a warm-started BO search proposes with the model of its sources, and when with cold BO's.

Two schedules, each a pure function of the target's usable values in the order they were
observed (so a resumed search replays the same decisions):

* ``backoff`` (default): :mod:`workbench.strategy.backoff`'s rule with the sources as the warm
  proposer (a lead of zero-shot consensus picks, then the sources' model; a pick succeeds when
  it is the target's new best and then keeps the turn) and cold BO (its random initial design
  first) as the cold one.
* ``fixed``: no initial design; every ask uses the sources' model except every ``hedge``-th
  (counted by usable observations, from the second on; 0: never), the rule before ``backoff``.
"""

from __future__ import annotations

from workbench.strategy.backoff import backoff_asks, backoff_turn

__all__ = ["SCHEDULES", "backoff_asks", "backoff_turn", "fixed_turn"]

SCHEDULES = ("backoff", "fixed")


def fixed_turn(n: int, hedge: int) -> bool:
    """Whether the ask after ``n`` usable observations uses the sources' model under ``fixed``."""
    return not (hedge and n >= 2 and n % hedge == 0)
