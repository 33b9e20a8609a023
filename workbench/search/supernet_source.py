"""Where a one-shot search's supernet starts from under ``--warm-start``: the newest finished
supernet run of another task in the store whose tensors fit this task's supernet.

``--warm-start auto`` looks at every other task, ``--warm-start A,B`` at those tasks (in that
order); the first supernet with at least one tensor that fits is taken (the cells' weights; stem
and head are the task's own, see :mod:`workbench.oneshot.warm`). A DARTS / GDAS search also
starts its op logits from the source's when the source learnt some (not from an SPOS supernet,
whose logits were never trained). Nothing that fits: the supernet starts from scratch, and the
search says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metastore import Metastore
from metastore.schema import TAG_SUPERNET
from workbench.transfer.sources import parse_warm_start

#: The supernet method whose op logits are not learnt (uniform single paths).
UNTRAINED_LOGITS = "spos"


@dataclass(frozen=True)
class SupernetSource:
    """A supernet of another task to start from.

    Attributes:
        task: Its task.
        run_id: Its supernet run.
        method: The method it was trained with (``spos``, ``darts``, ``gdas``).
        supernet: Its state dict.
        alpha: Its op logits (None for SPOS).
        fits: How many of the target supernet's tensors it fills.
        total: How many tensors the target supernet has.
    """

    task: str
    run_id: str
    method: str
    supernet: Mapping[str, Any]
    alpha: Any
    fits: int
    total: int

    def describe(self) -> str:
        """One line for the console and the supernet run's note."""
        logits = " and its op weights" if self.alpha is not None else ""
        return (
            f"supernet warm start: from the {self.method} supernet of {self.task} (run {self.run_id[:8]}){logits}: "
            f"{self.fits} of {self.total} tensors copied, stem and head fresh"
        )


def find_supernet_source(
    store: Metastore, warm_start: str | None, target_task: str, shapes: Mapping[str, tuple[int, ...]], method: str
) -> SupernetSource | None:
    """The supernet this search starts from (see the module docstring), None without one.

    Args:
        store: The store to look in.
        warm_start: ``--warm-start`` (``none``, ``auto`` or ``TASK[,TASK...]``).
        target_task: This search's task (never its own source).
        shapes: The target supernet's state dict shapes (name -> shape).
        method: This search's supernet method (op logits are taken only for a learnt relaxation).
    """
    from workbench.oneshot.warm import fitting

    mode, names = parse_warm_start(warm_start)
    if mode == "none":
        return None
    searches = [s for s in store.searches() if s.task != target_task and (mode == "auto" or s.task in names)]
    if mode == "tasks":  # in the order named, newest first within a task (searches() is newest first)
        searches.sort(key=lambda s: names.index(s.task))
    for search in searches:
        for trial in reversed(store.trials(search.search_id)):
            if not trial.tags.get(TAG_SUPERNET) or trial.state != "finished":
                continue
            state = store.load_weights(trial.trial_id)
            net = state.get("supernet") if isinstance(state, Mapping) else None
            if not isinstance(net, Mapping):
                continue
            fits = fitting(shapes, net)
            if not fits:
                continue
            source_method = str(trial.tags.get(TAG_SUPERNET))
            learnt = source_method != UNTRAINED_LOGITS and method != UNTRAINED_LOGITS
            return SupernetSource(
                search.task,
                trial.trial_id,
                source_method,
                net,
                state.get("alpha") if learnt else None,
                fits,
                len(shapes),
            )
    return None
