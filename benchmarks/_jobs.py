"""Running a benchmark's independent jobs, in worker processes, up to a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def in_order(
    fn: Callable[..., Any], jobs: Sequence[tuple], processes: int = 1, deadline: float | None = None
) -> Iterator[Any]:
    """Yield ``fn(*job)`` for each job, in the jobs' order.

    ``processes > 1`` runs the jobs in that many spawned worker processes (``fn`` must be
    importable by them: a module-level function). ``deadline`` (a ``time.perf_counter()`` value)
    ends the iteration early: the results yielded are the jobs finished by then, in order, and the
    workers still running are terminated. A caller tells a cut-short run by counting the results.
    """
    if processes <= 1:
        for job in jobs:
            if deadline is not None and time.perf_counter() > deadline:
                return
            yield fn(*job)
        return
    import multiprocessing as mp

    pool = mp.get_context("spawn").Pool(processes)
    try:
        pending = [pool.apply_async(fn, job) for job in jobs]
        for res in pending:
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                return
            try:
                value = res.get(timeout=left)
            except mp.TimeoutError:
                return
            yield value
    finally:
        pool.terminate()
