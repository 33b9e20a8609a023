"""Run trials one at a time in the search process (the default)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from workbench.execute.base import Executor
from workbench.execute.trial import TrialJob, TrialOutcome, execute_trial


class InProcessExecutor(Executor):
    """Evaluates each submitted trial synchronously inside ``wait``.

    Args:
        run: ``run(job, on_epoch) -> TrialOutcome``, normally a closure over
            :func:`execute_trial` with the search's store and evaluator.
        on_epoch: ``on_epoch(number, epoch, metrics)`` for live progress.
    """

    capacity = 1

    def __init__(
        self, run: Callable[..., TrialOutcome], on_epoch: Callable[[int, int, Mapping[str, float]], None] | None = None
    ) -> None:
        self._run = run
        self._on_epoch = on_epoch
        self._queue: list[TrialJob] = []

    def submit(self, job: TrialJob) -> None:
        self._queue.append(job)

    def wait(self) -> list[TrialOutcome]:
        job = self._queue.pop(0)
        cb = None
        if self._on_epoch is not None:
            cb = lambda e, m, n=job.number: self._on_epoch(n, e, m)  # noqa: E731
        return [self._run(job, cb)]

    @property
    def running(self) -> int:
        return len(self._queue)


__all__ = ["InProcessExecutor", "execute_trial"]
